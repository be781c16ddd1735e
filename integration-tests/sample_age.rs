//! An exporter's `sample_age_limit` through the real binary: while the backend is down, data waits
//! in the exporter's queue and ages; what is older than the limit when it is (re)sent is dropped
//! and counted as `too_old`, never delivered; data sent later, younger than the limit, arrives.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Behaviour, GrpcClient, OtlpSink, Sluice, numbered_request, numbers, wait_until};

/// The exporter's `sample_age_limit`.
const LIMIT: Duration = Duration::from_secs(10);

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// `numbered_request(first, n)` with every point stamped `at` (since the epoch).
fn stamped(first: u64, n: u64, at: Duration) -> ExportMetricsServiceRequest {
    let mut req = numbered_request(first, n);
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                if let Some(sluice_core::proto::otlp::metrics::v1::metric::Data::Gauge(g)) =
                    &mut m.data
                {
                    for p in &mut g.data_points {
                        p.time_unix_nano = at.as_nanos() as u64;
                    }
                }
            }
        }
    }
    req
}

#[test]
fn data_older_than_the_limit_when_the_backend_returns_is_dropped_and_counted() {
    let down = Arc::new(AtomicBool::new(true));
    let sink = OtlpSink::start(Behaviour::DownWhile(down.clone()));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
exporters:
  otlp:
    endpoint: "{}"
    compression: none
    timeout: 5s
    sample_age_limit: {}s
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        sink.addr,
        LIMIT.as_secs()
    );
    let s = Sluice::start(&yaml, &["otlp/grpc", "telemetry"]);
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    let too_old = || {
        s.metric(
            "sluice_exporter_dropped_points_total",
            &[("exporter", "otlp"), ("reason", "too_old")],
        )
    };

    // Data stamped a little younger than the limit: taken, then retried while the backend is down.
    let early = now() - LIMIT + Duration::from_secs(4);
    client.export(stamped(0, 100, early)).expect("accepted");
    wait_until(
        Duration::from_secs(10),
        "the backend refused a call",
        || sink.calls() > 0,
    );
    assert_eq!(too_old(), 0.0, "young enough when first sent");
    // It ages in the queue past the limit: the next attempt drops and counts it.
    wait_until(
        Duration::from_secs(20),
        "the queued points dropped as too old",
        || too_old() == 100.0,
    );
    assert_eq!(
        s.metric("sluice_exporter_queue_points", &[("exporter", "otlp")]),
        0.0
    );

    // Fresh data, then the backend returns: only the fresh data arrives.
    client.export(stamped(1000, 50, now())).expect("accepted");
    down.store(false, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "the fresh points at the sink",
        || sink.points() >= 50,
    );
    assert_eq!(numbers(&sink.requests()), (1000..1050).collect::<Vec<_>>());
    assert_eq!(too_old(), 100.0);
    assert_eq!(
        s.metric("sluice_exporter_sent_points_total", &[("exporter", "otlp")]),
        50.0
    );
}
