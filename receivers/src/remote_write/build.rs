//! Prometheus series -> OTLP resources, metrics and points, shared by the 1.0 and 2.0 decoders.
//!
//! - Series are grouped by (`job`, `instance`) into one resource each: `service.name` is the job
//!   (`service.namespace` + `service.name` when the job is `namespace/name`), `service.instance.id`
//!   the instance. Every other label but `__name__` becomes a point attribute, unchanged.
//! - The metric name is `__name__`, unchanged. The OTLP type comes from the Prometheus type: a
//!   counter whose name ends in `_total` becomes a cumulative monotonic Sum; every other float
//!   series becomes a Gauge, and when its Prometheus type is not gauge (untyped, a counter
//!   without `_total`, the `_bucket`/`_sum`/`_count` series of a classic histogram, a summary's
//!   quantiles, info, stateset), the type is kept in the metric's metadata as `prometheus.type`
//!   (`unknown`, `counter`, `histogram`, ...). That way each series leaves through the
//!   remote_write exporter under the name it came with (the exporter only adds `_total` to
//!   monotonic Sums that lack it). Classic histograms and summaries are not reassembled: their
//!   series may arrive in different requests (senders shard by series).
//! - Native histograms become exponential histograms (custom-bucket ones explicit histograms).
//! - A StaleNaN keeps its exact bits and the point gets the "no recorded value" flag.
//! - Exemplars go to the point of their series (in the same request) closest in time.

use super::histogram::{self, HistogramLike, Native};
use crate::keys::{Keys, push_string};
use hashbrown::HashTable;
use sluice_core::batch::metric_points;
use sluice_core::prometheus::{MetricType, is_stale_nan, write_v1_labels};
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    self as otlp, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use std::fmt::Write as _;
use std::hash::BuildHasher;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`.
const CUMULATIVE: i32 = 2;
/// Messages quoted in a 400 answer, at most.
const MAX_MESSAGES: usize = 3;

/// Samples, native histograms and exemplars: what remote_write 2.0 reports as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

impl Counts {
    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// What was left out of a request, and why.
#[derive(Debug, Default)]
pub struct Rejections {
    /// Items left out that make the answer a 400.
    pub counts: Counts,
    /// Items left out, by telemetry reason (exemplar reasons are prefixed `exemplar_`).
    pub by_reason: Vec<(&'static str, u64)>,
    /// The first few problems, for the answer's body.
    pub messages: Vec<String>,
    /// How many problems there were in all.
    pub problems: u64,
}

impl Rejections {
    /// Whether the request must be answered 400 (valid data is still taken).
    pub fn any(&self) -> bool {
        !self.counts.is_zero()
    }

    fn add(&mut self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.by_reason.push((reason, n)),
        }
    }

    fn note(&mut self, message: String) {
        self.problems += 1;
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        }
    }

    /// The human-readable body of a 400 answer.
    pub fn message(&self) -> String {
        let c = self.counts;
        let mut s = format!(
            "rejected {} samples, {} histograms and {} exemplars: {}",
            c.samples,
            c.histograms,
            c.exemplars,
            self.messages.join("; ")
        );
        if self.problems > self.messages.len() as u64 {
            let _ = write!(
                s,
                " (and {} more problems)",
                self.problems - self.messages.len() as u64
            );
        }
        s
    }
}

/// A series' Prometheus metadata, as far as it is known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta<'a> {
    pub metric_type: MetricType,
    pub help: &'a str,
    pub unit: &'a str,
}

/// A float sample of either protocol version.
pub trait SampleLike {
    fn value(&self) -> f64;
    fn timestamp_ms(&self) -> i64;
    /// The start (created) timestamp, 0 when unset.
    fn start_timestamp_ms(&self) -> i64 {
        0
    }
}

/// An exemplar with its labels resolved.
pub struct ExemplarIn<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// How a series is represented in OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Gauge,
    /// A cumulative monotonic Sum.
    Counter,
    Exponential,
    /// A native histogram with custom buckets, as an explicit-bounds histogram.
    Explicit,
}

impl Kind {
    /// One letter for the kind in a metric's key.
    fn tag(self) -> char {
        match self {
            Kind::Gauge => 'g',
            Kind::Counter => 'c',
            Kind::Exponential => 'e',
            Kind::Explicit => 'x',
        }
    }
}

enum Points {
    Number(Vec<NumberDataPoint>),
    Exponential(Vec<ExponentialHistogramDataPoint>),
    Explicit(Vec<HistogramDataPoint>),
}

impl Points {
    fn for_kind(kind: Kind) -> Points {
        match kind {
            Kind::Gauge | Kind::Counter => Points::Number(Vec::new()),
            Kind::Exponential => Points::Exponential(Vec::new()),
            Kind::Explicit => Points::Explicit(Vec::new()),
        }
    }

    /// The index of the point whose time is closest to `t` (the later one on a tie); the points
    /// are not empty.
    fn nearest(&self, t: u64) -> usize {
        fn closest(times: impl Iterator<Item = u64>, t: u64) -> usize {
            let mut best = (0, u64::MAX);
            for (i, x) in times.enumerate() {
                if x.abs_diff(t) <= best.1 {
                    best = (i, x.abs_diff(t));
                }
            }
            best.0
        }
        match self {
            Points::Number(p) => closest(p.iter().map(|p| p.time_unix_nano), t),
            Points::Exponential(p) => closest(p.iter().map(|p| p.time_unix_nano), t),
            Points::Explicit(p) => closest(p.iter().map(|p| p.time_unix_nano), t),
        }
    }

    fn exemplars_mut(&mut self, i: usize) -> &mut Vec<otlp::Exemplar> {
        match self {
            Points::Number(p) => &mut p[i].exemplars,
            Points::Exponential(p) => &mut p[i].exemplars,
            Points::Explicit(p) => &mut p[i].exemplars,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        match self {
            Points::Number(p) => p.len(),
            Points::Exponential(p) => p.len(),
            Points::Explicit(p) => p.len(),
        }
    }
}

/// One series (a label set in one OTLP representation) being built.
struct SeriesAcc {
    /// Index in `Builder::metrics`.
    metric: usize,
    attributes: Vec<KeyValue>,
    points: Points,
}

/// The series of one label set, by representation (a label set may carry samples and native
/// histograms in different `TimeSeries` messages).
struct LabelSet<'a> {
    /// The labels, sorted by name, as the request holds them.
    labels: &'a [(&'a str, &'a str)],
    /// The hash of their canonical encoding (`write_v1_labels`: what a remote_write `TimeSeries`
    /// holds, and what a request's canonical leading labels already are).
    hash: u64,
    number: Option<usize>,
    exponential: Option<usize>,
    explicit: Option<usize>,
}

/// Builds the OTLP resources of one request, whose labels live for `'a`.
pub struct Builder<'a> {
    resources: Vec<(Option<String>, Option<String>)>,
    resource_index: Keys,
    /// Metrics (without points yet) with their resource, in order of appearance.
    metrics: Vec<(usize, Metric)>,
    /// (resource, kind, name) -> index in `metrics`.
    metric_index: Keys,
    /// The resource and the metric (with its kind) of the previous series: senders group a
    /// target's series, and a family's, so the next series mostly has the same ones, found
    /// without building and hashing a key.
    last_resource: Option<usize>,
    last_metric: Option<(usize, Kind)>,
    series: Vec<SeriesAcc>,
    label_sets: Vec<LabelSet<'a>>,
    /// Label set hash -> index in `label_sets`: the request's own labels are compared, so that
    /// finding a set copies none of them. Seeded per process: labels come from clients.
    label_set_index: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
    /// Exemplars waiting for the end of the request: (label set, exemplar).
    exemplars: Vec<(usize, otlp::Exemplar)>,
    /// Reused for map keys, so that a known key costs no allocation.
    key: String,
    /// Reused for label sets written out to be hashed.
    encoded: Vec<u8>,
    /// Histogram buckets that may still be expanded in this request.
    bucket_budget: usize,
    /// Whether an exemplar without a sample makes the answer a 400 (remote_write 2.0).
    strict_exemplars: bool,
    pub written: Counts,
    pub rejected: Rejections,
}

impl<'a> Builder<'a> {
    /// A builder for a request of `series` series (its tables are sized for them at once rather
    /// than grown, which would copy them and touch fresh memory at every doubling).
    pub fn new(bucket_budget: usize, strict_exemplars: bool, series: usize) -> Builder<'a> {
        Builder {
            resources: Vec::new(),
            resource_index: Keys::default(),
            metrics: Vec::new(),
            metric_index: Keys::default(),
            last_resource: None,
            last_metric: None,
            series: Vec::with_capacity(series),
            label_sets: Vec::with_capacity(series),
            label_set_index: HashTable::with_capacity(series),
            hasher: Default::default(),
            exemplars: Vec::new(),
            key: String::new(),
            encoded: Vec::new(),
            bucket_budget,
            strict_exemplars,
            written: Counts::default(),
            rejected: Rejections::default(),
        }
    }

    /// Leaves out `counts` items for `reason`, with a message for the answer.
    pub fn reject(&mut self, counts: Counts, reason: &'static str, message: String) {
        let r = &mut self.rejected;
        r.counts.samples += counts.samples;
        r.counts.histograms += counts.histograms;
        r.counts.exemplars += counts.exemplars;
        r.add(reason, counts.samples + counts.histograms);
        r.add(exemplar_reason(reason), counts.exemplars);
        r.note(message);
    }

    /// Adds one `TimeSeries`: labels (sorted by name: [`sort_labels`]) with their canonical
    /// encoding when the request holds them so (else empty: see `wire::Series::canonical`), its
    /// Prometheus metadata, samples, native histograms and exemplars. An invalid label set leaves
    /// the whole series out.
    pub fn series<S: SampleLike, H: HistogramLike>(
        &mut self,
        labels: &'a [(&'a str, &'a str)],
        canonical: &[u8],
        meta: Meta<'_>,
        samples: &[S],
        histograms: &[H],
        exemplars: Vec<ExemplarIn<'_>>,
    ) {
        let all = Counts {
            samples: samples.len() as u64,
            histograms: histograms.len() as u64,
            exemplars: exemplars.len() as u64,
        };
        debug_assert!(labels.is_sorted_by(|a, b| a.0 <= b.0));
        let name = match check_labels(labels) {
            Ok(name) => name,
            Err(problem) => {
                let message = format!("series {}: {problem}", show_labels(labels));
                self.reject(all, "invalid", message);
                return;
            }
        };
        let set = self.label_set(labels, canonical);
        let resource = self.resource(labels);

        if !samples.is_empty() {
            let (kind, prometheus_type) = number_kind(name, meta.metric_type);
            let s = self.series_for(set, resource, labels, name, kind, prometheus_type, meta);
            // A series' samples mostly come in one message: its list holds exactly them (grown
            // from empty, a list of one sample would take room for four).
            if let Points::Number(p) = &mut self.series[s].points
                && p.is_empty()
            {
                p.reserve_exact(samples.len());
            }
            for sample in samples {
                let Some(time) = ms_to_ns(sample.timestamp_ms()) else {
                    self.reject(
                        Counts {
                            samples: 1,
                            ..Counts::default()
                        },
                        "invalid",
                        format!(
                            "series {}: sample timestamp {} ms is outside 1970..2554",
                            show_labels(labels),
                            sample.timestamp_ms()
                        ),
                    );
                    continue;
                };
                let value = sample.value();
                let point = NumberDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: start_ns(sample.start_timestamp_ms()),
                    time_unix_nano: time,
                    exemplars: Vec::new(),
                    flags: if is_stale_nan(value) {
                        FLAG_NO_RECORDED_VALUE
                    } else {
                        0
                    },
                    value: Some(number_data_point::Value::AsDouble(value)),
                };
                if let Points::Number(p) = &mut self.series[s].points {
                    p.push(point);
                }
                self.written.samples += 1;
            }
        }

        for h in histograms {
            let view = h.view();
            let converted = histogram::convert(&view, &mut self.bucket_budget);
            let native = match converted {
                Ok(n) => n,
                Err((reason, problem)) => {
                    self.reject(
                        Counts {
                            histograms: 1,
                            ..Counts::default()
                        },
                        reason,
                        format!("series {}: {problem}", show_labels(labels)),
                    );
                    continue;
                }
            };
            let gauge = view.gauge || meta.metric_type == MetricType::GaugeHistogram;
            let prometheus_type = gauge.then_some("gaugehistogram");
            let kind = match native {
                Native::Exponential(_) => Kind::Exponential,
                Native::Explicit(_) => Kind::Explicit,
            };
            let s = self.series_for(set, resource, labels, name, kind, prometheus_type, meta);
            match (&mut self.series[s].points, native) {
                (Points::Exponential(v), Native::Exponential(p)) => v.push(p),
                (Points::Explicit(v), Native::Explicit(p)) => v.push(p),
                _ => unreachable!("a series' points are of its kind"),
            }
            self.written.histograms += 1;
        }

        for e in exemplars {
            let exemplar = exemplar(&e);
            self.exemplars.push((set, exemplar));
        }
    }

    /// Attaches the exemplars and assembles the resources.
    pub fn finish(mut self) -> (Vec<ResourceMetrics>, Counts, Rejections) {
        self.attach_exemplars();
        let mut out: Vec<ResourceMetrics> = self
            .resources
            .iter()
            .map(|(job, instance)| ResourceMetrics {
                resource: Some(resource_of(job.as_deref(), instance.as_deref())),
                scope_metrics: vec![ScopeMetrics::default()],
                schema_url: String::new(),
            })
            .collect();
        let mut points = vec![0; self.metrics.len()];
        for s in &self.series {
            points[s.metric] += s.points.len();
        }
        // Where each metric lands: (resource, position in its scope).
        let places: Vec<(usize, usize)> = self
            .metrics
            .into_iter()
            .zip(points)
            .map(|((resource, mut m), n)| {
                reserve_points(&mut m, n);
                let metrics = &mut out[resource].scope_metrics[0].metrics;
                metrics.push(m);
                (resource, metrics.len() - 1)
            })
            .collect();
        for s in self.series {
            let (resource, i) = places[s.metric];
            let m = &mut out[resource].scope_metrics[0].metrics[i];
            push_points(m, s.points, s.attributes);
        }
        // Series whose every sample was left out leave an empty metric (and maybe resource).
        for rm in &mut out {
            rm.scope_metrics[0].metrics.retain(|m| metric_points(m) > 0);
        }
        out.retain(|rm| !rm.scope_metrics[0].metrics.is_empty());
        (out, self.written, self.rejected)
    }

    fn attach_exemplars(&mut self) {
        let exemplars = std::mem::take(&mut self.exemplars);
        let mut orphans = 0u64;
        for (set, e) in exemplars {
            let ls = &self.label_sets[set];
            let target = [ls.number, ls.exponential, ls.explicit]
                .into_iter()
                .flatten()
                .find(|&s| !self.series[s].points.is_empty());
            let Some(s) = target else {
                orphans += 1;
                continue;
            };
            let points = &mut self.series[s].points;
            let i = points.nearest(e.time_unix_nano);
            points.exemplars_mut(i).push(e);
            self.written.exemplars += 1;
        }
        if orphans > 0 {
            let message =
                format!("{orphans} exemplars without a sample of their series in the request");
            if self.strict_exemplars {
                self.reject(
                    Counts {
                        exemplars: orphans,
                        ..Counts::default()
                    },
                    "without_sample",
                    message,
                );
            } else {
                // remote_write 1.0 senders ship exemplars apart from their samples; leaving
                // them out is counted but does not fail the request.
                self.rejected.add("exemplar_without_sample", orphans);
            }
        }
    }

    /// The request's label set of these labels. A set is found by the hash of its canonical
    /// encoding, which most senders' requests hold as it is (hashed in one pass over it instead
    /// of a step per name and value), and by its labels compared.
    fn label_set(&mut self, labels: &'a [(&'a str, &'a str)], canonical: &[u8]) -> usize {
        let hash = if canonical.is_empty() {
            self.encoded.clear();
            write_v1_labels(labels.iter().copied(), &mut self.encoded);
            self.hasher.hash_one(&self.encoded[..])
        } else {
            self.hasher.hash_one(canonical)
        };
        let sets = &self.label_sets;
        if let Some(&i) = self
            .label_set_index
            .find(hash, |&i| sets[i].labels == labels)
        {
            return i;
        }
        let i = self.label_sets.len();
        self.label_sets.push(LabelSet {
            labels,
            hash,
            number: None,
            exponential: None,
            explicit: None,
        });
        let sets = &self.label_sets;
        self.label_set_index
            .insert_unique(hash, i, |&j| sets[j].hash);
        i
    }

    fn resource(&mut self, labels: &[(&str, &str)]) -> usize {
        let job = label(labels, "job");
        let instance = label(labels, "instance");
        if let Some(r) = self.last_resource {
            let (j, i) = &self.resources[r];
            if j.as_deref() == job && i.as_deref() == instance {
                return r;
            }
        }
        self.key.clear();
        // A leading marker tells "no label" from an empty one (empty values count as absent,
        // but the marker keeps the key unambiguous).
        for v in [job, instance] {
            match v {
                Some(v) => {
                    self.key.push('+');
                    push_string(&mut self.key, v);
                }
                None => self.key.push('-'),
            }
        }
        let (number, new) = self.resource_index.number(&self.key);
        if new {
            self.resources
                .push((job.map(str::to_string), instance.map(str::to_string)));
        }
        self.last_resource = Some(number);
        number
    }

    /// The series of `set` in representation `kind`, created on first use.
    #[allow(clippy::too_many_arguments)]
    fn series_for(
        &mut self,
        set: usize,
        resource: usize,
        labels: &[(&str, &str)],
        name: &str,
        kind: Kind,
        prometheus_type: Option<&'static str>,
        meta: Meta<'_>,
    ) -> usize {
        let slot = {
            let ls = &mut self.label_sets[set];
            match kind {
                Kind::Gauge | Kind::Counter => &mut ls.number,
                Kind::Exponential => &mut ls.exponential,
                Kind::Explicit => &mut ls.explicit,
            }
        };
        if let Some(s) = *slot {
            return s;
        }
        let i = self.series.len();
        *slot = Some(i);
        let metric = match self.last_metric {
            Some((m, k))
                if k == kind && self.metrics[m].0 == resource && self.metrics[m].1.name == name =>
            {
                m
            }
            _ => {
                self.key.clear();
                self.key.push_str(itoa::Buffer::new().format(resource));
                self.key.push(kind.tag());
                self.key.push_str(name);
                let (metric, new) = self.metric_index.number(&self.key);
                if new {
                    self.metrics
                        .push((resource, new_metric(name, kind, prometheus_type, meta)));
                }
                self.last_metric = Some((metric, kind));
                metric
            }
        };
        // Room for as many attributes as labels: `__name__`, `job` and `instance` are not among
        // them, which leaves room for the few labels a `labels` processor adds without growing
        // the list (collected, it would take room for four, and grow for a fifth).
        let mut attributes = Vec::with_capacity(labels.len());
        attributes.extend(
            labels
                .iter()
                .filter(|(k, v)| !v.is_empty() && !matches!(*k, "__name__" | "job" | "instance"))
                .map(|(k, v)| string_kv(k, v)),
        );
        self.series.push(SeriesAcc {
            metric,
            attributes,
            points: Points::for_kind(kind),
        });
        i
    }
}

fn exemplar_reason(reason: &'static str) -> &'static str {
    match reason {
        "invalid" => "exemplar_invalid",
        "without_sample" => "exemplar_without_sample",
        _ => "exemplar_invalid",
    }
}

/// Sorts a series' labels by name, as [`Builder::series`] takes them (senders mostly send them
/// sorted already); whether they were.
pub fn sort_labels(labels: &mut [(&str, &str)]) -> bool {
    // Neighbouring names mostly differ in their first byte, which then orders them without a
    // call to compare the rest.
    let in_order = |a: &str, b: &str| match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a <= b,
    };
    let sorted = labels.is_sorted_by(|a, b| in_order(a.0, b.0));
    if !sorted {
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    sorted
}

/// The metric name, or what is wrong with the labels. Labels must be sorted by name.
fn check_labels<'a>(labels: &[(&str, &'a str)]) -> Result<&'a str, String> {
    if labels.iter().any(|(k, _)| k.is_empty()) {
        return Err("a label has an empty name".into());
    }
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("label {:?} appears more than once", w[0].0));
    }
    match label(labels, "__name__") {
        Some(name) => Ok(name),
        None => Err("no __name__ label (the metric name)".into()),
    }
}

/// A label's value; empty values count as absent, as in Prometheus.
fn label<'a>(labels: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

/// `{a="1", b="2"}`, shortened for messages.
pub fn show_labels(labels: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
        if s.len() > 200 {
            s.push_str(", ...");
            break;
        }
    }
    s.push('}');
    s
}

/// The OTLP representation of a float series and the `prometheus.type` to keep, if any.
fn number_kind(name: &str, t: MetricType) -> (Kind, Option<&'static str>) {
    match t {
        MetricType::Counter if name.ends_with("_total") => (Kind::Counter, None),
        MetricType::Counter => (Kind::Gauge, Some("counter")),
        MetricType::Gauge => (Kind::Gauge, None),
        MetricType::Unknown => (Kind::Gauge, Some("unknown")),
        MetricType::Histogram => (Kind::Gauge, Some("histogram")),
        MetricType::GaugeHistogram => (Kind::Gauge, Some("gaugehistogram")),
        MetricType::Summary => (Kind::Gauge, Some("summary")),
        MetricType::Info => (Kind::Gauge, Some("info")),
        MetricType::StateSet => (Kind::Gauge, Some("stateset")),
    }
}

/// The unit is kept only when the name already ends with it (`_seconds`, `_seconds_total`), so
/// that no exporter adds it to the name a second time.
fn unit_for<'a>(name: &str, unit: &'a str) -> &'a str {
    if unit.is_empty() {
        return "";
    }
    let base = name.strip_suffix("_total").unwrap_or(name);
    match base.strip_suffix(unit) {
        Some(rest) if rest.ends_with('_') => unit,
        _ => "",
    }
}

/// Milliseconds since the epoch to nanoseconds; `None` outside what OTLP can hold.
pub fn ms_to_ns(ms: i64) -> Option<u64> {
    u64::try_from(ms).ok()?.checked_mul(1_000_000)
}

/// A start timestamp: 0 (and anything OTLP cannot hold) means unset.
pub fn start_ns(ms: i64) -> u64 {
    if ms <= 0 {
        0
    } else {
        ms_to_ns(ms).unwrap_or(0)
    }
}

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
    }
}

fn resource_of(job: Option<&str>, instance: Option<&str>) -> Resource {
    let mut attributes = Vec::new();
    if let Some(job) = job {
        match job.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                attributes.push(string_kv("service.namespace", ns));
                attributes.push(string_kv("service.name", name));
            }
            _ => attributes.push(string_kv("service.name", job)),
        }
    }
    if let Some(instance) = instance {
        attributes.push(string_kv("service.instance.id", instance));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn new_metric(
    name: &str,
    kind: Kind,
    prometheus_type: Option<&'static str>,
    meta: Meta<'_>,
) -> Metric {
    let data = match kind {
        Kind::Gauge => Data::Gauge(otlp::Gauge {
            data_points: Vec::new(),
        }),
        Kind::Counter => Data::Sum(otlp::Sum {
            data_points: Vec::new(),
            aggregation_temporality: CUMULATIVE,
            is_monotonic: true,
        }),
        Kind::Exponential => Data::ExponentialHistogram(otlp::ExponentialHistogram {
            data_points: Vec::new(),
            aggregation_temporality: CUMULATIVE,
        }),
        Kind::Explicit => Data::Histogram(otlp::Histogram {
            data_points: Vec::new(),
            aggregation_temporality: CUMULATIVE,
        }),
    };
    Metric {
        name: name.to_string(),
        description: meta.help.to_string(),
        unit: unit_for(name, meta.unit).to_string(),
        data: Some(data),
        metadata: prometheus_type
            .map(|t| vec![string_kv("prometheus.type", t)])
            .unwrap_or_default(),
    }
}

/// Makes room for `n` points in a metric.
fn reserve_points(m: &mut Metric, n: usize) {
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.reserve(n),
        Some(Data::Sum(s)) => s.data_points.reserve(n),
        Some(Data::ExponentialHistogram(h)) => h.data_points.reserve(n),
        Some(Data::Histogram(h)) => h.data_points.reserve(n),
        _ => {}
    }
}

/// Moves a series' points into its metric, each with the series' attributes.
fn push_points(m: &mut Metric, points: Points, attributes: Vec<KeyValue>) {
    fn with_attrs<P>(
        points: Vec<P>,
        attributes: Vec<KeyValue>,
        set: impl Fn(&mut P, Vec<KeyValue>),
    ) -> impl Iterator<Item = P> {
        let n = points.len();
        let mut attributes = Some(attributes);
        points.into_iter().enumerate().map(move |(i, mut p)| {
            let a = if i + 1 == n {
                attributes.take().unwrap_or_default()
            } else {
                attributes.clone().unwrap_or_default()
            };
            set(&mut p, a);
            p
        })
    }
    match (&mut m.data, points) {
        (Some(Data::Gauge(g)), Points::Number(p)) => {
            g.data_points
                .extend(with_attrs(p, attributes, |p, a| p.attributes = a))
        }
        (Some(Data::Sum(s)), Points::Number(p)) => {
            s.data_points
                .extend(with_attrs(p, attributes, |p, a| p.attributes = a))
        }
        (Some(Data::ExponentialHistogram(h)), Points::Exponential(p)) => h
            .data_points
            .extend(with_attrs(p, attributes, |p, a| p.attributes = a)),
        (Some(Data::Histogram(h)), Points::Explicit(p)) => {
            h.data_points
                .extend(with_attrs(p, attributes, |p, a| p.attributes = a))
        }
        _ => unreachable!("a metric is keyed by its kind"),
    }
}

/// An OTLP exemplar: `trace_id` (32 lowercase hex digits) and `span_id` (16) become the ids, every
/// other label (and ids in another form) a filtered attribute.
fn exemplar(e: &ExemplarIn<'_>) -> otlp::Exemplar {
    let mut out = otlp::Exemplar {
        time_unix_nano: ms_to_ns(e.timestamp_ms).unwrap_or(0),
        value: Some(otlp::exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for (k, v) in &e.labels {
        match (*k, hex_id(v)) {
            ("trace_id", Some(id)) if id.len() == 16 => out.trace_id = id,
            ("span_id", Some(id)) if id.len() == 8 => out.span_id = id,
            _ => out.filtered_attributes.push(string_kv(k, v)),
        }
    }
    out
}

/// Lowercase hex (as OTLP -> Prometheus translation writes ids) to bytes.
fn hex_id(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
