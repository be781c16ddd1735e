//! Shared test support: start the real `sluice` binary on a config, find the addresses it bound
//! (configs use `127.0.0.1:0`), read its self-telemetry, and run an in-process OTLP/gRPC server that
//! records what it receives and can be told to fail.

#![allow(dead_code)]

use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use sluice_core::proto::otlp::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// A running `sluice run` process; killed when dropped.
pub struct Sluice {
    pub child: Child,
    /// `receiver id/protocol` -> address, and `telemetry` -> address.
    pub addrs: HashMap<String, SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Sluice {
    /// Starts sluice on `yaml` and waits until every listener in `expect` (e.g. `otlp/grpc`,
    /// `otlp/http`, `telemetry`) has logged its address.
    pub fn start(yaml: &str, expect: &[&str]) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !expect.iter().all(|e| addrs.contains_key(*e)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("sluice did not start listening on {expect:?}; log:\n{}", log.lock().unwrap().join("\n"));
                }
            };
            if let Some((key, addr)) = listening(&line) {
                addrs.insert(key, addr);
            }
        }
        Sluice { child, addrs, log, _dir: dir }
    }

    pub fn addr(&self, key: &str) -> SocketAddr {
        self.addrs[key]
    }

    pub fn grpc_url(&self, receiver: &str) -> String {
        format!("http://{}", self.addr(&format!("{receiver}/grpc")))
    }

    pub fn http_url(&self, receiver: &str) -> String {
        format!("http://{}/v1/metrics", self.addr(&format!("{receiver}/http")))
    }

    /// The sum of a self-telemetry metric over series that carry `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = format!("http://{}/metrics", self.addr("telemetry"));
        let text = http_get(&url);
        sluice_core::telemetry::parse_exposition_value(&text, name, labels)
    }

    /// Sends SIGTERM (or SIGINT) and waits for the exit status.
    pub fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "sluice did not exit after SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses the address from a line such as
/// `... OTLP/gRPC receiver listening receiver=otlp endpoint=127.0.0.1:4317`.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    let field = |name: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(|v| v.trim_matches('"').to_string())
    };
    if line.contains("receiver listening") {
        let proto = if line.contains("OTLP/gRPC") { "grpc" } else { "http" };
        let id = field("receiver=")?;
        let addr = field("endpoint=")?.parse().ok()?;
        return Some((format!("{id}/{proto}"), addr));
    }
    if line.contains("self-telemetry on") {
        return Some(("telemetry".into(), field("address=")?.parse().ok()?));
    }
    None
}

/// A blocking HTTP GET over a plain TCP socket (keeps the tests free of a second HTTP client).
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// How the in-process OTLP server answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Accept,
    /// Answer this status to the first `n` calls, then accept.
    FailFirst { n: usize, code: tonic::Code },
    /// Always answer this status.
    AlwaysFail(tonic::Code),
}

#[derive(Default)]
pub struct Captured {
    pub requests: Vec<ExportMetricsServiceRequest>,
    pub calls: usize,
    pub metadata: Vec<tonic::metadata::MetadataMap>,
}

#[derive(Clone)]
struct Capture {
    state: Arc<Mutex<Captured>>,
    behaviour: Behaviour,
}

#[tonic::async_trait]
impl MetricsService for Capture {
    async fn export(&self, req: Request<ExportMetricsServiceRequest>) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        let fail = match self.behaviour {
            Behaviour::Accept => None,
            Behaviour::FailFirst { n, code } => (s.calls <= n).then_some(code),
            Behaviour::AlwaysFail(code) => Some(code),
        };
        if let Some(code) = fail {
            return Err(Status::new(code, "test server told to fail"));
        }
        s.metadata.push(req.metadata().clone());
        s.requests.push(req.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP/gRPC server on 127.0.0.1:0 in a background runtime.
pub struct OtlpSink {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Captured>>,
    _rt: tokio::runtime::Runtime,
}

impl OtlpSink {
    pub fn start(behaviour: Behaviour) -> OtlpSink {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let state = Arc::new(Mutex::new(Captured::default()));
        let svc = Capture { state: state.clone(), behaviour };
        let addr = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(
                        MetricsServiceServer::new(svc)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                            .max_decoding_message_size(256 << 20),
                    )
                    .serve_with_incoming(incoming),
            );
            addr
        });
        OtlpSink { addr, state, _rt: rt }
    }

    pub fn points(&self) -> usize {
        self.state.lock().unwrap().requests.iter().map(|r| request_points(r)).sum()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

pub fn request_points(r: &ExportMetricsServiceRequest) -> usize {
    r.resource_metrics.iter().map(sluice_core::batch::resource_points).sum()
}

/// A closed local port: bound, then released.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
