//! The backend of every run: a remote_write receiver (1.0 and 2.0, snappy or zstd) and an OTLP/gRPC
//! server on 127.0.0.1, in the harness' own runtime. It decodes everything that arrives and counts
//! samples (or data points), distinct series and requests. Series a collector adds on its own
//! (`target_info`, and a scraper's `up` and `scrape_*`) and staleness markers are counted apart;
//! so are the samples of each tenant (the `X-Scope-OrgID` header).

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
#[cfg(test)]
use sluice_core::proto::prometheus_v1 as v1;
use sluice_core::proto::prometheus_v2 as v2;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

mod read_v1;

const TARGET_INFO: &str = "target_info";
/// Prometheus' staleness marker, a NaN with these exact bits.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// The label the benchmark's processors (and vmagent's relabeling) add: samples carrying it are
/// counted, to show that the processing really happened.
pub const BENCH_LABEL: (&str, &str) = ("env", "bench");
/// The header that names a request's tenant.
const TENANT_HEADER: &str = "x-scope-orgid";

/// Whether series `name` is one a collector adds on its own rather than workload: `target_info`
/// (from resource attributes), and the scrape reports `up` and `scrape_*`.
fn is_own(name: &str) -> bool {
    name == TARGET_INFO || name == "up" || name.starts_with("scrape_")
}

/// What one request held.
#[derive(Default)]
struct Tally {
    points: u64,
    extra: u64,
    stale: u64,
    labelled: u64,
    series: Vec<u64>,
}

#[derive(Default)]
struct Counts {
    points: AtomicU64,
    extra: AtomicU64,
    stale: AtomicU64,
    labelled: AtomicU64,
    requests: AtomicU64,
    bad_requests: AtomicU64,
    wire_bytes: AtomicU64,
    series: Mutex<HashSet<u64, foldhash::fast::RandomState>>,
    /// Samples (or points) by tenant header, for requests that had one.
    tenants: Mutex<HashMap<String, u64>>,
    last_arrival: Mutex<Option<Instant>>,
}

impl Counts {
    fn arrived(&self, wire_bytes: usize) {
        self.requests.fetch_add(1, Relaxed);
        self.wire_bytes.fetch_add(wire_bytes as u64, Relaxed);
    }

    fn record(&self, t: Tally, tenant: Option<&str>) {
        self.series.lock().expect("not poisoned").extend(t.series);
        if let Some(tenant) = tenant {
            let mut tenants = self.tenants.lock().expect("not poisoned");
            match tenants.get_mut(tenant) {
                Some(n) => *n += t.points,
                None => {
                    tenants.insert(tenant.to_string(), t.points);
                }
            }
        }
        self.points.fetch_add(t.points, Relaxed);
        self.extra.fetch_add(t.extra, Relaxed);
        self.stale.fetch_add(t.stale, Relaxed);
        self.labelled.fetch_add(t.labelled, Relaxed);
        *self.last_arrival.lock().expect("not poisoned") = Some(Instant::now());
    }
}

/// What the sink has seen so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// Samples and native histograms (remote_write) or data points (OTLP), excluding the two below.
    pub points: u64,
    /// Samples of series the collector adds on its own: `target_info`, `up`, `scrape_*`.
    pub extra: u64,
    /// Staleness markers (remote_write samples whose value is StaleNaN).
    pub stale: u64,
    /// Of `points`, those of series with the [`BENCH_LABEL`] (remote_write).
    pub labelled: u64,
    pub requests: u64,
    /// Requests that did not decode (answered 400).
    pub bad_requests: u64,
    pub wire_bytes: u64,
    pub series: usize,
    /// Distinct tenants (`X-Scope-OrgID`) that samples arrived for.
    pub tenants: usize,
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
            stale: c.stale.load(Relaxed),
            labelled: c.labelled.load(Relaxed),
            requests: c.requests.load(Relaxed),
            bad_requests: c.bad_requests.load(Relaxed),
            wire_bytes: c.wire_bytes.load(Relaxed),
            series: c.series.lock().expect("not poisoned").len(),
            tenants: c.tenants.lock().expect("not poisoned").len(),
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
                .map(|r| count_v2(&r))
                .map_err(|e| e.to_string())
        } else {
            read_v1::count(&raw).map_err(|e| e.to_string())
        }
    });
    match decoded {
        Ok((tally, samples, histograms)) => {
            let tenant = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
            counts.record(tally, tenant);
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

/// How remote_write series are told apart: a hash of their labels, the same in every request.
fn series_hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x5eed)
}

/// Adds a label to a series' hash: every reader hashes labels this one way, so that their counts
/// agree.
fn hash_label(h: &mut impl Hasher, name: &[u8], value: &[u8]) {
    for part in [name, value] {
        h.write(part);
        h.write_u8(0xff);
    }
}

/// Counts prost's message of a 1.0 request, as [`read_v1::count`] counts the request's bytes
/// (the tests' reference); also returns (samples, histograms), everything included.
#[cfg(test)]
fn count_v1(r: &v1::WriteRequest) -> (Tally, u64, u64) {
    let mut tally = Tally::default();
    let (mut samples, mut histograms) = (0, 0);
    for t in &r.timeseries {
        samples += t.samples.len() as u64;
        histograms += t.histograms.len() as u64;
        let mut h = std::hash::BuildHasher::build_hasher(&series_hasher());
        let (mut name, mut labelled) = ("", false);
        for l in &t.labels {
            hash_label(&mut h, l.name.as_bytes(), l.value.as_bytes());
            if l.name == "__name__" {
                name = &l.value;
            }
            labelled |= (l.name.as_str(), l.value.as_str()) == BENCH_LABEL;
        }
        let values = t.samples.iter().map(|s| s.value);
        tally.add(name, h.finish(), labelled, values, t.histograms.len());
    }
    (tally, samples, histograms)
}

/// Counts a 2.0 request (labels resolved through the symbol table).
fn count_v2(r: &v2::Request) -> (Tally, u64, u64) {
    let mut tally = Tally::default();
    let (mut samples, mut histograms) = (0, 0);
    let symbol = |i: u32| r.symbols.get(i as usize).map_or("", String::as_str);
    for t in &r.timeseries {
        samples += t.samples.len() as u64;
        histograms += t.histograms.len() as u64;
        let mut h = std::hash::BuildHasher::build_hasher(&series_hasher());
        let (mut name, mut labelled) = ("", false);
        for pair in t.labels_refs.chunks(2) {
            let (n, value) = (symbol(pair[0]), symbol(*pair.get(1).unwrap_or(&0)));
            hash_label(&mut h, n.as_bytes(), value.as_bytes());
            if n == "__name__" {
                name = value;
            }
            labelled |= (n, value) == BENCH_LABEL;
        }
        let values = t.samples.iter().map(|s| s.value);
        tally.add(name, h.finish(), labelled, values, t.histograms.len());
    }
    (tally, samples, histograms)
}

impl Tally {
    /// Adds a series `name` (hashed to `hash`, with the [`BENCH_LABEL`] or not) with these sample
    /// values and native histograms.
    fn add(
        &mut self,
        name: &str,
        hash: u64,
        labelled: bool,
        values: impl Iterator<Item = f64>,
        histograms: usize,
    ) {
        if is_own(name) {
            self.extra += values.count() as u64 + histograms as u64;
            return;
        }
        self.series.push(hash);
        let before = self.points;
        self.points += histograms as u64;
        for v in values {
            if v.to_bits() == STALE_NAN {
                self.stale += 1;
            } else {
                self.points += 1;
            }
        }
        if labelled {
            self.labelled += self.points - before;
        }
    }
}

// ---- OTLP ---------------------------------------------------------------------------------------

struct OtlpSink(Arc<Counts>);

#[tonic::async_trait]
impl MetricsService for OtlpSink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let tenant = req
            .metadata()
            .get(TENANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
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
        let tally = Tally {
            points,
            series,
            ..Tally::default()
        };
        self.0.record(tally, tenant.as_deref());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], values: &[f64]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| v1::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: values
                .iter()
                .map(|&value| v1::Sample {
                    value,
                    timestamp: 1,
                })
                .collect(),
            ..Default::default()
        }
    }

    // A collector's own series and staleness markers are not workload; labelled samples are
    // counted among the workload's.
    #[test]
    fn own_series_and_staleness_markers_are_counted_apart() {
        let stale = f64::from_bits(STALE_NAN);
        let r = v1::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "up"), ("job", "a")], &[1.0]),
                series(&[("__name__", "scrape_duration_seconds")], &[0.1]),
                series(&[("__name__", "target_info"), ("job", "a")], &[1.0]),
                series(&[("__name__", "go_goroutines")], &[3.0, stale]),
                series(&[("__name__", "go_threads"), BENCH_LABEL], &[4.0, 5.0]),
            ],
            metadata: Vec::new(),
        };
        let (t, samples, histograms) = count_v1(&r);
        assert_eq!((samples, histograms), (7, 0));
        assert_eq!((t.points, t.extra, t.stale, t.labelled), (3, 3, 1, 2));
        assert_eq!(t.series.len(), 2);
    }

    fn same(a: &(Tally, u64, u64), b: &(Tally, u64, u64)) -> bool {
        let (t, u) = (&a.0, &b.0);
        (t.points, t.extra, t.stale, t.labelled, &t.series, a.1, a.2)
            == (u.points, u.extra, u.stale, u.labelled, &u.series, b.1, b.2)
    }

    // The sink's own reader counts every request as prost's decoding does: the workload's, one
    // with exemplars, native histograms, metadata, own series and staleness markers; and refuses
    // what prost refuses (every cut of a request within a field, a label that is not UTF-8).
    #[test]
    fn the_in_place_reader_counts_as_prost_decodes() {
        use crate::workload::{Format, Sizes, Workload};
        let stale = f64::from_bits(STALE_NAN);
        let mut odd = series(&[("__name__", "h"), BENCH_LABEL], &[0.0, stale, -2.5]);
        odd.exemplars = vec![v1::Exemplar {
            labels: vec![v1::Label {
                name: "trace_id".into(),
                value: "t".into(),
            }],
            value: 1.0,
            timestamp: 5,
        }];
        odd.histograms = vec![v1::Histogram::default(); 2];
        let hand = v1::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "up"), ("job", "a")], &[1.0]),
                odd,
                series(&[("__name__", "target_info"), ("job", "a")], &[1.0]),
                series(&[], &[]),
            ],
            metadata: vec![v1::MetricMetadata {
                metric_family_name: "h".into(),
                ..Default::default()
            }],
        };
        let sizes = Sizes {
            samples: 6_000,
            series: 3_000,
            per_request: 2_000,
        };
        let workload = Workload::build(Format::RemoteWrite, sizes, 1_700_000_000_000);
        let mut raws: Vec<Vec<u8>> = workload
            .bodies
            .iter()
            .chain(&workload.preamble)
            .map(|b| snap::raw::Decoder::new().decompress_vec(b).unwrap())
            .collect();
        raws.push(hand.encode_to_vec());
        for raw in &raws {
            let prost = count_v1(&v1::WriteRequest::decode(raw.as_slice()).unwrap());
            assert!(same(&read_v1::count(raw).unwrap(), &prost));
        }
        let raw = raws.last().unwrap();
        for cut in 0..raw.len() {
            let prost = v1::WriteRequest::decode(&raw[..cut]).map(|r| count_v1(&r));
            match (read_v1::count(&raw[..cut]), prost) {
                (Ok(a), Ok(b)) => assert!(same(&a, &b), "cut at {cut}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("cut at {cut}: {:?} vs {:?}", a.err(), b.err()),
            }
        }
        let mut bad = v1::WriteRequest {
            timeseries: vec![series(&[("job", "x")], &[1.0])],
            metadata: Vec::new(),
        }
        .encode_to_vec();
        let at = bad.iter().position(|&b| b == b'x').unwrap();
        bad[at] = 0xff;
        assert!(v1::WriteRequest::decode(bad.as_slice()).is_err());
        assert!(read_v1::count(&bad).is_err());
    }
}
