//! Tenant identity at the push receivers, end to end through the real binary: OTLP/gRPC, OTLP/HTTP
//! and remote_write clients authenticate with bearer tokens or basic auth from a tenants file, or
//! are trusted by header, or belong to a static tenant; a `labels` processor writes the batch's
//! tenant and SLA tier; everything lands in an in-process remote_write sink.
//! Guarantees: an authenticated request arrives labelled with its own tenant (a client-sent
//! `tenant="other"` is overwritten) and its tenants-file tier; missing or wrong credentials get
//! 401 (with `WWW-Authenticate`) / UNAUTHENTICATED and nothing of them arrives; they are counted
//! as refused requests with reason `unauthenticated`; the tenants file is reloaded at runtime (a
//! new token works, a removed one is refused, an invalid file keeps the previous one); no token
//! or password ever appears in the log; a bad tenants file or conflicting settings stop the start.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use sluice_core::proto::prometheus_v1 as v1;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::peers::{RwBehaviour, RwSink};
use support::{Sluice, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

const ACME_TOKEN: &str = "acme-token-1f9c2d";
const GLOBEX_TOKEN: &str = "globex-token-77aa01";
const GLOBEX_PASSWORD: &str = "globex-pass-51d0e3";
const NEW_TOKEN: &str = "acme-token-rotated-c0ffee";
const SECRETS: [&str; 4] = [ACME_TOKEN, GLOBEX_TOKEN, GLOBEX_PASSWORD, NEW_TOKEN];

fn tenants_yaml(acme_token: &str) -> String {
    format!(
        r#"
tenants:
  acme:   {{ tokens: ["{acme_token}"], sla_tier: gold }}
  globex: {{ tokens: ["{GLOBEX_TOKEN}"], users: {{ ingest: "{GLOBEX_PASSWORD}" }}, sla_tier: bronze, limits: {{ rate: 20000 }} }}
"#
    )
}

const RECEIVERS: [&str; 6] = [
    "otlp/edge/grpc",
    "otlp/edge/http",
    "prometheus_remote_write/edge/http",
    "prometheus_remote_write/proxied/http",
    "prometheus_remote_write/static/http",
    "telemetry",
];

/// Sluice with every tenancy mode, its tenants file, the sink, and a runtime for the clients.
struct Gateway {
    sluice: Sluice,
    sink: RwSink,
    tenants: PathBuf,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

fn gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.yaml");
    std::fs::write(&tenants, tenants_yaml(ACME_TOKEN)).unwrap();
    let sink = RwSink::start(RwBehaviour::Accept);
    let file = tenants.display();
    let yaml = format!(
        r#"
receivers:
  otlp/edge:
    protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }}, http: {{ endpoint: "127.0.0.1:0" }} }}
    auth: {{ tenants_file: "{file}", reload_interval: 100ms }}
  prometheus_remote_write/edge:
    endpoint: "127.0.0.1:0"
    auth: {{ tenants_file: "{file}", reload_interval: 100ms }}
  prometheus_remote_write/proxied:
    endpoint: "127.0.0.1:0"
    tenant: {{ header: X-Scope-OrgID, tenants_file: "{file}" }}
  prometheus_remote_write/static:
    endpoint: "127.0.0.1:0"
    tenant: {{ static: initech }}
processors:
  labels:
    tenant: {{ key: tenant }}
    sla: {{ key: sla_tier, default: unknown }}
exporters:
  prometheus_remote_write:
    endpoint: "{sink}"
    queue_config: {{ batch_send_deadline: 50ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics:
      receivers: [otlp/edge, prometheus_remote_write/edge, prometheus_remote_write/proxied, prometheus_remote_write/static]
      processors: [labels]
      exporters: [prometheus_remote_write]
"#,
        sink = sink.url()
    );
    let sluice = Sluice::start(&yaml, &RECEIVERS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Gateway {
        sluice,
        sink,
        tenants,
        _dir: dir,
        rt,
        http: support::http_client(),
    }
}

/// One gauge point named `name`, carrying a spoofed `tenant="other"` attribute.
fn otlp_request(name: &str) -> ExportMetricsServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("tenant", "other"), kv("sla_tier", "gold")],
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(number_data_point::Value::AsDouble(1.0)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A snappy remote_write 1.0 body with one series `name{tenant="other"}`.
fn rw_body(name: &str) -> Vec<u8> {
    let label = |n: &str, v: &str| v1::Label {
        name: n.into(),
        value: v.into(),
    };
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![label("__name__", name), label("tenant", "other")],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `Basic base64(user:password)`, for the two pairs the tests use.
fn basic(user: &str, password: &str) -> String {
    let encoded = match (user, password) {
        ("ingest", GLOBEX_PASSWORD) => "aW5nZXN0Omdsb2JleC1wYXNzLTUxZDBlMw==",
        ("ingest", "wrong") => "aW5nZXN0Ondyb25n",
        _ => unreachable!("no encoding for this pair"),
    };
    format!("Basic {encoded}")
}

/// An answer: status, `WWW-Authenticate`, body.
type Answer = (u16, Option<String>, String);

impl Gateway {
    fn grpc(&self, name: &str, authorization: Option<&str>) -> Result<(), tonic::Status> {
        let url = self.sluice.grpc_url("otlp/edge");
        let mut req = tonic::Request::new(otlp_request(name));
        if let Some(a) = authorization {
            req.metadata_mut()
                .insert("authorization", a.parse().unwrap());
        }
        self.rt.block_on(async move {
            let mut c = MetricsServiceClient::connect(url).await.unwrap();
            c.export(req).await.map(|_| ())
        })
    }

    fn post(&self, url: String, headers: &[(&str, &str)], ctype: &str, body: Vec<u8>) -> Answer {
        let mut rb = self.http.post(url).header("content-type", ctype).body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        self.rt.block_on(async move {
            let r = rb.send().await.unwrap();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), challenge, r.text().await.unwrap())
        })
    }

    fn otlp_http(&self, name: &str, headers: &[(&str, &str)]) -> Answer {
        self.post(
            self.sluice.http_url("otlp/edge"),
            headers,
            "application/x-protobuf",
            otlp_request(name).encode_to_vec(),
        )
    }

    fn rw(&self, receiver: &str, name: &str, headers: &[(&str, &str)]) -> Answer {
        let url = format!(
            "http://{}/api/v1/write",
            self.sluice.addr(&format!("{receiver}/http"))
        );
        let mut all = vec![("content-encoding", "snappy")];
        all.extend_from_slice(headers);
        self.post(url, &all, "application/x-protobuf", rw_body(name))
    }

    /// The labels of the series named `name` at the sink, once it is there.
    fn arrived(&self, name: &str) -> BTreeMap<String, String> {
        let mut found = None;
        wait_until(DEADLINE, &format!("{name} at the sink"), || {
            found = self.series(name);
            found.is_some()
        });
        found.unwrap()
    }

    fn series(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.sink
            .requests()
            .iter()
            .flat_map(|r| r.v1.timeseries.clone())
            .map(|t| {
                t.labels
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect::<BTreeMap<_, _>>()
            })
            .find(|l| l.get("__name__").map(String::as_str) == Some(name))
    }

    fn refused(&self, receiver: &str, reason: &str) -> f64 {
        self.sluice.metric(
            "sluice_receiver_refused_requests_total",
            &[("receiver", receiver), ("reason", reason)],
        )
    }

    /// No token or password in the log.
    fn check_log_holds_no_secret(&self) {
        let log = self.sluice.log_text();
        for s in SECRETS {
            assert!(!log.contains(s), "the log holds a secret:\n{log}");
        }
    }
}

fn tenant_and_tier(labels: &BTreeMap<String, String>) -> (&str, &str) {
    (
        labels.get("tenant").map_or("", String::as_str),
        labels.get("sla_tier").map_or("", String::as_str),
    )
}

#[test]
fn tokens_and_basic_auth_decide_the_tenant_over_every_protocol() {
    let g = gateway();

    g.grpc("probe_grpc_acme", Some(&bearer(ACME_TOKEN)))
        .unwrap();
    let (s, _, body) = g.otlp_http(
        "probe_http_globex",
        &[("authorization", &bearer(GLOBEX_TOKEN))],
    );
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = g.otlp_http(
        "probe_http_basic",
        &[("authorization", &basic("ingest", GLOBEX_PASSWORD))],
    );
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = g.rw(
        "prometheus_remote_write/edge",
        "probe_rw_acme",
        &[("authorization", &bearer(ACME_TOKEN))],
    );
    assert_eq!(s, 204, "{body}");
    let (s, _, body) = g.rw(
        "prometheus_remote_write/edge",
        "probe_rw_basic",
        &[("authorization", &basic("ingest", GLOBEX_PASSWORD))],
    );
    assert_eq!(s, 204, "{body}");

    // Each lands with its own tenant and tier, whatever tenant label the client sent.
    for (name, want) in [
        ("probe_grpc_acme", ("acme", "gold")),
        ("probe_http_globex", ("globex", "bronze")),
        ("probe_http_basic", ("globex", "bronze")),
        ("probe_rw_acme", ("acme", "gold")),
        ("probe_rw_basic", ("globex", "bronze")),
    ] {
        let labels = g.arrived(name);
        assert_eq!(tenant_and_tier(&labels), want, "{name}: {labels:?}");
    }
    assert!(
        g.sluice.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "otlp/edge"), ("tenant", "globex")]
        ) >= 2.0
    );
    g.check_log_holds_no_secret();
}

#[test]
fn missing_or_wrong_credentials_are_refused_and_nothing_arrives() {
    let g = gateway();
    let wrong = bearer("not-a-token");
    let bad_basic = basic("ingest", "wrong");

    for auth in [None, Some(wrong.as_str()), Some(bad_basic.as_str())] {
        let e = g.grpc("probe_refused", auth).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{auth:?}: {e:?}");

        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (s, challenge, body) = g.otlp_http("probe_refused", &headers);
        assert_eq!(s, 401, "{auth:?}: {body}");
        assert!(
            challenge.as_deref().is_some_and(|c| c.contains("Bearer")),
            "{challenge:?}"
        );
        let (s, challenge, body) = g.rw("prometheus_remote_write/edge", "probe_refused", &headers);
        assert_eq!(s, 401, "{auth:?}: {body}");
        assert!(challenge.is_some());
        assert!(!body.is_empty());
    }
    // The tenant header is no credential on an `auth` receiver.
    let (s, _, _) = g.rw(
        "prometheus_remote_write/edge",
        "probe_refused",
        &[("x-scope-orgid", "acme")],
    );
    assert_eq!(s, 401);
    // A garbage body without credentials is refused for the credentials, not for the body.
    let (s, _, _) = g.post(
        g.sluice.http_url("otlp/edge"),
        &[],
        "application/x-protobuf",
        b"\xff\xff not protobuf".to_vec(),
    );
    assert_eq!(s, 401);

    // A good request after them arrives; none of the refused ones does.
    g.grpc("probe_after", Some(&bearer(ACME_TOKEN))).unwrap();
    let (s, _, _) = g.rw(
        "prometheus_remote_write/edge",
        "probe_after_rw",
        &[("authorization", &bearer(ACME_TOKEN))],
    );
    assert_eq!(s, 204);
    g.arrived("probe_after");
    g.arrived("probe_after_rw");
    assert_eq!(g.series("probe_refused"), None);

    assert_eq!(g.refused("otlp/edge", "unauthenticated"), 7.0);
    assert_eq!(
        g.refused("prometheus_remote_write/edge", "unauthenticated"),
        4.0
    );
    g.check_log_holds_no_secret();
}

#[test]
fn trusted_header_and_static_tenants() {
    let g = gateway();
    let proxied = "prometheus_remote_write/proxied";

    let (s, _, body) = g.rw(proxied, "probe_header_acme", &[("X-Scope-OrgID", "acme")]);
    assert_eq!(s, 204, "{body}");
    let (s, _, body) = g.rw(
        proxied,
        "probe_header_unlisted",
        &[("X-Scope-OrgID", "team-7")],
    );
    assert_eq!(s, 204, "{body}");
    let (s, _, body) = g.rw("prometheus_remote_write/static", "probe_static", &[]);
    assert_eq!(s, 204, "{body}");

    // The header's tenant gets its tier from the tenants file; one not listed has none.
    let labels = g.arrived("probe_header_acme");
    assert_eq!(tenant_and_tier(&labels), ("acme", "gold"), "{labels:?}");
    let labels = g.arrived("probe_header_unlisted");
    assert_eq!(
        tenant_and_tier(&labels),
        ("team-7", "unknown"),
        "{labels:?}"
    );
    let labels = g.arrived("probe_static");
    assert_eq!(
        tenant_and_tier(&labels),
        ("initech", "unknown"),
        "{labels:?}"
    );

    // Without the header: 401; with an id that is not a valid tenant id: 400 naming the problem.
    let (s, _, body) = g.rw(proxied, "probe_no_header", &[]);
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("x-scope-orgid"), "{body}");
    let (s, _, body) = g.rw(proxied, "probe_bad_header", &[("X-Scope-OrgID", "../acme")]);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("'/'"), "{body}");
    assert_eq!(g.refused(proxied, "unauthenticated"), 1.0);
    assert_eq!(g.refused(proxied, "invalid_tenant"), 1.0);
}

#[test]
fn the_tenants_file_is_reloaded_at_runtime() {
    let g = gateway();
    let file = g.tenants.display().to_string();
    g.grpc("probe_before", Some(&bearer(ACME_TOKEN))).unwrap();

    // Rotate acme's token: the new one works, the old one is refused.
    std::fs::write(&g.tenants, tenants_yaml(NEW_TOKEN)).unwrap();
    wait_until(DEADLINE, "the new token is accepted", || {
        g.grpc("probe_rotated", Some(&bearer(NEW_TOKEN))).is_ok()
    });
    let e = g.grpc("probe_old", Some(&bearer(ACME_TOKEN))).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let (s, _, _) = g.rw(
        "prometheus_remote_write/edge",
        "probe_old_rw",
        &[("authorization", &bearer(ACME_TOKEN))],
    );
    assert_eq!(s, 401);
    let labels = g.arrived("probe_rotated");
    assert_eq!(tenant_and_tier(&labels), ("acme", "gold"));

    // An invalid file is logged and counted; the previous version stays in force.
    std::fs::write(&g.tenants, "tenants: { acme: { tokens: [\"\"] } }").unwrap();
    wait_until(DEADLINE, "the invalid file is counted", || {
        g.sluice.metric(
            "sluice_tenants_file_reloads_total",
            &[("file", &file), ("result", "failure")],
        ) >= 1.0
    });
    g.grpc("probe_kept", Some(&bearer(NEW_TOKEN))).unwrap();
    assert!(
        g.sluice.log_text().contains("tokens[0] is empty"),
        "{}",
        g.sluice.log_text()
    );
    assert!(
        g.sluice.metric(
            "sluice_tenants_file_reloads_total",
            &[("file", &file), ("result", "success")],
        ) >= 1.0
    );
    g.check_log_holds_no_secret();
}

/// Runs `sluice <command> --config` on a file and returns (exit code, stderr).
fn sluice_cli(command: &str, config: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([command, "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn conflicting_settings_and_a_bad_tenants_file_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.yaml");
    let write = |tenancy: &str| {
        std::fs::write(
            &config,
            format!(
                r#"receivers:
  prometheus_remote_write:
    endpoint: "127.0.0.1:0"
{tenancy}
exporters:
  debug: {{}}
service:
  pipelines:
    metrics: {{ receivers: [prometheus_remote_write], exporters: [debug] }}
"#
            ),
        )
        .unwrap();
    };

    write("    auth: { tenants_file: tenants.yaml }\n    tenant: { static: acme }");
    let (code, err) = sluice_cli("validate", &config);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("pipeline.yaml:5:13: receivers.prometheus_remote_write: `auth` and `tenant` exclude each other"),
        "{err}"
    );

    write("    tenant: { header: X-Scope-OrgID, static: acme }");
    let (code, err) = sluice_cli("validate", &config);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("pipeline.yaml:4:46:"), "{err}");
    assert!(
        err.contains("`header` and `static` exclude each other"),
        "{err}"
    );

    // The tenants file is read at start, relative to the config file.
    write("    auth: { tenants_file: tenants.yaml }");
    let (code, err) = sluice_cli("run", &config);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot read the tenants file"), "{err}");
    assert!(
        err.contains(&dir.path().join("tenants.yaml").display().to_string()),
        "{err}"
    );

    std::fs::write(
        dir.path().join("tenants.yaml"),
        "tenants:\n  \"a/b\": { tokens: [secret-zz9] }\n",
    )
    .unwrap();
    let (code, err) = sluice_cli("run", &config);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("tenants.yaml:2:3: tenant id \"a/b\" holds '/'"),
        "{err}"
    );
    assert!(!err.contains("secret-zz9"), "{err}");
}
