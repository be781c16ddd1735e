use super::*;
use crate::component::{Class, ComponentId};
use crate::config::{DeError, LoadContext, Located, Pos, component_node, from_node};
use crate::telemetry::Telemetry;
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FILE: &str = r#"
tenants:
  acme:   { tokens: ["acme-secret-1", "acme-secret-2"], sla_tier: gold }
  globex:
    tokens: ["globex-secret"]
    users: { ingest: "pass word" }
    sla_tier: bronze
    limits: { rate: 20000, burst: 40000, max_series: 100000 }
  initech: {}
"#;

fn tenants(text: &str) -> Tenants {
    Tenants::parse(text, "tenants.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn file_errors(text: &str) -> String {
    match Tenants::parse(text, "tenants.yaml") {
        Ok(t) => panic!("expected errors, got {t:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Tenant ids.

#[test]
fn tenant_ids_follow_mimirs_rules() {
    for ok in [
        "acme",
        "a",
        "A-b_c.d*e'f(g)!",
        "..a",
        "team.prod",
        &"x".repeat(150),
    ] {
        assert_eq!(check_tenant_id(ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("", "empty"),
        (".", "not allowed"),
        ("..", "not allowed"),
        ("a/b", "'/'"),
        ("a b", "' '"),
        ("a:b", "':'"),
        ("é", "'é'"),
        (&"x".repeat(151), "151 bytes"),
    ] {
        let e = check_tenant_id(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The tenants file.

#[test]
fn the_tenants_file_maps_tokens_and_users_to_tenants() {
    let t = tenants(FILE);
    assert_eq!(t.len(), 3);
    assert_eq!(&*t.by_token("acme-secret-1").unwrap().id, "acme");
    assert_eq!(&*t.by_token("acme-secret-2").unwrap().id, "acme");
    let g = t.by_token("globex-secret").unwrap();
    assert_eq!(&*g.id, "globex");
    assert_eq!(g.info.sla_tier.as_deref(), Some("bronze"));
    assert_eq!(
        g.info.limits,
        TenantLimits {
            rate: Some(20000),
            burst: Some(40000),
            max_series: Some(100000)
        }
    );
    assert_eq!(&*t.by_user("ingest", "pass word").unwrap().id, "globex");
    assert!(t.by_user("ingest", "pass").is_none());
    assert!(t.by_user("ingest", "").is_none());
    assert!(t.by_token("acme-secret").is_none());
    assert!(t.by_token("").is_none());
    // A token is not a basic-auth user:password, nor the reverse.
    assert!(t.by_token("ingest:pass word").is_none());
    assert_eq!(t.get("initech").unwrap().info.sla_tier, None);
    assert!(t.get("nobody").is_none());
}

#[test]
fn an_explicitly_empty_tenants_file_is_valid() {
    assert!(tenants("tenants: {}").is_empty());
    assert!(tenants("tenants:").is_empty());
}

/// Every problem is reported at once with its line and column; no secret is quoted.
#[test]
fn tenants_file_errors_are_positioned_and_never_quote_secrets() {
    let e = file_errors(
        r#"tenants:
  acme: { tokens: ["s3cret-a", ""], sla_tier: gold }
  globex: { tokens: ["s3cret-a"], users: { "a:b": x, ingest: "", ops: pw } }
  "bad/id": { tokens: ["s3cret-b"] }
  initech: { tokens: "s3cret-c", colour: blue, limits: { rate: fast } }
  umbrella: { tokens: ["has space"], users: { ops: other } }
other: 1
"#,
    );
    for want in [
        "tenants.yaml:2:32: tenant \"acme\": tokens[1] is empty",
        "tenants.yaml:3:22: tenant \"globex\": tokens[0] is also a credential of tenant \"acme\"",
        "tenant \"globex\": user \"a:b\" must be non-empty, without `:`",
        "tenant \"globex\": the password of user \"ingest\" is empty",
        "tenants.yaml:4:3: tenant id \"bad/id\" holds '/'",
        "tenants.yaml:5:22: tenant \"initech\": `tokens` must be a list",
        "tenant \"initech\": unknown key `colour`",
        "tenant \"initech\": limits: expected",
        "tenant \"umbrella\": tokens[0] holds whitespace",
        "tenant \"umbrella\": user \"ops\" is also a user of tenant \"globex\"",
        "tenants.yaml:7:1: unknown key `other`",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    for secret in ["s3cret", "has space", "x,"] {
        assert!(!e.contains(secret), "{secret:?} quoted in\n{e}");
    }
}

#[test]
fn an_empty_or_malformed_tenants_file_is_an_error() {
    assert!(file_errors("").contains("the tenants file is empty"));
    assert!(file_errors("acme: {}").contains("unknown key `acme`"));
    assert!(file_errors("[1, 2]").contains("expected a map with `tenants`"));
    assert!(file_errors("tenants: [acme]").contains("must be a map"));
    assert!(file_errors("tenants: {acme: {tokens: [").contains("tenants.yaml:"));
}

#[test]
fn tenants_debug_output_holds_no_secret() {
    let t = tenants(FILE);
    let d = format!("{t:?} {:?}", t.by_token("acme-secret-1"));
    assert!(!d.contains("secret") && !d.contains("pass word"), "{d}");
}

// ---------------------------------------------------------------------------------------------
// The `auth` / `tenant` settings.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Receiver {
    #[serde(default)]
    auth: Option<Located<AuthConfig>>,
    #[serde(default)]
    tenant: Option<Located<TenantConfig>>,
}

fn settings(yaml: &str) -> Result<Option<Identity>, Vec<DeError>> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("receivers:\n  otlp:\n{indented}");
    let node = component_node(&text, Class::Receiver, &ComponentId::parse("otlp").unwrap())
        .expect("a receiver node");
    let mut r: Receiver = from_node(&node).map_err(|e| vec![e])?;
    resolve_paths(
        &mut r.auth,
        &mut r.tenant,
        &LoadContext {
            base_dir: "/etc/sluice".into(),
        },
    );
    identity(r.auth.as_ref(), r.tenant.as_ref(), &node)
}

fn setting_errors(yaml: &str) -> Vec<(Pos, String)> {
    settings(yaml)
        .expect_err("expected errors")
        .into_iter()
        .map(|e| (e.pos, e.message))
        .collect()
}

fn at(line: u32, column: u32) -> Pos {
    Pos { line, column }
}

#[test]
fn the_authorization_header_is_never_carried_with_auth() {
    let node = crate::config::parse_yaml("auth: { tenants_file: t.yaml }").unwrap();
    let auth: Located<AuthConfig> = from_node(&node.as_map().unwrap()[0].1).unwrap();
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let e = check_metadata_keys(Some(&auth), &keys(&["X-Org", "authorization"]), &node);
    assert!(
        e.unwrap()
            .message
            .contains("`Authorization` holds the credentials")
    );
    assert_eq!(
        check_metadata_keys(Some(&auth), &keys(&["X-Org"]), &node),
        None
    );
    assert_eq!(
        check_metadata_keys(None, &keys(&["Authorization"]), &node),
        None
    );
}

#[test]
fn auth_reads_a_tenants_file_relative_to_the_config() {
    assert_eq!(settings("").unwrap(), None);
    assert_eq!(
        settings("auth: { tenants_file: tenants.yaml }").unwrap(),
        Some(Identity::Credentials {
            file: FileSettings {
                path: "/etc/sluice/tenants.yaml".into(),
                reload_interval: Duration::from_secs(5),
            }
        })
    );
    assert_eq!(
        settings("auth: { tenants_file: /abs/t.yaml, reload_interval: 1m }").unwrap(),
        Some(Identity::Credentials {
            file: FileSettings {
                path: "/abs/t.yaml".into(),
                reload_interval: Duration::from_secs(60),
            }
        })
    );
}

#[test]
fn tenant_from_a_header_or_a_static_id() {
    assert_eq!(
        settings("tenant: { header: X-Scope-OrgID, default: anonymous, tenants_file: t.yaml }")
            .unwrap(),
        Some(Identity::Header {
            name: "x-scope-orgid".into(),
            default: Some("anonymous".into()),
            file: Some(FileSettings {
                path: "/etc/sluice/t.yaml".into(),
                reload_interval: Duration::from_secs(5),
            }),
        })
    );
    assert_eq!(
        settings("tenant: { static: acme }").unwrap(),
        Some(Identity::Static {
            id: "acme".into(),
            file: None
        })
    );
}

#[test]
fn conflicting_tenancy_settings_are_positioned_errors() {
    let e = setting_errors("auth: { tenants_file: t.yaml }\ntenant: { static: acme }");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, at(4, 13));
    assert!(
        e[0].1.contains("`auth` and `tenant` exclude each other"),
        "{e:?}"
    );

    let e = setting_errors("tenant:\n  header: X-Scope-OrgID\n  static: acme");
    assert_eq!(e[0].0, at(5, 15));
    assert!(
        e[0].1.contains("`header` and `static` exclude each other"),
        "{e:?}"
    );

    let e = setting_errors("tenant: {}");
    assert!(e[0].1.contains("set `header`"), "{e:?}");
    let e = setting_errors("tenant: { static: acme, default: other }");
    assert!(e[0].1.contains("`default` goes with `header`"), "{e:?}");
    let e = setting_errors("tenant: { static: a/b }");
    assert!(
        e[0].1
            .contains("tenant.static: tenant id \"a/b\" holds '/'"),
        "{e:?}"
    );
    let e = setting_errors("tenant: { header: X-Org, default: '..' }");
    assert!(e[0].1.contains("tenant.default"), "{e:?}");
    let e = setting_errors("tenant: { header: 'X Org' }");
    assert!(e[0].1.contains("not a header name"), "{e:?}");
    let e = setting_errors("auth: { tenants_file: t.yaml, reload_interval: 0 }");
    assert!(e[0].1.contains("reload_interval must be above 0"), "{e:?}");
    let e = setting_errors("auth: {}");
    assert!(e[0].1.contains("tenants_file"), "{e:?}");
    let e = setting_errors("auth: { tenants_file: t.yaml, token: x }");
    assert!(e[0].1.contains("token"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Deciding the tenant of a request.

fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn credentials() -> Authenticator {
    let file = FileSettings {
        path: "unused".into(),
        reload_interval: Duration::from_secs(5),
    };
    Authenticator::with_tenants(Identity::Credentials { file }, tenants(FILE))
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

#[test]
fn a_bearer_token_or_basic_auth_decides_the_tenant() {
    let a = credentials();
    let (t, info) = a
        .identify(headers(&[("Authorization", "Bearer acme-secret-2")]))
        .unwrap();
    assert_eq!(&*t, "acme");
    assert_eq!(info.unwrap().sla_tier.as_deref(), Some("gold"));
    let (t, _) = a
        .identify(headers(&[("authorization", "bearer  globex-secret ")]))
        .unwrap();
    assert_eq!(&*t, "globex");
    let (t, info) = a
        .identify(headers(&[("authorization", &basic("ingest", "pass word"))]))
        .unwrap();
    assert_eq!(&*t, "globex");
    assert_eq!(info.unwrap().limits.rate, Some(20000));
}

#[test]
fn missing_or_wrong_credentials_are_unauthenticated_with_a_challenge() {
    let a = credentials();
    for h in [
        vec![],
        vec![("authorization", "Bearer nope")],
        vec![("authorization", "Bearer")],
        vec![("authorization", "acme-secret-1")],
        vec![("authorization", "Token acme-secret-1")],
        vec![("authorization", "Basic !!!")],
        vec![("authorization", "Basic aW5nZXN0")],
    ] {
        let d = a.identify(headers(&h)).unwrap_err();
        assert_eq!(d.reason(), "unauthenticated", "{h:?}");
        assert!(
            matches!(
                d,
                Denied::Unauthenticated {
                    challenge: Some(CHALLENGE),
                    ..
                }
            ),
            "{h:?}"
        );
        assert!(!d.message().contains("acme-secret"), "{d:?}");
    }
    let d = a
        .identify(headers(&[("authorization", &basic("ingest", "wrong"))]))
        .unwrap_err();
    assert_eq!(d.message(), "invalid credentials");
    // A trusted-header setting does not apply to an `auth` receiver.
    assert!(a.identify(headers(&[("x-scope-orgid", "acme")])).is_err());
}

#[test]
fn a_trusted_header_names_the_tenant() {
    let a = Authenticator::with_tenants(
        Identity::Header {
            name: "x-scope-orgid".into(),
            default: None,
            file: None,
        },
        tenants(FILE),
    );
    let (t, info) = a.identify(headers(&[("X-Scope-OrgID", "acme")])).unwrap();
    assert_eq!(
        (&*t, info.unwrap().sla_tier.as_deref()),
        ("acme", Some("gold"))
    );
    let (t, info) = a
        .identify(headers(&[("X-Scope-OrgID", "unlisted")]))
        .unwrap();
    assert_eq!((&*t, info), ("unlisted", None));

    let d = a.identify(headers(&[])).unwrap_err();
    assert_eq!(d.reason(), "unauthenticated");
    assert!(d.message().contains("x-scope-orgid"), "{d:?}");
    let d = a
        .identify(headers(&[("X-Scope-OrgID", "../etc")]))
        .unwrap_err();
    assert_eq!(d.reason(), "invalid_tenant");
    assert!(d.message().contains("'/'"), "{d:?}");
}

#[test]
fn a_default_tenant_for_requests_without_the_header() {
    let a = Authenticator::with_tenants(
        Identity::Header {
            name: "x-scope-orgid".into(),
            default: Some("anonymous".into()),
            file: None,
        },
        Tenants::default(),
    );
    assert_eq!(&*a.identify(headers(&[])).unwrap().0, "anonymous");
    assert_eq!(
        &*a.identify(headers(&[("x-scope-orgid", "acme")])).unwrap().0,
        "acme"
    );
}

#[test]
fn a_static_tenant_for_every_request() {
    let a = Authenticator::with_tenants(
        Identity::Static {
            id: "globex".into(),
            file: None,
        },
        tenants(FILE),
    );
    let (t, info) = a.identify(headers(&[("x-scope-orgid", "acme")])).unwrap();
    assert_eq!(
        (&*t, info.unwrap().sla_tier.as_deref()),
        ("globex", Some("bronze"))
    );
}

// ---------------------------------------------------------------------------------------------
// Reloading.

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn reloads(t: &Telemetry, path: &Path, result: &str) -> f64 {
    t.value(
        "sluice_tenants_file_reloads_total",
        &[("file", &path.display().to_string()), ("result", result)],
    )
}

/// A changed file takes effect; an invalid one is counted and the previous version stays.
#[tokio::test]
async fn the_tenants_file_is_reloaded_on_change_and_kept_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    std::fs::write(&path, "tenants: { acme: { tokens: [old-token] } }").unwrap();
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let a = Authenticator::start(
        Identity::Credentials {
            file: FileSettings {
                path: path.clone(),
                reload_interval: Duration::from_millis(20),
            },
        },
        "otlp/test",
        telemetry.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let bearer = |t: &str| {
        let h = format!("Bearer {t}");
        a.identify(headers(&[("authorization", &h)]))
            .map(|(t, _)| t.to_string())
    };
    assert_eq!(bearer("old-token").as_deref(), Ok("acme"));

    std::fs::write(&path, "tenants: { acme: { tokens: [new-token] } }").unwrap();
    eventually("the new token works", || bearer("new-token").is_ok()).await;
    assert!(bearer("old-token").is_err());
    assert_eq!(reloads(&telemetry, &path, "success"), 1.0);

    std::fs::write(&path, "tenants: { acme: { tokens: new-token } }").unwrap();
    eventually("the invalid file is counted", || {
        reloads(&telemetry, &path, "failure") == 1.0
    })
    .await;
    assert_eq!(bearer("new-token").as_deref(), Ok("acme"));

    std::fs::remove_file(&path).unwrap();
    eventually("the missing file is counted", || {
        reloads(&telemetry, &path, "failure") == 2.0
    })
    .await;
    assert_eq!(bearer("new-token").as_deref(), Ok("acme"));
    shutdown.cancel();
}

#[tokio::test]
async fn a_missing_or_invalid_tenants_file_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let start = || {
        Authenticator::start(
            Identity::Static {
                id: "acme".into(),
                file: Some(FileSettings {
                    path: path.clone(),
                    reload_interval: Duration::from_secs(5),
                }),
            },
            "otlp/test",
            Arc::new(Telemetry::new()),
            CancellationToken::new(),
        )
    };
    let e = start().unwrap_err();
    assert!(e.contains("cannot read the tenants file"), "{e}");
    std::fs::write(&path, "tenants: { a/b: {} }").unwrap();
    let e = start().unwrap_err();
    assert!(e.contains("tenants.yaml:1:12: tenant id \"a/b\""), "{e}");
}
