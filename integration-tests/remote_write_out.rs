//! The `prometheus_remote_write` exporter end to end: OTLP in, remote_write out, to real backends
//! (Prometheus 2.42 and VictoriaMetrics from Debian) and to an in-process receiver that checks the
//! remote_write sender rules of the Prometheus compliance suite: exact headers, snappy block format,
//! sorted unique non-empty labels with `__name__`, millisecond timestamps, StaleNaN bit-exact,
//! histograms and summaries, retries on 5xx and 429 (honouring Retry-After), no retry on other 4xx,
//! per-series ordering under random delays, and fallback from v2 to v1 on 415.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::*;
use sluice_core::proto::otlp::resource::v1::Resource;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::peers::{Peer, RwBehaviour, RwSink};
use support::{GrpcClient, Sluice, wait_until};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

const T0: u64 = 1_790_000_000_000_000_000; // ns

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("service.instance.id", "host-1:8080"),
            kv("deployment.environment", "test"),
        ],
        ..Default::default()
    })
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn number(attrs: Vec<KeyValue>, t: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: T0 - 60_000_000_000,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn counter(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: format!("{name} help"),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn histogram(name: &str, t: u64) -> Metric {
    Metric {
        name: name.into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("route", "/pay")],
                start_time_unix_nano: T0 - 60_000_000_000,
                time_unix_nano: t,
                count: 10,
                sum: Some(7.5),
                bucket_counts: vec![2, 3, 5],
                explicit_bounds: vec![0.5, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn exporter_config(url: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
exporters:
  prometheus_remote_write:
    endpoint: "{url}"
    queue_config: {{ batch_send_deadline: 50ms, min_backoff: 20ms, max_backoff: 200ms {extra} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 5s
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write] }}
"#
    )
}

fn start(url: &str, extra: &str) -> (Sluice, GrpcClient) {
    let s = Sluice::start(&exporter_config(url, extra), &["otlp/grpc", "telemetry"]);
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    (s, c)
}

/// The labels of a series as a map, asserting they are sorted, unique and non-empty.
fn labels(t: &sluice_core::proto::prometheus_v1::TimeSeries) -> HashMap<String, String> {
    let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "labels sorted and unique");
    for l in &t.labels {
        assert!(
            !l.name.is_empty() && !l.value.is_empty(),
            "empty label in {}",
            support::peers::series_text(t)
        );
    }
    assert!(names.contains(&"__name__"));
    t.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

#[test]
fn sender_rules_headers_labels_timestamps_staleness_histograms() {
    let sink = RwSink::start(RwBehaviour::Accept);
    let (s, c) = start(&sink.url(), "");
    let mut stale = number(vec![kv("state", "gone")], T0 + 2_000_000_000, 0.0);
    stale.flags = 1; // no recorded value
    stale.value = None;
    c.export(request(vec![
        counter(
            "http.server.requests",
            "{request}",
            vec![number(
                vec![kv("b", "2"), kv("a", "1"), kv("empty", "")],
                T0 + 1_000_000_000,
                5.0,
            )],
        ),
        gauge(
            "queue.depth",
            "",
            vec![
                number(vec![kv("state", "live")], T0 + 1_000_000_000, 3.0),
                stale,
            ],
        ),
        histogram("http.server.request.duration", T0 + 1_500_000_000),
        Metric {
            name: "rpc.latency".into(),
            unit: "s".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0 + 1_000_000_000,
                    count: 3,
                    sum: 6.0,
                    quantile_values: vec![
                        summary_data_point::ValueAtQuantile {
                            quantile: 0.5,
                            value: 2.0,
                        },
                        summary_data_point::ValueAtQuantile {
                            quantile: 0.99,
                            value: 3.0,
                        },
                    ],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ]))
    .unwrap();
    // 1 counter, 2 gauge (one stale), 3 buckets + sum + count, 2 quantiles + sum + count,
    // 1 target_info.
    wait_until(Duration::from_secs(10), "samples at the sink", || {
        sink.samples() >= 13
    });
    let reqs = sink.requests();
    for r in &reqs {
        assert_eq!(r.headers["content-encoding"], "snappy");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["x-prometheus-remote-write-version"], "0.1.0");
        assert!(
            r.headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("Sluice/")
        );
        assert!(!r.snappy_framed);
    }
    // name -> (labels, value, timestamp) of every sample
    type Samples = Vec<(HashMap<String, String>, f64, i64)>;
    let mut by_name: HashMap<String, Samples> = HashMap::new();
    for t in reqs.iter().flat_map(|r| &r.v1.timeseries) {
        let l = labels(t);
        for smp in &t.samples {
            by_name.entry(l["__name__"].clone()).or_default().push((
                l.clone(),
                smp.value,
                smp.timestamp,
            ));
        }
    }
    let c = &by_name["http_server_requests_total"][0];
    assert_eq!((c.1, c.2), (5.0, 1_790_000_001_000));
    assert_eq!(c.0["job"], "checkout");
    assert_eq!(c.0["instance"], "host-1:8080");
    assert_eq!((c.0["a"].as_str(), c.0["b"].as_str()), ("1", "2"));
    assert!(!c.0.contains_key("empty"));
    let q = &by_name["queue_depth"];
    let live = q.iter().find(|x| x.0["state"] == "live").unwrap();
    assert_eq!(live.1, 3.0);
    let gone = q.iter().find(|x| x.0["state"] == "gone").unwrap();
    assert_eq!(
        gone.1.to_bits(),
        0x7ff0_0000_0000_0002,
        "StaleNaN bit-exact"
    );
    let buckets: HashMap<String, f64> = by_name["http_server_request_duration_seconds_bucket"]
        .iter()
        .map(|x| (x.0["le"].clone(), x.1))
        .collect();
    assert_eq!(
        buckets,
        HashMap::from([
            ("0.5".into(), 2.0),
            ("1".into(), 5.0),
            ("+Inf".into(), 10.0)
        ])
    );
    assert_eq!(
        by_name["http_server_request_duration_seconds_sum"][0].1,
        7.5
    );
    assert_eq!(
        by_name["http_server_request_duration_seconds_count"][0].1,
        10.0
    );
    let quantiles: HashMap<String, f64> = by_name["rpc_latency_seconds"]
        .iter()
        .map(|x| (x.0["quantile"].clone(), x.1))
        .collect();
    assert_eq!(
        quantiles,
        HashMap::from([("0.5".into(), 2.0), ("0.99".into(), 3.0)])
    );
    assert_eq!(by_name["rpc_latency_seconds_sum"][0].1, 6.0);
    assert_eq!(by_name["rpc_latency_seconds_count"][0].1, 3.0);
    assert!(
        by_name.contains_key("target_info"),
        "resource attributes go to target_info"
    );
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}

#[test]
fn retries_on_500_and_delivers_once() {
    let sink = RwSink::start(RwBehaviour::FailFirst {
        n: 3,
        status: 500,
        retry_after: None,
    });
    let (s, c) = start(&sink.url(), "");
    c.export(request(vec![gauge("g", "", vec![number(vec![], T0, 1.0)])]))
        .unwrap();
    wait_until(Duration::from_secs(10), "delivered after retries", || {
        sink.samples() >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.state.lock().unwrap().calls, 4);
    assert!(s.metric("sluice_exporter_retries_total", &[]) >= 3.0);
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}

#[test]
fn does_not_retry_400_and_counts_the_drop() {
    let sink = RwSink::start(RwBehaviour::FailFirst {
        n: 1,
        status: 400,
        retry_after: None,
    });
    let (s, c) = start(&sink.url(), "");
    c.export(request(vec![gauge("g", "", vec![number(vec![], T0, 1.0)])]))
        .unwrap();
    wait_until(Duration::from_secs(10), "drop counted", || {
        s.metric(
            "sluice_exporter_dropped_points_total",
            &[("reason", "permanent_error")],
        ) >= 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.state.lock().unwrap().calls,
        1,
        "a 400 is never retried"
    );
    assert!(s.log_text().contains("told to fail"), "the body is logged");
}

#[test]
fn honours_retry_after_on_429() {
    let sink = RwSink::start(RwBehaviour::FailFirst {
        n: 1,
        status: 429,
        retry_after: Some(2),
    });
    let (_s, c) = start(&sink.url(), "");
    c.export(request(vec![gauge("g", "", vec![number(vec![], T0, 1.0)])]))
        .unwrap();
    wait_until(Duration::from_secs(10), "delivered after 429", || {
        sink.samples() >= 1
    });
    let times = sink.state.lock().unwrap().call_times.clone();
    assert!(
        times[1] - times[0] >= Duration::from_millis(1900),
        "waited {:?}",
        times[1] - times[0]
    );
}

#[test]
fn v2_falls_back_to_v1_on_415_and_stays_there() {
    let sink = RwSink::start(RwBehaviour::RejectV2);
    let s = Sluice::start(
        &exporter_config(&sink.url(), "")
            .replace("    queue_config", "    protocol: v2\n    queue_config"),
        &["otlp/grpc", "telemetry"],
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    for i in 0..3 {
        c.export(request(vec![gauge(
            "g",
            "",
            vec![number(vec![], T0 + i * 1_000_000_000, i as f64)],
        )]))
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(Duration::from_secs(10), "3 samples", || sink.samples() >= 3);
    let calls = sink.state.lock().unwrap().calls;
    assert_eq!(calls, 4, "one 415, then v1 only");
    assert!(
        sink.requests()
            .iter()
            .all(|r| r.headers["x-prometheus-remote-write-version"] == "0.1.0")
    );
}

#[test]
fn v2_requests_have_a_valid_symbols_table() {
    let sink = RwSink::start(RwBehaviour::Accept);
    let s = Sluice::start(
        &exporter_config(&sink.url(), "")
            .replace("    queue_config", "    protocol: v2\n    queue_config"),
        &["otlp/grpc", "telemetry"],
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    c.export(request(vec![counter(
        "requests",
        "",
        vec![number(vec![kv("zzz", "1"), kv("aaa", "2")], T0, 4.0)],
    )]))
    .unwrap();
    wait_until(Duration::from_secs(10), "samples", || sink.samples() >= 1);
    let r = &sink.requests()[0];
    assert_eq!(
        r.headers["content-type"],
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(r.headers["x-prometheus-remote-write-version"], "2.0.0");
    let v2 = r.v2.as_ref().unwrap();
    assert_eq!(v2.symbols[0], "");
    let mut uniq = v2.symbols.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), v2.symbols.len(), "every symbol once");
    for t in &v2.timeseries {
        assert_eq!(t.labels_refs.len() % 2, 0);
        assert!(
            t.labels_refs
                .iter()
                .all(|&i| (i as usize) < v2.symbols.len())
        );
        let names: Vec<&str> = t
            .labels_refs
            .chunks(2)
            .map(|p| v2.symbols[p[0] as usize].as_str())
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
        assert!(t.metadata.is_some());
    }
    let counter = v2
        .timeseries
        .iter()
        .find(|t| {
            t.labels_refs
                .chunks(2)
                .any(|p| v2.symbols[p[1] as usize] == "requests_total")
        })
        .unwrap();
    assert_eq!(
        counter.samples[0].start_timestamp,
        ((T0 - 60_000_000_000) / 1_000_000) as i64
    );
    assert_eq!(counter.metadata.unwrap().r#type, 1);
}

/// The ordering case of the compliance suite: the receiver commits each request after a random
/// delay; the samples of every series must still arrive in strictly increasing timestamp order.
#[test]
fn per_series_order_is_kept_under_random_receiver_delays() {
    let sink = RwSink::start(RwBehaviour::RandomDelay { max_ms: 150 });
    let (s, c) = start(
        &sink.url(),
        ", min_shards: 4, max_shards: 4, max_samples_per_send: 100",
    );
    for round in 0..5u64 {
        let points = (0..200)
            .map(|i| {
                number(
                    vec![kv("i", &i.to_string())],
                    T0 + round * 1_000_000_000,
                    round as f64,
                )
            })
            .collect();
        c.export(request(vec![gauge("test", "", points)])).unwrap();
    }
    wait_until(Duration::from_secs(30), "1000 samples", || {
        sink.samples() >= 1000
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut n = 0;
    for t in sink.requests().iter().flat_map(|r| r.v1.timeseries.clone()) {
        if !t
            .labels
            .iter()
            .any(|l| l.name == "__name__" && l.value == "test")
        {
            continue;
        }
        let key = support::peers::series_text(&t);
        for smp in &t.samples {
            if let Some(prev) = last.insert(key.clone(), smp.timestamp) {
                assert!(
                    smp.timestamp > prev,
                    "{key}: {} after {prev}",
                    smp.timestamp
                );
            }
            n += 1;
        }
    }
    assert_eq!(n, 1000, "every sample once");
    assert_eq!(s.metric("sluice_exporter_shards", &[]), 4.0);
}

/// The backend answers 503 for a while: everything arrives afterwards, in order, once.
#[test]
fn backend_down_for_a_while_loses_nothing_and_keeps_order() {
    let sink = RwSink::start(RwBehaviour::FailFirst {
        n: 15,
        status: 503,
        retry_after: None,
    });
    let (s, c) = start(&sink.url(), "");
    for round in 0..10u64 {
        let points = (0..20)
            .map(|i| {
                number(
                    vec![kv("i", &i.to_string())],
                    T0 + round * 1_000_000_000,
                    round as f64,
                )
            })
            .collect();
        c.export(request(vec![gauge("test", "", points)])).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_until(Duration::from_secs(30), "200 samples", || {
        sink.samples() >= 200
    });
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for t in sink.requests().iter().flat_map(|r| r.v1.timeseries.clone()) {
        if t.labels
            .iter()
            .any(|l| l.name == "__name__" && l.value == "test")
        {
            seen.entry(support::peers::series_text(&t))
                .or_default()
                .extend(t.samples.iter().map(|x| x.timestamp));
        }
    }
    assert_eq!(seen.len(), 20);
    for ts in seen.values() {
        assert_eq!(ts.len(), 10);
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
    }
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}

/// Delta sums made cumulative while the backend refuses for a while: the batches wait in the
/// exporter's queue (its shards are full) and are sent later, yet each is accumulated once, in the
/// order it arrived: every series counts 1, 2, ... 10. Points the translation drops are counted
/// once.
#[test]
fn delta_sums_are_accumulated_once_while_batches_wait_for_the_shards() {
    let sink = RwSink::start(RwBehaviour::FailFirst {
        n: 10,
        status: 503,
        retry_after: None,
    });
    let config = exporter_config(
        &sink.url(),
        ", max_shards: 1, min_shards: 1, capacity: 20, max_samples_per_send: 20",
    )
    .replace(
        "    queue_config:",
        "    delta_temporality: to_cumulative\n    queue_config:",
    );
    let s = Sluice::start(&config, &["otlp/grpc", "telemetry"]);
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    for round in 0..10u64 {
        let t = T0 + (round + 1) * 1_000_000_000;
        let points = (0..20)
            .map(|i| NumberDataPoint {
                start_time_unix_nano: t - 1_000_000_000,
                ..number(vec![kv("i", &i.to_string())], t, 1.0)
            })
            .collect();
        let mut m = counter("deltas", "", points);
        if let Some(metric::Data::Sum(sum)) = &mut m.data {
            sum.aggregation_temporality = AggregationTemporality::Delta as i32;
        }
        // A name with no character Prometheus allows: dropped in translation, counted once.
        let invalid = gauge("日本", "", vec![number(vec![], t, 1.0)]);
        c.export(request(vec![m, invalid])).unwrap();
    }
    let deltas = || {
        let mut seen: HashMap<String, Vec<f64>> = HashMap::new();
        for t in sink.requests().iter().flat_map(|r| r.v1.timeseries.clone()) {
            if labels(&t)["__name__"].starts_with("deltas") {
                seen.entry(support::peers::series_text(&t))
                    .or_default()
                    .extend(t.samples.iter().map(|x| x.value));
            }
        }
        seen
    };
    wait_until(Duration::from_secs(30), "200 samples of the deltas", || {
        deltas().values().map(Vec::len).sum::<usize>() >= 200
    });
    let seen = deltas();
    assert_eq!(seen.len(), 20, "{:?}", seen.keys());
    assert!(
        s.metric("sluice_exporter_busy_deferrals_total", &[]) > 0.0,
        "batches waited in the queue for the shards"
    );
    let counts: Vec<f64> = (1..=10).map(f64::from).collect();
    for values in seen.values() {
        assert_eq!(values, &counts);
    }
    assert_eq!(
        s.metric(
            "sluice_exporter_dropped_points_total",
            &[("reason", "invalid_name")]
        ),
        10.0
    );
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 10.0);
}

/// A slow backend: the shard count grows to keep up, within max_shards. (Resharding first drains
/// the old shards, to keep per-series order, so the new count shows once the backlog is sent.)
#[test]
fn slow_backend_makes_the_shards_grow() {
    let sink = RwSink::start(RwBehaviour::RandomDelay { max_ms: 200 });
    let (s, c) = start(
        &sink.url(),
        ", max_shards: 8, max_samples_per_send: 50, capacity: 2000, shard_update_interval: 500ms",
    );
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        let points = (0..500)
            .map(|i| {
                number(
                    vec![kv("i", &i.to_string())],
                    T0 + round * 1_000_000_000,
                    1.0,
                )
            })
            .collect();
        let _ = c.export(request(vec![gauge("load", "", points)]));
        round += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = s.rss_kib();
    assert!(rss < 200 * 1024, "RSS {rss} KiB under a slow backend");
    wait_until(Duration::from_secs(60), "more shards", || {
        s.metric("sluice_exporter_shards", &[]) >= 2.0
    });
    let shards = s.metric("sluice_exporter_shards", &[]);
    assert!(shards <= 8.0, "shards {shards}");
    assert!(s.log_text().contains("resharding"));
}

/// Real backends: what OTLP clients send is queryable in Prometheus and VictoriaMetrics, with the
/// translated names and labels, and histogram_quantile works on the buckets.
#[test]
fn otlp_lands_in_prometheus_and_victoriametrics() {
    let prom = Peer::prometheus();
    let vm = Peer::victoria_metrics();
    let s = Sluice::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  prometheus_remote_write/prom: {{ endpoint: "{}", queue_config: {{ batch_send_deadline: 100ms }} }}
  prometheus_remote_write/vm: {{ endpoint: "{}", protocol: v1, queue_config: {{ batch_send_deadline: 100ms }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [prometheus_remote_write/prom, prometheus_remote_write/vm] }}
"#,
            prom.write_url(),
            vm.write_url()
        ),
        &["otlp/grpc", "telemetry"],
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let t = now_ns - 5_000_000_000;
    let mut req = request(vec![
        counter(
            "http.server.requests",
            "{request}",
            vec![number(vec![kv("method", "GET")], t, 42.0)],
        ),
        gauge(
            "process.memory.usage",
            "By",
            vec![number(vec![], t, 1234.0)],
        ),
        histogram("http.server.request.duration", t),
    ]);
    for m in &mut req.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.data_points[0].start_time_unix_nano = t - 60_000_000_000;
        }
        if let Some(metric::Data::Histogram(h)) = &mut m.data {
            h.data_points[0].start_time_unix_nano = t - 60_000_000_000;
        }
    }
    c.export(req).unwrap();
    let at = t as f64 / 1e9 + 1.0;
    for (name, backend) in [("prometheus", &prom), ("victoria-metrics", &vm)] {
        wait_until(
            Duration::from_secs(30),
            &format!("{name} has the counter"),
            || backend.value("http_server_requests_total", at).is_some(),
        );
        assert_eq!(
            backend.value(
                r#"http_server_requests_total{job="checkout",instance="host-1:8080",method="GET"}"#,
                at
            ),
            Some(42.0),
            "{name}"
        );
        assert_eq!(
            backend.value("process_memory_usage_bytes", at),
            Some(1234.0),
            "{name}"
        );
        assert_eq!(
            backend.value(
                r#"http_server_request_duration_seconds_count{route="/pay"}"#,
                at
            ),
            Some(10.0),
            "{name}"
        );
        assert_eq!(
            backend.value(
                r#"http_server_request_duration_seconds_sum{route="/pay"}"#,
                at
            ),
            Some(7.5),
            "{name}"
        );
        // Buckets: le=0.5 -> 2, le=1 -> 5, +Inf -> 10. The median (rank 5) is at the top of the
        // (0.5, 1] bucket: 1.0; the 0.3 quantile (rank 3) is 0.5 + 0.5 * (3-2)/3.
        let q50 = backend.value("histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket))", at).unwrap();
        assert!((q50 - 1.0).abs() < 1e-9, "{name}: {q50}");
        let q30 = backend.value("histogram_quantile(0.3, sum by (le) (http_server_request_duration_seconds_bucket))", at).unwrap();
        assert!((q30 - (0.5 + 0.5 / 3.0)).abs() < 1e-9, "{name}: {q30}");
        assert_eq!(
            backend.value(
                r#"target_info{job="checkout",deployment_environment="test"}"#,
                at
            ),
            Some(1.0),
            "{name}"
        );
    }
}

/// HTTPS: with the private CA configured the samples land; without it the certificate is refused
/// (retried, nothing lands); with `insecure_skip_verify` they land.
#[test]
fn https_endpoint_with_a_private_ca() {
    let (vm, ca) = Peer::victoria_metrics_tls();
    let url = format!("https://{}/api/v1/write", vm.addr);
    let config = |tls: &str| {
        exporter_config(&url, "").replace(
            "    queue_config",
            &format!("    tls: {tls}\n    queue_config"),
        )
    };
    let with_ca = Sluice::start(
        &config(&format!("{{ ca_file: {:?} }}", ca.display().to_string())),
        &["otlp/grpc", "telemetry"],
    );
    GrpcClient::connect(&with_ca.grpc_url("otlp"))
        .export(request(vec![gauge(
            "tls.ok",
            "",
            vec![number(vec![], T0, 1.0)],
        )]))
        .unwrap();
    wait_until(Duration::from_secs(20), "sent over TLS", || {
        with_ca.metric("sluice_exporter_sent_points_total", &[]) >= 1.0
    });

    let no_ca = Sluice::start(&config("{}"), &["otlp/grpc", "telemetry"]);
    GrpcClient::connect(&no_ca.grpc_url("otlp"))
        .export(request(vec![gauge(
            "tls.refused",
            "",
            vec![number(vec![], T0, 1.0)],
        )]))
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "certificate refused and retried",
        || no_ca.metric("sluice_exporter_retries_total", &[]) >= 1.0,
    );
    let text = support::http_get(&format!("http://{}/metrics", no_ca.addr("telemetry")));
    assert_eq!(
        no_ca.metric("sluice_exporter_sent_points_total", &[]),
        0.0,
        "{text}"
    );

    let skip = Sluice::start(
        &config("{ insecure_skip_verify: true }"),
        &["otlp/grpc", "telemetry"],
    );
    GrpcClient::connect(&skip.grpc_url("otlp"))
        .export(request(vec![gauge(
            "tls.skip",
            "",
            vec![number(vec![], T0, 1.0)],
        )]))
        .unwrap();
    wait_until(Duration::from_secs(20), "sent without verification", || {
        skip.metric("sluice_exporter_sent_points_total", &[]) >= 1.0
    });
}

/// Static headers, bearer token and basic auth are sent; the tenant goes into the tenant header and
/// the templated URL (the default tenant for batches without one).
#[test]
fn auth_headers_and_tenant_header_and_templated_url() {
    let sink = RwSink::start(RwBehaviour::Accept);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let yaml = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
exporters:
  prometheus_remote_write/bearer:
    endpoint: "http://{addr}/insert/${{tenant}}/api/v1/write"
    bearer_token_file: {token:?}
    tenant_header: X-Scope-OrgID
    default_tenant: team-a
    headers: {{ X-Custom: yes }}
    queue_config: {{ batch_send_deadline: 50ms }}
  prometheus_remote_write/basic:
    endpoint: "http://{addr}/basic"
    basic_auth: {{ username: user, password: pass }}
    queue_config: {{ batch_send_deadline: 50ms }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write/bearer, prometheus_remote_write/basic] }}
"#,
        addr = sink.addr,
        token = dir.path().join("token").display().to_string(),
    );
    let s = Sluice::start(&yaml, &["otlp/grpc", "telemetry"]);
    GrpcClient::connect(&s.grpc_url("otlp"))
        .export(request(vec![gauge("g", "", vec![number(vec![], T0, 1.0)])]))
        .unwrap();
    wait_until(Duration::from_secs(10), "both exporters sent", || {
        sink.requests().len() >= 2
    });
    let reqs = sink.requests();
    let bearer = reqs
        .iter()
        .find(|r| r.path.starts_with("/insert/"))
        .expect("templated URL");
    assert_eq!(bearer.path, "/insert/team-a/api/v1/write");
    assert_eq!(bearer.headers["authorization"], "Bearer s3cret");
    assert_eq!(bearer.headers["x-scope-orgid"], "team-a");
    assert_eq!(bearer.headers["x-custom"], "yes");
    let basic = reqs.iter().find(|r| r.path == "/basic").unwrap();
    assert_eq!(basic.headers["authorization"], "Basic dXNlcjpwYXNz");
    assert!(basic.headers.get("x-scope-orgid").is_none());
}

/// Reserved headers cannot be overridden: the config is refused with the position.
#[test]
fn reserved_headers_are_refused_in_the_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                exporter_config("http://127.0.0.1:1/w", "")
                    .replace(
                        "    queue_config",
                        "    headers: { Content-Type: text/plain }\n    queue_config",
                    )
                    .as_bytes(),
            )?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":7:14: exporters.prometheus_remote_write: header \"Content-Type\" is set by the protocol"), "{err}");
}
