use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::{ByteSize, Duration, HttpUrl};
use sluice_core::config::{DeError, LoadContext, Node};
use sluice_core::prometheus::{DeltaPolicy, LabelCache, TranslateOptions};
use sluice_core::sending::{QueueSettings, SendingSettings};
use std::collections::BTreeMap;

/// `exporters.prometheus_remote_write`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The write URL; `${tenant}` in it is replaced by each batch's tenant
    /// (`http://vm:8480/insert/${tenant}/prometheus/api/v1/write`).
    pub endpoint: String,
    /// `v1` (`prometheus.WriteRequest`, default) or `v2` (`io.prometheus.write.v2.Request`; falls
    /// back to v1 for the endpoint on 415).
    #[serde(default)]
    pub protocol: Protocol,
    /// Deadline of one request (default 30s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Headers sent with every request; the protocol's own headers cannot be overridden.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// A file holding the bearer token, read at start (relative to the config file).
    pub bearer_token_file: Option<String>,
    pub basic_auth: Option<BasicAuth>,
    /// TLS for `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Header carrying each batch's tenant (`X-Scope-OrgID`, `THANOS-TENANT`); none by default.
    pub tenant_header: Option<String>,
    /// Tenant used for the header / `${tenant}` when a batch has none (default `anonymous`).
    #[serde(default = "default_tenant")]
    pub default_tenant: String,
    #[serde(default)]
    pub queue_config: QueueConfig,
    /// The exporter's input queue (points), as for every exporter; `num_consumers` is ignored (one
    /// dispatcher, which never waits for a tenant's full shards).
    #[serde(default)]
    pub sending_queue: QueueSettings,
    /// Add unit and type suffixes to metric names (default true).
    #[serde(default = "default_true")]
    pub add_metric_suffixes: bool,
    /// Resource attributes copied onto every series as labels (default none; the others go to
    /// `target_info`).
    #[serde(default)]
    pub resource_to_labels: Vec<String>,
    /// Emit `target_info` per resource (default true).
    #[serde(default = "default_true")]
    pub target_info: bool,
    /// Add `otel_scope_name` / `otel_scope_version` labels (default true).
    #[serde(default = "default_true")]
    pub scope_labels: bool,
    /// `drop` (default, counted as `delta_temporality`) or `to_cumulative`.
    #[serde(default)]
    pub delta_temporality: DeltaPolicy,
    /// Translated label sets remembered between batches, per generation (default 262144; two
    /// generations are kept, so up to twice this many; 0 remembers none). See
    /// `sluice_core::prometheus::LabelCache`.
    #[serde(default = "LabelCache::default_capacity")]
    pub label_cache_size: usize,
    /// Send metric metadata (type, help, unit) with v1 requests (default true; v2 always does).
    #[serde(default = "default_true")]
    pub send_metadata: bool,
    /// Drop (and count as `too_old`) points older than this when their batch is sent (default:
    /// never).
    #[serde(default)]
    pub sample_age_limit: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    V1,
    V2,
}

/// TLS settings of an HTTPS client. Without `ca_file` the system's trust store is used.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust, besides the system's.
    pub ca_file: Option<String>,
    /// PEM client certificate, for mutual TLS (with `key_file`).
    pub cert_file: Option<String>,
    /// PEM private key of the client certificate.
    pub key_file: Option<String>,
    /// Do not verify the server's certificate (testing only; default false).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// Prometheus' `queue_config`, with the same names and defaults where they apply.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples per request at most (default 2000).
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
    /// Uncompressed bytes per request at most, estimated (default 4MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes_per_send: ByteSize,
    /// Send a partial request after this long (default 1s).
    #[serde(default = "default_deadline")]
    pub batch_send_deadline: Duration,
    /// Series entries buffered per shard (each tenant has its own shards) before that tenant's
    /// batches wait in the exporter's input queue (default 10000).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Shards per tenant (requests in flight, each for its own set of series) at least (default 1).
    #[serde(default = "default_min_shards")]
    pub min_shards: usize,
    /// Shards per tenant at most (default 50); the count follows the tenant's backlog between the
    /// two. Also the most requests in flight for all tenants together (send slots).
    #[serde(default = "default_max_shards")]
    pub max_shards: usize,
    /// First retry wait, doubled after each failure (default 30ms).
    #[serde(default = "default_min_backoff")]
    pub min_backoff: Duration,
    /// Longest retry wait unless the server asks for longer with Retry-After (default 5s).
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Retry 429 Too Many Requests, honouring Retry-After (default true).
    #[serde(default = "default_true")]
    pub retry_on_http_429: bool,
    /// How often a tenant's shard count is reconsidered (default 10s); a tenant's shards stop after
    /// 30 intervals without data.
    #[serde(default = "default_shard_update")]
    pub shard_update_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_samples_per_send: default_max_samples(),
            max_bytes_per_send: default_max_bytes(),
            batch_send_deadline: default_deadline(),
            capacity: default_capacity(),
            min_shards: default_min_shards(),
            max_shards: default_max_shards(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            retry_on_http_429: true,
            shard_update_interval: default_shard_update(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_tenant() -> String {
    "anonymous".into()
}
fn default_true() -> bool {
    true
}
fn default_max_samples() -> usize {
    2000
}
fn default_max_bytes() -> ByteSize {
    ByteSize::mib(4)
}
fn default_deadline() -> Duration {
    Duration::from_secs(1)
}
fn default_capacity() -> usize {
    10_000
}
fn default_min_shards() -> usize {
    1
}
fn default_max_shards() -> usize {
    50
}
fn default_shard_update() -> Duration {
    Duration::from_secs(10)
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}

/// Headers the protocol sets itself; users may not override them.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "authorization",
];

impl RemoteWriteConfig {
    pub fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_labels: self.resource_to_labels.clone(),
            target_info: self.target_info,
            scope_labels: self.scope_labels,
            delta: self.delta_temporality,
        }
    }

    pub fn sending(&self) -> SendingSettings {
        SendingSettings {
            queue: QueueSettings {
                num_consumers: 1,
                ..self.sending_queue.clone()
            },
            ..Default::default()
        }
    }

    /// The URL for a tenant.
    pub fn url_for(&self, tenant: &str) -> String {
        self.endpoint.replace("${tenant}", tenant)
    }
}

impl Validate for RemoteWriteConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        let resolve = |p: &mut Option<String>| {
            if let Some(path) = p {
                *path = ctx.resolve(path).display().to_string();
            }
        };
        resolve(&mut self.bearer_token_file);
        resolve(&mut self.tls.ca_file);
        resolve(&mut self.tls.cert_file);
        resolve(&mut self.tls.key_file);
        self.sending_queue.resolve_paths(ctx);
    }

    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        let at = |key: &str| node.field_pos(key);
        if let Err(m) = HttpUrl::parse(&self.url_for("tenant")) {
            errs.push(DeError::new(at("endpoint"), m));
        }
        for m in self.sending_queue.problems() {
            errs.push(DeError::new(at("sending_queue"), m));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            errs.push(DeError::new(
                at("tls"),
                "tls: cert_file and key_file go together",
            ));
        }
        for (k, v) in &self.headers {
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                errs.push(DeError::new(at("headers"), format!("header {k:?} is set by the protocol or the auth settings and cannot be overridden")));
            } else if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                errs.push(DeError::new(
                    at("headers"),
                    format!("header {k:?} is not a valid HTTP header name and value"),
                ));
            }
        }
        let auths = [
            self.bearer_token.is_some(),
            self.bearer_token_file.is_some(),
            self.basic_auth.is_some(),
        ];
        if auths.iter().filter(|a| **a).count() > 1 {
            errs.push(DeError::new(
                node.pos,
                "set at most one of bearer_token, bearer_token_file and basic_auth",
            ));
        }
        if let Some(h) = &self.tenant_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            errs.push(DeError::new(
                at("tenant_header"),
                format!("{h:?} is not a valid header name"),
            ));
        }
        let q = &self.queue_config;
        if q.min_shards == 0 || q.max_shards < q.min_shards {
            errs.push(DeError::new(
                at("queue_config"),
                "shards: need 1 <= min_shards <= max_shards",
            ));
        }
        if q.max_samples_per_send == 0 || q.capacity < q.max_samples_per_send {
            errs.push(DeError::new(
                at("queue_config"),
                "need 1 <= max_samples_per_send <= capacity",
            ));
        }
        errs
    }
}
