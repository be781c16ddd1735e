//! OTLP/HTTP exporter. Retryable per the OTLP spec: 429, 502, 503, 504 (honouring Retry-After),
//! and connection errors and timeouts. Other statuses are permanent: the batch is dropped and
//! counted, with the start of the response body in the log.

use super::config::{HttpEncoding, OtlpHttpExporterConfig, sending, tenant_of};
use super::request::{Otlp, Transport};
use futures::future::BoxFuture;
use prost::Message;
use sluice_core::batch::Batch;
use sluice_core::batch::age::AgeLimit;
use sluice_core::component::{
    BoxError, Delivered, EncodedBatch, Exporter, ExporterConfig, ExporterContext, SendError,
};
use sluice_core::compression::{Compression, CompressionParams, compress};
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceResponse;
use sluice_core::sending::SendingSettings;
use std::sync::Arc;
use std::time::Duration;

impl ExporterConfig for OtlpHttpExporterConfig {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        let url = self.url().ok_or("no endpoint")?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(self.timeout.get())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()?;
        let tenant_header = match &self.tenant_header {
            Some(h) => Some(http::HeaderName::from_bytes(h.as_bytes())?),
            None => None,
        };
        Ok(Arc::new(Otlp(HttpExporter {
            client,
            url,
            encoding: self.encoding,
            compression: self.compression,
            compression_params: self.compression_params,
            tenant_header,
            default_tenant: self.default_tenant.clone(),
            age_limit: AgeLimit::new(
                self.sample_age_limit.map(|d| d.get()),
                &ctx.id.to_string(),
                ctx.telemetry,
            ),
        })))
    }

    fn sending(&self) -> SendingSettings {
        sending(&self.sending_queue, &self.retry_on_failure, self.max_age)
    }
}

struct HttpExporter {
    client: reqwest::Client,
    url: String,
    encoding: HttpEncoding,
    compression: Compression,
    compression_params: CompressionParams,
    tenant_header: Option<http::HeaderName>,
    default_tenant: String,
    /// `sample_age_limit`.
    age_limit: Option<AgeLimit>,
}

impl Transport for HttpExporter {
    fn age_limit(&self) -> Option<&AgeLimit> {
        self.age_limit.as_ref()
    }

    /// The batch as a compressed request body in `encoding`.
    fn request(&self, batch: &Batch) -> EncodedBatch {
        let body = match self.encoding {
            HttpEncoding::Proto => batch.encode_request(),
            HttpEncoding::Json => sluice_core::otlp_json::to_json_vec(&batch.to_request()),
        };
        EncodedBatch {
            body: compress(self.compression, self.compression_params, body).into(),
            tenant: tenant_of(batch, &self.default_tenant).to_string(),
        }
    }

    fn post<'a>(
        &'a self,
        request: &'a EncodedBatch,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(self.export(request))
    }
}

impl HttpExporter {
    /// One attempt at sending `encoded`.
    async fn export(&self, encoded: &EncodedBatch) -> Result<Delivered, SendError> {
        let ctype = match self.encoding {
            HttpEncoding::Proto => "application/x-protobuf",
            HttpEncoding::Json => "application/json",
        };
        let tenant = &encoded.tenant;
        let url = self.url.replace("${tenant}", tenant);
        let mut rb = self
            .client
            .post(&url)
            .header(http::header::CONTENT_TYPE, ctype);
        if let Some(h) = &self.tenant_header {
            let value = http::HeaderValue::from_str(tenant).map_err(|_| {
                SendError::permanent(format!("tenant {tenant:?} cannot be sent in header {h}"))
            })?;
            rb = rb.header(h.clone(), value);
        }
        if let Some(enc) = self.compression.header() {
            rb = rb.header(http::header::CONTENT_ENCODING, enc);
        }
        let resp = rb.body(encoded.body.clone()).send().await.map_err(|e| {
            SendError::retryable(format!("OTLP/HTTP request to {url} failed: {e}"), None)
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            let parsed = match self.encoding {
                HttpEncoding::Proto => ExportMetricsServiceResponse::decode(bytes.as_ref()).ok(),
                HttpEncoding::Json => {
                    serde_json::from_slice::<ExportMetricsServiceResponse>(&bytes).ok()
                }
            };
            let ps = parsed.and_then(|r| r.partial_success).unwrap_or_default();
            return Ok(Delivered {
                rejected_points: ps.rejected_data_points.max(0) as u64,
                message: ps.error_message,
                ..Default::default()
            });
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
        let message = format!("OTLP/HTTP {url} answered {status}: {text}");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(SendError::retryable(message, retry_after)),
            _ => Err(SendError::permanent(message)),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}
