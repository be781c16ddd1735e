//! End to end with real remote_write senders: vmagent and Prometheus (Debian packages) scrape a
//! static Prometheus exposition served by the test (a counter, a labelled gauge, a histogram, a
//! summary and a sample with an explicit timestamp) and remote-write it to Sluice's
//! `prometheus_remote_write` receiver, which forwards with `otlp` to an in-process OTLP server.
//! Guarantees: every series of the exposition arrives with its exact value, its name and labels
//! unchanged, `job` / `instance` as `service.name` (and `service.namespace` for `ns/name` jobs) /
//! `service.instance.id`, explicit timestamps exact to the millisecond; Prometheus' metadata makes
//! the counter a monotonic Sum; nothing is refused.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{NumberDataPoint, metric::Data, number_data_point};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Behaviour, OtlpSink, Sluice};

const DEADLINE: Duration = Duration::from_secs(30);

fn require(bin: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: run integration-tests/install-peers.sh \
         (Debian packages prometheus and victoria-metrics)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A text exposition (format 0.0.4) served on 127.0.0.1:0 to every GET, until dropped.
struct Exposition {
    addr: SocketAddr,
    scrapes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Exposition {
    fn start(body: String) -> Exposition {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (scrapes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => req.extend_from_slice(&buf[..k]),
                            }
                        }
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Exposition {
            addr,
            scrapes,
            stop,
        }
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A peer process writing its output to a log file in its temporary directory; killed on drop.
struct Peer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Peer {
    fn spawn(bin: &str, args: impl FnOnce(&Path) -> Vec<String>) -> Peer {
        require(bin);
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let child = Command::new(bin)
            .args(args(dir.path()))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Peer { child, dir }
    }

    /// The last lines of the peer's output, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The explicit timestamp of the exposition: a little ahead, because Prometheus' remote_write
/// only sends samples newer than the moment it started.
fn stamp() -> i64 {
    now_ms() + 20_000
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The exposition, with one sample carrying an explicit timestamp `stamped_ms`.
fn exposition(stamped_ms: i64) -> String {
    format!(
        r#"# HELP demo_requests_total Requests handled.
# TYPE demo_requests_total counter
demo_requests_total{{method="get"}} 1027
demo_requests_total{{method="post"}} 3
# HELP demo_temperature_celsius Room temperature.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius{{floor="1",room="kitchen"}} 21.5
demo_temperature_celsius{{floor="0",room="hall \"2\" ü"}} -3.25
# HELP demo_latency_seconds Request latency.
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{{le="0.1"}} 3
demo_latency_seconds_bucket{{le="0.5"}} 7
demo_latency_seconds_bucket{{le="+Inf"}} 9
demo_latency_seconds_sum 2.25
demo_latency_seconds_count 9
# HELP demo_rpc_seconds RPC latency.
# TYPE demo_rpc_seconds summary
demo_rpc_seconds{{quantile="0.5"}} 0.125
demo_rpc_seconds{{quantile="0.99"}} 0.75
demo_rpc_seconds_sum 12.5
demo_rpc_seconds_count 40
# HELP demo_last_run_timestamp_seconds When the last run ended.
# TYPE demo_last_run_timestamp_seconds gauge
demo_last_run_timestamp_seconds 1.7e+09 {stamped_ms}
"#
    )
}

/// A series of the exposition: name, labels other than job/instance (sorted), value.
type Expected = (&'static str, Vec<(&'static str, &'static str)>, f64);

fn expected() -> Vec<Expected> {
    vec![
        ("demo_requests_total", vec![("method", "get")], 1027.0),
        ("demo_requests_total", vec![("method", "post")], 3.0),
        (
            "demo_temperature_celsius",
            vec![("floor", "1"), ("room", "kitchen")],
            21.5,
        ),
        (
            "demo_temperature_celsius",
            vec![("floor", "0"), ("room", "hall \"2\" ü")],
            -3.25,
        ),
        ("demo_latency_seconds_bucket", vec![("le", "0.1")], 3.0),
        ("demo_latency_seconds_bucket", vec![("le", "0.5")], 7.0),
        ("demo_latency_seconds_bucket", vec![("le", "+Inf")], 9.0),
        ("demo_latency_seconds_sum", vec![], 2.25),
        ("demo_latency_seconds_count", vec![], 9.0),
        ("demo_rpc_seconds", vec![("quantile", "0.5")], 0.125),
        ("demo_rpc_seconds", vec![("quantile", "0.99")], 0.75),
        ("demo_rpc_seconds_sum", vec![], 12.5),
        ("demo_rpc_seconds_count", vec![], 40.0),
        ("demo_last_run_timestamp_seconds", vec![], 1.7e9),
    ]
}

/// One number point as it reached the sink, with where it came from.
#[derive(Clone, Debug)]
struct Seen {
    resource: BTreeMap<String, String>,
    name: String,
    /// `gauge` or `sum` (`sum` only when monotonic and cumulative).
    kind: &'static str,
    prometheus_type: Option<String>,
    description: String,
    labels: Vec<(String, String)>,
    value: f64,
    flags: u32,
    time_unix_nano: u64,
}

fn strings(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

fn seen(reqs: &[ExportMetricsServiceRequest]) -> Vec<Seen> {
    let mut out = Vec::new();
    for rm in reqs.iter().flat_map(|r| &r.resource_metrics) {
        let resource = strings(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let (kind, points): (&'static str, &[NumberDataPoint]) = match &m.data {
                Some(Data::Gauge(g)) => ("gauge", &g.data_points),
                Some(Data::Sum(s)) if s.is_monotonic && s.aggregation_temporality == 2 => {
                    ("sum", &s.data_points)
                }
                other => panic!("{}: unexpected data {other:?}", m.name),
            };
            for p in points {
                let Some(number_data_point::Value::AsDouble(value)) = p.value else {
                    panic!("{}: not a double: {p:?}", m.name)
                };
                out.push(Seen {
                    resource: resource.clone(),
                    name: m.name.clone(),
                    kind,
                    prometheus_type: strings(&m.metadata).remove("prometheus.type"),
                    description: m.description.clone(),
                    labels: strings(&p.attributes).into_iter().collect(),
                    value,
                    flags: p.flags,
                    time_unix_nano: p.time_unix_nano,
                });
            }
        }
    }
    out
}

/// Sluice with the remote_write receiver on 127.0.0.1:0, forwarding to `sink` with `otlp`.
fn sluice(sink: &OtlpSink) -> Sluice {
    Sluice::start(
        &format!(
            r#"
receivers:
  prometheus_remote_write:
    endpoint: "127.0.0.1:0"
exporters:
  otlp/sink: {{ endpoint: "{}", compression: none }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus_remote_write], exporters: [otlp/sink] }}
"#,
            sink.addr
        ),
        &["prometheus_remote_write/http", "telemetry"],
    )
}

/// The points of the exposition's series from one target, once every series has arrived (and
/// `extra` holds). Panics with the peer's log after the deadline.
fn wait_for_exposition(sink: &OtlpSink, peer: &Peer, extra: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let ours = |all: Vec<Seen>| -> Vec<Seen> {
        all.into_iter()
            .filter(|s| s.name.starts_with("demo_"))
            .collect()
    };
    let complete = |got: &[Seen]| {
        expected().iter().all(|(name, labels, _)| {
            got.iter()
                .any(|s| s.name == *name && same_labels(&s.labels, labels))
        })
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let got = ours(seen(&sink.requests()));
        if complete(&got) && extra(&got) {
            return got;
        }
        if std::time::Instant::now() > deadline {
            let names: std::collections::BTreeSet<_> = got.iter().map(|s| &s.name).collect();
            panic!(
                "not every series arrived within {DEADLINE:?}; got {names:?}\npeer log:\n{}",
                peer.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn same_labels(got: &[(String, String)], want: &[(&str, &str)]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && g.1 == w.1)
}

/// The checks both senders must pass.
fn check_exposition(got: &[Seen], job: (&str, Option<&str>), target: SocketAddr, stamped_ms: i64) {
    let (service_name, service_namespace) = job;
    for s in got {
        assert_eq!(
            s.resource.get("service.name").map(String::as_str),
            Some(service_name),
            "{s:?}"
        );
        assert_eq!(
            s.resource.get("service.namespace").map(String::as_str),
            service_namespace,
            "{s:?}"
        );
        assert_eq!(
            s.resource.get("service.instance.id"),
            Some(&target.to_string()),
            "{s:?}"
        );
        assert_eq!(s.flags, 0, "no stale markers while the target is up: {s:?}");
    }
    for (name, labels, value) in expected() {
        let points: Vec<&Seen> = got
            .iter()
            .filter(|s| s.name == name && same_labels(&s.labels, &labels))
            .collect();
        assert!(!points.is_empty(), "{name}{labels:?} arrived");
        for p in points {
            assert_eq!(
                p.value.to_bits(),
                value.to_bits(),
                "{name}{labels:?}: every sample has the exposition's value: {p:?}"
            );
        }
    }
    let stamped: Vec<u64> = got
        .iter()
        .filter(|s| s.name == "demo_last_run_timestamp_seconds")
        .map(|s| s.time_unix_nano)
        .collect();
    assert!(
        stamped.iter().all(|&t| t == stamped_ms as u64 * 1_000_000),
        "the explicit timestamp arrives exactly: {stamped:?} vs {stamped_ms} ms"
    );
    // Scrape timestamps are in the last minute.
    let now_ns = now_ms() as u64 * 1_000_000;
    for s in got
        .iter()
        .filter(|s| s.name != "demo_last_run_timestamp_seconds")
    {
        assert!(
            s.time_unix_nano <= now_ns && now_ns - s.time_unix_nano < 60_000_000_000,
            "{s:?}"
        );
    }
}

fn check_nothing_refused(sluice: &Sluice) {
    assert!(sluice.metric("sluice_receiver_accepted_points_total", &[]) > 0.0);
    assert_eq!(
        sluice.metric("sluice_receiver_refused_points_total", &[]),
        0.0
    );
    assert_eq!(
        sluice.metric("sluice_receiver_refused_requests_total", &[]),
        0.0
    );
}

#[test]
fn vmagent_scrapes_and_remote_writes_through_sluice() {
    require("/usr/bin/vmagent");
    let sink = OtlpSink::start(Behaviour::Accept);
    let sluice = sluice(&sink);
    let stamped_ms = stamp();
    let target = Exposition::start(exposition(stamped_ms));
    let url = format!(
        "http://{}/api/v1/write",
        sluice.addr("prometheus_remote_write/http")
    );
    let vmagent = Peer::spawn("/usr/bin/vmagent", |dir| {
        let config = dir.join("scrape.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\n\
                 scrape_configs:\n  - job_name: vmagent-demo\n    honor_timestamps: true\n    \
                 static_configs: [{{ targets: [\"{}\"] }}]\n",
                target.addr
            ),
        )
        .unwrap();
        vec![
            format!("-promscrape.config={}", config.display()),
            format!("-remoteWrite.url={url}"),
            format!("-remoteWrite.tmpDataPath={}", dir.join("queue").display()),
            "-remoteWrite.flushInterval=200ms".into(),
            format!("-httpListenAddr=127.0.0.1:{}", free_port()),
            "-loggerLevel=WARN".into(),
        ]
    });

    let got = wait_for_exposition(&sink, &vmagent, |_| true);
    assert!(target.scrapes.load(Ordering::SeqCst) > 0);
    check_exposition(&got, ("vmagent-demo", None), target.addr, stamped_ms);
    // vmagent sends no metadata: every series is an untyped gauge.
    for s in &got {
        assert_eq!(
            (s.kind, s.prometheus_type.as_deref()),
            ("gauge", Some("unknown")),
            "{s:?}"
        );
    }
    check_nothing_refused(&sluice);
}

#[test]
fn prometheus_scrapes_and_remote_writes_through_sluice() {
    require("/usr/bin/prometheus");
    let sink = OtlpSink::start(Behaviour::Accept);
    let sluice = sluice(&sink);
    let stamped_ms = stamp();
    let target = Exposition::start(exposition(stamped_ms));
    let url = format!(
        "http://{}/api/v1/write",
        sluice.addr("prometheus_remote_write/http")
    );
    let prometheus = Peer::spawn("/usr/bin/prometheus", |dir| {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\n\
                 scrape_configs:\n  - job_name: prom/demo\n    honor_timestamps: true\n    \
                 static_configs: [{{ targets: [\"{}\"] }}]\n\
                 remote_write:\n  - url: {url}\n    \
                 queue_config: {{ batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 1s }}\n    \
                 metadata_config: {{ send: true, send_interval: 1s }}\n",
                target.addr
            ),
        )
        .unwrap();
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", free_port()),
            "--log.level=warn".into(),
        ]
    });

    // Prometheus sends metadata in requests of its own, once per send_interval: the counter is a
    // monotonic Sum once it has arrived.
    let typed = |got: &[Seen]| {
        got.iter()
            .any(|s| s.name == "demo_requests_total" && s.kind == "sum")
            && got
                .iter()
                .any(|s| s.name == "demo_latency_seconds_bucket" && s.prometheus_type.is_some())
    };
    wait_for_exposition(&sink, &prometheus, typed);
    // Once metadata is known, a whole scrape arrives typed: take the points of the latest one.
    let latest_scrape = |got: &[Seen]| {
        got.iter()
            .filter(|s| s.name == "demo_requests_total" && s.kind == "sum")
            .map(|s| s.time_unix_nano)
            .max()
    };
    let first_typed = latest_scrape(&seen(&sink.requests())).unwrap();
    // Every scraped series (not the one with its own, older timestamp) again, after that.
    let rescraped = |got: &[Seen]| {
        expected()
            .iter()
            .filter(|(name, _, _)| *name != "demo_last_run_timestamp_seconds")
            .all(|(name, labels, _)| {
                got.iter().any(|s| {
                    s.time_unix_nano > first_typed
                        && s.name == *name
                        && same_labels(&s.labels, labels)
                })
            })
    };
    let got = wait_for_exposition(&sink, &prometheus, rescraped);
    check_exposition(&got, ("demo", Some("prom")), target.addr, stamped_ms);
    let after: Vec<&Seen> = got
        .iter()
        .filter(|s| s.time_unix_nano > first_typed)
        .collect();
    let of = |name: &str| {
        after
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in the latest scrape: {after:#?}"))
    };
    let counter = of("demo_requests_total");
    assert_eq!(
        (counter.kind, counter.prometheus_type.as_deref()),
        ("sum", None)
    );
    assert_eq!(counter.description, "Requests handled.");
    let gauge = of("demo_temperature_celsius");
    assert_eq!(
        (gauge.kind, gauge.prometheus_type.as_deref()),
        ("gauge", None)
    );
    assert_eq!(gauge.description, "Room temperature.");
    for (name, t) in [
        ("demo_latency_seconds_bucket", "histogram"),
        ("demo_latency_seconds_sum", "histogram"),
        ("demo_latency_seconds_count", "histogram"),
        ("demo_rpc_seconds", "summary"),
        ("demo_rpc_seconds_count", "summary"),
    ] {
        let s = of(name);
        assert_eq!(
            (s.kind, s.prometheus_type.as_deref()),
            ("gauge", Some(t)),
            "{s:?}"
        );
    }
    check_nothing_refused(&sluice);
}
