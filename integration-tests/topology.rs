//! The topology through the real binary: several receivers feeding one pipeline (fan-in), one
//! pipeline feeding several exporters (fan-out), two pipelines sharing an exporter, and an exporter
//! whose next hop is down not holding up the others.

mod support;

use prost::Message;
use std::time::Duration;
use support::{
    Behaviour, GrpcClient, OtlpSink, Sluice, closed_port, numbered_request, numbers, wait_until,
};

fn post_protobuf(url: &str, body: Vec<u8>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        support::http_client()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn fan_in_fan_out_shared_exporter_and_a_dead_exporter_that_drops_oldest() {
    let one = OtlpSink::start(Behaviour::Accept);
    let two = OtlpSink::start(Behaviour::Accept);
    let dead = closed_port();
    let s = Sluice::start(
        &format!(
            r#"
receivers:
  otlp/a: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
  otlp/b: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }} }}
  otlp/c: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
processors:
  batch: {{ send_batch_size: 100, send_batch_max_size: 100, timeout: 20ms }}
exporters:
  otlp/one: {{ endpoint: "{one}" }}
  otlp/two: {{ endpoint: "{two}" }}
  otlp/dead:
    endpoint: "{dead}"
    sending_queue: {{ queue_size: 100, full_policy: drop_oldest }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 50ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics:
      receivers: [otlp/a, otlp/b]
      processors: [batch]
      exporters: [otlp/one, otlp/dead]
    metrics/second:
      receivers: [otlp/c]
      exporters: [otlp/one, otlp/two]
"#,
            one = one.addr,
            two = two.addr
        ),
        &["otlp/a/grpc", "otlp/b/http", "otlp/c/grpc", "telemetry"],
    );
    let a = GrpcClient::connect(&s.grpc_url("otlp/a"));
    let c = GrpcClient::connect(&s.grpc_url("otlp/c"));
    for i in 0..10 {
        a.export(numbered_request(i * 100, 100))
            .expect("a accepted");
        assert_eq!(
            post_protobuf(
                &s.http_url("otlp/b"),
                numbered_request(1000 + i * 100, 100).encode_to_vec()
            ),
            200
        );
        c.export(numbered_request(2000 + i * 10, 10))
            .expect("c accepted");
    }
    // otlp/one gets both pipelines: a and b through the first, c through the second.
    wait_until(Duration::from_secs(20), "3000 points at sink one", || {
        one.points() >= 2100
    });
    let mut want: Vec<u64> = (0..2000).collect();
    want.extend(2000..2100);
    assert_eq!(numbers(&one.requests()), want);
    // otlp/two gets only the second pipeline.
    wait_until(Duration::from_secs(20), "100 points at sink two", || {
        two.points() >= 100
    });
    assert_eq!(numbers(&two.requests()), (2000..2100).collect::<Vec<_>>());
    // The dead exporter dropped its oldest data instead of stalling the pipeline, and counted it.
    // Every point the pipeline gave it is either still held (queued, or being retried by one of its
    // senders) or counted as dropped.
    let dropped = || {
        s.metric(
            "sluice_exporter_dropped_points_total",
            &[("exporter", "otlp/dead"), ("reason", "queue_full")],
        )
    };
    let held = || s.metric("sluice_exporter_queue_points", &[("exporter", "otlp/dead")]);
    wait_until(Duration::from_secs(10), "drops counted", || {
        dropped() + held() == 2000.0 && held() <= 100.0
    });
    assert!(dropped() >= 1900.0, "dropped {} held {}", dropped(), held());
    assert_eq!(s.metric("sluice_receiver_refused_points_total", &[]), 0.0);
}

/// With the default `block` policy, a dead exporter's full queue makes its pipeline push back:
/// clients are refused with a retryable status rather than data silently piling up or being lost.
#[test]
fn a_dead_exporter_with_the_block_policy_pushes_back_once_its_queue_is_full() {
    let one = OtlpSink::start(Behaviour::Accept);
    let s = Sluice::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
exporters:
  otlp/one: {{ endpoint: "{}" }}
  otlp/dead: {{ endpoint: "{}", sending_queue: {{ queue_size: 1000 }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [otlp/one, otlp/dead] }}
"#,
            one.addr,
            closed_port()
        ),
        &["otlp/grpc", "telemetry"],
    );
    let client = GrpcClient::connect(&s.grpc_url("otlp"));
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..30 {
        match client.export(numbered_request(i * 100, 100)) {
            Ok(_) => accepted += 100,
            Err(st) => {
                assert_eq!(st.code(), tonic::Code::Unavailable);
                assert!(st.message().contains("otlp/dead"), "{}", st.message());
                refused += 1;
            }
        }
    }
    assert_eq!(
        accepted, 1000,
        "the dead exporter's queue holds 1000 points"
    );
    assert_eq!(refused, 20);
    // What was accepted reached the healthy exporter; nothing refused reached it (no duplicates
    // when clients retry).
    wait_until(Duration::from_secs(10), "1000 points at sink one", || {
        one.points() >= 1000
    });
    assert_eq!(numbers(&one.requests()), (0..1000).collect::<Vec<_>>());
}
