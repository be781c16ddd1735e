//! The scrape-driven sender cases of the Prometheus remote_write compliance suite, end to end:
//! Sluice's `prometheus` receiver scrapes test-served expositions every second and its
//! `prometheus_remote_write` exporter writes to an in-process remote_write receiver, which checks
//! each case's pass condition: counter values in order, up, invalid exposition, job and instance
//! labels, sorted labels, repeated labels, empty labels, a missing name, honor_labels, staleness,
//! histogram and summary values, timestamps.

mod support;

use sluice_core::proto::prometheus_v1::TimeSeries;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::Sluice;
use support::peers::{RwBehaviour, RwSink};

/// A case: its path, and its body given how often it was scraped before.
type Case = (&'static str, fn(u64) -> String);

/// Serves `/<case>` for every case; the body may depend on how often that case was scraped.
fn serve(cases: Vec<Case>) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts: Arc<Vec<AtomicU64>> = Arc::new(cases.iter().map(|_| AtomicU64::new(0)).collect());
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let body = match cases.iter().position(|(name, _)| *name == path) {
                Some(i) => (cases[i].1)(counts[i].fetch_add(1, Ordering::SeqCst)),
                None => String::new(),
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn labels(t: &TimeSeries) -> BTreeMap<String, String> {
    t.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Samples (labels, value, timestamp) of series whose labels include all of `want`, in arrival order.
fn matching<'a>(
    all: &'a [(BTreeMap<String, String>, f64, i64)],
    want: &[(&str, &str)],
) -> Vec<&'a (BTreeMap<String, String>, f64, i64)> {
    all.iter()
        .filter(|(l, _, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

#[test]
fn scrape_driven_compliance_cases_through_remote_write() {
    let target = serve(vec![
        ("counter", |n| {
            format!("# TYPE counter counter\ncounter {n}\n")
        }),
        ("gauge", |_| "# TYPE gauge gauge\ngauge 42\n".into()),
        ("invalid", |_| {
            "# this is not valid prometheus\n1234notvali}{ 444\n".into()
        }),
        ("sorted", |_| "test{b=\"2\",a=\"1\"} 1.0\n".into()),
        ("repeated", |_| "test{a=\"1\",a=\"1\"} 1.0\n".into()),
        ("empty", |_| "test{a=\"\"} 1.0\n".into()),
        ("noname", |_| "{label=\"value\"} 1.0\n".into()),
        ("honor", |_| {
            "test{job=\"original\",instance=\"foo\"} 1.0\n".into()
        }),
        ("stale", |n| {
            if n == 0 {
                "# TYPE stale gauge\nstale 1\n".into()
            } else {
                "# TYPE other gauge\nother 1\n".into()
            }
        }),
        ("histogram", |_| {
            "# TYPE histogram histogram\nhistogram_bucket{le=\"1\"} 1\nhistogram_bucket{le=\"2\"} 2\nhistogram_bucket{le=\"+Inf\"} 2\nhistogram_sum 3\nhistogram_count 2\n".into()
        }),
        ("summary", |_| {
            "# TYPE summary summary\nsummary{quantile=\"0.5\"} 2\nsummary{quantile=\"0.9\"} 3\nsummary{quantile=\"0.99\"} 3\nsummary_sum 6\nsummary_count 3\n".into()
        }),
    ]);
    let sink = RwSink::start(RwBehaviour::Accept);
    let jobs = [
        "counter",
        "gauge",
        "invalid",
        "sorted",
        "repeated",
        "empty",
        "noname",
        "honor",
        "stale",
        "histogram",
        "summary",
    ];
    let scrape_configs: String = jobs
        .iter()
        .map(|j| format!("        - {{ job_name: {j}, scrape_interval: 1s, metrics_path: /{j}, static_configs: [{{ targets: [\"{target}\"] }}] }}\n"))
        .collect();
    let yaml = format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
{scrape_configs}
exporters:
  prometheus_remote_write: {{ endpoint: "{}", queue_config: {{ batch_send_deadline: 100ms }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus], exporters: [prometheus_remote_write] }}
"#,
        sink.url()
    );
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let s = Sluice::start(&yaml, &["telemetry"]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(s.stop("INT").success(), "exits 0 on SIGINT");
    let end_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let reqs = sink.requests();
    let all: Vec<(BTreeMap<String, String>, f64, i64)> = reqs
        .iter()
        .flat_map(|r| r.v1.timeseries.iter())
        .flat_map(|t| {
            t.samples
                .iter()
                .map(move |s| (labels(t), s.value, s.timestamp))
        })
        .collect();
    for (l, _, _) in &all {
        let names: Vec<&String> = l.keys().collect();
        assert!(
            l.contains_key("__name__"),
            "every sample has __name__: {l:?}"
        );
        assert!(l.values().all(|v| !v.is_empty()), "no empty label: {l:?}");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
    }
    // Counter: 0, 1, 2, ... in arrival order, no gap, duplicate or reordering.
    let counter: Vec<f64> = matching(&all, &[("__name__", "counter")])
        .iter()
        .map(|x| x.1)
        .collect();
    assert!(counter.len() >= 3, "{counter:?}");
    assert_eq!(
        counter,
        (0..counter.len()).map(|i| i as f64).collect::<Vec<_>>()
    );
    // Up, job, instance.
    assert!(
        matching(&all, &[("__name__", "up"), ("job", "gauge")])
            .iter()
            .all(|x| x.1 == 1.0)
    );
    assert!(!matching(&all, &[("__name__", "up"), ("job", "gauge")]).is_empty());
    let gauges = matching(&all, &[("__name__", "gauge"), ("job", "gauge")]);
    assert!(!gauges.is_empty() && gauges.iter().all(|x| x.1 == 42.0));
    assert!(gauges.iter().all(|x| x.0["instance"] == target.to_string()));
    // Invalid exposition: up == 0 and nothing else.
    let up_invalid = matching(&all, &[("__name__", "up"), ("job", "invalid")]);
    assert!(!up_invalid.is_empty() && up_invalid.iter().all(|x| x.1 == 0.0));
    // Sorted labels.
    assert!(
        !matching(
            &all,
            &[
                ("__name__", "test"),
                ("job", "sorted"),
                ("a", "1"),
                ("b", "2")
            ]
        )
        .is_empty()
    );
    // Repeated labels: the scrape is rejected.
    assert!(matching(&all, &[("__name__", "test"), ("job", "repeated")]).is_empty());
    assert!(
        matching(&all, &[("__name__", "up"), ("job", "repeated")])
            .iter()
            .all(|x| x.1 == 0.0)
    );
    // Empty label dropped.
    let empty = matching(&all, &[("__name__", "test"), ("job", "empty")]);
    assert!(!empty.is_empty() && empty.iter().all(|x| !x.0.contains_key("a") && x.1 == 1.0));
    // No metric name: the scrape fails, nothing of it is sent.
    assert!(matching(&all, &[("label", "value")]).is_empty());
    assert!(
        matching(&all, &[("__name__", "up"), ("job", "noname")])
            .iter()
            .all(|x| x.1 == 0.0)
    );
    // honor_labels false: colliding target labels become exported_*.
    assert!(
        !matching(
            &all,
            &[
                ("__name__", "test"),
                ("job", "honor"),
                ("exported_job", "original"),
                ("exported_instance", "foo")
            ]
        )
        .is_empty()
    );
    // Staleness: the series that disappeared gets a StaleNaN.
    let stale = matching(&all, &[("__name__", "stale")]);
    assert!(
        stale.iter().any(|x| x.1.to_bits() == 0x7ff0_0000_0000_0002),
        "{stale:?}"
    );
    // Histogram and summary values, with the same number of samples for every component.
    for (want, value) in [("1", 1.0), ("2", 2.0), ("+Inf", 2.0)] {
        let b = matching(&all, &[("__name__", "histogram_bucket"), ("le", want)]);
        assert!(
            !b.is_empty() && b.iter().all(|x| x.1 == value),
            "le={want}: {b:?}"
        );
    }
    let count = matching(&all, &[("__name__", "histogram_count")]);
    assert!(count.iter().all(|x| x.1 == 2.0));
    assert!(
        matching(&all, &[("__name__", "histogram_sum")])
            .iter()
            .all(|x| x.1 == 3.0)
    );
    assert_eq!(
        matching(&all, &[("__name__", "histogram_bucket"), ("le", "1")]).len(),
        count.len()
    );
    for (q, value) in [("0.5", 2.0), ("0.9", 3.0), ("0.99", 3.0)] {
        let s = matching(&all, &[("__name__", "summary"), ("quantile", q)]);
        assert!(
            !s.is_empty() && s.iter().all(|x| x.1 == value),
            "quantile {q}"
        );
    }
    assert!(
        matching(&all, &[("__name__", "summary_sum")])
            .iter()
            .all(|x| x.1 == 6.0)
    );
    assert!(
        matching(&all, &[("__name__", "summary_count")])
            .iter()
            .all(|x| x.1 == 3.0)
    );
    // Timestamps: within the run, and non-decreasing per series in arrival order.
    let mut last: BTreeMap<&BTreeMap<String, String>, i64> = BTreeMap::new();
    for (l, _, ts) in &all {
        assert!(
            *ts >= start_ms - 1000 && *ts <= end_ms,
            "timestamp {ts} outside the run"
        );
        if let Some(prev) = last.insert(l, *ts) {
            assert!(*ts >= prev, "{l:?}: {ts} after {prev}");
        }
    }
    // Headers of every request.
    for r in &reqs {
        assert_eq!(r.headers["content-encoding"], "snappy");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["x-prometheus-remote-write-version"], "0.1.0");
    }
}
