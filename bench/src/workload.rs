//! The series a benchmark sends, and the request bodies built from them. Every body is encoded (and,
//! for remote_write, snappy-compressed) before a run starts, so generating load costs nothing while
//! the clock runs and every collector gets the very same bytes.
//!
//! The series are those of a fleet of Go HTTP services: per target (`job`, `instance`), an HTTP
//! request-duration histogram and request counter by `method`, `route` and `status`, Go runtime
//! gauges and counters, and process counters. Remote_write gets them as Prometheus exposes them
//! (classic histogram series, a GC-duration summary); OTLP as an SDK exports them (histogram points,
//! cumulative sums, gauges, one resource per target). Each round gives every series one sample, at
//! a timestamp one second after the previous round's, ending about now. The scrape targets of W4
//! ([`crate::targets`]) expose the same series, with more routes ([`scrape_target`]).

use bytes::Bytes;
use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::proto::prometheus_v1 as rw;
use std::ops::Range;

/// How much to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Samples (remote_write) or data points (OTLP) in all.
    pub samples: u64,
    /// Distinct series; each round sends one sample of each.
    pub series: usize,
    /// Samples or data points per request.
    pub per_request: usize,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        samples: 10_000_000,
        series: 50_000,
        per_request: 2000,
    };
    pub const QUICK: Sizes = Sizes {
        samples: 1_000_000,
        series: 10_000,
        per_request: 2000,
    };
    /// One round of the quick size's 10k series, in five requests of 2000 holding every kind
    /// of series: the criterion micro-benchmarks' payloads.
    pub const ONE_ROUND: Sizes = Sizes {
        samples: 10_000,
        ..Sizes::QUICK
    };

    pub fn rounds(&self) -> u64 {
        self.samples.div_ceil(self.series as u64)
    }
}

/// The protocol a workload is encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Remote_write 1.0: snappy-compressed `prometheus.WriteRequest`.
    RemoteWrite,
    /// OTLP: `ExportMetricsServiceRequest` protobuf, uncompressed.
    Otlp,
}

/// Request bodies ready to send.
pub struct Workload {
    pub format: Format,
    /// Sent one by one before `bodies` (remote_write: the metric metadata, as Prometheus sends it
    /// apart from the samples).
    pub preamble: Vec<Bytes>,
    pub bodies: Vec<Bytes>,
    /// Samples or data points in each body.
    pub body_points: Vec<u32>,
    /// Samples (remote_write) or data points (OTLP) in all bodies.
    pub points: u64,
    /// The remote_write samples those become (OTLP histogram points give one sample per bucket plus
    /// `_sum` and `_count`); equal to `points` for remote_write.
    pub rw_samples: u64,
    pub series: usize,
    /// Bytes on the wire (compressed for remote_write) and encoded protobuf bytes.
    pub wire_bytes: u64,
    pub proto_bytes: u64,
}

/// Time between rounds.
const STEP_MS: i64 = 1000;

impl Workload {
    /// Builds every body, with timestamps ending at `now_ms`.
    pub fn build(format: Format, sizes: Sizes, now_ms: i64) -> Workload {
        let start_ms = now_ms - STEP_MS * sizes.rounds() as i64;
        let mut w = Workload {
            format,
            preamble: Vec::new(),
            bodies: Vec::new(),
            body_points: Vec::new(),
            points: 0,
            rw_samples: 0,
            series: sizes.series,
            wire_bytes: 0,
            proto_bytes: 0,
        };
        let chunks = (0..sizes.samples)
            .step_by(sizes.per_request)
            .map(|i| i..(i + sizes.per_request as u64).min(sizes.samples));
        match format {
            Format::RemoteWrite => {
                let fleet = PromFleet::new(sizes.series);
                let meta = fleet.metadata_request().encode_to_vec();
                w.preamble.push(snappy(&meta));
                for range in chunks {
                    let req = fleet.request(range.clone(), start_ms);
                    let raw = req.encode_to_vec();
                    w.push(snappy(&raw), raw.len(), range.end - range.start, 0);
                }
                w.rw_samples = w.points;
            }
            Format::Otlp => {
                let fleet = OtlpFleet::new(sizes.series);
                for range in chunks {
                    let (req, rw_samples) = fleet.request(range.clone(), start_ms);
                    let raw = Bytes::from(req.encode_to_vec());
                    let n = raw.len();
                    w.push(raw, n, range.end - range.start, rw_samples);
                }
            }
        }
        w
    }

    fn push(&mut self, body: Bytes, proto_len: usize, points: u64, rw_samples: u64) {
        self.wire_bytes += body.len() as u64;
        self.proto_bytes += proto_len as u64;
        self.points += points;
        self.rw_samples += rw_samples;
        self.body_points.push(points as u32);
        self.bodies.push(body);
    }
}

fn snappy(raw: &[u8]) -> Bytes {
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(raw)
            .expect("snappy compresses any input"),
    )
}

// ---- values -------------------------------------------------------------------------------------

/// A pseudo-random number in [0, 1) from two integers (splitmix64), so that values need no state.
fn unit(a: u64, b: u64) -> f64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Requests counted by a histogram: `start + rate * round`, latencies exponentially distributed
/// with mean `mean` seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hist {
    start: u64,
    rate: u64,
    mean: f64,
}

impl Hist {
    fn new(seed: u64) -> Hist {
        Hist {
            start: 1000 + (unit(seed, 1) * 100_000.0) as u64,
            rate: 1 + (unit(seed, 2) * 60.0) as u64,
            mean: 0.01 + unit(seed, 3) * 0.4,
        }
    }
    fn count(&self, round: u64) -> u64 {
        self.start + self.rate * round
    }
    fn cumulative(&self, round: u64, le: f64) -> u64 {
        let n = self.count(round);
        if le.is_infinite() {
            n
        } else {
            (n as f64 * (1.0 - (-le / self.mean).exp())).floor() as u64
        }
    }
    fn sum(&self, round: u64) -> f64 {
        self.count(round) as f64 * self.mean
    }
}

/// How one series' value moves from round to round.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Model {
    /// Grows by `rate` per round, give or take (never down).
    Counter {
        start: f64,
        rate: f64,
        integer: bool,
    },
    /// Wanders within `swing` (a fraction) around `base`.
    Gauge {
        base: f64,
        swing: f64,
        integer: bool,
    },
    /// A cumulative histogram bucket (`le` infinite for `+Inf`).
    Bucket(Hist, f64),
    HistSum(Hist),
    HistCount(Hist),
}

impl Model {
    pub(crate) fn value(&self, seed: u64, round: u64) -> f64 {
        let r = round as f64;
        let round_off = |v: f64, integer: bool| if integer { v.floor() } else { v };
        match *self {
            Model::Counter {
                start,
                rate,
                integer,
            } => round_off(start + rate * (r + 0.9 * unit(seed, round)), integer),
            Model::Gauge {
                base,
                swing,
                integer,
            } => round_off(base * (1.0 + swing * (unit(seed, round) - 0.5)), integer),
            Model::Bucket(h, le) => h.cumulative(round, le) as f64,
            Model::HistSum(h) => h.sum(round),
            Model::HistCount(h) => h.count(round) as f64,
        }
    }
}

// ---- the fleet ----------------------------------------------------------------------------------

const JOBS: [&str; 6] = [
    "api-gateway",
    "checkout",
    "catalog",
    "payments",
    "search",
    "users",
];
const METHODS: [&str; 2] = ["GET", "POST"];
const ROUTES: [&str; 4] = [
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/items",
    "/healthz",
];
const STATUSES: [&str; 3] = ["200", "404", "500"];
const HTTP_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const GC_BOUNDS: [f64; 5] = [0.0001, 0.0005, 0.001, 0.005, 0.01];
const GC_QUANTILES: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

pub(crate) fn job(target: usize) -> &'static str {
    JOBS[target % JOBS.len()]
}

fn instance(target: usize) -> String {
    format!(
        "10.{}.{}.{}:8080",
        target / 65536,
        target / 256 % 256,
        target % 256
    )
}

/// (method, route, status) of every HTTP series of a target.
fn http_combos<'a>(
    routes: &'a [&'a str],
) -> impl Iterator<Item = (&'static str, &'a str, &'static str)> {
    METHODS.into_iter().flat_map(move |m| {
        routes
            .iter()
            .flat_map(move |&r| STATUSES.into_iter().map(move |s| (m, r, s)))
    })
}

/// Resources of the generated routes of a scrape target with many routes.
const RESOURCES: [&str; 12] = [
    "orders",
    "items",
    "users",
    "carts",
    "payments",
    "invoices",
    "reviews",
    "shipments",
    "coupons",
    "sessions",
    "stores",
    "prices",
];

/// `n` distinct routes: `/api/v1/orders`, `/api/v1/orders/{id}`, `/api/v1/items`, ..., then
/// `/api/v2/...`.
fn routes(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| {
            let version = 1 + k / (2 * RESOURCES.len());
            let resource = RESOURCES[k / 2 % RESOURCES.len()];
            let id = if k % 2 == 1 { "/{id}" } else { "" };
            format!("/api/v{version}/{resource}{id}")
        })
        .collect()
}

/// Go runtime and process gauges: (Prometheus name, OTLP name, unit, typical value, integer).
const GAUGES: [(&str, &str, &str, f64, bool); 15] = [
    (
        "go_goroutines",
        "go.goroutine.count",
        "{goroutine}",
        180.0,
        true,
    ),
    ("go_threads", "go.thread.count", "{thread}", 14.0, true),
    (
        "go_memstats_alloc_bytes",
        "go.memory.allocated",
        "By",
        48e6,
        true,
    ),
    (
        "go_memstats_heap_alloc_bytes",
        "go.memory.heap.allocated",
        "By",
        47e6,
        true,
    ),
    (
        "go_memstats_heap_inuse_bytes",
        "go.memory.heap.inuse",
        "By",
        52e6,
        true,
    ),
    (
        "go_memstats_heap_objects",
        "go.memory.heap.objects",
        "{object}",
        310e3,
        true,
    ),
    (
        "go_memstats_stack_inuse_bytes",
        "go.memory.stack.inuse",
        "By",
        2.1e6,
        true,
    ),
    ("go_memstats_sys_bytes", "go.memory.sys", "By", 96e6, true),
    (
        "go_memstats_next_gc_bytes",
        "go.memory.gc.goal",
        "By",
        80e6,
        true,
    ),
    (
        "go_memstats_last_gc_time_seconds",
        "go.gc.last_time",
        "s",
        1.7e9,
        false,
    ),
    ("process_open_fds", "process.open_fds", "{fd}", 64.0, true),
    (
        "process_max_fds",
        "process.max_fds",
        "{fd}",
        1_048_576.0,
        true,
    ),
    (
        "process_resident_memory_bytes",
        "process.memory.rss",
        "By",
        120e6,
        true,
    ),
    (
        "process_virtual_memory_bytes",
        "process.memory.virtual",
        "By",
        1.9e9,
        true,
    ),
    (
        "process_start_time_seconds",
        "process.start_time",
        "s",
        1.7e9,
        false,
    ),
];

/// Counters: (Prometheus name, OTLP name, unit, rate per round, integer).
const COUNTERS: [(&str, &str, &str, f64, bool); 5] = [
    (
        "go_memstats_alloc_bytes_total",
        "go.memory.allocations.size",
        "By",
        4e6,
        true,
    ),
    (
        "go_memstats_mallocs_total",
        "go.memory.allocations",
        "{allocation}",
        52e3,
        true,
    ),
    (
        "go_memstats_frees_total",
        "go.memory.frees",
        "{free}",
        51e3,
        true,
    ),
    (
        "go_memstats_lookups_total",
        "go.memory.lookups",
        "{lookup}",
        0.0,
        true,
    ),
    (
        "process_cpu_seconds_total",
        "process.cpu.time",
        "s",
        0.35,
        false,
    ),
];

fn gauge_model(seed: u64, base: f64, integer: bool) -> Model {
    let swing = if base > 1e9 { 0.0 } else { 0.2 };
    Model::Gauge {
        base: base * (0.5 + unit(seed, 9)),
        swing,
        integer,
    }
}

fn counter_model(seed: u64, rate: f64, integer: bool) -> Model {
    Model::Counter {
        start: rate * 10_000.0 * (1.0 + unit(seed, 8)),
        rate,
        integer,
    }
}

// ---- remote_write -------------------------------------------------------------------------------

use rw::metric_metadata::MetricType;

/// A metric family as Prometheus exposes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

/// Index in [`families`] of the HTTP request histogram, the GC summary, the first gauge, the first
/// counter and the HTTP request counter: families are exposed in this order.
const HTTP_DURATION: u8 = 0;
const GC_DURATION: u8 = 1;
const FIRST_GAUGE: u8 = 2;
const FIRST_COUNTER: u8 = FIRST_GAUGE + GAUGES.len() as u8;
const HTTP_REQUESTS: u8 = FIRST_COUNTER + COUNTERS.len() as u8;

/// Every family a target exposes, in exposition order (indexed by [`PromSeries::family`]).
pub(crate) fn families() -> Vec<Family> {
    let family = |name, kind, help| Family { name, kind, help };
    let mut out = vec![
        family(
            "http_request_duration_seconds",
            MetricType::Histogram,
            "Duration of HTTP requests.",
        ),
        family(
            "go_gc_duration_seconds",
            MetricType::Summary,
            "A summary of the pause duration of garbage collection cycles.",
        ),
    ];
    for (name, ..) in GAUGES {
        out.push(family(
            name,
            MetricType::Gauge,
            "Go runtime or process gauge.",
        ));
    }
    for (name, ..) in COUNTERS {
        out.push(family(
            name,
            MetricType::Counter,
            "Go runtime or process counter.",
        ));
    }
    out.push(family(
        "http_requests_total",
        MetricType::Counter,
        "Total HTTP requests.",
    ));
    out
}

/// One Prometheus series: its labels (sorted, `job` and `instance` included), the index of its
/// family in [`families`], and how its value moves.
pub(crate) struct PromSeries {
    pub labels: Vec<rw::Label>,
    pub family: u8,
    pub model: Model,
}

/// The Prometheus view of the fleet: as many targets as it takes to have `series` series.
struct PromFleet {
    series: Vec<PromSeries>,
}

fn label(name: &str, value: &str) -> rw::Label {
    rw::Label {
        name: name.to_string(),
        value: value.to_string(),
    }
}

impl PromFleet {
    fn new(series: usize) -> PromFleet {
        let mut out = Vec::with_capacity(series);
        let mut target = 0;
        while out.len() < series {
            prom_target(target, &ROUTES, &mut out);
            target += 1;
        }
        out.truncate(series);
        PromFleet { series: out }
    }

    fn request(&self, range: Range<u64>, start_ms: i64) -> rw::WriteRequest {
        let n = self.series.len() as u64;
        let timeseries = range
            .map(|i| {
                let (round, s) = (i / n, i % n);
                let series = &self.series[s as usize];
                rw::TimeSeries {
                    labels: series.labels.clone(),
                    samples: vec![rw::Sample {
                        value: series.model.value(s, round),
                        timestamp: start_ms + STEP_MS * round as i64,
                    }],
                    ..Default::default()
                }
            })
            .collect();
        rw::WriteRequest {
            timeseries,
            metadata: Vec::new(),
        }
    }

    /// The metadata Prometheus sends for these families.
    fn metadata_request(&self) -> rw::WriteRequest {
        let metadata = families()
            .into_iter()
            .map(|f| rw::MetricMetadata {
                r#type: f.kind as i32,
                metric_family_name: f.name.to_string(),
                help: f.help.to_string(),
                unit: String::new(),
            })
            .collect();
        rw::WriteRequest {
            timeseries: Vec::new(),
            metadata,
        }
    }
}

/// The `n` series of one scrape target: the fleet's target `target` with as many routes as it
/// takes, ordered by family as an exposition lists them, then cut to `n`. The cut takes series of
/// the last families (counters, gauges); from `n` = 91 up it never splits a histogram or summary.
pub(crate) fn scrape_target(target: usize, n: usize) -> Vec<PromSeries> {
    // Each route gives 90 series (2 methods x 3 statuses x (12 buckets, sum, count, counter));
    // the runtime gives 27.
    let routes = routes(n.saturating_sub(27).div_ceil(90).max(1));
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    prom_target(target, &routes, &mut out);
    out.sort_by_key(|s| s.family);
    out.truncate(n);
    out
}

/// The series one target exposes with HTTP series for `routes`, labels sorted by name.
fn prom_target(target: usize, routes: &[&str], out: &mut Vec<PromSeries>) {
    let (job, instance) = (job(target), instance(target));
    let seed = |k: usize| (target * 1000 + k) as u64;
    let mut push = |name: &str, family: u8, extra: &[(&str, &str)], model: Model| {
        let mut labels = vec![
            label("__name__", name),
            label("instance", &instance),
            label("job", job),
        ];
        labels.extend(extra.iter().map(|(k, v)| label(k, v)));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(PromSeries {
            labels,
            family,
            model,
        });
    };
    for (c, (method, route, status)) in http_combos(routes).enumerate() {
        let hist = Hist::new(seed(c));
        let base = [("method", method), ("route", route), ("status", status)];
        for le in HTTP_BOUNDS.iter().copied().chain([f64::INFINITY]) {
            let le_text = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            let mut labels = base.to_vec();
            labels.push(("le", &le_text));
            push(
                "http_request_duration_seconds_bucket",
                HTTP_DURATION,
                &labels,
                Model::Bucket(hist, le),
            );
        }
        push(
            "http_request_duration_seconds_sum",
            HTTP_DURATION,
            &base,
            Model::HistSum(hist),
        );
        push(
            "http_request_duration_seconds_count",
            HTTP_DURATION,
            &base,
            Model::HistCount(hist),
        );
        let requests = Model::Counter {
            start: hist.start as f64,
            rate: hist.rate as f64,
            integer: true,
        };
        push("http_requests_total", HTTP_REQUESTS, &base, requests);
    }
    let gc = Hist {
        start: 5000,
        rate: 2,
        mean: 0.0004,
    };
    for q in GC_QUANTILES {
        let model = gauge_model(seed(100), 0.0001 + q * 0.002, false);
        push(
            "go_gc_duration_seconds",
            GC_DURATION,
            &[("quantile", &q.to_string())],
            model,
        );
    }
    push(
        "go_gc_duration_seconds_sum",
        GC_DURATION,
        &[],
        Model::HistSum(gc),
    );
    push(
        "go_gc_duration_seconds_count",
        GC_DURATION,
        &[],
        Model::HistCount(gc),
    );
    for (k, (name, _, _, base, integer)) in GAUGES.into_iter().enumerate() {
        let family = FIRST_GAUGE + k as u8;
        push(name, family, &[], gauge_model(seed(200 + k), base, integer));
    }
    for (k, (name, _, _, rate, integer)) in COUNTERS.into_iter().enumerate() {
        let family = FIRST_COUNTER + k as u8;
        push(
            name,
            family,
            &[],
            counter_model(seed(300 + k), rate, integer),
        );
    }
}

// ---- OTLP ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Sum,
    Histogram(&'static [f64]),
}

struct OtlpMetric {
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    kind: Kind,
    points: Vec<(Vec<KeyValue>, Model)>,
}

struct OtlpTarget {
    resource: Resource,
    metrics: Vec<OtlpMetric>,
}

/// The OTLP view of the fleet, and the series in sending order: (target, metric, point).
struct OtlpFleet {
    targets: Vec<OtlpTarget>,
    series: Vec<(u32, u32, u32)>,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

const SCOPE: &str = "go.opentelemetry.io/contrib/instrumentation/runtime";
const START_OFFSET_MS: i64 = 3_600_000;

impl OtlpFleet {
    fn new(series: usize) -> OtlpFleet {
        let mut targets = Vec::new();
        let mut order = Vec::with_capacity(series);
        while order.len() < series {
            let t = targets.len();
            let target = otlp_target(t);
            for (m, metric) in target.metrics.iter().enumerate() {
                for p in 0..metric.points.len() {
                    order.push((t as u32, m as u32, p as u32));
                }
            }
            targets.push(target);
        }
        order.truncate(series);
        OtlpFleet {
            targets,
            series: order,
        }
    }

    /// The request for samples `range`, and the remote_write samples it translates to.
    fn request(&self, range: Range<u64>, start_ms: i64) -> (ExportMetricsServiceRequest, u64) {
        let n = self.series.len() as u64;
        let mut req = ExportMetricsServiceRequest::default();
        let mut rw_samples = 0;
        // (round, target) of the last resource and (round, target, metric) of the last metric.
        let mut last_resource = None;
        let mut last_metric = None;
        for i in range {
            let (round, s) = (i / n, i % n);
            let (t, m, p) = self.series[s as usize];
            let target = &self.targets[t as usize];
            let metric = &target.metrics[m as usize];
            if last_resource != Some((round, t)) {
                last_resource = Some((round, t));
                req.resource_metrics.push(ResourceMetrics {
                    resource: Some(target.resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: SCOPE.to_string(),
                            version: "0.63.0".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            let metrics = &mut req
                .resource_metrics
                .last_mut()
                .expect("pushed above")
                .scope_metrics[0]
                .metrics;
            if last_metric != Some((round, t, m)) {
                last_metric = Some((round, t, m));
                metrics.push(empty_metric(metric));
            }
            let (attributes, model) = &metric.points[p as usize];
            let time_ms = start_ms + STEP_MS * round as i64;
            let time = (time_ms as u64) * 1_000_000;
            let start = ((start_ms - START_OFFSET_MS) as u64) * 1_000_000;
            let seed = s;
            let data = metrics.last_mut().expect("pushed above").data.as_mut();
            match data.expect("set by empty_metric") {
                Data::Gauge(g) => {
                    g.data_points
                        .push(number_point(attributes, 0, time, model.value(seed, round)));
                    rw_samples += 1;
                }
                Data::Sum(sum) => {
                    sum.data_points.push(number_point(
                        attributes,
                        start,
                        time,
                        model.value(seed, round),
                    ));
                    rw_samples += 1;
                }
                Data::Histogram(h) => {
                    let Kind::Histogram(bounds) = metric.kind else {
                        unreachable!("histogram data comes from a histogram kind")
                    };
                    let Model::HistCount(hist) = *model else {
                        unreachable!("histogram points are modelled by HistCount")
                    };
                    h.data_points.push(histogram_point(
                        attributes, start, time, hist, bounds, round,
                    ));
                    // A bucket per bound, `+Inf`, `_sum` and `_count`.
                    rw_samples += bounds.len() as u64 + 3;
                }
                _ => unreachable!("only gauges, sums and histograms are built"),
            }
        }
        (req, rw_samples)
    }
}

fn empty_metric(m: &OtlpMetric) -> Metric {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match m.kind {
        Kind::Gauge => Data::Gauge(Gauge::default()),
        Kind::Sum => Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Histogram(_) => Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name: m.name.to_string(),
        description: m.description.to_string(),
        unit: m.unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

fn number_point(attributes: &[KeyValue], start: u64, time: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn histogram_point(
    attributes: &[KeyValue],
    start: u64,
    time: u64,
    hist: Hist,
    bounds: &[f64],
    round: u64,
) -> HistogramDataPoint {
    let mut below = 0;
    let mut bucket_counts: Vec<u64> = bounds
        .iter()
        .map(|&b| {
            let c = hist.cumulative(round, b);
            let n = c - below;
            below = c;
            n
        })
        .collect();
    bucket_counts.push(hist.count(round) - below);
    HistogramDataPoint {
        attributes: attributes.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: hist.count(round),
        sum: Some(hist.sum(round)),
        bucket_counts,
        explicit_bounds: bounds.to_vec(),
        min: Some(hist.mean * 0.02),
        max: Some(hist.mean * 9.0),
        ..Default::default()
    }
}

/// The metrics one target's SDK exports.
fn otlp_target(target: usize) -> OtlpTarget {
    let seed = |k: usize| (target * 1000 + k) as u64;
    let resource = Resource {
        attributes: vec![
            kv("service.name", job(target)),
            kv("service.instance.id", &instance(target)),
            kv("host.name", &format!("node-{}", target / 8)),
            kv("telemetry.sdk.language", "go"),
            kv("telemetry.sdk.name", "opentelemetry"),
            kv("telemetry.sdk.version", "1.38.0"),
        ],
        ..Default::default()
    };
    let mut duration = Vec::new();
    let mut requests = Vec::new();
    for (c, (method, route, status)) in http_combos(&ROUTES).enumerate() {
        let attrs = vec![
            kv("method", method),
            kv("route", route),
            kv("status", status),
        ];
        let hist = Hist::new(seed(c));
        let counter = Model::Counter {
            start: hist.start as f64,
            rate: hist.rate as f64,
            integer: true,
        };
        duration.push((attrs.clone(), Model::HistCount(hist)));
        requests.push((attrs, counter));
    }
    let gc = Hist {
        start: 5000,
        rate: 2,
        mean: 0.0004,
    };
    let mut metrics = vec![
        OtlpMetric {
            name: "http.server.request.duration",
            description: "Duration of HTTP server requests.",
            unit: "s",
            kind: Kind::Histogram(&HTTP_BOUNDS),
            points: duration,
        },
        OtlpMetric {
            name: "http.server.requests",
            description: "HTTP server requests.",
            unit: "{request}",
            kind: Kind::Sum,
            points: requests,
        },
        OtlpMetric {
            name: "go.gc.duration",
            description: "Pause duration of garbage collection cycles.",
            unit: "s",
            kind: Kind::Histogram(&GC_BOUNDS),
            points: vec![(Vec::new(), Model::HistCount(gc))],
        },
    ];
    for (k, (_, name, unit, base, integer)) in GAUGES.into_iter().enumerate() {
        metrics.push(OtlpMetric {
            name,
            description: "Go runtime or process gauge.",
            unit,
            kind: Kind::Gauge,
            points: vec![(Vec::new(), gauge_model(seed(200 + k), base, integer))],
        });
    }
    for (k, (_, name, unit, rate, integer)) in COUNTERS.into_iter().enumerate() {
        metrics.push(OtlpMetric {
            name,
            description: "Go runtime or process counter.",
            unit,
            kind: Kind::Sum,
            points: vec![(Vec::new(), counter_model(seed(300 + k), rate, integer))],
        });
    }
    OtlpTarget { resource, metrics }
}

#[cfg(test)]
mod tests;
