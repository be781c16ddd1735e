//! Overload protection through the real binary: clients send far more than the backend takes, with
//! exporter queues configured far larger than the process's `service.memory_limit`, so that only
//! the memory limit keeps Sluice alive.
//! Guarantees: Sluice's resident memory (sampled, and its high-water mark at the end) stays under
//! the limit; every client answer is a success or a retryable refusal (gRPC `UNAVAILABLE` with
//! RetryInfo, HTTP 503 with `Retry-After`), never a timeout or a reset; refusals are counted as
//! `reason="memory_limit"`; once the backend is back, everything accepted arrives, once, the queues
//! empty and new requests are taken again. With tenants of different SLA tiers, the bronze tenant
//! is refused before the gold one and more often.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Behaviour, OtlpSink, Sluice, numbered_request, numbers, wait_until};
use tonic::Code;
use tonic_types::StatusExt;

const LIMIT_MIB: u64 = 200;
/// Points per client request (about 1 MB of protobuf, several MB once decoded).
const POINTS: u64 = 20_000;
/// How long the clients push at most.
const LOAD_FOR: Duration = Duration::from_secs(20);

fn config(sink: std::net::SocketAddr, tenant: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
{tenant}
exporters:
  otlp:
    endpoint: "{sink}"
    compression: none
    timeout: 5s
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
    # Room for a hundred million points, gigabytes: the queues alone would not protect the process.
    sending_queue: {{ queue_size: 100000000, total_size: 200000000, num_consumers: 4 }}
service:
  memory_limit: {LIMIT_MIB}MiB
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 5s
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [otlp] }}
"#
    )
}

const LISTENERS: &[&str] = &["otlp/grpc", "otlp/http", "telemetry"];

/// How a client's request ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Accepted,
    /// A retryable refusal with a retry hint.
    Refused,
    /// Anything else: a timeout, a reset, a status without a retry hint.
    Broken(String),
}

fn grpc_outcome(r: Result<(), tonic::Status>) -> Outcome {
    match r {
        Ok(()) => Outcome::Accepted,
        Err(s) if s.code() == Code::Unavailable && s.get_details_retry_info().is_some() => {
            Outcome::Refused
        }
        Err(s) => Outcome::Broken(format!("gRPC {:?}: {}", s.code(), s.message())),
    }
}

/// One client connection, gRPC or HTTP, naming its tenant in `X-Scope-OrgID` if it has one.
struct Client {
    rt: tokio::runtime::Runtime,
    grpc: Option<MetricsServiceClient<tonic::transport::Channel>>,
    http: Option<(reqwest::Client, String)>,
    tenant: Option<&'static str>,
}

impl Client {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn grpc(s: &Sluice, tenant: Option<&'static str>) -> Client {
        let rt = Self::runtime();
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_shared(s.grpc_url("otlp"))
                    .unwrap()
                    .timeout(Duration::from_secs(15))
                    .connect(),
            )
            .unwrap();
        let grpc = MetricsServiceClient::new(channel).max_encoding_message_size(64 << 20);
        Client {
            rt,
            grpc: Some(grpc),
            http: None,
            tenant,
        }
    }

    fn http(s: &Sluice, tenant: Option<&'static str>) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        Client {
            rt: Self::runtime(),
            grpc: None,
            http: Some((client, s.http_url("otlp"))),
            tenant,
        }
    }

    fn send(&self, req: ExportMetricsServiceRequest) -> Outcome {
        if let Some(c) = &self.grpc {
            let mut req = tonic::Request::new(req);
            if let Some(t) = self.tenant {
                req.metadata_mut()
                    .insert("x-scope-orgid", t.parse().unwrap());
            }
            let mut c = c.clone();
            return grpc_outcome(
                self.rt
                    .block_on(async move { c.export(req).await.map(|_| ()) }),
            );
        }
        let (client, url) = self.http.as_ref().unwrap();
        let mut rb = client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec());
        if let Some(t) = self.tenant {
            rb = rb.header("x-scope-orgid", t);
        }
        self.rt.block_on(async move {
            match rb.send().await {
                Ok(resp) if resp.status().is_success() => Outcome::Accepted,
                Ok(resp) if resp.status() == 503 && resp.headers().contains_key("retry-after") => {
                    Outcome::Refused
                }
                Ok(resp) => Outcome::Broken(format!("HTTP {}", resp.status())),
                Err(e) => Outcome::Broken(format!("HTTP request failed: {e}")),
            }
        })
    }
}

/// What the clients saw, in the order the answers came.
#[derive(Default)]
struct Log {
    /// (tenant, outcome) per request.
    answers: Vec<(Option<&'static str>, Outcome)>,
    /// First numbers of the accepted requests (each carries `POINTS` numbers from there).
    accepted: Vec<u64>,
}

/// Runs `clients` in threads, each sending `points`-point requests with numbers of its own until
/// `stop` is set; a refused client waits a little (less than the hint: the test wants pressure).
fn run_clients(
    clients: Vec<Client>,
    points: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(0));
    clients
        .into_iter()
        .map(|client| {
            let (stop, log, next) = (stop.clone(), log.clone(), next.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let first = next.fetch_add(1, Ordering::SeqCst) * points;
                    let outcome = client.send(numbered_request(first, points));
                    let refused = outcome == Outcome::Refused;
                    {
                        let mut l = log.lock().unwrap();
                        if outcome == Outcome::Accepted {
                            l.accepted.push(first);
                        }
                        l.answers.push((client.tenant, outcome));
                    }
                    if refused {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect()
}

/// `VmHWM` (peak resident memory) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Requests refused for memory (before their body was read), and points refused for memory (the
/// limit was reached while the body was decoded).
fn refused_for_memory(s: &Sluice, tenant: Option<&str>) -> (f64, f64) {
    let mut labels = vec![("reason", "memory_limit")];
    if let Some(t) = tenant {
        labels.push(("tenant", t));
    }
    (
        s.metric("sluice_receiver_refused_requests_total", &labels),
        s.metric("sluice_receiver_refused_points_total", &labels),
    )
}

/// Samples Sluice's resident memory until `stop`; returns the largest sample, in KiB.
fn sample_rss(s: &Sluice, until: impl Fn() -> bool) -> u64 {
    let mut peak = 0;
    while !until() {
        peak = peak.max(s.rss_kib());
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

fn assert_no_broken(log: &Log) {
    let broken: Vec<_> = log
        .answers
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Broken(_)))
        .collect();
    assert!(
        broken.is_empty(),
        "{} of {} answers were neither a success nor a retryable refusal, e.g. {:?}",
        broken.len(),
        log.answers.len(),
        broken.first()
    );
}

/// The backend is down, the queues are practically unbounded: the memory limit refuses clients
/// with retryable answers and keeps Sluice under it; once the backend is back, everything
/// accepted arrives and Sluice takes new data again.
#[test]
fn memory_limit_holds_under_overload_and_the_queue_drains() {
    let down = Arc::new(AtomicBool::new(true));
    let sink = OtlpSink::start(Behaviour::DownWhile(down.clone()));
    let s = Sluice::start(&config(sink.addr, ""), LISTENERS);
    let limit_kib = LIMIT_MIB << 10;
    assert!(
        s.rss_kib() < limit_kib / 2,
        "Sluice starts at {} KiB",
        s.rss_kib()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let mut clients: Vec<Client> = (0..4).map(|_| Client::grpc(&s, None)).collect();
    clients.extend((0..2).map(|_| Client::http(&s, None)));
    let threads = run_clients(clients, POINTS, stop.clone(), log.clone());
    // Push until Sluice has refused for a while (or the time is up).
    let started = Instant::now();
    let peak = sample_rss(&s, || {
        let refused = log
            .lock()
            .unwrap()
            .answers
            .iter()
            .filter(|(_, o)| *o == Outcome::Refused)
            .count();
        refused >= 60 || started.elapsed() > LOAD_FOR
    });
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let hwm = peak_rss_kib(s.child.id());
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_no_broken(&log);
    let refused = log
        .answers
        .iter()
        .filter(|(_, o)| *o == Outcome::Refused)
        .count();
    assert!(
        refused > 0,
        "no refusal in {} requests: the load did not reach the limit",
        log.answers.len()
    );
    let (requests, points) = refused_for_memory(&s, None);
    assert!(
        requests > 0.0,
        "refusals counted: {requests} requests, {points} points"
    );
    assert!(
        peak < limit_kib && hwm < limit_kib,
        "resident memory above the {LIMIT_MIB} MiB limit: sampled peak {peak} KiB, VmHWM {hwm} KiB"
    );
    assert!(!log.accepted.is_empty());
    eprintln!(
        "{} requests, {} accepted, {refused} refused; peak RSS {peak} KiB sampled, VmHWM {hwm} KiB",
        log.answers.len(),
        log.accepted.len()
    );

    // The backend comes back: everything accepted arrives, once, and the queues empty.
    down.store(false, Ordering::SeqCst);
    let accepted_points = log.accepted.len() * POINTS as usize;
    wait_until(
        Duration::from_secs(40),
        "every accepted point at the sink",
        || sink.points() >= accepted_points,
    );
    let mut expected: Vec<u64> = log
        .accepted
        .iter()
        .flat_map(|first| *first..first + POINTS)
        .collect();
    expected.sort();
    assert!(
        numbers(&sink.requests()) == expected,
        "points lost or duplicated"
    );
    wait_until(Duration::from_secs(10), "the queues empty", || {
        s.metric("sluice_exporter_queue_points", &[]) == 0.0
            && s.metric("sluice_exporter_queue_bytes", &[]) == 0.0
    });

    // The memory held by the queue is given back: new requests are taken again.
    let client = Client::grpc(&s, None);
    let mut n = 1 << 40;
    wait_until(
        Duration::from_secs(20),
        "a request accepted after the drain",
        || {
            n += POINTS;
            match client.send(numbered_request(n, POINTS)) {
                Outcome::Accepted => true,
                Outcome::Refused => false,
                Outcome::Broken(e) => panic!("{e}"),
            }
        },
    );
}

/// Two tenants push alike while the backend is down: the bronze tenant is refused from 70% of the
/// limit, the gold one only from 80%, so bronze's refusals start first and gold is still taken
/// while bronze is refused. (Above 80% both are refused alike, so how many refusals each gets in
/// all depends on how fast the band between the thresholds fills: not compared.)
#[test]
fn memory_pressure_refuses_bronze_before_gold() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.yaml");
    std::fs::write(
        &tenants,
        "tenants:\n  acme: { sla_tier: gold }\n  globex: { sla_tier: bronze }\n",
    )
    .unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let sink = OtlpSink::start(Behaviour::DownWhile(down.clone()));
    let tenant = format!(
        "    tenant: {{ header: X-Scope-OrgID, tenants_file: \"{}\" }}",
        tenants.display()
    );
    let s = Sluice::start(&config(sink.addr, &tenant), LISTENERS);

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let clients = vec![
        Client::grpc(&s, Some("acme")),
        Client::grpc(&s, Some("acme")),
        Client::grpc(&s, Some("globex")),
        Client::grpc(&s, Some("globex")),
    ];
    // Small requests: the band between bronze's threshold and gold's holds many of them.
    let threads = run_clients(clients, POINTS / 10, stop.clone(), log.clone());
    let refusals = |tenant| {
        log.lock()
            .unwrap()
            .answers
            .iter()
            .filter(|(t, o)| *t == Some(tenant) && *o == Outcome::Refused)
            .count()
    };
    // Until gold, too, has been refused a few times (or the time is up).
    let started = Instant::now();
    let peak = sample_rss(&s, || refusals("acme") >= 5 || started.elapsed() > LOAD_FOR);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_no_broken(&log);
    let first_refusal = |tenant| {
        log.answers
            .iter()
            .position(|(t, o)| *t == Some(tenant) && *o == Outcome::Refused)
    };
    let count = |tenant, outcome: Outcome| {
        log.answers
            .iter()
            .filter(|(t, o)| *t == Some(tenant) && *o == outcome)
            .count()
    };
    let summary = format!(
        "gold: {} accepted, {} refused (first at answer {:?}); bronze: {} accepted, {} refused (first at {:?}); peak RSS {peak} KiB",
        count("acme", Outcome::Accepted),
        count("acme", Outcome::Refused),
        first_refusal("acme"),
        count("globex", Outcome::Accepted),
        count("globex", Outcome::Refused),
        first_refusal("globex"),
    );
    eprintln!("{summary}");
    let bronze_first = first_refusal("globex").expect("bronze was never refused");
    let gold_first = first_refusal("acme").unwrap_or(log.answers.len());
    assert!(bronze_first < gold_first, "{summary}");
    // While bronze was being refused, and before gold was, gold was still taken.
    assert!(
        log.answers[bronze_first..gold_first]
            .iter()
            .any(|(t, o)| *t == Some("acme") && *o == Outcome::Accepted),
        "{summary}"
    );
    // The server counted bronze's refusals as refused for memory.
    assert!(refused_for_memory(&s, Some("globex")).0 > 0.0, "{summary}");
    assert!(peak < LIMIT_MIB << 10, "{summary}");
}
