//! The backend of every run: a remote_write receiver (1.0 and 2.0, snappy or zstd) and an OTLP/gRPC
//! server on 127.0.0.1, in the harness' own runtime. It decodes everything that arrives and counts
//! samples (or data points), distinct series and requests; `target_info` samples, which a collector
//! adds on its own, are counted apart.

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{Metric, metric::Data};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};
use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

const TARGET_INFO: &str = "target_info";

#[derive(Default)]
struct Counts {
    points: AtomicU64,
    extra: AtomicU64,
    requests: AtomicU64,
    bad_requests: AtomicU64,
    wire_bytes: AtomicU64,
    series: Mutex<HashSet<u64>>,
    last_arrival: Mutex<Option<Instant>>,
}

impl Counts {
    fn arrived(&self, wire_bytes: usize) {
        self.requests.fetch_add(1, Relaxed);
        self.wire_bytes.fetch_add(wire_bytes as u64, Relaxed);
    }

    fn record(&self, points: u64, extra: u64, series: impl IntoIterator<Item = u64>) {
        self.series.lock().expect("not poisoned").extend(series);
        self.points.fetch_add(points, Relaxed);
        self.extra.fetch_add(extra, Relaxed);
        *self.last_arrival.lock().expect("not poisoned") = Some(Instant::now());
    }
}

/// What the sink has seen so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// Samples and native histograms (remote_write) or data points (OTLP), `target_info` excluded.
    pub points: u64,
    /// `target_info` samples.
    pub extra: u64,
    pub requests: u64,
    /// Requests that did not decode (answered 400).
    pub bad_requests: u64,
    pub wire_bytes: u64,
    pub series: usize,
    pub last_arrival: Option<Instant>,
}

/// A running sink; its servers stop when it is dropped.
pub struct Sink {
    pub rw_addr: SocketAddr,
    pub otlp_addr: SocketAddr,
    counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sink {
    /// Starts both servers on ephemeral loopback ports (call from within the harness runtime).
    pub async fn start() -> anyhow::Result<Sink> {
        let counts = Arc::new(Counts::default());
        let rw = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let rw_addr = rw.local_addr()?;
        let app = axum::Router::new()
            .fallback(axum::routing::post(remote_write))
            .layer(DefaultBodyLimit::max(256 << 20))
            .with_state(counts.clone());
        let rw_task = tokio::spawn(async move {
            let _ = axum::serve(rw, app).await;
        });
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let otlp_addr = grpc.local_addr()?;
        let svc = MetricsServiceServer::new(OtlpSink(counts.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .max_decoding_message_size(256 << 20);
        let incoming = tonic::transport::server::TcpIncoming::from(grpc);
        let grpc_task = tokio::spawn(async move {
            // Flow-control windows as large as a real backend's: with h2's 64 KiB defaults, large
            // uncompressed batches would crawl and the sink, not the collector, would set the pace.
            let _ = tonic::transport::Server::builder()
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Sink {
            rw_addr,
            otlp_addr,
            counts,
            tasks: vec![rw_task, grpc_task],
        })
    }

    pub fn rw_url(&self) -> String {
        format!("http://{}/api/v1/write", self.rw_addr)
    }

    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp_addr)
    }

    pub fn seen(&self) -> Seen {
        let c = &self.counts;
        Seen {
            points: c.points.load(Relaxed),
            extra: c.extra.load(Relaxed),
            requests: c.requests.load(Relaxed),
            bad_requests: c.bad_requests.load(Relaxed),
            wire_bytes: c.wire_bytes.load(Relaxed),
            series: c.series.lock().expect("not poisoned").len(),
            last_arrival: *c.last_arrival.lock().expect("not poisoned"),
        }
    }
}

// ---- remote_write -------------------------------------------------------------------------------

async fn remote_write(
    State(counts): State<Arc<Counts>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    counts.arrived(body.len());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let raw = if header("content-encoding").eq_ignore_ascii_case("zstd") {
        zstd::decode_all(body.as_ref()).map_err(|e| e.to_string())
    } else {
        snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| e.to_string())
    };
    let is_v2 = header("content-type").contains("io.prometheus.write.v2.Request");
    let decoded = raw.and_then(|raw| {
        if is_v2 {
            v2::Request::decode(raw.as_slice())
                .map(|r| count_v2(&counts, &r))
                .map_err(|e| e.to_string())
        } else {
            v1::WriteRequest::decode(raw.as_slice())
                .map(|r| count_v1(&counts, &r))
                .map_err(|e| e.to_string())
        }
    });
    match decoded {
        Ok((samples, histograms)) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            if is_v2 {
                let h = r.headers_mut();
                h.insert("X-Prometheus-Remote-Write-Samples-Written", samples.into());
                h.insert(
                    "X-Prometheus-Remote-Write-Histograms-Written",
                    histograms.into(),
                );
                h.insert("X-Prometheus-Remote-Write-Exemplars-Written", 0.into());
            }
            r
        }
        Err(e) => {
            counts.bad_requests.fetch_add(1, Relaxed);
            (StatusCode::BAD_REQUEST, e).into_response()
        }
    }
}

/// Counts a 1.0 request; returns (samples, histograms) including `target_info`.
fn count_v1(counts: &Counts, r: &v1::WriteRequest) -> (u64, u64) {
    let (mut points, mut extra, mut samples, mut histograms) = (0, 0, 0, 0);
    let mut series = Vec::with_capacity(r.timeseries.len());
    for t in &r.timeseries {
        let n = (t.samples.len() + t.histograms.len()) as u64;
        samples += t.samples.len() as u64;
        histograms += t.histograms.len() as u64;
        let mut h = DefaultHasher::new();
        let mut target_info = false;
        for l in &t.labels {
            (&l.name, &l.value).hash(&mut h);
            target_info |= l.name == "__name__" && l.value == TARGET_INFO;
        }
        if target_info {
            extra += n;
        } else {
            points += n;
            series.push(h.finish());
        }
    }
    counts.record(points, extra, series);
    (samples, histograms)
}

/// Counts a 2.0 request (labels resolved through the symbol table).
fn count_v2(counts: &Counts, r: &v2::Request) -> (u64, u64) {
    let (mut points, mut extra, mut samples, mut histograms) = (0, 0, 0, 0);
    let mut series = Vec::with_capacity(r.timeseries.len());
    let symbol = |i: u32| r.symbols.get(i as usize).map_or("", String::as_str);
    for t in &r.timeseries {
        let n = (t.samples.len() + t.histograms.len()) as u64;
        samples += t.samples.len() as u64;
        histograms += t.histograms.len() as u64;
        let mut h = DefaultHasher::new();
        let mut target_info = false;
        for pair in t.labels_refs.chunks(2) {
            let (name, value) = (symbol(pair[0]), symbol(*pair.get(1).unwrap_or(&0)));
            (name, value).hash(&mut h);
            target_info |= name == "__name__" && value == TARGET_INFO;
        }
        if target_info {
            extra += n;
        } else {
            points += n;
            series.push(h.finish());
        }
    }
    counts.record(points, extra, series);
    (samples, histograms)
}

// ---- OTLP ---------------------------------------------------------------------------------------

struct OtlpSink(Arc<Counts>);

#[tonic::async_trait]
impl MetricsService for OtlpSink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        self.0.arrived(req.encoded_len());
        let mut points = 0;
        let mut series = Vec::new();
        for rm in &req.resource_metrics {
            let mut resource = DefaultHasher::new();
            if let Some(r) = &rm.resource {
                hash_attributes(&mut resource, &r.attributes);
            }
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    for_each_point(m, |attrs| {
                        let mut h = resource.clone();
                        m.name.hash(&mut h);
                        hash_attributes(&mut h, attrs);
                        series.push(h.finish());
                        points += 1;
                    });
                }
            }
        }
        self.0.record(points, 0, series);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn hash_attributes(h: &mut DefaultHasher, attrs: &[KeyValue]) {
    for kv in attrs {
        kv.key.hash(h);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.hash(h),
            Some(any_value::Value::IntValue(i)) => i.hash(h),
            Some(any_value::Value::DoubleValue(d)) => d.to_bits().hash(h),
            Some(any_value::Value::BoolValue(b)) => b.hash(h),
            // Arrays, maps and bytes do not occur in the workloads; their key is enough here.
            _ => {}
        }
    }
}

/// Calls `f` with the attributes of each data point of `m`.
fn for_each_point(m: &Metric, mut f: impl FnMut(&[KeyValue])) {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(Data::Sum(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().for_each(|p| f(&p.attributes));
        }
        Some(Data::Summary(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        None => {}
    }
}
