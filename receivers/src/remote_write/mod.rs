//! Receiver `prometheus_remote_write` (alias `prometheusremotewrite`): Prometheus remote_write
//! 1.0 and 2.0 over HTTP (`POST /api/v1/write`, snappy-compressed protobuf), per the
//! remote_write specifications. Series become OTLP resources per (`job`, `instance`) with their
//! names and labels unchanged; see `build.rs` for the mapping.

mod build;
mod config;
mod decode;
mod histogram;
mod http;

pub use config::RemoteWriteReceiverConfig;

use build::Counts;
use decode::{Decoded, MetadataCache};
use futures::future::BoxFuture;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, Consumer, ReceiverConfig, ReceiverContext, Refusal};
use sluice_core::telemetry::Telemetry;
use std::sync::Arc;
use tokio::task::JoinHandle;

impl ReceiverConfig for RemoteWriteReceiverConfig {
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>> {
        let cfg = self.clone();
        Box::pin(async move {
            let shared = Arc::new(Shared {
                name: ctx.id.to_string(),
                next: ctx.next,
                telemetry: ctx.telemetry,
                metadata_keys: cfg
                    .metadata_keys
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
                max_request_bytes: cfg.max_request_bytes.get(),
                max_decompressed_bytes: cfg.max_decompressed_bytes.get(),
                metadata: MetadataCache::default(),
            });
            http::serve(shared, cfg.endpoint.as_str(), &cfg.path, ctx.shutdown).await
        })
    }
}

/// What the HTTP handler needs: where batches go, how they are counted, the limits.
pub(crate) struct Shared {
    name: String,
    next: Arc<dyn Consumer>,
    telemetry: Arc<Telemetry>,
    metadata_keys: Vec<String>,
    max_request_bytes: u64,
    max_decompressed_bytes: u64,
    /// remote_write 1.0 metadata, which arrives apart from the samples.
    metadata: MetadataCache,
}

impl Shared {
    /// The batch context from the request's headers.
    fn context(&self, get: impl Fn(&str) -> Option<String>) -> Context {
        let mut metadata: Vec<(Arc<str>, Arc<str>)> = self
            .metadata_keys
            .iter()
            .filter_map(|k| get(k).map(|v| (Arc::from(k.as_str()), Arc::from(v))))
            .collect();
        metadata.sort();
        Context {
            tenant: None,
            metadata,
        }
    }

    /// Counts what was left out, hands the rest to the pipeline, and says what was written.
    fn ingest(&self, context: Context, decoded: Decoded) -> Result<Counts, Refusal> {
        let tenant = context.tenant_label().to_string();
        for (reason, n) in &decoded.rejected.by_reason {
            self.telemetry
                .receiver_refused(&self.name, &tenant, reason, *n);
        }
        let batch = Batch::new(context, decoded.resource_metrics);
        let points = batch.point_count() as u64;
        if points == 0 {
            return Ok(Counts::default());
        }
        match self.next.consume(batch) {
            Ok(()) => {
                self.telemetry
                    .receiver_accepted(&self.name, &tenant, points);
                Ok(decoded.written)
            }
            Err(refusal) => {
                self.telemetry
                    .receiver_refused(&self.name, &tenant, refusal.reason(), points);
                Err(refusal)
            }
        }
    }

    /// Counts a request refused before its series could be read.
    fn refuse_unread(&self, reason: &str) {
        self.telemetry
            .receiver_refused_requests
            .get_or_create(&sluice_core::telemetry::ReceiverReasonLabels {
                receiver: self.name.clone(),
                tenant: String::new(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests;
