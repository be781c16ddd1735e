//! OTLP/gRPC server.

use super::Shared;
use super::gate::Gate;
use sluice_core::batch::Context;
use sluice_core::component::{BoxError, Refusal, RefusalKind};
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::tenancy::Denied;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        mut request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let context = request
            .extensions_mut()
            .remove::<Context>()
            .ok_or_else(|| Status::internal("the request was not admitted"))?;
        self.0
            .ingest(context, request.into_inner())
            .map(Response::new)
            .map_err(|r| status(&r))
    }
}

/// UNAUTHENTICATED without a tenant, INVALID_ARGUMENT for a header that is not a tenant id.
pub(super) fn denied(d: &Denied) -> Status {
    match d {
        Denied::Unauthenticated { message, .. } => Status::unauthenticated(message.clone()),
        Denied::InvalidTenant(message) => Status::invalid_argument(message.clone()),
    }
}

/// The gRPC status for a refusal: UNAVAILABLE (queue full, shutting down) or RESOURCE_EXHAUSTED
/// (a limit) with RetryInfo, both retryable per the OTLP spec; INVALID_ARGUMENT otherwise.
pub fn status(r: &Refusal) -> Status {
    let code = match r.kind {
        RefusalKind::Full | RefusalKind::ShuttingDown | RefusalKind::MemoryLimit => {
            Code::Unavailable
        }
        RefusalKind::Limited => Code::ResourceExhausted,
        RefusalKind::Invalid => Code::InvalidArgument,
    };
    match r.retry_after {
        Some(d) if r.retryable() => Status::with_error_details(
            code,
            r.message.clone(),
            ErrorDetails::with_retry_info(Some(d)),
        ),
        _ => Status::new(code, r.message.clone()),
    }
}

/// tonic refuses a message over the size limit with OUT_OF_RANGE, which OTLP clients retry; the
/// OTLP spec wants a non-retryable refusal for a request that will never fit, and Sluice's contract
/// says RESOURCE_EXHAUSTED (without RetryInfo, so that clients do not retry it).
fn oversize_is_resource_exhausted<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers_mut();
    let out_of_range = h.get("grpc-status").is_some_and(|v| v == "11");
    let too_large = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("too%20large") || m.contains("too large") || m.contains("size%20limit")
        });
    if out_of_range && too_large {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

/// Why the gRPC layer refused a request before the receiver saw it (the codec could not decode
/// it, or it was over the size limit), read off the response; `None` for every other response
/// (those the receiver answered itself, and counted).
fn refused_before_handler<B>(resp: &http::Response<B>) -> Option<&'static str> {
    let h = resp.headers();
    let status = h.get("grpc-status")?;
    let message = h.get("grpc-message").and_then(|v| v.to_str().ok())?;
    if status == "3" && message.starts_with("malformed%20protobuf") {
        Some("malformed")
    } else if status == "8" && (message.contains("too%20large") || message.contains("size%20limit"))
    {
        Some("too_large")
    } else {
        None
    }
}

pub async fn serve(
    shared: Arc<Shared>,
    endpoint: &str,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, BoxError> {
    let listener = tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| format!("cannot listen on {endpoint} (OTLP/gRPC): {e}"))?;
    let local = listener.local_addr()?;
    // tonic checks this limit on the frame and again while decompressing, so a gzip or zstd bomb is
    // cut off at the limit.
    let limit = shared.max_decompressed_bytes.min(usize::MAX as u64) as usize;
    let name = shared.name().to_string();
    let gate = shared.clone();
    let counter = shared.clone();
    let svc = MetricsServiceServer::new(Service(shared))
        .max_decoding_message_size(limit)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip);
    let svc = Gate {
        inner: svc,
        shared: gate,
    };
    tracing::info!(receiver = %name, endpoint = %local, "OTLP/gRPC receiver listening");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(tower::util::MapResponseLayer::new(move |resp| {
                let resp = oversize_is_resource_exhausted(resp);
                if let Some(reason) = refused_before_handler(&resp) {
                    counter.refuse_unread(reason);
                }
                resp
            }))
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "OTLP/gRPC server failed");
        }
    }))
}
