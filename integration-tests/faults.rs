//! Fault tests: the next hop fails for a while, fails for good, or is down while a client floods;
//! Sluice is stopped with data still pending. Each states what must hold.

mod support;

use std::time::{Duration, Instant};
use support::{
    Behaviour, GrpcClient, OtlpSink, Sluice, closed_port, numbered_request, numbers, wait_until,
};

fn forward_config(next_hop: std::net::SocketAddr, extra_exporter: &str, batch: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  batch: {batch}
exporters:
  otlp:
    endpoint: "{next_hop}"
    timeout: 2s
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
    {extra_exporter}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 5s
  pipelines:
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [otlp] }}
"#
    )
}

const LISTENERS: &[&str] = &["otlp/grpc", "otlp/http", "telemetry"];

/// The next hop answers UNAVAILABLE to its first calls, then recovers: every point arrives exactly
/// once, and the retries are counted.
#[test]
fn next_hop_unavailable_for_a_while_then_recovers_loses_nothing() {
    let sink = OtlpSink::start(Behaviour::FailFirst {
        n: 6,
        code: tonic::Code::Unavailable,
    });
    let s = Sluice::start(
        &forward_config(sink.addr, "", "{ timeout: 20ms }"),
        LISTENERS,
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    for r in 0..20 {
        client
            .export(numbered_request(r * 50, 50))
            .expect("accepted");
    }
    wait_until(
        Duration::from_secs(20),
        "all 1000 points at the sink",
        || sink.points() >= 1000,
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(numbers(&sink.requests()), (0..1000).collect::<Vec<_>>());
    assert!(s.metric("sluice_exporter_retries_total", &[("exporter", "otlp")]) >= 6.0);
    assert!(
        s.metric(
            "sluice_exporter_failed_points_total",
            &[("exporter", "otlp")]
        ) > 0.0
    );
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
    assert_eq!(
        s.metric("sluice_exporter_sent_points_total", &[("exporter", "otlp")]),
        1000.0
    );
}

/// A permanent error (INVALID_ARGUMENT) is not retried: the batch is dropped and counted.
#[test]
fn next_hop_permanent_error_is_dropped_and_counted_not_retried() {
    let sink = OtlpSink::start(Behaviour::AlwaysFail(tonic::Code::InvalidArgument));
    let s = Sluice::start(
        &forward_config(sink.addr, "", "{ timeout: 20ms }"),
        LISTENERS,
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    for r in 0..10 {
        client
            .export(numbered_request(r * 10, 10))
            .expect("accepted");
    }
    wait_until(Duration::from_secs(10), "100 points dropped", || {
        s.metric(
            "sluice_exporter_dropped_points_total",
            &[("exporter", "otlp"), ("reason", "permanent_error")],
        ) >= 100.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.metric("sluice_exporter_retries_total", &[]), 0.0);
    assert_eq!(
        s.metric(
            "sluice_exporter_failed_points_total",
            &[("exporter", "otlp")]
        ),
        100.0
    );
    assert!(
        sink.calls() <= 10,
        "each batch is tried once, got {} calls",
        sink.calls()
    );
    assert!(
        s.log_text().contains("InvalidArgument"),
        "the failure is logged"
    );
}

/// The next hop is down and a client floods: the receiver pushes back with retryable statuses
/// (UNAVAILABLE with RetryInfo; HTTP 503 with Retry-After) once the queues are full, memory stays
/// bounded, and Sluice keeps answering.
#[test]
fn flood_while_next_hop_is_down_is_pushed_back_and_memory_stays_bounded() {
    let down = closed_port();
    let s = Sluice::start(
        &forward_config(
            down,
            "sending_queue: { queue_size: 5000 }",
            "{ send_batch_size: 1000, timeout: 20ms, max_pending_points: 5000 }",
        ),
        LISTENERS,
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    let rss_before = s.rss_kib();
    let (mut ok, mut refused) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in 0..400u64 {
        match client.export(numbered_request(r * 1000, 1000)) {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(status.message().contains("full"), "{}", status.message());
                use tonic_types::StatusExt;
                let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
                assert!(retry.is_some(), "RetryInfo is attached");
                refused += 1;
            }
        }
        assert!(Instant::now() < deadline);
    }
    assert!(
        refused > 300,
        "most of the flood is refused (ok {ok}, refused {refused})"
    );
    // Accepted points are bounded by the queue and the batch processor's pending limit.
    let accepted = s.metric("sluice_receiver_accepted_points_total", &[]);
    assert!(accepted <= 12_000.0, "accepted {accepted}");
    // Each refusal is counted once: as a request refused before its message was decoded (the
    // pipeline had no room at all), or as its 1000 points (room for some, not for all of them).
    let refused_points = s.metric(
        "sluice_receiver_refused_points_total",
        &[("reason", "queue_full")],
    );
    let refused_unread = s.metric(
        "sluice_receiver_refused_requests_total",
        &[("reason", "queue_full")],
    );
    assert!(refused_unread > 0.0, "refused before decoding");
    assert_eq!(refused_points / 1000.0 + refused_unread, refused as f64);
    let rss_after = s.rss_kib();
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // OTLP/HTTP answers 503 with Retry-After too.
    let body = prost::Message::encode_to_vec(&numbered_request(0, 1000));
    let resp = reqwest::blocking_post(&s.http_url("otlp"), body);
    assert_eq!(resp.0, 503);
    assert!(resp.1.is_some(), "Retry-After is set");
    assert_eq!(
        support::http_get(&format!("http://{}/healthz", s.addr("telemetry"))),
        "ok\n"
    );
}

/// SIGTERM with points pending in the batch processor and the queue: they are delivered before the
/// process exits, and it exits 0.
#[test]
fn sigterm_flushes_pending_points_and_exits_zero() {
    let sink = OtlpSink::start(Behaviour::Accept);
    let s = Sluice::start(
        &forward_config(sink.addr, "", "{ send_batch_size: 100000, timeout: 60s }"),
        LISTENERS,
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    for r in 0..5 {
        client.export(numbered_request(r * 100, 100)).unwrap();
    }
    assert_eq!(sink.points(), 0, "the batch processor holds the points");
    let status = s.stop("TERM");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(numbers(&sink.requests()), (0..500).collect::<Vec<_>>());
}

/// SIGINT while the next hop is down: the shutdown is bounded by `shutdown_timeout` and the
/// process still exits 0; what could not be delivered is counted (checked through the log).
#[test]
fn sigint_with_next_hop_down_exits_zero_within_the_deadline() {
    let s = Sluice::start(
        &forward_config(closed_port(), "", "{ timeout: 20ms }"),
        LISTENERS,
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    client.export(numbered_request(0, 10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let status = s.stop("INT");
    assert!(status.success());
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
}

mod reqwest {
    /// A blocking POST of an OTLP protobuf body; returns the status and Retry-After header.
    pub fn blocking_post(url: &str, body: Vec<u8>) -> (u16, Option<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = super::support::http_client()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        })
    }
}
