//! Real peers started by the tests: Prometheus (remote_write receiver on) and VictoriaMetrics,
//! from Debian's packages, on loopback ports with temporary data directories; and an in-process
//! remote_write receiver that records decoded requests and can be told to fail or be slow.

#![allow(dead_code)]

use prost::Message;
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(bin: &str) {
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: run integration-tests/install-peers.sh (Debian packages prometheus, victoria-metrics)"
    );
}

/// A peer process, killed when dropped.
pub struct Peer {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Prometheus with `--web.enable-remote-write-receiver`.
    pub fn prometheus() -> Peer {
        require("/usr/bin/prometheus");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global: { scrape_interval: 15s }\n").unwrap();
        let port = free_port();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Peer {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            child,
            _dir: dir,
        };
        p.wait_ready("/-/ready");
        p
    }

    /// Prometheus scraping `target` (`host:port`, path `/metrics`) as job `sluice` every
    /// `interval`, with exemplar storage on (so that OpenMetrics exemplars are parsed and kept).
    pub fn prometheus_scraping(target: &str, interval: &str) -> Peer {
        require("/usr/bin/prometheus");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global: {{ scrape_interval: 15s }}\n\
                 scrape_configs:\n  \
                 - job_name: sluice\n    \
                 scrape_interval: {interval}\n    \
                 scrape_timeout: {interval}\n    \
                 static_configs: [{{ targets: [\"{target}\"] }}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Peer {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            child,
            _dir: dir,
        };
        p.wait_ready("/-/ready");
        // `/-/ready` answers 503 "Service Unavailable" until the TSDB is open; queries too.
        let ready = format!("http://{}/-/ready", p.addr);
        super::wait_until(Duration::from_secs(30), "Prometheus ready", || {
            super::http_get(&ready).contains("Ready")
        });
        p
    }

    /// VictoriaMetrics single node; queries see data as soon as it is written.
    pub fn victoria_metrics() -> Peer {
        require("/usr/bin/victoria-metrics");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("/usr/bin/victoria-metrics")
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Peer {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            child,
            _dir: dir,
        };
        p.wait_ready("/health");
        p
    }

    /// VictoriaMetrics serving HTTPS with a certificate for 127.0.0.1 signed by a fresh CA; returns
    /// the peer and the CA's PEM file.
    pub fn victoria_metrics_tls() -> (Peer, std::path::PathBuf) {
        require("/usr/bin/victoria-metrics");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stderr(Stdio::null())
                .status()
                .unwrap()
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
            "/CN=sluice-test-ca",
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
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
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
        let port = free_port();
        let child = Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-storageDataPath={}", d.join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-tls")
            .arg(format!("-tlsCertFile={}", d.join("server.pem").display()))
            .arg(format!("-tlsKeyFile={}", d.join("server.key").display()))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ca = d.join("ca.pem");
        let p = Peer {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            child,
            _dir: dir,
        };
        super::wait_until(
            Duration::from_secs(30),
            "victoria-metrics (TLS) listening",
            || std::net::TcpStream::connect(p.addr).is_ok(),
        );
        (p, ca)
    }

    fn wait_ready(&self, path: &str) {
        let url = format!("http://{}{}", self.addr, path);
        super::wait_until(Duration::from_secs(30), &format!("{url} ready"), || {
            super::http_get_status(&url).is_some_and(|(status, _)| status == 200)
        });
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// An instant query at `time` (seconds); returns `data.result`.
    pub fn query(&self, promql: &str, time: f64) -> Vec<serde_json::Value> {
        query_at(self.addr, promql, time)
    }

    /// The value of a query expected to give one series.
    pub fn value(&self, promql: &str, time: f64) -> Option<f64> {
        let r = self.query(promql, time);
        r.first()
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
    }
}

/// One decoded request as the sink saw it.
#[derive(Clone, Debug)]
pub struct RwRequest {
    pub path: String,
    pub headers: http::HeaderMap,
    /// v1 form; v2 requests are converted (labels resolved from symbols).
    pub v1: v1::WriteRequest,
    pub v2: Option<v2::Request>,
    pub snappy_framed: bool,
}

#[derive(Clone, Debug)]
pub enum RwBehaviour {
    Accept,
    /// Answer `status` (with an optional Retry-After) to the first `n` requests.
    FailFirst {
        n: usize,
        status: u16,
        retry_after: Option<u64>,
    },
    /// Sleep a random 0..max_ms before committing each request.
    RandomDelay {
        max_ms: u64,
    },
    /// Answer 415 to v2 requests.
    RejectV2,
}

#[derive(Default)]
pub struct RwState {
    pub requests: Vec<RwRequest>,
    pub calls: usize,
    /// Arrival time of each call (for backoff checks).
    pub call_times: Vec<std::time::Instant>,
    /// Tenants answered 503 (by their `X-Scope-OrgID` header or a `/<tenant>/` path segment),
    /// whatever the behaviour, until released.
    pub refused_tenants: std::collections::HashSet<String>,
    /// Calls answered 503 because of `refused_tenants`.
    pub tenant_refusals: usize,
}

pub struct RwSink {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<RwState>>,
    _rt: tokio::runtime::Runtime,
}

impl RwSink {
    pub fn start(behaviour: RwBehaviour) -> RwSink {
        use axum::{Router, routing::post};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(RwState::default()));
        let st = state.clone();
        let addr = rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let app =
                Router::new().route(
                    "/{*path}",
                    post(
                        move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
                            let st = st.clone();
                            let behaviour = behaviour.clone();
                            async move {
                                handle(st, behaviour, uri.path().to_string(), headers, body).await
                            }
                        },
                    ),
                );
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            addr
        });
        RwSink {
            addr,
            state,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn requests(&self) -> Vec<RwRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Answers 503 to `tenant`'s requests until [`RwSink::release_tenant`].
    pub fn refuse_tenant(&self, tenant: &str) {
        self.state
            .lock()
            .unwrap()
            .refused_tenants
            .insert(tenant.into());
    }

    pub fn release_tenant(&self, tenant: &str) {
        self.state.lock().unwrap().refused_tenants.remove(tenant);
    }

    pub fn samples(&self) -> usize {
        self.requests()
            .iter()
            .flat_map(|r| &r.v1.timeseries)
            .map(|t| t.samples.len())
            .sum()
    }
}

async fn handle(
    st: Arc<Mutex<RwState>>,
    behaviour: RwBehaviour,
    path: String,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let call = {
        let mut s = st.lock().unwrap();
        s.calls += 1;
        s.call_times.push(std::time::Instant::now());
        s.calls
    };
    {
        let mut s = st.lock().unwrap();
        let tenant = headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if s.refused_tenants
            .iter()
            .any(|t| t == tenant || path.contains(&format!("/{t}/")))
        {
            s.tenant_refusals += 1;
            return (http::StatusCode::SERVICE_UNAVAILABLE, "tenant refused").into_response();
        }
    }
    let is_v2 = headers.get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap()
            .contains("io.prometheus.write.v2.Request")
    });
    match behaviour {
        RwBehaviour::FailFirst {
            n,
            status,
            retry_after,
        } if call <= n => {
            let mut r =
                (http::StatusCode::from_u16(status).unwrap(), "told to fail").into_response();
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", s.into());
            }
            return r;
        }
        RwBehaviour::RejectV2 if is_v2 => {
            return (http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "v1 only").into_response();
        }
        RwBehaviour::RandomDelay { max_ms } => {
            tokio::time::sleep(Duration::from_millis(fastrand_ms(max_ms))).await;
        }
        _ => {}
    }
    let snappy_framed =
        body.starts_with(&[0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block format");
    let (req, v2req) = if is_v2 {
        let r = v2::Request::decode(raw.as_slice()).expect("a v2 request");
        (v2_to_v1(&r), Some(r))
    } else {
        (
            v1::WriteRequest::decode(raw.as_slice()).expect("a v1 request"),
            None,
        )
    };
    let samples: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
    let histograms: usize = req.timeseries.iter().map(|t| t.histograms.len()).sum();
    st.lock().unwrap().requests.push(RwRequest {
        path,
        headers,
        v1: req,
        v2: v2req,
        snappy_framed,
    });
    let mut r = http::StatusCode::NO_CONTENT.into_response();
    if is_v2 {
        r.headers_mut()
            .insert("X-Prometheus-Remote-Write-Samples-Written", samples.into());
        r.headers_mut().insert(
            "X-Prometheus-Remote-Write-Histograms-Written",
            histograms.into(),
        );
        r.headers_mut()
            .insert("X-Prometheus-Remote-Write-Exemplars-Written", 0.into());
    }
    r
}

fn fastrand_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max);
    h.finish() % max.max(1)
}

fn v2_to_v1(r: &v2::Request) -> v1::WriteRequest {
    let label = |refs: &[u32]| -> Vec<v1::Label> {
        refs.chunks(2)
            .map(|p| v1::Label {
                name: r.symbols[p[0] as usize].clone(),
                value: r.symbols[p[1] as usize].clone(),
            })
            .collect()
    };
    v1::WriteRequest {
        timeseries: r
            .timeseries
            .iter()
            .map(|t| v1::TimeSeries {
                labels: label(&t.labels_refs),
                samples: t
                    .samples
                    .iter()
                    .map(|s| v1::Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: Vec::new(),
    }
}

/// `name{k="v",...}` of a v1 series, labels in their order, for messages.
pub fn series_text(t: &v1::TimeSeries) -> String {
    let labels: Vec<String> = t
        .labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", labels.join(","))
}

/// An instant query at `time` (seconds) against the Prometheus query API at `addr` (Prometheus,
/// VictoriaMetrics); returns `data.result`.
pub fn query_at(addr: SocketAddr, promql: &str, time: f64) -> Vec<serde_json::Value> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = super::http_get(&format!("http://{addr}/api/v1/query?query={q}&time={time}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}
