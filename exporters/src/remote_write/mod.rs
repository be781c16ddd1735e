//! Exporter `prometheus_remote_write`: OTLP batches translated to Prometheus series
//! (`sluice_core::prometheus`) and sent as remote_write 1.0 or 2.0 (protobuf + snappy), with
//! per-series ordering across parallel shards, retries per the remote_write spec, and per-tenant
//! headers or URLs.
//!
//! Counting: this exporter's `sent`, `failed` and `dropped` counters are in samples (a histogram
//! point becomes several samples); points dropped in translation (e.g. delta temporality) are
//! counted as points with their reason.

mod client;
mod config;
mod encode;
mod shards;

pub use config::{Protocol, QueueConfig, RemoteWriteConfig};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use shards::{ShardSet, Shared};
use sluice_core::batch::Batch;
use sluice_core::component::{
    BoxError, Delivered, Exporter, ExporterConfig, ExporterContext, SendError,
};
use sluice_core::prometheus::{DeltaToCumulative, TranslateOptions, translate};
use sluice_core::sending::SendingSettings;
use std::sync::Arc;

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
        let shared = Arc::new(Shared::new(
            ctx.id.to_string(),
            self.clone(),
            client,
            ctx.telemetry,
        ));
        let shards = ShardSet::start(shared.clone(), self.queue_config.min_shards);
        Ok(Arc::new(RemoteWriteExporter {
            shared,
            opts: self.translate_options(),
            delta: Mutex::new(DeltaToCumulative::default()),
            shards: tokio::sync::Mutex::new(Some(shards)),
        }))
    }

    fn sending(&self) -> SendingSettings {
        RemoteWriteConfig::sending(self)
    }
}

struct RemoteWriteExporter {
    shared: Arc<Shared>,
    opts: TranslateOptions,
    delta: Mutex<DeltaToCumulative>,
    shards: tokio::sync::Mutex<Option<ShardSet>>,
}

impl Exporter for RemoteWriteExporter {
    /// Translates the batch and hands its series to their shards (waiting while a shard is full).
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let tenant: Arc<str> = batch
                .context
                .tenant
                .clone()
                .unwrap_or_else(|| Arc::from(self.shared.cfg.default_tenant.as_str()));
            let translation = {
                let mut delta = self.delta.lock();
                translate(batch, &self.opts, Some(&mut delta))
            };
            for (reason, points) in &translation.dropped {
                tracing::debug!(exporter = %self.shared.name, reason, points, "points not translatable to Prometheus");
                self.shared
                    .telemetry
                    .exporter_dropped(&self.shared.name, &tenant, reason, *points);
            }
            let mut guard = self.shards.lock().await;
            let Some(set) = guard.take() else {
                return Err(SendError::permanent("the exporter is shut down"));
            };
            let mut set = set
                .maybe_reshard(self.shared.cfg.queue_config.shard_update_interval.get())
                .await;
            let mut series = translation.series.into_iter();
            for s in series.by_ref() {
                if !set.enqueue(&tenant, s).await {
                    break;
                }
            }
            let rest: u64 = series.map(|s| shards::samples_of(&s)).sum();
            if rest > 0 {
                self.shared.telemetry.exporter_dropped(
                    &self.shared.name,
                    &tenant,
                    "shutdown",
                    rest,
                );
            }
            *guard = Some(set);
            Ok(Delivered {
                handed_off: true,
                ..Default::default()
            })
        })
    }

    /// The shards send what they hold until `deadline`; then what is left is dropped and counted.
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(set) = self.shards.lock().await.take() else {
                return;
            };
            let stop = self.shared.hard_stop.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                stop.cancel();
            });
            set.stop().await;
            timer.abort();
        })
    }
}

#[cfg(test)]
mod tests;
