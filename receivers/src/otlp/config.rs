use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::{ByteSize, Endpoint, enabled_section};
use sluice_core::config::{DeError, LoadContext, Located, Node};
use sluice_core::tenancy::{self, AuthConfig, TenantConfig};

/// `receivers.otlp`: the OTLP endpoint for instrumented services.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    pub protocols: Protocols,
    /// Largest request body accepted on the wire (default 16MiB); larger ones get 413 /
    /// RESOURCE_EXHAUSTED.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// Largest request once decompressed (default 64MiB).
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: ByteSize,
    /// Request headers (HTTP) or metadata keys (gRPC) carried into each batch's context, such as
    /// `X-Scope-OrgID` (default none). Matched case-insensitively.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// Clients authenticate with a bearer token or basic auth from a tenants file, which decides
    /// their tenant (default none); excludes `tenant`.
    #[serde(default)]
    pub auth: Option<Located<AuthConfig>>,
    /// The tenant from a trusted header or a fixed id (default none); excludes `auth`.
    #[serde(default)]
    pub tenant: Option<Located<TenantConfig>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC; `grpc:` with no settings enables it on its default endpoint.
    #[serde(default, deserialize_with = "enabled_section")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP (`POST /v1/metrics`, protobuf or JSON).
    #[serde(default, deserialize_with = "enabled_section")]
    pub http: Option<HttpConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listening address (default `127.0.0.1:4317`).
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: Endpoint,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: default_grpc_endpoint(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listening address (default `127.0.0.1:4318`).
    #[serde(default = "default_http_endpoint")]
    pub endpoint: Endpoint,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: default_http_endpoint(),
        }
    }
}

fn default_grpc_endpoint() -> Endpoint {
    Endpoint("127.0.0.1:4317".into())
}
fn default_http_endpoint() -> Endpoint {
    Endpoint("127.0.0.1:4318".into())
}
fn default_max_request_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_max_decompressed_bytes() -> ByteSize {
    ByteSize::mib(64)
}

impl Validate for OtlpReceiverConfig {
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
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            errs.push(DeError::new(
                node.pos,
                "enable at least one protocol: `protocols: { grpc: {}, http: {} }`",
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
