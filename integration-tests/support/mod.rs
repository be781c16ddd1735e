//! Shared test support: start the real `sluice` binary on a config, find the addresses it bound
//! (configs use `127.0.0.1:0`), read its self-telemetry, and run an in-process OTLP/gRPC server that
//! records what it receives and can be told to fail.

#![allow(dead_code)]

pub mod peers;

use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
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
        Self::start_with_env(yaml, &[], expect)
    }

    /// As `start`, with environment variables for the process (for `${env:...}` in the config).
    pub fn start_with_env(yaml: &str, envs: &[(&str, &str)], expect: &[&str]) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&path)
            .envs(envs.iter().copied())
            // SLUICE_TEST_LOG=debug shows more of Sluice's log in failing tests.
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
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
                    panic!(
                        "sluice did not start listening on {expect:?}; log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            };
            if let Some((key, addr)) = listening(&line) {
                addrs.insert(key, addr);
            }
        }
        Sluice {
            child,
            addrs,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self, key: &str) -> SocketAddr {
        self.addrs[key]
    }

    pub fn grpc_url(&self, receiver: &str) -> String {
        format!("http://{}", self.addr(&format!("{receiver}/grpc")))
    }

    pub fn http_url(&self, receiver: &str) -> String {
        format!(
            "http://{}/v1/metrics",
            self.addr(&format!("{receiver}/http"))
        )
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
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit after SIG{signal}"
            );
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
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_string())
    };
    if line.contains("receiver listening") {
        // "OTLP/HTTP receiver listening" and "remote_write receiver listening" are `<id>/http`.
        let proto = if line.contains("OTLP/gRPC") {
            "grpc"
        } else {
            "http"
        };
        let id = field("receiver=")?;
        let addr = field("endpoint=")?.parse().ok()?;
        return Some((format!("{id}/{proto}"), addr));
    }
    if line.contains("self-telemetry on") {
        return Some(("telemetry".into(), field("address=")?.parse().ok()?));
    }
    if line.contains("prometheus exporter listening") {
        // The `prometheus` exporter's /metrics endpoint is `<exporter id>/http`.
        let id = field("exporter=")?;
        let addr = field("endpoint=")?.parse().ok()?;
        return Some((format!("{id}/http"), addr));
    }
    None
}

/// A blocking HTTP GET over a plain TCP socket (keeps the tests free of a second HTTP client).
pub fn http_get(url: &str) -> String {
    http_get_status(url)
        .map(|(_, body)| body)
        .expect("GET failed")
}

/// A blocking HTTP GET; the status code and body, or `None` if the connection failed.
pub fn http_get_status(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
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
    FailFirst {
        n: usize,
        code: tonic::Code,
    },
    /// Always answer this status.
    AlwaysFail(tonic::Code),
    /// Answer UNAVAILABLE while the flag is set (a backend that is down until released).
    DownWhile(Arc<std::sync::atomic::AtomicBool>),
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
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        let fail = match self.behaviour {
            Behaviour::Accept => None,
            Behaviour::FailFirst { n, code } => (s.calls <= n).then_some(code),
            Behaviour::AlwaysFail(code) => Some(code),
            Behaviour::DownWhile(ref down) => down
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(tonic::Code::Unavailable),
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(Captured::default()));
        let svc = Capture {
            state: state.clone(),
            behaviour,
        };
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
        OtlpSink {
            addr,
            state,
            _rt: rt,
        }
    }

    pub fn points(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(request_points)
            .sum()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

pub fn request_points(r: &ExportMetricsServiceRequest) -> usize {
    r.resource_metrics
        .iter()
        .map(sluice_core::batch::resource_points)
        .sum()
}

/// A closed local port: bound, then released.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A client for Sluice's OTLP/gRPC receiver, with a runtime of its own.
pub struct GrpcClient {
    rt: tokio::runtime::Runtime,
    client: sluice_core::proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient<tonic::transport::Channel>,
    channel: tonic::transport::Channel,
}

impl GrpcClient {
    pub fn connect(url: &str) -> GrpcClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_shared(url.to_string())
                    .unwrap()
                    .connect(),
            )
            .unwrap();
        let client = sluice_core::proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient::new(channel.clone());
        GrpcClient {
            rt,
            client,
            channel,
        }
    }

    pub fn export(
        &self,
        req: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let mut c = self.client.clone();
        self.rt
            .block_on(async move { c.export(req).await.map(|r| r.into_inner()) })
    }

    /// As [`GrpcClient::export`], with request metadata (`authorization`, `x-scope-orgid`, ...).
    pub fn export_with(
        &self,
        req: ExportMetricsServiceRequest,
        metadata: &[(&str, &str)],
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let mut req = Request::new(req);
        for (k, v) in metadata {
            let key =
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("a metadata key");
            req.metadata_mut()
                .insert(key, v.parse().expect("a metadata value"));
        }
        let mut c = self.client.clone();
        self.rt
            .block_on(async move { c.export(req).await.map(|r| r.into_inner()) })
    }

    pub fn export_gzip(
        &self,
        req: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let mut c = self
            .client
            .clone()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        self.rt
            .block_on(async move { c.export(req).await.map(|r| r.into_inner()) })
    }

    /// Sends `body` as the request message, unparsed (for malformed-input tests).
    pub fn export_raw(&self, body: Vec<u8>) -> Result<Vec<u8>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        self.rt.block_on(async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unknown(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            );
            grpc.unary(Request::new(body), path, RawCodec)
                .await
                .map(|r| r.into_inner())
        })
    }
}

/// A gRPC codec that passes message bytes through as they are.
#[derive(Default, Clone)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// A request with `n` gauge points named `test.gauge`, values `first..first+n`, distinct attribute
/// `i`, so that every point can be identified at the other end.
pub fn numbered_request(first: u64, n: u64) -> ExportMetricsServiceRequest {
    use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use sluice_core::proto::otlp::metrics::v1::*;
    let points = (first..first + n)
        .map(|i| NumberDataPoint {
            attributes: vec![KeyValue {
                key: "i".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i as i64)),
                }),
            }],
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(sluice_core::proto::otlp::resource::v1::Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("numbered".into())),
                    }),
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "test.gauge".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The numbers carried by `numbered_request` points, sorted.
pub fn numbers(reqs: &[ExportMetricsServiceRequest]) -> Vec<u64> {
    use sluice_core::proto::otlp::metrics::v1::{metric::Data, number_data_point};
    let mut out = Vec::new();
    for m in reqs
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        if let Some(Data::Gauge(g)) = &m.data {
            for p in &g.data_points {
                if let Some(number_data_point::Value::AsDouble(v)) = p.value {
                    out.push(v as u64);
                }
            }
        }
    }
    out.sort();
    out
}

/// An HTTP client (reqwest is built with rustls, which needs its crypto provider installed).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
