use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::{ByteSize, Endpoint};
use sluice_core::config::{DeError, LoadContext, Located, Node};
use sluice_core::tenancy::{self, AuthConfig, TenantConfig};

/// `receivers.prometheus_remote_write` (alias `prometheusremotewrite`): takes Prometheus
/// remote_write 1.0 (`prometheus.WriteRequest`) and 2.0 (`io.prometheus.write.v2.Request`)
/// requests, snappy-compressed protobuf, on `POST <path>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteReceiverConfig {
    /// Listening address (default `127.0.0.1:9201`).
    #[serde(default = "default_endpoint")]
    pub endpoint: Endpoint,
    /// The URL path requests are posted to (default `/api/v1/write`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest request body accepted on the wire (default 16MiB); larger ones get 413.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// Largest request once snappy-decompressed (default 64MiB); larger ones get 413, judged from
    /// the length the snappy header announces, before anything is decompressed.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: ByteSize,
    /// Request headers carried into each batch's context, such as `X-Scope-OrgID` (default none).
    /// Matched case-insensitively.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// Senders authenticate with a bearer token or basic auth from a tenants file, which decides
    /// their tenant (default none); excludes `tenant`.
    #[serde(default)]
    pub auth: Option<Located<AuthConfig>>,
    /// The tenant from a trusted header or a fixed id (default none); excludes `auth`.
    #[serde(default)]
    pub tenant: Option<Located<TenantConfig>>,
}

impl Default for RemoteWriteReceiverConfig {
    fn default() -> Self {
        RemoteWriteReceiverConfig {
            endpoint: default_endpoint(),
            path: default_path(),
            max_request_bytes: default_max_request_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            metadata_keys: Vec::new(),
            auth: None,
            tenant: None,
        }
    }
}

fn default_endpoint() -> Endpoint {
    Endpoint("127.0.0.1:9201".into())
}
fn default_path() -> String {
    "/api/v1/write".into()
}
fn default_max_request_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_max_decompressed_bytes() -> ByteSize {
    ByteSize::mib(64)
}

impl Validate for RemoteWriteReceiverConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        tenancy::resolve_paths(&mut self.auth, &mut self.tenant, ctx);
    }

    fn validate(&self, node: &Node, _ctx: &LoadContext) -> Vec<DeError> {
        let mut errs = tenancy::validate(
            self.auth.as_ref(),
            self.tenant.as_ref(),
            &self.metadata_keys,
            node,
        );
        let path_ok = self.path.starts_with('/')
            && self
                .path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '~'));
        if !path_ok {
            errs.push(DeError::new(
                node.pos,
                format!(
                    "path {:?} must start with `/` and hold only letters, digits and `/_-.~`, such as /api/v1/write",
                    self.path
                ),
            ));
        }
        if self.max_request_bytes.get() == 0 || self.max_decompressed_bytes.get() == 0 {
            errs.push(DeError::new(
                node.pos,
                "max_request_bytes and max_decompressed_bytes must be above 0",
            ));
        }
        errs
    }
}
