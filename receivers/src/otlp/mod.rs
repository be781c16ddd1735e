//! Receiver `otlp`: OTLP/gRPC (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`) and
//! OTLP/HTTP (`POST /v1/metrics`, protobuf or JSON, gzip or zstd), per the OTLP specification.

mod config;
mod gate;
mod grpc;
mod http;
mod validate;

pub use config::OtlpReceiverConfig;

/// The validation every request goes through, for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::validate::sanitize;
}

use futures::future::BoxFuture;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, ReceiverConfig, ReceiverContext, Refusal};
use sluice_core::ingress::Ingress;
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::tenancy::{Authenticator, Denied};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl ReceiverConfig for OtlpReceiverConfig {
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
            });
            let mut tasks = Vec::new();
            if let Some(g) = &cfg.protocols.grpc {
                tasks.push(
                    grpc::serve(shared.clone(), g.endpoint.as_str(), ctx.shutdown.clone()).await?,
                );
            }
            if let Some(h) = &cfg.protocols.http {
                tasks.push(
                    http::serve(shared.clone(), h.endpoint.as_str(), ctx.shutdown.clone()).await?,
                );
            }
            Ok(tokio::spawn(async move {
                futures::future::join_all(tasks).await;
            }))
        })
    }
}

/// What both protocol servers share: where batches go and how they are counted, and the limits.
pub(crate) struct Shared {
    ingress: Ingress,
    max_request_bytes: u64,
    max_decompressed_bytes: u64,
}

impl Shared {
    fn name(&self) -> &str {
        self.ingress.name()
    }

    /// The batch context from the request's headers or metadata, with its tenant; a request
    /// without one is refused (and counted) before its body is read.
    fn context(&self, get: impl Fn(&str) -> Option<String>) -> Result<Context, Denied> {
        self.ingress.context(get)
    }

    /// Refuses (and counts) a request while the process is near its memory limit, before its
    /// body is read.
    fn admit(&self, context: &Context) -> Result<(), Refusal> {
        self.ingress.admit(context)
    }

    /// Refuses (and counts) a request whose tenant the pipeline has no room for, before its body is
    /// decoded (gRPC: before the message is read; HTTP: once the body is read).
    fn ready(&self, context: &Context) -> Result<(), Refusal> {
        self.ingress.ready(context)
    }

    /// Validates, hands the request to the pipeline and builds the response. Points that are not
    /// valid OTLP are left out and reported as a partial success.
    fn ingest(
        &self,
        context: Context,
        request: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Refusal> {
        let (request, rejected) = validate::sanitize(request);
        if let Some(r) = &rejected {
            self.ingress.refused(&context, "invalid", r.points);
        }
        self.ingress
            .deliver(Batch::from_request(context, request))?;
        Ok(ExportMetricsServiceResponse {
            partial_success: rejected.map(|r| ExportMetricsPartialSuccess {
                rejected_data_points: r.points as i64,
                error_message: r.message,
            }),
        })
    }

    /// Counts a request refused before its points could be read.
    fn refuse_unread(&self, reason: &str) {
        self.ingress.refuse_unread(reason);
    }
}

#[cfg(test)]
mod tests;
