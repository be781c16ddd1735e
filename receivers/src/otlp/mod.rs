//! Receiver `otlp`: OTLP/gRPC (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`) and
//! OTLP/HTTP (`POST /v1/metrics`, protobuf or JSON, gzip or zstd), per the OTLP specification.

mod config;
mod grpc;
mod http;
mod validate;

pub use config::OtlpReceiverConfig;

use futures::future::BoxFuture;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, Consumer, ReceiverConfig, ReceiverContext, Refusal};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::telemetry::Telemetry;
use std::sync::Arc;
use tokio::task::JoinHandle;

impl ReceiverConfig for OtlpReceiverConfig {
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

/// What both protocol servers share: where batches go and how they are counted.
pub(crate) struct Shared {
    name: String,
    next: Arc<dyn Consumer>,
    telemetry: Arc<Telemetry>,
    metadata_keys: Vec<String>,
    max_request_bytes: u64,
    max_decompressed_bytes: u64,
}

impl Shared {
    /// The batch context from the request's headers or metadata.
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

    /// Validates, hands the request to the pipeline and builds the response. Points that are not
    /// valid OTLP are left out and reported as a partial success.
    fn ingest(
        &self,
        context: Context,
        request: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Refusal> {
        let tenant = context.tenant_label().to_string();
        let (request, rejected) = validate::sanitize(request);
        if let Some(r) = &rejected {
            self.telemetry
                .receiver_refused(&self.name, &tenant, "invalid", r.points);
        }
        let batch = Batch::from_request(context, request);
        let points = batch.point_count() as u64;
        if points > 0 {
            match self.next.consume(batch) {
                Ok(()) => self
                    .telemetry
                    .receiver_accepted(&self.name, &tenant, points),
                Err(refusal) => {
                    self.telemetry
                        .receiver_refused(&self.name, &tenant, refusal.reason(), points);
                    return Err(refusal);
                }
            }
        }
        Ok(ExportMetricsServiceResponse {
            partial_success: rejected.map(|r| ExportMetricsPartialSuccess {
                rejected_data_points: r.points as i64,
                error_message: r.message,
            }),
        })
    }

    /// Counts a request refused before its points could be read.
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
