//! Deciding the tenant of a request at a push receiver: from its credentials (bearer token or basic
//! auth, looked up in the tenants file), from a trusted header, or a fixed id. The tenants file is
//! read at start (a bad file fails the start) and checked for changes every `reload_interval`
//! until the receiver shuts down; a changed file that is not valid is logged and counted, and the
//! previous version stays in force.

use super::TenantInfo;
use super::config::{AuthConfig, FileSettings, Identity, TenantConfig, identity};
use super::file::Tenants;
use super::id::check_tenant_id;
use crate::config::{Located, Node, Pos};
use crate::telemetry::{Telemetry, TenantsFileLabels};
use base64::Engine;
use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why a request gets no tenant, and so is refused before its body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Missing or wrong credentials, or a missing tenant header: HTTP 401, gRPC UNAUTHENTICATED.
    Unauthenticated {
        message: String,
        /// The `WWW-Authenticate` challenge, when credentials were expected.
        challenge: Option<&'static str>,
    },
    /// The trusted header names an id that is not a valid tenant id: HTTP 400, gRPC
    /// INVALID_ARGUMENT.
    InvalidTenant(String),
}

impl Denied {
    /// The reason label of the refused-requests counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthenticated { .. } => "unauthenticated",
            Denied::InvalidTenant(_) => "invalid_tenant",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Denied::Unauthenticated { message, .. } | Denied::InvalidTenant(message) => message,
        }
    }
}

/// The challenge of a 401 when credentials are expected.
pub const CHALLENGE: &str = "Bearer realm=\"sluice\", Basic realm=\"sluice\"";

/// A decided tenant.
pub type Identified = (Arc<str>, Option<Arc<TenantInfo>>);

/// A receiver's way of deciding tenants, with its tenants file when it has one.
#[derive(Debug)]
pub struct Authenticator {
    identity: Identity,
    tenants: Option<Arc<RwLock<Arc<Tenants>>>>,
}

impl Authenticator {
    /// Starts what a receiver's `auth` / `tenant` settings (already validated) describe; `None`
    /// when neither is set.
    pub fn from_config(
        auth: Option<&Located<AuthConfig>>,
        tenant: Option<&Located<TenantConfig>>,
        receiver: &str,
        telemetry: Arc<Telemetry>,
        shutdown: CancellationToken,
    ) -> Result<Option<Arc<Authenticator>>, String> {
        let identity = identity(auth, tenant, &Node::null(Pos::default())).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        identity
            .map(|i| Authenticator::start(i, receiver, telemetry, shutdown))
            .transpose()
    }

    /// Reads the tenants file (if any) and watches it until `shutdown`; `receiver` names the
    /// receiver in logs. Fails when the file cannot be read or is not valid.
    pub fn start(
        identity: Identity,
        receiver: &str,
        telemetry: Arc<Telemetry>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Authenticator>, String> {
        let tenants = match identity.file() {
            Some(f) => {
                let bytes = std::fs::read(&f.path).map_err(|e| {
                    format!("cannot read the tenants file {}: {e}", f.path.display())
                })?;
                let loaded = parse(&bytes, &f.path)?;
                tracing::info!(receiver, file = %f.path.display(), tenants = loaded.len(), "tenants file loaded");
                let shared = Arc::new(RwLock::new(Arc::new(loaded)));
                tokio::spawn(watch(
                    Watch {
                        file: f.clone(),
                        receiver: receiver.to_string(),
                        last: Some(digest(&bytes)),
                        tenants: shared.clone(),
                        telemetry,
                    },
                    shutdown,
                ));
                Some(shared)
            }
            None => None,
        };
        Ok(Arc::new(Authenticator { identity, tenants }))
    }

    /// An authenticator over tenants already loaded (no file is watched); for tests.
    pub fn with_tenants(identity: Identity, tenants: Tenants) -> Authenticator {
        Authenticator {
            identity,
            tenants: Some(Arc::new(RwLock::new(Arc::new(tenants)))),
        }
    }

    /// The tenant of a request; `get` looks a lowercase header or metadata key up.
    pub fn identify(&self, get: impl Fn(&str) -> Option<String>) -> Result<Identified, Denied> {
        match &self.identity {
            Identity::Credentials { .. } => self.by_credentials(get("authorization")),
            Identity::Header { name, default, .. } => {
                let id: Arc<str> = match get(name) {
                    Some(v) => {
                        let v = v.trim();
                        check_tenant_id(v)
                            .map_err(|m| Denied::InvalidTenant(format!("header {name}: {m}")))?;
                        Arc::from(v)
                    }
                    None => default.clone().ok_or_else(|| Denied::Unauthenticated {
                        message: format!("the {name} header, which names the tenant, is missing"),
                        challenge: None,
                    })?,
                };
                let info = self.info(&id);
                Ok((id, info))
            }
            Identity::Static { id, .. } => Ok((id.clone(), self.info(id))),
        }
    }

    fn tenants(&self) -> Option<Arc<Tenants>> {
        self.tenants.as_ref().map(|t| t.read().clone())
    }

    fn info(&self, id: &str) -> Option<Arc<TenantInfo>> {
        self.tenants()?.get(id).map(|t| t.info.clone())
    }

    fn by_credentials(&self, header: Option<String>) -> Result<Identified, Denied> {
        let denied = |message: &str| Denied::Unauthenticated {
            message: message.to_string(),
            challenge: Some(CHALLENGE),
        };
        let header = header.ok_or_else(|| {
            denied("credentials are missing: send `Authorization: Bearer <token>` or basic auth")
        })?;
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let rest = rest.trim();
        let tenants = self.tenants().unwrap_or_default();
        let found = if scheme.eq_ignore_ascii_case("bearer") {
            tenants.by_token(rest)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    denied("malformed basic credentials (expected base64 of user:password)")
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                denied("malformed basic credentials (expected base64 of user:password)")
            })?;
            tenants.by_user(user, password)
        } else {
            return Err(denied(
                "unsupported authorization scheme: use `Bearer <token>` or basic auth",
            ));
        };
        let t = found.ok_or_else(|| denied("invalid credentials"))?;
        Ok((t.id.clone(), Some(t.info.clone())))
    }
}

fn parse(bytes: &[u8], path: &std::path::Path) -> Result<Tenants, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("the tenants file {} is not UTF-8", path.display()))?;
    Tenants::parse(text, &path.display().to_string())
}

fn digest(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

struct Watch {
    file: FileSettings,
    receiver: String,
    /// The digest of the content last read; `None` while the file cannot be read.
    last: Option<ring::digest::Digest>,
    tenants: Arc<RwLock<Arc<Tenants>>>,
    telemetry: Arc<Telemetry>,
}

/// Checks the file every interval; a changed content is loaded, or logged and counted as a
/// failure (once per content) while the previous version stays.
async fn watch(mut w: Watch, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(w.file.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let path: &PathBuf = &w.file.path;
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                if w.last.take().is_some() {
                    tracing::error!(receiver = %w.receiver, file = %path.display(), error = %e, "cannot read the tenants file; keeping the previous version");
                    w.count("failure");
                }
                continue;
            }
        };
        let d = digest(&bytes);
        if w.last.as_ref().is_some_and(|l| l.as_ref() == d.as_ref()) {
            continue;
        }
        w.last = Some(d);
        match parse(&bytes, path) {
            Ok(t) => {
                tracing::info!(receiver = %w.receiver, file = %path.display(), tenants = t.len(), "tenants file reloaded");
                *w.tenants.write() = Arc::new(t);
                w.count("success");
            }
            Err(e) => {
                tracing::error!(receiver = %w.receiver, file = %path.display(), error = %e, "the tenants file is not valid; keeping the previous version");
                w.count("failure");
            }
        }
    }
}

impl Watch {
    fn count(&self, result: &str) {
        self.telemetry
            .tenants_file_reloads
            .get_or_create(&TenantsFileLabels {
                file: self.file.path.display().to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}
