use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::compression::{Compression, CompressionParams};
use sluice_core::config::types::{Duration, HttpUrl};
use sluice_core::config::{DeError, LoadContext, Node};
use sluice_core::sending::{QueueSettings, RetrySettings, SendingSettings};
use std::collections::BTreeMap;

/// Settings every OTLP exporter shares: queue, retries, headers, compression, timeout.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcExporterConfig {
    /// `host:port` or `http://host:port` of the OTLP/gRPC server (plaintext).
    pub endpoint: String,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip 1 (default, fastest) to 9, zstd 1 (default) to 22.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Deadline of one export call (default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Metadata sent with every call, such as `authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Metadata key carrying each batch's tenant (`X-Scope-OrgID`; sent lowercased, as gRPC
    /// requires); none by default.
    pub tenant_header: Option<String>,
    /// Tenant sent in `tenant_header` when a batch has none (default `anonymous`).
    #[serde(default = "default_tenant")]
    pub default_tenant: String,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
    /// Drop (and count) a batch still undelivered this long after it was queued (default: never).
    #[serde(default)]
    pub max_age: Option<Duration>,
    /// Drop (and count as `too_old`) points older than this when their batch is sent (default:
    /// never).
    #[serde(default)]
    pub sample_age_limit: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; `/v1/metrics` is appended (`http://collector:4318`). `${tenant}` in it (or in
    /// `metrics_endpoint`) is replaced by each batch's tenant.
    pub endpoint: Option<HttpUrl>,
    /// The full URL to post to, used as is instead of `endpoint` + `/v1/metrics`.
    pub metrics_endpoint: Option<HttpUrl>,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip 1 (default, fastest) to 9, zstd 1 (default) to 22.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Deadline of one request (default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header carrying each batch's tenant (`X-Scope-OrgID`); none by default.
    pub tenant_header: Option<String>,
    /// Tenant used for `tenant_header` and `${tenant}` when a batch has none (default
    /// `anonymous`).
    #[serde(default = "default_tenant")]
    pub default_tenant: String,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
    #[serde(default)]
    pub max_age: Option<Duration>,
    #[serde(default)]
    pub sample_age_limit: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpEncoding {
    #[default]
    Proto,
    Json,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_tenant() -> String {
    "anonymous".into()
}

/// The tenant a batch is sent for: its own, else `default_tenant`.
pub(crate) fn tenant_of<'a>(batch: &'a sluice_core::batch::Batch, default: &'a str) -> &'a str {
    batch.context.tenant.as_deref().unwrap_or(default)
}

pub(crate) fn check_tenant_header(header: &Option<String>, node: &Node, errs: &mut Vec<DeError>) {
    if let Some(h) = header
        && http::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        errs.push(DeError::new(
            node.pos,
            format!("tenant_header {h:?} is not a valid header name"),
        ));
    }
}

pub(crate) fn sending(
    queue: &QueueSettings,
    retry: &RetrySettings,
    max_age: Option<Duration>,
) -> SendingSettings {
    SendingSettings {
        queue: queue.clone(),
        retry: retry.clone(),
        max_age: max_age.map(Duration::get),
    }
}

/// `compression_params` that `compression` cannot use, reported where they are written.
fn check_compression(
    compression: Compression,
    params: CompressionParams,
    node: &Node,
    errs: &mut Vec<DeError>,
) {
    if let Some(m) = params.problem(compression) {
        errs.push(DeError::new(node.field_pos("compression_params"), m));
    }
}

pub(crate) fn check_headers(
    headers: &BTreeMap<String, String>,
    node: &Node,
    errs: &mut Vec<DeError>,
) {
    for (k, v) in headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            errs.push(DeError::new(
                node.pos,
                format!("header {k:?} is not a valid HTTP header name and value"),
            ));
        }
    }
}

impl OtlpGrpcExporterConfig {
    /// The endpoint as a URI tonic can dial.
    pub fn uri(&self) -> Result<http::Uri, String> {
        let e = self.endpoint.trim();
        let with_scheme = if e.contains("://") {
            e.to_string()
        } else {
            format!("http://{e}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|err| format!("invalid endpoint {e:?}: {err}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "endpoint {e:?}: TLS is not supported yet; use a plaintext endpoint"
                ));
            }
            _ => {
                return Err(format!(
                    "invalid endpoint {e:?}: expected host:port or http://host:port"
                ));
            }
        }
        if uri.port_u16().is_none() {
            return Err(format!(
                "invalid endpoint {e:?}: the port is missing (OTLP/gRPC is usually 4317)"
            ));
        }
        Ok(uri)
    }
}

impl Validate for OtlpGrpcExporterConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        self.sending_queue.resolve_paths(ctx);
    }

    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        for m in self.sending_queue.problems() {
            errs.push(DeError::new(node.pos, m));
        }
        if let Err(m) = self.uri() {
            errs.push(DeError::new(node.field_pos("endpoint"), m));
        }
        check_headers(&self.headers, node, &mut errs);
        check_tenant_header(&self.tenant_header, node, &mut errs);
        check_compression(self.compression, self.compression_params, node, &mut errs);
        errs
    }
}

impl OtlpHttpExporterConfig {
    pub fn url(&self) -> Option<String> {
        if let Some(u) = &self.metrics_endpoint {
            return Some(u.to_string());
        }
        self.endpoint
            .as_ref()
            .map(|u| format!("{}/v1/metrics", u.to_string().trim_end_matches('/')))
    }
}

impl Validate for OtlpHttpExporterConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        self.sending_queue.resolve_paths(ctx);
    }

    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        for m in self.sending_queue.problems() {
            errs.push(DeError::new(node.pos, m));
        }
        if self.endpoint.is_none() && self.metrics_endpoint.is_none() {
            errs.push(DeError::new(
                node.pos,
                "set `endpoint` (base URL) or `metrics_endpoint` (full URL)",
            ));
        }
        for u in [&self.endpoint, &self.metrics_endpoint]
            .into_iter()
            .flatten()
        {
            if u.0.scheme_str() == Some("https") {
                errs.push(DeError::new(
                    node.pos,
                    "https is not supported yet; use an http:// URL",
                ));
            }
        }
        check_headers(&self.headers, node, &mut errs);
        check_tenant_header(&self.tenant_header, node, &mut errs);
        check_compression(self.compression, self.compression_params, node, &mut errs);
        if let Some(url) = self.url()
            && url.contains("${tenant}")
            && let Err(m) = HttpUrl::parse(&url.replace("${tenant}", "tenant"))
        {
            errs.push(DeError::new(node.pos, m));
        }
        errs
    }
}
