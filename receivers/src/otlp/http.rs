//! OTLP/HTTP server: `POST /v1/metrics` with a protobuf or JSON body, optionally gzip or zstd
//! compressed. Responses use the request's encoding; errors carry a `google.rpc.Status` body.

use super::Shared;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use sluice_core::component::{BoxError, Refusal, RefusalKind};
use sluice_core::compression::{DecompressError, decompress};
use sluice_core::otlp_protobuf::decode_metrics;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::tenancy::Denied;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error(
    enc: Encoding,
    status: StatusCode,
    grpc_code: i32,
    message: String,
    retry_after: Option<u64>,
) -> Response {
    let body = match enc {
        Encoding::Protobuf => RpcStatus {
            code: grpc_code,
            message,
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": grpc_code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut resp = (status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

// gRPC codes used in the Status bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

async fn export(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let enc = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    };
    // The tenant is decided before anything else, so that an unknown client learns nothing more.
    let context = match shared.context(sluice_core::ingress::header_lookup(&headers)) {
        Ok(c) => c,
        Err(d) => return denied(enc.unwrap_or(Encoding::Json), &d),
    };
    let enc = match enc {
        Some(e) => e,
        None => {
            shared.refuse_unread("unsupported_media_type");
            return error(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                format!(
                    "unsupported Content-Type {ctype:?}; use application/x-protobuf or application/json"
                ),
                None,
            );
        }
    };
    // Near the memory limit, refused without keeping the body in memory.
    if let Err(r) = shared.admit(&context) {
        sluice_core::ingress::discard_body(body, shared.max_request_bytes).await;
        return refusal(enc, &r);
    }
    let raw: Bytes = match axum::body::to_bytes(body, shared.max_request_bytes as usize).await {
        Ok(b) => b,
        Err(_) => {
            shared.refuse_unread("too_large");
            return error(
                enc,
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                format!(
                    "the request body is larger than max_request_bytes ({} bytes)",
                    shared.max_request_bytes
                ),
                None,
            );
        }
    };
    // A full pipeline refuses before the body is decompressed and decoded.
    if let Err(r) = shared.ready(&context) {
        return refusal(enc, &r);
    }
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let data = match decompress(content_encoding, &raw, shared.max_decompressed_bytes) {
        Ok(d) => d,
        Err(e) => {
            let (status, reason) = match e {
                DecompressError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                DecompressError::Unsupported(_) => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
                }
                DecompressError::Corrupt(..) => (StatusCode::BAD_REQUEST, "malformed"),
            };
            shared.refuse_unread(reason);
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                RESOURCE_EXHAUSTED
            } else {
                INVALID_ARGUMENT
            };
            return error(enc, status, code, e.to_string(), None);
        }
    };
    let request = match enc {
        Encoding::Protobuf => {
            decode_metrics(data.as_slice()).map_err(|e| format!("malformed protobuf: {e}"))
        }
        Encoding::Json => serde_json::from_slice::<ExportMetricsServiceRequest>(&data)
            .map_err(|e| format!("malformed OTLP/JSON: {e}")),
    };
    let request = match request {
        Ok(r) => r,
        Err(msg) => {
            shared.refuse_unread("malformed");
            return error(enc, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, msg, None);
        }
    };
    match shared.ingest(context, request) {
        Ok(resp) => {
            let body = match enc {
                Encoding::Protobuf => resp.encode_to_vec(),
                Encoding::Json => sluice_core::otlp_json::to_json_vec(&resp),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, enc.content_type())],
                body,
            )
                .into_response()
        }
        Err(r) => refusal(enc, &r),
    }
}

/// 401 with a `WWW-Authenticate` challenge (when credentials are expected) for a request without
/// a tenant; 400 for a tenant header that is not a valid tenant id.
fn denied(enc: Encoding, d: &Denied) -> Response {
    match d {
        Denied::Unauthenticated { message, challenge } => {
            let mut resp = error(
                enc,
                StatusCode::UNAUTHORIZED,
                UNAUTHENTICATED,
                message.clone(),
                None,
            );
            if let Some(c) = challenge {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
            resp
        }
        Denied::InvalidTenant(message) => error(
            enc,
            StatusCode::BAD_REQUEST,
            INVALID_ARGUMENT,
            message.clone(),
            None,
        ),
    }
}

/// 503 (queue full, shutting down) or 429 (a limit) with Retry-After, both retryable per the OTLP
/// spec; 400 for data that must not be retried.
fn refusal(enc: Encoding, r: &Refusal) -> Response {
    let retry = r.retry_after.map(|d| d.as_secs_f64().ceil() as u64);
    match r.kind {
        RefusalKind::Full | RefusalKind::ShuttingDown | RefusalKind::MemoryLimit => error(
            enc,
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            r.message.clone(),
            retry,
        ),
        RefusalKind::Limited => error(
            enc,
            StatusCode::TOO_MANY_REQUESTS,
            RESOURCE_EXHAUSTED,
            r.message.clone(),
            retry,
        ),
        RefusalKind::Invalid => error(
            enc,
            StatusCode::BAD_REQUEST,
            INVALID_ARGUMENT,
            r.message.clone(),
            None,
        ),
    }
}

pub async fn serve(
    shared: Arc<Shared>,
    endpoint: &str,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, BoxError> {
    let listener = tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| format!("cannot listen on {endpoint} (OTLP/HTTP): {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(receiver = %shared.name(), endpoint = %local, "OTLP/HTTP receiver listening");
    let app = Router::new()
        .route("/v1/metrics", post(export))
        // The body limit is enforced in the handler, with an OTLP error body.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared);
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "OTLP/HTTP server failed");
        }
    }))
}
