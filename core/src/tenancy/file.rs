//! The tenants file: each tenant's credentials (bearer tokens, basic-auth users), SLA tier and
//! limits.
//!
//! ```yaml
//! tenants:
//!   acme:   { tokens: ["<secret>"], sla_tier: gold }
//!   globex: { users: { ingest: "<password>" }, sla_tier: bronze, limits: { rate: 20000 } }
//! ```
//!
//! Secrets are kept only as SHA-256 digests, looked up by digest, so that a lookup's time does not
//! depend on how much of a secret a guess got right; no message or `Debug` output holds them.

use super::id::check_tenant_id;
use super::{TenantInfo, TenantLimits};
use crate::config::{Node, Pos, Value, from_node, parse_yaml};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A tenant as credentials resolve to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: Arc<str>,
    pub info: Arc<TenantInfo>,
}

type Digest = [u8; 32];

/// A loaded, valid tenants file.
#[derive(Default)]
pub struct Tenants {
    /// Credential digest -> tenant.
    credentials: HashMap<Digest, Tenant>,
    tenants: HashMap<Arc<str>, Tenant>,
}

impl fmt::Debug for Tenants {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("tenants", &self.tenants.len())
            .field("credentials", &self.credentials.len())
            .finish()
    }
}

/// `limits:` of one tenant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    rate: Option<u64>,
    burst: Option<u64>,
    max_series: Option<u64>,
}

impl Tenants {
    /// Reads and checks a tenants file. The error lists every problem, each as
    /// `file:line:column: message`.
    pub fn load(path: &Path) -> Result<Tenants, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tenants file {}: {e}", path.display()))?;
        Tenants::parse(&text, &path.display().to_string())
    }

    /// Checks a tenants file's text; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Tenants, String> {
        let mut errs = Vec::new();
        let tenants = match parse_yaml(text) {
            Ok(root) => parse_root(&root, &mut errs),
            Err((pos, msg)) => {
                errs.push((pos, msg));
                Tenants::default()
            }
        };
        if errs.is_empty() {
            return Ok(tenants);
        }
        errs.sort_by_key(|(pos, _)| *pos);
        Err(errs
            .iter()
            .map(|(pos, msg)| {
                if pos.is_known() {
                    format!("{file}:{}:{}: {msg}", pos.line, pos.column)
                } else {
                    format!("{file}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The tenant a bearer token belongs to.
    pub fn by_token(&self, token: &str) -> Option<&Tenant> {
        self.credentials.get(&token_digest(token))
    }

    /// The tenant a basic-auth user belongs to, if the password is right.
    pub fn by_user(&self, user: &str, password: &str) -> Option<&Tenant> {
        self.credentials.get(&user_digest(user, password))
    }

    /// A tenant by id.
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    /// How many tenants the file names.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn token_digest(token: &str) -> Digest {
    sha256(&[b"bearer\0", token.as_bytes()])
}

fn user_digest(user: &str, password: &str) -> Digest {
    sha256(&[b"basic\0", user.as_bytes(), b"\0", password.as_bytes()])
}

type Errs = Vec<(Pos, String)>;

fn parse_root(root: &Node, errs: &mut Errs) -> Tenants {
    let mut out = Tenants::default();
    let entries = match &root.value {
        Value::Map(entries) => entries,
        Value::Null => {
            errs.push((
                root.pos,
                "the tenants file is empty; write `tenants: {}` for a file without tenants".into(),
            ));
            return out;
        }
        _ => {
            errs.push((root.pos, "expected a map with `tenants`".into()));
            return out;
        }
    };
    let mut found = false;
    for (k, v) in entries {
        if k.key_text() != "tenants" {
            errs.push((
                k.pos,
                format!("unknown key `{}`, expected `tenants`", k.key_text()),
            ));
            continue;
        }
        found = true;
        match &v.value {
            Value::Map(tenants) => {
                let mut users: HashMap<String, Arc<str>> = HashMap::new();
                for (id, settings) in tenants {
                    parse_tenant(id, settings, &mut out, &mut users, errs);
                }
            }
            Value::Null => {}
            _ => errs.push((
                v.pos,
                "`tenants` must be a map of tenant id -> settings".into(),
            )),
        }
    }
    if !found {
        errs.push((root.pos, "`tenants` is missing".into()));
    }
    out
}

fn parse_tenant(
    key: &Node,
    settings: &Node,
    out: &mut Tenants,
    users: &mut HashMap<String, Arc<str>>,
    errs: &mut Errs,
) {
    let id_text = key.key_text();
    if let Err(msg) = check_tenant_id(&id_text) {
        errs.push((key.pos, msg));
        return;
    }
    let id: Arc<str> = Arc::from(id_text.as_str());
    if out.tenants.contains_key(&id) {
        errs.push((key.pos, format!("tenant {id:?} is listed twice")));
        return;
    }
    let fields: &[(Node, Node)] = match &settings.value {
        Value::Map(f) => f,
        Value::Null => &[],
        _ => {
            errs.push((
                settings.pos,
                format!("tenant {id:?}: expected a map of tokens, users, sla_tier, limits"),
            ));
            return;
        }
    };
    let mut info = TenantInfo::default();
    // (digest, position) of each credential, entered once the tenant is complete.
    let mut creds: Vec<(Digest, Pos, String)> = Vec::new();
    for (f, v) in fields {
        match f.key_text().as_str() {
            "tokens" => {
                let Value::Seq(items) = &v.value else {
                    errs.push((v.pos, format!("tenant {id:?}: `tokens` must be a list")));
                    continue;
                };
                for (i, t) in items.iter().enumerate() {
                    match secret(t, false) {
                        Ok(token) => creds.push((
                            token_digest(&token),
                            t.pos,
                            format!("tokens[{i}]"),
                        )),
                        Err(why) => {
                            errs.push((t.pos, format!("tenant {id:?}: tokens[{i}] {why}")));
                        }
                    }
                }
            }
            "users" => {
                let Value::Map(list) = &v.value else {
                    errs.push((
                        v.pos,
                        format!("tenant {id:?}: `users` must be a map of user -> password"),
                    ));
                    continue;
                };
                for (u, p) in list {
                    let user = u.key_text();
                    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control)
                    {
                        errs.push((
                            u.pos,
                            format!(
                                "tenant {id:?}: user {user:?} must be non-empty, without `:` or control characters"
                            ),
                        ));
                        continue;
                    }
                    let password = match secret(p, true) {
                        Ok(pw) => pw,
                        Err(why) => {
                            errs.push((
                                p.pos,
                                format!("tenant {id:?}: the password of user {user:?} {why}"),
                            ));
                            continue;
                        }
                    };
                    if let Some(other) = users.insert(user.clone(), id.clone()) {
                        errs.push((
                            u.pos,
                            format!("tenant {id:?}: user {user:?} is also a user of tenant {other:?}"),
                        ));
                        continue;
                    }
                    creds.push((
                        user_digest(&user, &password),
                        u.pos,
                        format!("user {user:?}"),
                    ));
                }
            }
            "sla_tier" => match v.as_str() {
                Some(t) if !t.trim().is_empty() => info.sla_tier = Some(Arc::from(t)),
                _ => errs.push((
                    v.pos,
                    format!("tenant {id:?}: `sla_tier` must be a name such as gold, silver or bronze"),
                )),
            },
            "limits" => match from_node::<LimitsEntry>(v) {
                Ok(l) => {
                    info.limits = TenantLimits {
                        rate: l.rate,
                        burst: l.burst,
                        max_series: l.max_series,
                    }
                }
                Err(e) => errs.push((e.pos, format!("tenant {id:?}: limits: {}", e.message))),
            },
            other => errs.push((
                f.pos,
                format!(
                    "tenant {id:?}: unknown key `{other}`, expected tokens, users, sla_tier or limits"
                ),
            )),
        }
    }
    let tenant = Tenant {
        id: id.clone(),
        info: Arc::new(info),
    };
    for (digest, pos, what) in creds {
        match out.credentials.get(&digest) {
            Some(t) if t.id != id => errs.push((
                pos,
                format!(
                    "tenant {id:?}: {what} is also a credential of tenant {:?}",
                    t.id
                ),
            )),
            Some(_) => errs.push((pos, format!("tenant {id:?}: {what} is listed twice"))),
            None => {
                out.credentials.insert(digest, tenant.clone());
            }
        }
    }
    out.tenants.insert(id, tenant);
}

/// A token or password: a non-empty string (or integer) without control characters, and for a
/// token without spaces. The error never quotes it.
fn secret(n: &Node, spaces_ok: bool) -> Result<String, &'static str> {
    let s = match &n.value {
        Value::Str(s) => s.clone(),
        Value::Int(_) | Value::UInt(_) => n.key_text(),
        _ => return Err("must be a string"),
    };
    if s.is_empty() {
        return Err("is empty");
    }
    if s.chars()
        .any(|c| c.is_control() || (!spaces_ok && c.is_whitespace()))
    {
        return Err(if spaces_ok {
            "holds control characters"
        } else {
            "holds whitespace or control characters"
        });
    }
    Ok(s)
}
