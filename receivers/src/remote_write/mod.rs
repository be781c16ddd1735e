//! Receiver `prometheus_remote_write` (alias `prometheusremotewrite`): Prometheus remote_write
//! 1.0 and 2.0 over HTTP (`POST /api/v1/write`, snappy-compressed protobuf), per the
//! remote_write specifications. Series become OTLP resources per (`job`, `instance`) with their
//! names and labels unchanged; see `build.rs` for the mapping.

mod build;
mod config;
mod decode;
mod histogram;
mod http;
mod wire;

pub use config::RemoteWriteReceiverConfig;

/// The body decompression and the decoders the HTTP handler runs, for the fuzz targets (`fuzz/`);
/// not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::decode::{MetadataCache, v1, v2};
    pub use super::http::decompress;
    pub use super::wire::decode as decode_v1;
}

use build::Counts;
use decode::{Decoded, MetadataCache};
use futures::future::BoxFuture;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, ReceiverConfig, ReceiverContext, Refusal};
use sluice_core::ingress::Ingress;
use sluice_core::tenancy::{Authenticator, Denied};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl ReceiverConfig for RemoteWriteReceiverConfig {
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>> {
        let cfg = self.clone();
        Box::pin(async move {
            let tenancy = Authenticator::from_config(
                cfg.auth.as_ref(),
                cfg.tenant.as_ref(),
                &ctx.id.to_string(),
                ctx.telemetry.clone(),
                ctx.shutdown.clone(),
            )?;
            let shared = Arc::new(Shared {
                ingress: Ingress::new(
                    ctx.id.to_string(),
                    ctx.next,
                    ctx.telemetry,
                    &cfg.metadata_keys,
                )
                .with_tenancy(tenancy),
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
    ingress: Ingress,
    max_request_bytes: u64,
    max_decompressed_bytes: u64,
    /// remote_write 1.0 metadata, which arrives apart from the samples.
    metadata: MetadataCache,
}

impl Shared {
    fn name(&self) -> &str {
        self.ingress.name()
    }

    /// The batch context from the request's headers, with its tenant; a request without one is
    /// refused (and counted) before its body is read.
    fn context(&self, get: impl Fn(&str) -> Option<String>) -> Result<Context, Denied> {
        self.ingress.context(get)
    }

    /// Refuses (and counts) a request while the process is near its memory limit, before its
    /// body is read.
    fn admit(&self, context: &Context) -> Result<(), Refusal> {
        self.ingress.admit(context)
    }

    /// Refuses (and counts) a request whose tenant the pipeline has no room for, before its body is
    /// decoded.
    fn ready(&self, context: &Context) -> Result<(), Refusal> {
        self.ingress.ready(context)
    }

    /// Counts what was left out, hands the rest to the pipeline, and says what was written.
    fn ingest(&self, context: Context, decoded: Decoded) -> Result<Counts, Refusal> {
        for (reason, n) in &decoded.rejected.by_reason {
            self.ingress.refused(&context, reason, *n);
        }
        match self
            .ingress
            .deliver(Batch::new(context, decoded.resource_metrics))?
        {
            0 => Ok(Counts::default()),
            _ => Ok(decoded.written),
        }
    }

    /// Counts a request refused before its series could be read.
    fn refuse_unread(&self, reason: &str) {
        self.ingress.refuse_unread(reason);
    }
}

#[cfg(test)]
mod tests;
