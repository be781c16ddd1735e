//! Exporter `prometheus_remote_write`: OTLP batches translated to Prometheus series
//! (`sluice_core::prometheus`) and sent as remote_write 1.0 or 2.0 (protobuf + snappy), with
//! per-series ordering across parallel shards, retries per the remote_write spec, and per-tenant
//! headers or URLs. Each tenant has its own shards (`tenants`), so a tenant whose backend refuses
//! or floods only fills and blocks its own; requests in flight are bounded exporter-wide by send
//! slots granted by SLA tier (`slots`).
//!
//! Counting: this exporter's `sent`, `failed` and `dropped` counters are in samples (a histogram
//! point becomes several samples); points dropped in translation (e.g. delta temporality) are
//! counted as points with their reason.

mod client;
mod config;
mod encode;
mod shards;
mod slots;
mod tenants;

pub use config::{Protocol, QueueConfig, RemoteWriteConfig};
pub use encode::Encoder;
use encode::estimated_bytes;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use shards::Shared;
use sluice_core::batch::age::AgeLimit;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{
    BoxError, Delivered, Exporter, ExporterConfig, ExporterContext, Prepared, SendError,
};
use sluice_core::prometheus::{TranslateOptions, Translation, TranslationState};
use sluice_core::sending::{Completion, SendingSettings};
use sluice_core::tenancy::tier_rank;
use std::sync::Arc;
use tenants::Tenants;

impl ExporterConfig for RemoteWriteConfig {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        let token = match &self.bearer_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read bearer_token_file {path}: {e}"))?,
            ),
            None => None,
        };
        let client = client::Client::new(self, token)?;
        let age_limit = AgeLimit::new(
            self.sample_age_limit.map(|d| d.get()),
            &ctx.id.to_string(),
            ctx.telemetry.clone(),
        );
        let shared = Arc::new(Shared::new(
            ctx.id.to_string(),
            self.clone(),
            client,
            ctx.telemetry,
        ));
        Ok(Arc::new(RemoteWriteExporter {
            tenants: Tenants::new(shared.clone()),
            shared,
            opts: self.translate_options(),
            translation: Mutex::new(TranslationState::new(self.label_cache_size)),
            age_limit,
        }))
    }

    fn sending(&self) -> SendingSettings {
        RemoteWriteConfig::sending(self)
    }
}

struct RemoteWriteExporter {
    shared: Arc<Shared>,
    tenants: Tenants,
    opts: TranslateOptions,
    /// Delta sums and remembered label sets, from one batch to the next.
    translation: Mutex<TranslationState>,
    /// `sample_age_limit`.
    age_limit: Option<AgeLimit>,
}

impl Exporter for RemoteWriteExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(self.hand_over(&batch.context, || {
            // After the busy check, so that a deferred batch's too old points count once.
            let batch: &Batch = &AgeLimit::apply(self.age_limit.as_ref(), batch);
            self.translate(batch)
        }))
    }

    /// Translates the batch as it enters a memory queue: its series take a fraction of the room
    /// of its decoded points while it waits for the shards. Its size is that of its series in a
    /// request, as `max_bytes_per_send` estimates it.
    fn prepare(&self, batch: &Batch) -> Option<(Prepared, usize)> {
        let translation = self.translate(batch);
        let bytes = translation.series.iter().map(estimated_bytes).sum();
        Some((Box::new(translation), bytes))
    }

    /// Not with `sample_age_limit`, whose points are judged when they are sent.
    fn prepares(&self) -> bool {
        self.age_limit.is_none()
    }

    fn send_prepared<'a>(
        &'a self,
        context: &'a Context,
        prepared: &'a mut Option<Prepared>,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(self.hand_over(context, move || {
            match prepared.take().map(|p| p.downcast::<Translation>()) {
                Some(Ok(translation)) => *translation,
                _ => {
                    debug_assert!(false, "only this exporter prepares its queue's batches");
                    Translation::default()
                }
            }
        }))
    }

    /// Every tenant's shards send what they hold until `deadline`; then what is left is dropped
    /// and counted.
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let stop = self.shared.hard_stop.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                stop.cancel();
            });
            self.tenants.stop().await;
            timer.abort();
        })
    }
}

impl RemoteWriteExporter {
    /// Translates a batch; the points that could not be are counted when it is handed over (a
    /// queued batch may yet be dropped whole, and counted so).
    fn translate(&self, batch: &Batch) -> Translation {
        self.translation.lock().translate(
            batch,
            &self.opts,
            &self.shared.telemetry,
            &self.shared.name,
        )
    }

    /// Hands the series of a batch of `context` (made by `translate`, called only once the
    /// tenant's shards can take them) to its tenant's shards, never waiting: series that find
    /// their shard full are handed over as it makes room, and until then the tenant's next
    /// batches are refused as retryable, so they wait in the sending engine's queue of that
    /// tenant while other tenants are served.
    async fn hand_over(
        &self,
        context: &Context,
        translate: impl FnOnce() -> Translation,
    ) -> Result<Delivered, SendError> {
        let tenant: Arc<str> = context
            .tenant
            .clone()
            .unwrap_or_else(|| Arc::from(self.shared.cfg.default_tenant.as_str()));
        let (completion, part) = Completion::new();
        loop {
            let Some(entry) = self.tenants.get(&tenant) else {
                return Err(SendError::permanent("the exporter is shut down"));
            };
            let mut guard = entry.set.lock().await;
            let Some(set) = guard.as_mut() else {
                // Retired for idleness between the lookup and the lock: look it up again.
                drop(guard);
                if self.tenants.is_shut_down() {
                    return Err(SendError::permanent("the exporter is shut down"));
                }
                continue;
            };
            if set.is_feeding() {
                // Refused before translating (a prepared batch: before counting what its
                // translation dropped), so that nothing is counted or accumulated twice.
                return Err(SendError::busy(
                    format!(
                        "the shards of tenant {tenant} are full; the batch waits in the exporter's queue"
                    ),
                    std::time::Duration::from_millis(5),
                ));
            }
            entry.tenant.set_rank(tier_rank(context.sla_tier()));
            entry.touch();
            let translation = translate();
            for (reason, points) in &translation.dropped {
                tracing::debug!(exporter = %self.shared.name, reason, points, "points not translatable to Prometheus");
                self.shared
                    .telemetry
                    .exporter_dropped(&self.shared.name, &tenant, reason, *points);
            }
            let interval = self.shared.cfg.queue_config.shard_update_interval.get();
            if let Some(set) = guard.take() {
                let mut set = set.maybe_reshard(interval);
                set.hand_over(translation, &part);
                *guard = Some(set);
            }
            break;
        }
        // The batch is done once each of its series is settled by its shard.
        part.settle();
        self.tenants.retire_idle().await;
        Ok(Delivered {
            handed_off: true,
            completion: Some(completion),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests;
