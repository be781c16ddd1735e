//! The `prometheus` exporter end to end: OTLP in over gRPC, `/metrics` out, scraped by a real
//! Prometheus 2.42 (Debian's) every second. Checks that Prometheus negotiates OpenMetrics, that
//! every sent series is queryable with its value (counter `_total`, gauge, histogram buckets /
//! sum / count and `histogram_quantile`, summary quantiles), that updates and staleness come
//! through, that exemplars are ingested, that Prometheus counts no scrape errors (out of order,
//! duplicate timestamps, sample limit), and that both text formats are well-formed by a strict
//! reading of their grammars.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::*;
use sluice_core::proto::otlp::resource::v1::Resource;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::peers::Peer;
use support::{GrpcClient, Sluice, http_get, wait_until};

const ODD_VALUE: &str = "C:\\dir \"x\"\nnext";
const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.instance.id", "host-1:8080"),
                    kv("deployment.environment", "test"),
                ],
                ..Default::default()
            }),
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
        start_time_unix_nano: t - 60_000_000_000,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn counter(t: u64, v: f64) -> Metric {
    let mut p = number(vec![kv("route", "/pay")], t, v);
    p.exemplars.push(Exemplar {
        time_unix_nano: t - 100_000_000,
        value: Some(exemplar::Value::AsDouble(1.0)),
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        ..Default::default()
    });
    Metric {
        name: "http.server.requests".into(),
        unit: "{request}".into(),
        description: "Requests served.".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![p],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(point: NumberDataPoint) -> Metric {
    Metric {
        name: "queue.depth".into(),
        unit: "By".into(),
        description: "Bytes \"queued\" \\ waiting.\nSecond line.".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point],
        })),
        ..Default::default()
    }
}

fn histogram(t: u64) -> Metric {
    Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        description: "Duration of HTTP server requests.".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("route", "/pay")],
                start_time_unix_nano: t - 60_000_000_000,
                time_unix_nano: t,
                count: 10,
                sum: Some(7.5),
                bucket_counts: vec![2, 3, 5],
                explicit_bounds: vec![0.5, 1.0],
                exemplars: vec![Exemplar {
                    time_unix_nano: t - 100_000_000,
                    value: Some(exemplar::Value::AsDouble(0.75)),
                    trace_id: TRACE_ID.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn summary(t: u64) -> Metric {
    Metric {
        name: "rpc.latency".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                start_time_unix_nano: t - 60_000_000_000,
                time_unix_nano: t,
                count: 4,
                sum: 10.0,
                quantile_values: vec![
                    summary_data_point::ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    },
                    summary_data_point::ValueAtQuantile {
                        quantile: 0.99,
                        value: 4.0,
                    },
                ],
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn all_metrics(t: u64) -> Vec<Metric> {
    vec![
        counter(t, 5.0),
        gauge(number(vec![kv("path", ODD_VALUE)], t, 3.0)),
        histogram(t),
        summary(t),
    ]
}

fn config(extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
exporters:
  prometheus:
    endpoint: "127.0.0.1:0"
    const_labels: {{ origin: sluice }}
    {extra}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus] }}
"#
    )
}

fn start(extra: &str) -> (Sluice, GrpcClient) {
    let s = Sluice::start(
        &config(extra),
        &["otlp/grpc", "prometheus/http", "telemetry"],
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    (s, c)
}

/// A blocking HTTP/1.0 GET with extra headers: (lowercased headers, body).
fn get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (HashMap<String, String>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    assert!(lines.next().unwrap().contains(" 200 "), "{head}");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (headers, body.to_string())
}

/// The value of the one series a query returns, polled until `want` holds (or 20s pass).
fn wait_value(p: &Peer, promql: &str, want: impl Fn(Option<f64>) -> bool) -> Option<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = p.value(promql, now_s());
        if want(v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{promql} is {v:?} after 20s; targets: {}",
            targets(p)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn targets(p: &Peer) -> String {
    http_get(&format!("http://{}/api/v1/targets", p.addr))
}

fn api(p: &Peer, path_and_query: &str) -> serde_json::Value {
    let body = http_get(&format!("http://{}{}", p.addr, path_and_query));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

/// Prometheus' own counters of samples it refused while scraping, and the target's health.
fn assert_no_scrape_errors(p: &Peer) {
    let own = http_get(&format!("http://{}/metrics", p.addr));
    for name in [
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        "prometheus_target_scrapes_exceeded_sample_limit_total",
        "prometheus_target_scrapes_sample_out_of_bounds_total",
    ] {
        assert!(
            own.lines().any(|l| l.starts_with(name)),
            "{name} is not among Prometheus' metrics"
        );
        assert_eq!(
            sluice_core::telemetry::parse_exposition_value(&own, name, &[]),
            0.0,
            "{name}"
        );
    }
    let t = api(p, "/api/v1/targets");
    let target = &t["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");
}

/// Scrapes done by Prometheus so far (from its own metrics).
fn scrapes(p: &Peer) -> f64 {
    let own = http_get(&format!("http://{}/metrics", p.addr));
    sluice_core::telemetry::parse_exposition_value(
        &own,
        "prometheus_target_interval_length_seconds_count",
        &[("interval", "1s")],
    )
}

/// Every sent series, by its value in Prometheus; identical whichever format was scraped.
fn assert_all_series(p: &Peer) {
    let v = |q: &str| wait_value(p, q, |v| v.is_some()).unwrap();
    assert_eq!(
        v(
            r#"http_server_requests_total{route="/pay",exported_job="checkout",exported_instance="host-1:8080",origin="sluice"}"#
        ),
        5.0
    );
    assert_eq!(v(r#"queue_depth_bytes"#), 3.0);
    assert_eq!(
        v(r#"http_server_request_duration_seconds_bucket{le="0.5"}"#),
        2.0
    );
    assert_eq!(
        v(r#"http_server_request_duration_seconds_bucket{le="1"}"#),
        5.0
    );
    assert_eq!(
        v(r#"http_server_request_duration_seconds_bucket{le="+Inf"}"#),
        10.0
    );
    assert_eq!(v(r#"http_server_request_duration_seconds_sum"#), 7.5);
    assert_eq!(v(r#"http_server_request_duration_seconds_count"#), 10.0);
    // rank 2.5 falls in (0.5, 1] holding 3 observations, 0.5 of them below the rank.
    let q = v(r#"histogram_quantile(0.25, http_server_request_duration_seconds_bucket)"#);
    assert!(
        (q - (0.5 + 0.5 * 0.5 / 3.0)).abs() < 1e-9,
        "histogram_quantile gave {q}"
    );
    assert_eq!(v(r#"rpc_latency_milliseconds{quantile="0.5"}"#), 2.0);
    assert_eq!(v(r#"rpc_latency_milliseconds{quantile="0.99"}"#), 4.0);
    assert_eq!(v(r#"rpc_latency_milliseconds_count"#), 4.0);
    assert_eq!(v(r#"target_info{deployment_environment="test"}"#), 1.0);
    // The escaped label value comes back as it was sent.
    let r = p.query("queue_depth_bytes", now_s());
    assert_eq!(r[0]["metric"]["path"], ODD_VALUE, "{:?}", r[0]);
    assert_eq!(r[0]["metric"]["otel_scope_name"], "shop");
    assert_eq!(
        r[0]["metric"]["job"], "sluice",
        "the scrape target's job; ours is exported_job"
    );
}

// Prometheus 2.42 negotiates OpenMetrics: everything arrives, exemplars included, updates and
// staleness come through, and no scrape error is counted.
#[test]
fn prometheus_scrapes_openmetrics() {
    let (s, c) = start("");
    c.export(request(all_metrics(now_ns()))).unwrap();
    let target = s.addr("prometheus/http");
    wait_until(Duration::from_secs(10), "series exposed", || {
        get(target, "/metrics", &[])
            .1
            .contains("http_server_requests_total")
    });
    let p = Peer::prometheus_scraping(&target.to_string(), "1s");
    assert_eq!(
        wait_value(&p, r#"up{job="sluice"}"#, |v| v == Some(1.0)),
        Some(1.0)
    );
    assert_all_series(&p);
    assert!(
        wait_value(&p, r#"scrape_samples_scraped{job="sluice"}"#, |v| v
            .is_some_and(|v| v > 0.0))
        .unwrap()
            >= 12.0
    );

    // OpenMetrics was negotiated: the counter's metadata is under its family name without
    // `_total`, and units arrived (the text format has neither).
    let md = api(&p, "/api/v1/metadata");
    assert_eq!(md["http_server_requests"][0]["type"], "counter", "{md}");
    assert_eq!(
        md["http_server_requests"][0]["help"], "Requests served.",
        "{md}"
    );
    assert_eq!(
        md["http_server_request_duration_seconds"][0]["unit"], "seconds",
        "{md}"
    );
    assert_eq!(
        md["queue_depth_bytes"][0]["help"], "Bytes \"queued\" \\ waiting.\nSecond line.",
        "{md}"
    );

    // Exemplars were parsed and stored.
    let start = now_s() - 300.0;
    let ex = api(
        &p,
        &format!(
            "/api/v1/query_exemplars?query=http_server_requests_total&start={start}&end={}",
            now_s() + 60.0
        ),
    );
    let trace: String = TRACE_ID.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        ex[0]["exemplars"][0]["labels"]["trace_id"],
        trace.as_str(),
        "{ex}"
    );

    // A newer point updates the counter; a point with "no recorded value" makes the gauge stale.
    let t = now_ns();
    let mut stale = number(vec![kv("path", ODD_VALUE)], t, 0.0);
    stale.flags = 1;
    stale.value = None;
    c.export(request(vec![counter(t, 8.0), gauge(stale)]))
        .unwrap();
    assert_eq!(
        wait_value(&p, r#"http_server_requests_total{route="/pay"}"#, |v| v
            == Some(8.0)),
        Some(8.0)
    );
    assert_eq!(wait_value(&p, "queue_depth_bytes", |v| v.is_none()), None);

    // Several scrapes of unchanged values: no duplicates or out-of-order samples.
    let before = scrapes(&p);
    wait_until(Duration::from_secs(20), "3 more scrapes", || {
        scrapes(&p) >= before + 3.0
    });
    assert_no_scrape_errors(&p);
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
    assert!(
        s.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", "prometheus")]
        ) >= 6.0
    );

    // The endpoint does not hold up shutdown, though Prometheus keeps its connection open.
    let t = std::time::Instant::now();
    assert!(s.stop("TERM").success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}

// With `enable_open_metrics: false` Prometheus gets the text format 0.0.4 and ingests the same
// series without errors.
#[test]
fn prometheus_scrapes_text_format() {
    let (s, c) = start("enable_open_metrics: false");
    c.export(request(all_metrics(now_ns()))).unwrap();
    let target = s.addr("prometheus/http");
    wait_until(Duration::from_secs(10), "series exposed", || {
        get(target, "/metrics", &[])
            .1
            .contains("http_server_requests_total")
    });
    let p = Peer::prometheus_scraping(&target.to_string(), "1s");
    assert_eq!(
        wait_value(&p, r#"up{job="sluice"}"#, |v| v == Some(1.0)),
        Some(1.0)
    );
    assert_all_series(&p);
    let md = api(&p, "/api/v1/metadata");
    assert_eq!(
        md["http_server_requests_total"][0]["type"], "counter",
        "text 0.0.4 names the family with _total: {md}"
    );
    assert_eq!(
        md["http_server_request_duration_seconds"][0]["unit"], "",
        "{md}"
    );
    let before = scrapes(&p);
    wait_until(Duration::from_secs(20), "3 more scrapes", || {
        scrapes(&p) >= before + 3.0
    });
    assert_no_scrape_errors(&p);
}

// Both formats, fetched directly, are well-formed by a strict reading of their grammars, carry
// the same samples, and are chosen by `Accept`.
#[test]
fn both_formats_are_well_formed() {
    let (s, c) = start("");
    c.export(request(all_metrics(now_ns()))).unwrap();
    let target = s.addr("prometheus/http");
    wait_until(Duration::from_secs(10), "series exposed", || {
        get(target, "/metrics", &[])
            .1
            .contains("rpc_latency_milliseconds")
    });

    let (h, text) = get(target, "/metrics", &[("Accept", "text/plain")]);
    assert_eq!(
        h["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text_samples = check_exposition(&text, false);

    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (h, om) = get(target, "/metrics", &[("Accept", accept)]);
    assert_eq!(
        h["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om_samples = check_exposition(&om, true);
    assert_eq!(text_samples, om_samples, "the same samples in both formats");
    assert_eq!(
        text_samples.len(),
        12,
        "1 + 1 + 5 histogram + 4 summary + target_info: {text}"
    );
    assert!(
        om.contains(
            r#"# {span_id="00f067aa0ba902b7",trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 1 "#
        ),
        "{om}"
    );
    assert!(text.contains(r#"queue_depth_bytes{instance="host-1:8080",job="checkout",origin="sluice",otel_scope_name="shop",otel_scope_version="1.0",path="C:\\dir \"x\"\nnext"} 3"#), "{text}");
    assert!(
        text.contains("# HELP queue_depth_bytes Bytes \"queued\" \\\\ waiting.\\nSecond line.\n"),
        "{text}"
    );
    assert!(
        om.contains("# HELP queue_depth_bytes Bytes \\\"queued\\\" \\\\ waiting.\\nSecond line.\n"),
        "{om}"
    );
}

fn validate(exporter: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    let yaml = format!(
        "receivers:\n  otlp: {{ protocols: {{ grpc: {{ endpoint: \"127.0.0.1:0\" }} }} }}\n\
         exporters:\n  prometheus: {exporter}\n\
         service:\n  pipelines:\n    metrics: {{ receivers: [otlp], exporters: [prometheus] }}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        String::new()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[test]
fn config_is_validated() {
    assert_eq!(validate("{}"), "", "all defaults");
    assert_eq!(
        validate(
            "{ endpoint: \"0.0.0.0:9464\", metric_expiration: 1m, const_labels: { region: eu }, enable_open_metrics: false }"
        ),
        ""
    );
    let err = validate("{ ttl: 1m }");
    assert!(
        err.contains("exporters.prometheus") && err.contains("ttl"),
        "{err}"
    );
    let err = validate("{ metric_expiration: 0, const_labels: { le: x } }");
    assert!(err.contains("metric_expiration must be above 0"), "{err}");
    assert!(err.contains("\"le\" is reserved"), "{err}");
    let err = validate("{ endpoint: \"nohost\" }");
    assert!(err.contains("invalid endpoint"), "{err}");
}

type Samples = Vec<(String, Vec<(String, String)>, String)>;

/// Reads an exposition strictly: comment lines of the right kinds in the right places, every
/// sample in the family declared just before it (with the suffixes its type allows), valid
/// names, escapes only `\\`, `\"`, `\n`, values Go's ParseFloat reads, no timestamps, no
/// duplicate series, no family twice, and for OpenMetrics `# EOF` at the end and exemplars only
/// on `_total` / `_bucket`. Returns the samples sorted (value as written).
fn check_exposition(body: &str, om: bool) -> Samples {
    let mut lines: Vec<&str> = body.split('\n').collect();
    assert_eq!(lines.pop(), Some(""), "ends with a line feed");
    if om {
        assert_eq!(lines.pop(), Some("# EOF"), "OpenMetrics ends with # EOF");
    }
    let mut families = HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    for line in lines {
        assert!(!line.is_empty(), "no empty lines");
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad comment {line:?}"));
            let (name, arg) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad comment {line:?}"));
            assert!(valid_metric_name(name), "{line:?}");
            match kind {
                "TYPE" => {
                    let types: &[&str] = if om {
                        &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown",
                        ]
                    } else {
                        &["counter", "gauge", "histogram", "summary", "untyped"]
                    };
                    assert!(types.contains(&arg), "{line:?}");
                    assert!(families.insert(name.to_string()), "family {name} twice");
                    family = Some((name.to_string(), arg.to_string()));
                }
                "HELP" => {
                    unescape(arg, if om { "\\\"n" } else { "\\n" })
                        .unwrap_or_else(|| panic!("bad escape in {line:?}"));
                    if om {
                        assert_eq!(
                            family.as_ref().map(|f| f.0.as_str()),
                            Some(name),
                            "HELP after TYPE: {line:?}"
                        );
                    }
                }
                "UNIT" => {
                    assert!(om, "no UNIT in text 0.0.4");
                    assert_eq!(
                        family.as_ref().map(|f| f.0.as_str()),
                        Some(name),
                        "{line:?}"
                    );
                    assert!(
                        name.ends_with(&format!("_{arg}")),
                        "unit is a suffix: {line:?}"
                    );
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let (series, value, exemplar) = split_sample(line);
        let (name, labels) =
            parse_series(series).unwrap_or_else(|| panic!("bad series in {line:?}"));
        let (fam, t) = family
            .as_ref()
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let suffix = name
            .strip_prefix(fam.as_str())
            .unwrap_or_else(|| panic!("{name} outside its family {fam}"));
        let allowed: &[&str] = match (t.as_str(), om) {
            ("counter", true) => &["_total"],
            ("histogram", _) => &["_bucket", "_sum", "_count"],
            ("summary", _) => &["", "_sum", "_count"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{name} in a {t} family {fam}");
        assert!(parse_go_float(value), "value {value:?} in {line:?}");
        if let Some(e) = exemplar {
            assert!(om, "no exemplars in text 0.0.4");
            assert!(
                name.ends_with("_total") || name.ends_with("_bucket"),
                "{line:?}"
            );
            let (labels, rest) = e
                .strip_prefix('{')
                .and_then(|e| e.split_once("} "))
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                parse_series(&format!("x{{{labels}}}")).is_some(),
                "{line:?}"
            );
            let mut parts = rest.split(' ');
            assert!(parse_go_float(parts.next().unwrap()), "{line:?}");
            if let Some(ts) = parts.next() {
                assert!(ts.parse::<f64>().is_ok(), "{line:?}");
            }
            assert!(parts.next().is_none(), "{line:?}");
        }
        let mut sorted = labels.clone();
        sorted.sort();
        assert!(
            seen.insert((name.clone(), sorted.clone())),
            "duplicate series {line:?}"
        );
        samples.push((name, sorted, value.to_string()));
    }
    samples.sort();
    samples
}

/// `series value` or (OpenMetrics) `series value # {labels} value [ts]`; no timestamp allowed.
fn split_sample(line: &str) -> (&str, &str, Option<&str>) {
    // The series part ends at the last `}` or, without labels, at the first space.
    let end = if let Some(i) = line.find('{') {
        // Find the closing brace outside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut close = None;
        for (j, c) in line[i..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    close = Some(i + j + 1);
                    break;
                }
                _ => {}
            }
        }
        close.unwrap_or_else(|| panic!("unclosed labels in {line:?}"))
    } else {
        line.find(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"))
    };
    let rest = line[end..]
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("one space before the value: {line:?}"));
    match rest.split_once(" # ") {
        Some((value, exemplar)) => (&line[..end], value, Some(exemplar)),
        None => {
            assert!(!rest.contains(' '), "no timestamps: {line:?}");
            (&line[..end], rest, None)
        }
    }
}

fn parse_series(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(s[i + 1..].strip_suffix('}')?)),
        None => (s, None),
    };
    if !valid_metric_name(name) {
        return None;
    }
    let mut labels = Vec::new();
    let mut rest = rest.unwrap_or("");
    while !rest.is_empty() {
        let (lname, after) = rest.split_once("=\"")?;
        if !valid_label_name(lname) {
            return None;
        }
        // The value ends at the first unescaped quote.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        labels.push((lname.to_string(), unescape(&after[..end], "\\\"n")?));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return None,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some((name.to_string(), labels))
}

/// Undoes `\x` escapes, allowing only the `x` in `allowed`.
fn unescape(s: &str, allowed: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\n' || (c == '"' && allowed.contains('"')) {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            e if !allowed.contains(e) => return None,
            'n' => out.push('\n'),
            e => out.push(e),
        }
    }
    Some(out)
}

fn valid_metric_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// What Go's strconv.ParseFloat reads (as Prometheus does), besides hex and underscores.
fn parse_go_float(v: &str) -> bool {
    matches!(v, "+Inf" | "-Inf" | "NaN")
        || (v.parse::<f64>().is_ok() && !v.contains(['i', 'I', 'n', 'N', '_', 'x', 'p']))
}
