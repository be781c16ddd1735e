//! End to end with a real OTLP client: the OpenTelemetry Python SDK exports counters, up-down
//! counters, gauges and histograms (with attributes, resource attributes and exemplars) over gRPC
//! and over HTTP to Sluice A, which forwards with `otlp_http` (JSON, zstd) to Sluice B, which
//! forwards with `otlp` (gRPC, gzip) to an in-process OTLP server. Guarantees: every data point
//! the SDK exported arrives once, byte-identical (names, attributes, resource, scope, timestamps,
//! temporality, buckets, exemplars), and both hops' telemetry counts them.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data};
use std::process::Command;
use std::time::Duration;
use support::{Behaviour, OtlpSink, Sluice, wait_until};

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

/// Runs the Python client; returns the requests it exported, as it recorded them.
fn python_client(
    protocol: &str,
    endpoint: &str,
    service: &str,
    rounds: u32,
) -> Vec<ExportMetricsServiceRequest> {
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
            &rounds.to_string(),
        ])
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
    let bytes = std::fs::read(record.path()).unwrap();
    let mut reqs = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        reqs.push(ExportMetricsServiceRequest::decode(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    assert_eq!(reqs.len(), rounds as usize);
    reqs
}

/// Every data point as a self-contained, encoded `ResourceMetrics` holding only that point, so
/// that two streams can be compared regardless of how they were batched.
fn points(reqs: &[ExportMetricsServiceRequest]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for rm in reqs.iter().flat_map(|r| &r.resource_metrics) {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                for single in single_points(m) {
                    let one = ResourceMetrics {
                        resource: rm.resource.clone(),
                        schema_url: rm.schema_url.clone(),
                        scope_metrics: vec![ScopeMetrics {
                            scope: sm.scope.clone(),
                            schema_url: sm.schema_url.clone(),
                            metrics: vec![single],
                        }],
                    };
                    out.push(one.encode_to_vec());
                }
            }
        }
    }
    out.sort();
    out
}

fn single_points(m: &Metric) -> Vec<Metric> {
    let n = sluice_core::batch::metric_points(m);
    (0..n)
        .map(|i| {
            let mut one = m.clone();
            match &mut one.data {
                Some(Data::Gauge(g)) => g.data_points = vec![g.data_points[i].clone()],
                Some(Data::Sum(s)) => s.data_points = vec![s.data_points[i].clone()],
                Some(Data::Histogram(h)) => h.data_points = vec![h.data_points[i].clone()],
                Some(Data::ExponentialHistogram(h)) => {
                    h.data_points = vec![h.data_points[i].clone()]
                }
                Some(Data::Summary(s)) => s.data_points = vec![s.data_points[i].clone()],
                None => {}
            }
            one
        })
        .collect()
}

#[test]
fn python_sdk_metrics_arrive_identical_through_two_sluice_hops() {
    require_python_sdk();
    let sink = OtlpSink::start(Behaviour::Accept);
    let b = Sluice::start(
        &format!(
            r#"
receivers:
  otlp/from_a:
    protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp/sink: {{ endpoint: "{}", compression: gzip }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp/from_a], processors: [batch], exporters: [otlp/sink] }}
"#,
            sink.addr
        ),
        &["otlp/from_a/http", "telemetry"],
    );
    let a = Sluice::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  batch: {{ send_batch_size: 20, timeout: 50ms }}
exporters:
  otlp_http: {{ endpoint: "http://{}", encoding: json, compression: zstd }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [otlp_http] }}
"#,
            b.addr("otlp/from_a/http")
        ),
        &["otlp/grpc", "otlp/http", "telemetry"],
    );

    let mut sent = python_client("grpc", &a.grpc_url("otlp"), "pay-gateway-gold", 3);
    sent.extend(python_client(
        "http",
        &a.http_url("otlp"),
        "auth-api-silver",
        3,
    ));
    let expected = points(&sent);
    let exemplars = sent
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| p.exemplars.len())
                .sum::<usize>(),
            Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.exemplars.len()).sum(),
            _ => 0,
        })
        .sum::<usize>();
    assert!(exemplars > 0, "the client should have produced exemplars");

    wait_until(Duration::from_secs(30), "every point at the sink", || {
        sink.points() >= expected.len()
    });
    std::thread::sleep(Duration::from_millis(300)); // nothing more (no duplicates) should come
    let got = points(&sink.requests());
    assert_eq!(got.len(), expected.len(), "point count");
    if got != expected {
        let missing = expected
            .iter()
            .find(|p| !got.contains(p))
            .map(|p| ResourceMetrics::decode(p.as_slice()).unwrap());
        let extra = got
            .iter()
            .find(|p| !expected.contains(p))
            .map(|p| ResourceMetrics::decode(p.as_slice()).unwrap());
        panic!(
            "the points at the sink differ from what the SDK exported\nmissing: {missing:#?}\nunexpected: {extra:#?}"
        );
    }

    let n = expected.len() as f64;
    assert_eq!(
        a.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "otlp")]
        ),
        n
    );
    assert_eq!(
        a.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", "otlp_http")]
        ),
        n
    );
    assert_eq!(
        b.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "otlp/from_a")]
        ),
        n
    );
    assert_eq!(
        b.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", "otlp/sink")]
        ),
        n
    );
    for s in [&a, &b] {
        assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
        assert_eq!(s.metric("sluice_receiver_refused_points_total", &[]), 0.0);
    }
}
