//! The multi-tenant federation, with real processes: two Sluice agents (one per tenant, each with its
//! tenant's token) and a Prometheus server (remote_write with a bearer token) push to a Sluice
//! gateway, which authenticates each request, writes the tenant label from the identity, and routes
//! tenant `acme` to a Prometheus backend and everyone else to a VictoriaMetrics backend.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::peers::{Peer, free_port, query_at};
use support::{GrpcClient, Sluice, http_get_status, wait_until};

const SERIES: u64 = 20;

const TENANTS: &str = "\
tenants:
  acme:    { tokens: [acme-secret], sla_tier: gold }
  globex:  { tokens: [globex-secret], sla_tier: bronze }
  initech: { tokens: [initech-secret], sla_tier: silver }
";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn now_s() -> f64 {
    now_ns() as f64 / 1e9
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// `SERIES` gauge points of `metric` (attribute `i` = 0..SERIES), all with value `round`, stamped
/// now; `extra` attributes go on every point (a spoofed tenant label, for instance).
fn round_request(
    metric: &str,
    service: &str,
    round: u64,
    extra: &[(&str, &str)],
) -> ExportMetricsServiceRequest {
    let t = now_ns();
    let points = (0..SERIES)
        .map(|i| {
            let mut attributes = vec![string_kv("i", &i.to_string())];
            attributes.extend(extra.iter().map(|(k, v)| string_kv(k, v)));
            NumberDataPoint {
                attributes,
                time_unix_nano: t,
                value: Some(number_data_point::Value::AsDouble(round as f64)),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: metric.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A Prometheus process that can be stopped and started again on the same port and data, or run
/// with a config of the test's own.
struct Prom {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl Prom {
    /// Prometheus as a remote_write backend.
    fn backend() -> Prom {
        Self::with_config(
            "global: { scrape_interval: 15s }\n",
            &["--web.enable-remote-write-receiver"],
        )
    }

    fn with_config(config: &str, extra: &[&str]) -> Prom {
        assert!(
            Path::new("/usr/bin/prometheus").exists(),
            "/usr/bin/prometheus is missing: run integration-tests/install-peers.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Prom {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
            args,
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let child = Command::new("/usr/bin/prometheus")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("http://{}/-/ready", self.addr);
        wait_until(Duration::from_secs(30), "Prometheus ready", || {
            http_get_status(&url).is_some_and(|(s, _)| s == 200)
        });
    }

    /// Stops Prometheus with SIGTERM, so that it writes out what it holds (its WAL) first.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        query(self.addr, promql)
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An instant query (now) against a Prometheus-compatible API; `data.result`.
fn query(addr: SocketAddr, promql: &str) -> Vec<serde_json::Value> {
    query_at(addr, promql, now_s())
}

/// The single value of a query, if it has one series.
fn scalar(addr: SocketAddr, promql: &str) -> Option<f64> {
    query(addr, promql)
        .first()
        .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
}

fn label_values(result: &[serde_json::Value], label: &str) -> Vec<String> {
    let mut v: Vec<String> = result
        .iter()
        .map(|s| s["metric"][label].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

struct Federation {
    acme_backend: Prom,
    shared_backend: Peer,
    gateway: Sluice,
    agent_acme: Sluice,
    agent_globex: Sluice,
    _tenants_dir: tempfile::TempDir,
}

fn gateway_yaml(tenants: &Path, acme_url: &str, shared_url: &str) -> String {
    let tenants = tenants.display();
    format!(
        r#"
receivers:
  otlp/edge:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:0 }}
      http: {{ endpoint: 127.0.0.1:0 }}
    auth: {{ tenants_file: {tenants} }}
  prometheus_remote_write/edge:
    endpoint: 127.0.0.1:0
    auth: {{ tenants_file: {tenants} }}
processors:
  labels:
    tenant: {{ key: tenant }}
    sla: {{ key: sla_tier, default: bronze }}
  limits: {{ default: {{ rate: 1000000, max_series: 100000 }} }}
  route:
    routes:
      - {{ tenants: [acme], exporters: [prometheus_remote_write/acme] }}
    default: [prometheus_remote_write/shared]
  batch: {{ timeout: 100ms }}
exporters:
  prometheus_remote_write/acme:
    endpoint: {acme_url}
    queue_config: {{ batch_send_deadline: 200ms, max_backoff: 500ms }}
  prometheus_remote_write/shared:
    endpoint: {shared_url}
    queue_config: {{ batch_send_deadline: 200ms }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics:
      receivers: [otlp/edge, prometheus_remote_write/edge]
      processors: [limits, labels, route, batch]
      exporters: [prometheus_remote_write/acme, prometheus_remote_write/shared]
"#
    )
}

/// An agent that takes OTLP/gRPC and forwards it to the gateway with its tenant's token: over
/// OTLP/gRPC (`otlp`) or over remote_write (`rw`).
fn agent_yaml(gateway: &Sluice, token: &str, via: &str) -> String {
    let exporter = match via {
        "otlp" => format!(
            "otlp: {{ endpoint: \"{}\", headers: {{ authorization: \"Bearer {token}\" }}, compression: gzip }}",
            gateway.addr("otlp/edge/grpc")
        ),
        _ => format!(
            "prometheus_remote_write: {{ endpoint: \"http://{}/api/v1/write\", bearer_token: {token}, queue_config: {{ batch_send_deadline: 200ms }} }}",
            gateway.addr("prometheus_remote_write/edge/http")
        ),
    };
    let exporter_id = exporter.split(':').next().unwrap();
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: 127.0.0.1:0 }} }} }}
exporters:
  {exporter}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [{exporter_id}] }}
"#
    )
}

impl Federation {
    fn start() -> Federation {
        let acme_backend = Prom::backend();
        let shared_backend = Peer::victoria_metrics();
        let tenants_dir = tempfile::tempdir().unwrap();
        let tenants = tenants_dir.path().join("tenants.yaml");
        std::fs::write(&tenants, TENANTS).unwrap();
        let gateway = Sluice::start(
            &gateway_yaml(
                &tenants,
                &acme_backend.write_url(),
                &shared_backend.write_url(),
            ),
            &[
                "otlp/edge/grpc",
                "otlp/edge/http",
                "prometheus_remote_write/edge/http",
                "telemetry",
            ],
        );
        let agent_acme = Sluice::start(
            &agent_yaml(&gateway, "acme-secret", "otlp"),
            &["otlp/grpc", "telemetry"],
        );
        let agent_globex = Sluice::start(
            &agent_yaml(&gateway, "globex-secret", "rw"),
            &["otlp/grpc", "telemetry"],
        );
        Federation {
            acme_backend,
            shared_backend,
            gateway,
            agent_acme,
            agent_globex,
            _tenants_dir: tenants_dir,
        }
    }

    /// Sends one round of `SERIES` points from each agent's client: acme's `acme.orders` carry a
    /// spoofed `tenant="globex"` attribute.
    fn send_round(&self, acme: &GrpcClient, globex: &GrpcClient, round: u64) {
        acme.export(round_request(
            "acme.orders",
            "shop",
            round,
            &[("tenant", "globex")],
        ))
        .expect("the acme agent takes the round");
        globex
            .export(round_request("globex.jobs", "batch", round, &[]))
            .expect("the globex agent takes the round");
    }
}

/// A Prometheus server that scrapes itself and remote-writes to the gateway as tenant `initech`.
fn prometheus_sender(gateway: &Sluice, token: &str, job: &str) -> Prom {
    let port = free_port();
    let config = format!(
        "global: {{ scrape_interval: 1s }}\n\
         scrape_configs:\n\
         \x20 - job_name: {job}\n\
         \x20   static_configs: [{{ targets: [\"127.0.0.1:{port}\"] }}]\n\
         remote_write:\n\
         \x20 - url: http://{}/api/v1/write\n\
         \x20   authorization: {{ credentials: {token} }}\n\
         \x20   queue_config: {{ batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s }}\n",
        gateway.addr("prometheus_remote_write/edge/http")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let mut p = Prom {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        args: vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        _dir: dir,
        child: None,
    };
    p.start();
    p
}

/// A remote_write 1.0 request body (snappy-compressed protobuf) with one sample of `name`.
fn rw_body(name: &str) -> Vec<u8> {
    use sluice_core::proto::prometheus_v1 as v1;
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![v1::Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: (now_ns() / 1_000_000) as i64,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// POSTs a remote_write body to the gateway with an `Authorization` header (or none).
fn post_rw(gateway: &Sluice, authorization: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let url = format!(
        "http://{}/api/v1/write",
        gateway.addr("prometheus_remote_write/edge/http")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rb = support::http_client()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(a) = authorization {
            rb = rb.header("Authorization", a);
        }
        let resp = rb.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// POSTs an OTLP/HTTP protobuf request to the gateway with an `Authorization` header.
fn post_otlp(
    gateway: &Sluice,
    authorization: &str,
    req: ExportMetricsServiceRequest,
) -> (u16, String) {
    let url = gateway.http_url("otlp/edge");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = support::http_client()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Authorization", authorization)
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    })
}

#[test]
fn each_backend_holds_exactly_its_tenants_series() {
    let f = Federation::start();
    let sender = prometheus_sender(&f.gateway, "initech-secret", "initech_prom");
    let acme = GrpcClient::connect(&f.agent_acme.grpc_url("otlp"));
    let globex = GrpcClient::connect(&f.agent_globex.grpc_url("otlp"));
    f.send_round(&acme, &globex, 1);

    // Requests without a valid identity are refused and nothing of them is stored.
    let (status, body) = post_rw(
        &f.gateway,
        Some("Bearer wrong-secret"),
        rw_body("intruder_metric"),
    );
    assert_eq!(status, 401, "{body}");
    let (status, _) = post_rw(&f.gateway, None, rw_body("intruder_metric"));
    assert_eq!(status, 401);
    let (status, body) = post_otlp(
        &f.gateway,
        "Bearer wrong-secret",
        round_request("intruder.otlp", "intruder", 1, &[]),
    );
    assert_eq!(status, 401, "{body}");

    let acme_addr = f.acme_backend.addr;
    let shared_addr = f.shared_backend.addr;
    wait_until(
        Duration::from_secs(30),
        "acme's series in Prometheus",
        || scalar(acme_addr, "count(acme_orders)") == Some(SERIES as f64),
    );
    wait_until(
        Duration::from_secs(30),
        "globex's series in VictoriaMetrics",
        || scalar(shared_addr, "count(globex_jobs)") == Some(SERIES as f64),
    );
    wait_until(
        Duration::from_secs(60),
        "the Prometheus sender's series in VictoriaMetrics",
        || scalar(shared_addr, r#"count(up{job="initech_prom"})"#) == Some(1.0),
    );

    // acme's backend: only acme, and acme's points carry tenant="acme" although the client sent
    // tenant="globex".
    let in_acme = f.acme_backend.query(r#"{__name__=~".+"}"#);
    assert!(!in_acme.is_empty());
    assert_eq!(
        label_values(&in_acme, "tenant"),
        vec!["acme"],
        "{in_acme:?}"
    );
    assert_eq!(label_values(&in_acme, "sla_tier"), vec!["gold"]);
    // The shared backend: globex and initech only, with their tiers from the tenants file.
    let in_shared = query(shared_addr, r#"{__name__=~".+"}"#);
    assert_eq!(
        label_values(&in_shared, "tenant"),
        vec!["globex", "initech"]
    );
    let globex_tiers = query(shared_addr, r#"group by (sla_tier) (globex_jobs)"#);
    assert_eq!(label_values(&globex_tiers, "sla_tier"), vec!["bronze"]);
    let initech_tiers = query(shared_addr, r#"group by (sla_tier) ({tenant="initech"})"#);
    assert_eq!(label_values(&initech_tiers, "sla_tier"), vec!["silver"]);
    assert!(query(shared_addr, "acme_orders").is_empty());
    for addr in [acme_addr, shared_addr] {
        assert!(query(addr, r#"{__name__=~"intruder.*"}"#).is_empty());
    }

    // The gateway counted by tenant what it took and what it refused.
    assert_eq!(
        f.gateway.metric(
            "sluice_receiver_accepted_points_total",
            &[("tenant", "acme")]
        ),
        SERIES as f64
    );
    assert!(
        f.gateway.metric(
            "sluice_receiver_refused_requests_total",
            &[("reason", "unauthenticated")]
        ) >= 3.0
    );
    drop(sender);
}

#[test]
fn one_tenants_outage_does_not_hold_back_another() {
    let mut f = Federation::start();
    let acme = GrpcClient::connect(&f.agent_acme.grpc_url("otlp"));
    let globex = GrpcClient::connect(&f.agent_globex.grpc_url("otlp"));
    let shared_addr = f.shared_backend.addr;
    let acme_addr = f.acme_backend.addr;
    f.send_round(&acme, &globex, 1);
    wait_until(Duration::from_secs(30), "round 1 in both backends", || {
        scalar(acme_addr, "count(acme_orders)") == Some(SERIES as f64)
            && scalar(shared_addr, "count(globex_jobs)") == Some(SERIES as f64)
    });

    // acme's backend goes away; globex's data keeps arriving, round after round.
    f.acme_backend.stop();
    let rounds = 6;
    for round in 2..=rounds {
        f.send_round(&acme, &globex, round);
        let expect = format!("globex round {round} in VictoriaMetrics during acme's outage");
        wait_until(Duration::from_secs(10), &expect, || {
            scalar(shared_addr, "min(globex_jobs)") == Some(round as f64)
                && scalar(shared_addr, "count(globex_jobs)") == Some(SERIES as f64)
        });
    }
    assert!(
        f.gateway.metric(
            "sluice_exporter_failed_points_total",
            &[("exporter", "prometheus_remote_write/acme")]
        ) > 0.0,
        "the acme exporter saw its backend fail"
    );

    // acme's backend returns: everything queued for it arrives, complete.
    f.acme_backend.start();
    wait_until(
        Duration::from_secs(60),
        "all of acme's rounds in Prometheus",
        || {
            scalar(acme_addr, "sum(count_over_time(acme_orders[15m]))")
                == Some((SERIES * rounds) as f64)
        },
    );
    assert_eq!(
        scalar(acme_addr, "sum(sum_over_time(acme_orders[15m]))"),
        Some((SERIES * (1..=rounds).sum::<u64>()) as f64),
        "every round's values, each once"
    );
    assert_eq!(
        scalar(shared_addr, "sum(count_over_time(globex_jobs[15m]))"),
        Some((SERIES * rounds) as f64)
    );
}
