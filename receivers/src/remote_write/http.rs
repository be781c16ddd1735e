//! The HTTP server: `POST <path>` with a snappy (block format) compressed protobuf body.
//!
//! | situation | answer |
//! |---|---|
//! | taken | 204 |
//! | some series, histograms or exemplars invalid | 400 naming the problems; the valid rest is taken |
//! | Content-Type / Content-Encoding not supported | 415 |
//! | body larger than the limits | 413 |
//! | body not snappy, not protobuf, bad symbol table | 400 |
//! | queues full / shutting down / near the memory limit | 503 + Retry-After (senders retry 5xx) |
//! | a tenant limit | 429 + Retry-After |
//! | no tenant: credentials missing or wrong, tenant header missing | 401 (+ WWW-Authenticate) |
//! | the tenant header is not a valid tenant id | 400 |
//!
//! Answers to 2.0 requests carry the `X-Prometheus-Remote-Write-*-Written` counts.

use super::Shared;
use super::build::Counts;
use super::decode;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use sluice_core::component::{BoxError, Refusal, RefusalKind};
use sluice_core::proto::prometheus_v2;
use sluice_core::tenancy::Denied;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
pub const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// The first bytes of the snappy framed (stream) format, which remote_write forbids.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Histogram buckets a request may expand, at least (more for larger requests).
const MIN_BUCKET_BUDGET: usize = 1 << 20;

/// The message a request holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `prometheus.WriteRequest`
    V1,
    /// `io.prometheus.write.v2.Request`
    V2,
}

/// The message named by a `Content-Type`: `application/x-protobuf` is 1.0, and a `proto`
/// parameter picks the version. No Content-Type at all is read as 1.0.
pub fn version(content_type: Option<&str>) -> Result<Version, String> {
    let Some(ct) = content_type else {
        return Ok(Version::V1);
    };
    let unsupported = || {
        format!(
            "unsupported Content-Type {ct:?}; use application/x-protobuf (remote_write 1.0) or \
             application/x-protobuf;proto=io.prometheus.write.v2.Request (2.0)"
        )
    };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(unsupported());
    }
    let mut version = Version::V1;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            version = match v.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Version::V1,
                "io.prometheus.write.v2.Request" => Version::V2,
                _ => return Err(unsupported()),
            };
        }
    }
    Ok(version)
}

/// A plain-text answer; 2.0 answers also say how much was written.
fn answer(
    status: StatusCode,
    message: String,
    version: Option<Version>,
    written: Counts,
    retry_after: Option<u64>,
) -> Response {
    let mut resp = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if version == Some(Version::V2) {
        h.insert(SAMPLES_WRITTEN, HeaderValue::from(written.samples));
        h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(written.histograms));
        h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(written.exemplars));
    }
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

/// An answer for a request refused before anything was taken from it.
fn refused(shared: &Shared, status: StatusCode, reason: &str, message: String) -> Response {
    shared.refuse_unread(reason);
    answer(status, message, None, Counts::default(), None)
}

async fn write(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    // The tenant is decided before anything else, so that an unknown sender learns nothing more.
    let context = match shared.context(sluice_core::ingress::header_lookup(&headers)) {
        Ok(c) => c,
        Err(d) => return denied(&d),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let version = match version(content_type) {
        Ok(v) => v,
        Err(msg) => {
            return refused(
                &shared,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                msg,
            );
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").trim());
    if !encoding.is_some_and(|e| e.eq_ignore_ascii_case("snappy")) {
        let msg = match encoding {
            None => "Content-Encoding: snappy is required (remote_write bodies are \
                     snappy-compressed protobuf)"
                .to_string(),
            Some(e) => format!("unsupported Content-Encoding {e:?}; remote_write uses snappy"),
        };
        return refused(
            &shared,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            msg,
        );
    }
    // Near the memory limit, refused without keeping the body in memory.
    if let Err(r) = shared.admit(&context) {
        sluice_core::ingress::discard_body(body, shared.max_request_bytes).await;
        return refusal(version, &r);
    }
    let raw: Bytes = match axum::body::to_bytes(body, shared.max_request_bytes as usize).await {
        Ok(b) => b,
        Err(_) => {
            let msg = format!(
                "the request body is larger than max_request_bytes ({} bytes)",
                shared.max_request_bytes
            );
            return refused(&shared, StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg);
        }
    };
    // A full pipeline refuses before the body is decompressed and decoded.
    if let Err(r) = shared.ready(&context) {
        return refusal(version, &r);
    }
    let data = match decompress(&raw, shared.max_decompressed_bytes) {
        Ok(d) => d,
        Err((status, reason, msg)) => return refused(&shared, status, reason, msg),
    };
    drop(raw);
    let budget = data.len().max(MIN_BUCKET_BUDGET);
    let decoded = match version {
        Version::V1 => super::wire::decode(&data)
            .map(|mut r| decode::v1(&mut r, &shared.metadata, budget))
            .map_err(|e| format!("malformed protobuf (prometheus.WriteRequest): {e}")),
        Version::V2 => prometheus_v2::Request::decode(data.as_slice())
            .map_err(|e| format!("malformed protobuf (io.prometheus.write.v2.Request): {e}"))
            .and_then(|r| decode::v2(&r, budget)),
    };
    drop(data);
    let decoded = match decoded {
        Ok(d) => d,
        Err(msg) => return refused(&shared, StatusCode::BAD_REQUEST, "malformed", msg),
    };
    let rejected = decoded.rejected.any().then(|| decoded.rejected.message());
    match shared.ingest(context, decoded) {
        Ok(written) => match rejected {
            // The valid part is taken, but the sender must learn that not everything was.
            Some(msg) => answer(StatusCode::BAD_REQUEST, msg, Some(version), written, None),
            None => answer(
                StatusCode::NO_CONTENT,
                String::new(),
                Some(version),
                written,
                None,
            ),
        },
        Err(r) => refusal(version, &r),
    }
}

/// 401 with a `WWW-Authenticate` challenge (when credentials are expected) for a request without
/// a tenant; 400 for a tenant header that is not a valid tenant id. Already counted.
fn denied(d: &Denied) -> Response {
    let status = match d {
        Denied::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Denied::InvalidTenant(_) => StatusCode::BAD_REQUEST,
    };
    let mut resp = answer(
        status,
        d.message().to_string(),
        None,
        Counts::default(),
        None,
    );
    if let Denied::Unauthenticated {
        challenge: Some(c), ..
    } = d
    {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    resp
}

/// Snappy block format -> bytes, refusing before allocating when the announced length is over
/// `limit` (a few bytes can announce gigabytes).
pub fn decompress(raw: &[u8], limit: u64) -> Result<Vec<u8>, (StatusCode, &'static str, String)> {
    let corrupt = |e: snap::Error| {
        let hint = if raw.starts_with(SNAPPY_FRAMED_MAGIC) {
            "; this is the snappy framed format, remote_write uses the block format"
        } else {
            ""
        };
        (
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the body is not valid snappy (block format): {e}{hint}"),
        )
    };
    let len = snap::raw::decompress_len(raw).map_err(corrupt)?;
    if len as u64 > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body decompresses to {len} bytes, more than max_decompressed_bytes ({limit})"
            ),
        ));
    }
    let mut out = vec![0u8; len];
    let n = snap::raw::Decoder::new()
        .decompress(raw, &mut out)
        .map_err(corrupt)?;
    out.truncate(n);
    Ok(out)
}

/// 503 (queue full, shutting down) or 429 (a limit) with Retry-After: remote_write senders retry
/// 5xx (and may retry 429); 400 for data that must not be retried.
fn refusal(version: Version, r: &Refusal) -> Response {
    let retry = r.retry_after.map(|d| d.as_secs_f64().ceil() as u64);
    let (status, retry) = match r.kind {
        RefusalKind::Full | RefusalKind::ShuttingDown | RefusalKind::MemoryLimit => {
            (StatusCode::SERVICE_UNAVAILABLE, retry.or(Some(1)))
        }
        RefusalKind::Limited => (StatusCode::TOO_MANY_REQUESTS, retry.or(Some(1))),
        RefusalKind::Invalid => (StatusCode::BAD_REQUEST, None),
    };
    answer(
        status,
        r.message.clone(),
        Some(version),
        Counts::default(),
        retry,
    )
}

pub async fn serve(
    shared: Arc<Shared>,
    endpoint: &str,
    path: &str,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, BoxError> {
    let listener = tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| format!("cannot listen on {endpoint} (remote_write): {e}"))?;
    let local = listener.local_addr()?;
    let name = shared.name().to_string();
    tracing::info!(receiver = %name, endpoint = %local, "remote_write receiver listening");
    let app = Router::new()
        .route(path, post(write))
        // The body limit is enforced in the handler, with a remote_write answer.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared);
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(receiver = %name, error = %e, "remote_write server failed");
        }
    }))
}
