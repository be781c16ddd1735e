//! The `labels` processor end to end, with real clients and a real backend: the OpenTelemetry
//! Python SDK exports over gRPC and HTTP with an `X-Customer-ID: acme` request header and a
//! client-sent point attribute `customer_id=evil`; Sluice (otlp receiver carrying that header,
//! `normalize` then `labels`, `prometheus_remote_write`) writes into a real Prometheus.
//! Guarantees: every series arrives normalized and labelled: `customer_id` from the header,
//! overwriting the client's value; `service_domain` and `sla_tier` from captures over
//! `service.name`, the SLA tier falling back to its default; a label with no source is absent.

mod support;

use std::process::Command;
use std::time::Duration;
use support::peers::Peer;
use support::{Sluice, wait_until};

fn require_python_sdk() {
    let ok = Command::new("python3")
        .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the OpenTelemetry Python SDK is missing: run integration-tests/install-peers.sh \
         (pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http)"
    );
}

/// Runs the Python client for one service with extra request headers and point attributes.
fn python_client(protocol: &str, endpoint: &str, service: &str, extra: &[&str]) {
    let record = tempfile::NamedTempFile::new().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/integration-tests/otel_client.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--service",
            service,
            "--rounds",
            "2",
        ])
        .args(extra)
        .arg("--record")
        .arg(record.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pipeline of `docs/examples/multi-tenant-labels.yaml`, on ephemeral ports.
fn config(write_url: &str, node_exporter: std::net::SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
    metadata_keys: [X-Customer-ID]
  prometheus/node:
    config:
      scrape_configs:
        - {{ job_name: node, scrape_interval: 1s, static_configs: [{{ targets: ["{node_exporter}"] }}] }}
processors:
  normalize: {{ base_units: true }}
  labels:
    tenant: {{ key: customer_id, header: X-Customer-ID, overwrite: true }}
    domain: {{ key: service_domain, from_attribute: service.name, pattern: "^([a-z]+)-" }}
    sla: {{ key: sla_tier, from_attribute: service.name, pattern: "-(gold|silver|bronze)$", default: bronze }}
  batch: {{ timeout: 50ms }}
exporters:
  prometheus_remote_write:
    endpoint: "{write_url}"
    queue_config: {{ batch_send_deadline: 100ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp, prometheus/node], processors: [normalize, labels, batch], exporters: [prometheus_remote_write] }}
"#
    )
}

/// Debian's node_exporter on a free loopback port, killed when dropped.
struct NodeExporter(std::process::Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_exporter() -> (NodeExporter, std::net::SocketAddr) {
    let bin = "/usr/bin/prometheus-node-exporter";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: run integration-tests/install-peers.sh"
    );
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = std::process::Command::new(bin)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ne = NodeExporter(child);
    wait_until(Duration::from_secs(20), "node_exporter listening", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    (ne, addr)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn python_sdk_series_reach_prometheus_normalized_with_tenant_domain_and_sla_labels() {
    require_python_sdk();
    let prom = Peer::prometheus();
    let (_node, node_addr) = node_exporter();
    let s = Sluice::start(
        &config(&prom.write_url(), node_addr),
        &["otlp/grpc", "otlp/http", "telemetry"],
    );
    let tenant = [
        "--header",
        "X-Customer-ID=acme",
        "--attr",
        "customer_id=evil",
    ];
    python_client("grpc", &s.grpc_url("otlp"), "pay-gateway-gold", &tenant);
    python_client("http", &s.http_url("otlp"), "auth-api-silver", &tenant);
    python_client("grpc", &s.grpc_url("otlp"), "search", &tenant);

    let series = |promql: &str| prom.query(promql, now());
    wait_until(
        Duration::from_secs(30),
        "prometheus has the counters of all three services",
        || series("http_server_requests_total").len() >= 9,
    );

    // Every series of every metric carries the client's tenant from the header, never `evil`.
    for name in [
        "http_server_requests_total",
        "http_server_request_duration_seconds_bucket",
        "queue_depth",
        "bytes_sent_bytes_total",
        "process_memory_usage_bytes",
    ] {
        let all = series(name);
        assert!(!all.is_empty(), "{name} arrived");
        for s in &all {
            assert_eq!(s["metric"]["customer_id"], "acme", "{name}: {s}");
        }
    }
    assert!(series(r#"{customer_id="evil"}"#).is_empty());

    let labels = |service: &str| {
        let r = series(&format!(
            r#"http_server_requests_total{{job=~".*{service}"}}"#
        ));
        assert!(!r.is_empty(), "{service} arrived");
        let m = &r[0]["metric"];
        (
            m["service_domain"].as_str().map(str::to_string),
            m["sla_tier"].as_str().map(str::to_string),
        )
    };
    assert_eq!(
        labels("pay-gateway-gold"),
        (Some("pay".into()), Some("gold".into()))
    );
    assert_eq!(
        labels("auth-api-silver"),
        (Some("auth".into()), Some("silver".into()))
    );
    // `search` has no domain (no match, no default) and the default tier.
    assert_eq!(labels("search"), (None, Some("bronze".into())));
    assert_eq!(
        series(r#"http_server_requests_total{customer_id="acme",service_domain="pay",sla_tier="gold",http_method="POST",http_status_code="500"}"#).len(),
        1
    );

    // Scraped node_exporter metrics went through the same pipeline: normalized names
    // (`node_memory_MemAvailable_bytes` -> `node_memory_mem_available_bytes`; conforming names
    // unchanged) and the default SLA tier; no tenant label, since a scrape carries no header.
    wait_until(
        Duration::from_secs(30),
        "node_exporter series in Prometheus",
        || !series(r#"node_cpu_seconds_total{job="node",sla_tier="bronze"}"#).is_empty(),
    );
    assert!(!series(r#"node_memory_mem_available_bytes{job="node",sla_tier="bronze"}"#).is_empty());
    assert!(
        series("node_memory_MemAvailable_bytes").is_empty(),
        "names are normalized"
    );
    assert!(series(r#"node_cpu_seconds_total{customer_id!=""}"#).is_empty());
}
