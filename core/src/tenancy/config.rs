//! The `auth` and `tenant` settings that every push receiver (OTLP, remote_write) shares: how the
//! tenant of a request is decided.

use super::id::check_tenant_id;
use crate::config::types::Duration;
use crate::config::{DeError, LoadContext, Located, Node, Pos};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// `auth:`: clients authenticate with a bearer token or basic auth listed in a tenants file; the
/// tenant is the one the credentials belong to. Anything else gets 401 / UNAUTHENTICATED.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The tenants file, relative to the config file (required).
    pub tenants_file: Located<String>,
    /// How often the tenants file is checked for changes (default 5s).
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

/// `tenant:`: the tenant without authentication, from a trusted header (behind an authenticating
/// proxy) or a fixed id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The request header (HTTP) or metadata key (gRPC) that names the tenant, such as
    /// `X-Scope-OrgID`; excludes `static`.
    #[serde(default)]
    pub header: Option<Located<String>>,
    /// Every request belongs to this tenant; excludes `header`.
    #[serde(default, rename = "static")]
    pub static_id: Option<Located<String>>,
    /// With `header`: the tenant of a request without the header (default none: 401).
    #[serde(default)]
    pub default: Option<Located<String>>,
    /// A tenants file that gives the tenant its SLA tier and limits (default none); its
    /// credentials are not checked.
    #[serde(default)]
    pub tenants_file: Option<Located<String>>,
    /// How often the tenants file is checked for changes (default 5s).
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// How a receiver decides the tenant of a request, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    /// The bearer token or basic-auth user, looked up in the tenants file.
    Credentials { file: FileSettings },
    /// A trusted header; `default` for requests without it.
    Header {
        /// Lowercased.
        name: String,
        default: Option<Arc<str>>,
        file: Option<FileSettings>,
    },
    /// One tenant for every request.
    Static {
        id: Arc<str>,
        file: Option<FileSettings>,
    },
}

/// A tenants file and how often it is checked for changes.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSettings {
    pub path: PathBuf,
    pub reload_interval: std::time::Duration,
}

impl Identity {
    /// The tenants file, if any.
    pub fn file(&self) -> Option<&FileSettings> {
        match self {
            Identity::Credentials { file } => Some(file),
            Identity::Header { file, .. } | Identity::Static { file, .. } => file.as_ref(),
        }
    }
}

/// Makes the tenants file paths relative to the config file's folder.
pub fn resolve_paths(
    auth: &mut Option<Located<AuthConfig>>,
    tenant: &mut Option<Located<TenantConfig>>,
    ctx: &LoadContext,
) {
    let files = auth
        .as_mut()
        .map(|a| &mut a.value.tenants_file)
        .into_iter()
        .chain(tenant.as_mut().and_then(|t| t.value.tenants_file.as_mut()));
    for f in files {
        f.value = ctx.resolve(&f.value).to_string_lossy().into_owned();
    }
}

/// Everything a push receiver checks of its tenant settings: [`identity`] and
/// [`check_metadata_keys`].
pub fn validate(
    auth: Option<&Located<AuthConfig>>,
    tenant: Option<&Located<TenantConfig>>,
    metadata_keys: &[String],
    node: &Node,
) -> Vec<DeError> {
    let mut errs = identity(auth, tenant, node).err().unwrap_or_default();
    errs.extend(check_metadata_keys(auth, metadata_keys, node));
    errs
}

/// With `auth`, the `Authorization` header holds secrets: it may not be among the receiver's
/// `metadata_keys`, which carry headers into batches (and so to exporters and logs).
pub fn check_metadata_keys(
    auth: Option<&Located<AuthConfig>>,
    metadata_keys: &[String],
    node: &Node,
) -> Option<DeError> {
    let a = auth?;
    metadata_keys
        .iter()
        .any(|k| k.trim().eq_ignore_ascii_case("authorization"))
        .then(|| {
            DeError::new(
                if a.pos.is_known() { a.pos } else { node.pos },
                "metadata_keys: `Authorization` holds the credentials of `auth` and is never \
                 carried into batches",
            )
        })
}

/// Checks a receiver's `auth` and `tenant` (no I/O: the tenants file is read when the receiver
/// starts). `Ok(None)`: neither is set, requests have no tenant.
pub fn identity(
    auth: Option<&Located<AuthConfig>>,
    tenant: Option<&Located<TenantConfig>>,
    node: &Node,
) -> Result<Option<Identity>, Vec<DeError>> {
    let mut errs = Vec::new();
    let at = |pos: Pos| if pos.is_known() { pos } else { node.pos };
    let file = |f: &Located<String>, interval: Duration, pos: Pos, errs: &mut Vec<DeError>| {
        if f.trim().is_empty() {
            errs.push(DeError::new(at(f.pos), "tenants_file is empty"));
        }
        if interval.get().is_zero() {
            errs.push(DeError::new(at(pos), "reload_interval must be above 0"));
        }
        FileSettings {
            path: PathBuf::from(&f.value),
            reload_interval: interval.get(),
        }
    };
    let id = |what: &str, v: &Located<String>, errs: &mut Vec<DeError>| {
        if let Err(msg) = check_tenant_id(v) {
            errs.push(DeError::new(at(v.pos), format!("tenant.{what}: {msg}")));
        }
        Arc::<str>::from(v.as_str())
    };
    let out = match (auth, tenant) {
        (None, None) => None,
        (Some(_), Some(t)) => {
            errs.push(DeError::new(
                at(t.pos),
                "`auth` and `tenant` exclude each other: the tenant comes from the credentials \
                 (auth) or from a trusted header or fixed id (tenant)",
            ));
            None
        }
        (Some(a), None) => Some(Identity::Credentials {
            file: file(&a.tenants_file, a.reload_interval, a.pos, &mut errs),
        }),
        (None, Some(t)) => {
            let file = t
                .tenants_file
                .as_ref()
                .map(|f| file(f, t.reload_interval, t.pos, &mut errs));
            match (&t.header, &t.static_id) {
                (Some(_), Some(s)) => {
                    errs.push(DeError::new(
                        at(s.pos),
                        "tenant: `header` and `static` exclude each other",
                    ));
                    None
                }
                (None, None) => {
                    errs.push(DeError::new(
                        at(t.pos),
                        "tenant: set `header` (a trusted header names the tenant) or `static` \
                         (one tenant for every request)",
                    ));
                    None
                }
                (Some(h), None) => {
                    if http::HeaderName::from_bytes(h.trim().as_bytes()).is_err() {
                        errs.push(DeError::new(
                            at(h.pos),
                            format!("tenant.header: {:?} is not a header name", h.value),
                        ));
                    }
                    let default = t.default.as_ref().map(|d| id("default", d, &mut errs));
                    Some(Identity::Header {
                        name: h.trim().to_ascii_lowercase(),
                        default,
                        file,
                    })
                }
                (None, Some(s)) => {
                    if let Some(d) = &t.default {
                        errs.push(DeError::new(
                            at(d.pos),
                            "tenant: `default` goes with `header`, not with `static`",
                        ));
                    }
                    Some(Identity::Static {
                        id: id("static", s, &mut errs),
                        file,
                    })
                }
            }
        }
    };
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}
