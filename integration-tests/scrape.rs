//! The `prometheus` receiver in the real binary, against real targets: Debian's
//! `prometheus-node-exporter` and a Prometheus server's own `/metrics` (a Go service), both scraped
//! every second and sent through the `otlp` exporter to an in-process OTLP server. Guarantees:
//! `up` is 1 for both, `job` / `instance` become the resource (`service.name`,
//! `service.instance.id`, `server.address`, `server.port`, `url.scheme`), Go runtime families
//! arrive with the right OTLP type (`go_goroutines` and `go_memstats_alloc_bytes` gauges,
//! `go_gc_duration_seconds` a summary with its quantiles, `node_cpu_seconds_total` a monotonic
//! cumulative Sum) and values that agree with a direct read of the endpoint.
//!
//! A second test serves tiny expositions itself, for the remote_write compliance cases of the
//! scrape side: an invalid exposition is `up` 0, a repeated label rejects the scrape, an empty
//! label is dropped, colliding target labels become `exported_*`, and a series that disappears
//! gets a staleness marker (StaleNaN with the "no recorded value" flag); and an OpenMetrics
//! exposition (negotiated by `Content-Type`) gives a counter with its `_created` start time and a
//! histogram with its unit and exemplar. (node_exporter and Prometheus answer the scraper's
//! `Accept` with the text format 0.0.4.)

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use sluice_receivers::prometheus::parser::{Entry, Format, Parser};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::peers::Peer;
use support::{Behaviour, OtlpSink, Sluice, http_get_status, wait_until};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// A CA and a server certificate for 127.0.0.1, made with openssl in `dir`: `ca.pem`,
/// `server.pem`, `server.key`.
fn make_certs(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running openssl")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=sluice-scrape-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

/// A node_exporter on a free loopback port; killed and reaped when dropped.
struct NodeExporter {
    child: Child,
    addr: SocketAddr,
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeExporter {
    fn start() -> NodeExporter {
        Self::start_with(&[])
    }

    /// node_exporter with extra flags (such as `--web.config.file`).
    fn start_with(extra: &[String]) -> NodeExporter {
        assert!(
            std::path::Path::new(NODE_EXPORTER).exists(),
            "{NODE_EXPORTER} is missing: install Debian's prometheus-node-exporter"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node_exporter");
        let ne = NodeExporter { child, addr };
        wait_until(Duration::from_secs(20), "node_exporter listening", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        ne
    }
}

fn str_value(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(str_value)
}

fn resource_attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    attr(&rm.resource.as_ref()?.attributes, key)
}

/// Every resource of job `job`, in arrival order.
fn resources(reqs: &[ExportMetricsServiceRequest], job: &str) -> Vec<ResourceMetrics> {
    reqs.iter()
        .flat_map(|r| &r.resource_metrics)
        .filter(|rm| resource_attr(rm, "service.name").as_deref() == Some(job))
        .cloned()
        .collect()
}

/// Every metric called `name` of job `job`, in arrival order.
fn metrics(reqs: &[ExportMetricsServiceRequest], job: &str, name: &str) -> Vec<Metric> {
    resources(reqs, job)
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .cloned()
        .collect()
}

fn numbers(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{}: not a number: {other:?}", m.name),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => panic!("no value"),
    }
}

/// The values of `up` for a job, in arrival order.
fn ups(reqs: &[ExportMetricsServiceRequest], job: &str) -> Vec<f64> {
    metrics(reqs, job, "up")
        .iter()
        .flat_map(|m| numbers(m).iter().map(value))
        .collect()
}

/// (labels, value) of every sample called `name` in a direct read of `url`.
fn direct(url: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let (status, body) = http_get_status(url).expect("direct read");
    assert_eq!(status, 200, "{url}");
    let mut p = Parser::new(body.as_bytes(), Format::Text);
    let mut out = Vec::new();
    while let Some(e) = p.next().unwrap_or_else(|e| panic!("{url}: {e}")) {
        if let Entry::Sample(s) = e
            && s.name.get() == name
        {
            let labels = s
                .labels
                .iter()
                .map(|l| (l.name.get().into_owned(), l.value.get().into_owned()))
                .collect();
            out.push((labels, s.value));
        }
    }
    out
}

#[test]
fn scrapes_node_exporter_and_prometheus_every_second() {
    let sink = OtlpSink::start(Behaviour::Accept);
    let node = NodeExporter::start();
    let prom = Peer::prometheus();
    let s = Sluice::start(
        &format!(
            r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs: [{{ targets: ["{node}"], labels: {{ team: infra }} }}]
        - job_name: prometheus
          scrape_interval: 1s
          static_configs: [{{ targets: ["{prom}"] }}]
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus], exporters: [otlp] }}
"#,
            node = node.addr,
            prom = prom.addr,
            sink = sink.addr
        ),
        &["telemetry"],
    );
    wait_until(
        Duration::from_secs(40),
        "three successful scrapes of each target",
        || {
            let reqs = sink.requests();
            ["node", "prometheus"]
                .iter()
                .all(|j| ups(&reqs, j).iter().filter(|v| **v == 1.0).count() >= 3)
        },
    );
    let reqs = sink.requests();
    for job in ["node", "prometheus"] {
        let up = ups(&reqs, job);
        assert!(
            up.iter().all(|v| *v == 1.0),
            "{job}: up {up:?}\n{}",
            s.log_text()
        );
    }

    // Resources.
    for (job, addr) in [("node", node.addr), ("prometheus", prom.addr)] {
        let rm = &resources(&reqs, job)[0];
        assert_eq!(
            resource_attr(rm, "service.instance.id"),
            Some(addr.to_string())
        );
        assert_eq!(
            resource_attr(rm, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            resource_attr(rm, "server.port"),
            Some(addr.port().to_string())
        );
        assert_eq!(resource_attr(rm, "url.scheme").as_deref(), Some("http"));
    }

    // node_cpu_seconds_total: a monotonic cumulative Sum per cpu and mode, never above a later
    // direct read, and never decreasing.
    let cpu = metrics(&reqs, "node", "node_cpu_seconds_total");
    assert!(!cpu.is_empty(), "no node_cpu_seconds_total");
    for m in &cpu {
        let Some(Data::Sum(sum)) = &m.data else {
            panic!("node_cpu_seconds_total: {:?}", m.data)
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2);
        for p in &sum.data_points {
            assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
            assert_eq!(attr(&p.attributes, "team").as_deref(), Some("infra"));
        }
    }
    let last = cpu.last().unwrap();
    let p = numbers(last)
        .iter()
        .find(|p| attr(&p.attributes, "mode").as_deref() == Some("idle"))
        .expect("an idle cpu point");
    let cpu_id = attr(&p.attributes, "cpu").unwrap();
    let direct_cpu = direct(
        &format!("http://{}/metrics", node.addr),
        "node_cpu_seconds_total",
    );
    let want = direct_cpu
        .iter()
        .find(|(l, _)| {
            l.contains(&("cpu".into(), cpu_id.clone()))
                && l.contains(&("mode".into(), "idle".into()))
        })
        .unwrap()
        .1;
    let got = value(p);
    assert!(
        got <= want && want - got < 60.0,
        "node_cpu_seconds_total idle cpu {cpu_id}: scraped {got}, read after {want}"
    );

    // node_exporter_build_info: a constant, exactly as read.
    let build = metrics(&reqs, "node", "node_exporter_build_info");
    let bp = &numbers(build.last().expect("node_exporter_build_info"))[0];
    let (labels, v) = &direct(
        &format!("http://{}/metrics", node.addr),
        "node_exporter_build_info",
    )[0];
    assert_eq!(value(bp), *v);
    for (k, want) in labels {
        assert_eq!(attr(&bp.attributes, k).as_ref(), Some(want), "label {k}");
    }

    // Go runtime families of Prometheus itself.
    let goroutines = metrics(&reqs, "prometheus", "go_goroutines");
    let g = goroutines.last().expect("go_goroutines");
    assert!(matches!(g.data, Some(Data::Gauge(_))), "{:?}", g.data);
    let scraped = value(&numbers(g)[0]);
    let read = direct(&format!("http://{}/metrics", prom.addr), "go_goroutines")[0].1;
    assert!(
        (scraped - read).abs() <= 20.0_f64.max(read * 0.5),
        "go_goroutines: scraped {scraped}, read {read}"
    );
    let alloc = metrics(&reqs, "prometheus", "go_memstats_alloc_bytes");
    let a = alloc.last().expect("go_memstats_alloc_bytes");
    assert!(matches!(a.data, Some(Data::Gauge(_))));
    assert!(value(&numbers(a)[0]) > 0.0);
    let gc = metrics(&reqs, "prometheus", "go_gc_duration_seconds");
    let Some(Data::Summary(summary)) = &gc.last().expect("go_gc_duration_seconds").data else {
        panic!("go_gc_duration_seconds is not a summary")
    };
    let sp = &summary.data_points[0];
    let quantiles: Vec<f64> = sp.quantile_values.iter().map(|q| q.quantile).collect();
    let direct_q: Vec<f64> = direct(
        &format!("http://{}/metrics", prom.addr),
        "go_gc_duration_seconds",
    )
    .iter()
    .filter_map(|(l, _)| {
        l.iter()
            .find(|(k, _)| k == "quantile")
            .map(|(_, v)| v.parse().unwrap())
    })
    .collect();
    assert_eq!(quantiles, direct_q);
    assert!(quantiles.contains(&0.5));
    let direct_count = direct(
        &format!("http://{}/metrics", prom.addr),
        "go_gc_duration_seconds_count",
    )[0]
    .1;
    assert!(sp.count as f64 <= direct_count);
    // No `_count` / `_sum` / `_bucket` series leak out of assembled families.
    assert!(metrics(&reqs, "prometheus", "go_gc_duration_seconds_count").is_empty());

    // The scrape series.
    for name in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        assert!(!metrics(&reqs, "node", name).is_empty(), "{name}");
    }
    let scraped = metrics(&reqs, "node", "scrape_samples_scraped");
    assert!(value(&numbers(scraped.last().unwrap())[0]) > 100.0);
    assert!(
        s.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "prometheus")]
        ) > 0.0
    );
}

/// An OpenMetrics exposition: a counter with its created time, a histogram with a unit and an
/// exemplar.
const OPENMETRICS: &str = "\
# TYPE req counter
# HELP req Requests.
req_total{code=\"200\"} 7
req_created{code=\"200\"} 1600000000
# TYPE lat_seconds histogram
# UNIT lat_seconds seconds
lat_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"0123456789abcdef0123456789abcdef\"} 0.05 1600000000.5
lat_seconds_bucket{le=\"+Inf\"} 3
lat_seconds_sum 1.5
lat_seconds_count 3
# EOF
";

/// Serves fixed expositions by path on a loopback port from a thread; `/stale` serves `stale 1`
/// on its first request only.
fn serve_expositions() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stale_calls = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let stale_calls = stale_calls.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = match path.as_str() {
                    "/invalid" => "# this is not valid prometheus\n1234notvali}{ 444\n".to_string(),
                    "/repeated" => "test{a=\"1\",a=\"1\"} 1.0\n".to_string(),
                    "/empty" => "test{a=\"\"} 1.0\n".to_string(),
                    "/honor" => "test{job=\"original\",instance=\"foo\"} 1.0\n".to_string(),
                    "/stale" => {
                        if stale_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            "# TYPE stale gauge\nstale 1\nkept 1\n".to_string()
                        } else {
                            "kept 1\n".to_string()
                        }
                    }
                    "/openmetrics" => OPENMETRICS.to_string(),
                    _ => "gauge 42\n".to_string(),
                };
                let content_type = if path == "/openmetrics" {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4"
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

#[test]
fn compliance_cases_on_served_expositions() {
    let sink = OtlpSink::start(Behaviour::Accept);
    let target = serve_expositions();
    let jobs = [
        "invalid",
        "repeated",
        "empty",
        "honor",
        "stale",
        "openmetrics",
    ];
    let configs: String = jobs
        .iter()
        .map(|j| {
            format!(
                "        - job_name: {j}\n          scrape_interval: 1s\n          metrics_path: /{j}\n          static_configs: [{{ targets: [\"{target}\"] }}]\n"
            )
        })
        .collect();
    let _s = Sluice::start(
        &format!(
            r#"
receivers:
  prometheus:
    config:
      scrape_configs:
{configs}
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus], exporters: [otlp] }}
"#,
            sink = sink.addr
        ),
        &["telemetry"],
    );
    wait_until(
        Duration::from_secs(40),
        "three scrapes of every job",
        || {
            let reqs = sink.requests();
            jobs.iter().all(|j| ups(&reqs, j).len() >= 3)
        },
    );
    let reqs = sink.requests();

    // Invalid exposition: up 0, nothing else.
    assert!(ups(&reqs, "invalid").iter().all(|v| *v == 0.0));
    // Repeated label names: the scrape is rejected; no `test` sample.
    assert!(ups(&reqs, "repeated").iter().all(|v| *v == 0.0));
    assert!(metrics(&reqs, "repeated", "test").is_empty());
    // Empty label value: dropped, the sample kept.
    assert!(ups(&reqs, "empty").iter().all(|v| *v == 1.0));
    let t = metrics(&reqs, "empty", "test");
    let p = &numbers(&t[0])[0];
    assert_eq!(value(p), 1.0);
    assert!(
        p.attributes.iter().all(|kv| kv.key != "a"),
        "{:?}",
        p.attributes
    );
    // honor_labels false: the target's job and instance win, the scraped ones are exported_*.
    let t = metrics(&reqs, "honor", "test");
    let p = &numbers(&t[0])[0];
    assert_eq!(
        attr(&p.attributes, "exported_job").as_deref(),
        Some("original")
    );
    assert_eq!(
        attr(&p.attributes, "exported_instance").as_deref(),
        Some("foo")
    );
    let rm = &resources(&reqs, "honor")[0];
    assert_eq!(
        resource_attr(rm, "service.instance.id"),
        Some(target.to_string())
    );
    // Staleness: `stale` was served once; then a StaleNaN flagged "no recorded value".
    let stale: Vec<NumberDataPoint> = metrics(&reqs, "stale", "stale")
        .iter()
        .flat_map(|m| numbers(m).to_vec())
        .collect();
    assert_eq!(value(&stale[0]), 1.0);
    let markers: Vec<&NumberDataPoint> = stale
        .iter()
        .filter(|p| p.flags & FLAG_NO_RECORDED_VALUE != 0)
        .collect();
    assert_eq!(markers.len(), 1, "{stale:?}");
    assert_eq!(
        value(markers[0]).to_bits(),
        sluice_core::prometheus::STALE_NAN,
        "the marker is StaleNaN"
    );
    assert!(!metrics(&reqs, "stale", "kept").is_empty());

    // OpenMetrics: the counter's start time is its `_created`, the histogram is assembled with
    // its unit and exemplar.
    assert!(ups(&reqs, "openmetrics").iter().all(|v| *v == 1.0));
    let req = metrics(&reqs, "openmetrics", "req_total");
    let Some(Data::Sum(sum)) = &req[0].data else {
        panic!("req_total: {:?}", req[0].data)
    };
    assert!(sum.is_monotonic);
    assert_eq!(req[0].description, "Requests.");
    assert_eq!(
        sum.data_points[0].start_time_unix_nano,
        1_600_000_000_000_000_000
    );
    assert_eq!(value(&sum.data_points[0]), 7.0);
    let lat = metrics(&reqs, "openmetrics", "lat_seconds");
    assert_eq!(lat[0].unit, "seconds");
    let Some(Data::Histogram(h)) = &lat[0].data else {
        panic!("lat_seconds: {:?}", lat[0].data)
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![0.1]);
    assert_eq!(p.bucket_counts, vec![1, 2]);
    assert_eq!((p.count, p.sum), (3, Some(1.5)));
    assert_eq!(p.exemplars.len(), 1);
    assert_eq!(p.exemplars[0].trace_id.len(), 16);
    assert_eq!(p.exemplars[0].time_unix_nano, 1_600_000_000_500_000_000);
}

#[test]
fn scrapes_node_exporter_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ),
    )
    .unwrap();
    let node = NodeExporter::start_with(&[format!("--web.config.file={}", web.display())]);
    let sink = OtlpSink::start(Behaviour::Accept);
    let ca = dir.path().join("ca.pem");
    let _s = Sluice::start(
        &format!(
            r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node_tls
          scheme: https
          scrape_interval: 1s
          tls_config: {{ ca_file: "{ca}" }}
          static_configs: [{{ targets: ["{node}"] }}]
        - job_name: node_untrusted
          scheme: https
          scrape_interval: 1s
          static_configs: [{{ targets: ["{node}"] }}]
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus], exporters: [otlp] }}
"#,
            ca = ca.display(),
            node = node.addr,
            sink = sink.addr
        ),
        &["telemetry"],
    );
    wait_until(Duration::from_secs(40), "two scrapes of each job", || {
        let reqs = sink.requests();
        ups(&reqs, "node_tls").len() >= 2 && ups(&reqs, "node_untrusted").len() >= 2
    });
    let reqs = sink.requests();
    // Verified with the CA: up 1 and the data; without it the certificate is refused: up 0.
    assert!(ups(&reqs, "node_tls").iter().all(|v| *v == 1.0));
    assert!(!metrics(&reqs, "node_tls", "node_cpu_seconds_total").is_empty());
    let rm = &resources(&reqs, "node_tls")[0];
    assert_eq!(resource_attr(rm, "url.scheme").as_deref(), Some("https"));
    assert!(ups(&reqs, "node_untrusted").iter().all(|v| *v == 0.0));
}
