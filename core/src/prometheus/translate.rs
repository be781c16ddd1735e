//! Batch -> Prometheus series.
//!
//! Labels of a series, by precedence (a higher layer's label wins over a lower one's with the same
//! name, it is not joined):
//!
//! 1. `__name__`, `le`, `quantile`: set by the translation itself.
//! 2. `job` and `instance` from `service.namespace`/`service.name` and `service.instance.id`. The
//!    spec says they MUST be built from those attributes because they identify the target; the
//!    Collector's `createAttributes` likewise writes them over point attributes of the same name.
//!    When the resource has no `service.name` (no `service.instance.id`), a point attribute `job`
//!    (`instance`) stays.
//! 3. `otel_scope_name` / `otel_scope_version` (spec: MUST be added "on all metric points").
//! 4. Point attributes, keys sanitized; keys that collide after sanitizing get their values joined
//!    with `;` in bytewise order of the original keys (spec, "Metric Attributes").
//! 5. `resource_to_labels` attributes: they only fill labels the point does not have, like
//!    Prometheus' `promote_resource_attributes` and external labels, which "never override metric
//!    attributes".
//!
//! Empty values are dropped (Prometheus treats an empty label as absent); values that are empty
//! are also left out of `;` joins so that no stray separators appear.
//!
//! Other choices:
//!
//! - Start times (`start_timestamp_ms`) are kept on counters, histograms and summaries, the types
//!   that have a created timestamp in Prometheus; gauges (including non-monotonic sums) get 0.
//! - With `DeltaPolicy::ToCumulative`, delta non-monotonic sums are accumulated too (the running
//!   sum of an up-down counter's deltas is its current value, which is what the Collector's
//!   `deltatocumulative` processor produces); the spec only requires it for monotonic sums and
//!   otherwise says to drop, which `DeltaPolicy::Drop` does for every delta point.
//! - A number point without a value (and without the "no recorded value" flag) is dropped
//!   (`missing_value`) rather than exported as 0.
//! - Exemplars are kept on counters, histogram buckets (the first bucket whose `le` holds the
//!   value) and native histograms, and dropped on gauges and summaries (spec, "Exemplars").

use super::delta::{Acc, DeltaKey, DeltaKind, Refused};
use super::kept_lists;
use super::keys_ahead::{Attributed, KeysAhead};
use super::label_cache::{KeyHash, LabelCache, PointSeries, Remembered, Variant, put_str};
use super::label_set::Spliced;
use super::names::{self, NameKind};
use super::native::ExpHist;
use super::values::{any_value_string, float_string, hex};
use super::{
    Exemplar, LabelSet, Metadata, MetricType, NativeHistogram, Sample, Series, SeriesLabels,
    stale_nan,
};
use crate::batch::{Batch, metric_points};
use crate::proto::otlp::common::v1::KeyValue;
use crate::proto::otlp::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, SummaryDataPoint, exemplar,
    metric::Data, number_data_point,
};
use crate::telemetry::Telemetry;
use hashbrown::HashMap;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

pub use super::delta::DeltaToCumulative;

/// How OTLP is turned into Prometheus series.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// Add unit and type suffixes (`_seconds`, `_bytes`, `_ratio`, `_total`) to metric names.
    pub add_metric_suffixes: bool,
    /// Resource attributes copied onto every series of the resource as labels (besides `job` and
    /// `instance`, which are always set when the resource has `service.name` /
    /// `service.instance.id`).
    pub resource_to_labels: Vec<String>,
    /// Emit one `target_info` series per resource with its other attributes.
    pub target_info: bool,
    /// Add `otel_scope_name` and `otel_scope_version` labels.
    pub scope_labels: bool,
    pub delta: DeltaPolicy,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            add_metric_suffixes: true,
            resource_to_labels: Vec::new(),
            target_info: true,
            scope_labels: true,
            delta: DeltaPolicy::Drop,
        }
    }
}

/// What to do with delta-temporality sums and histograms, which Prometheus cannot represent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaPolicy {
    /// Drop them, counted with reason `delta_temporality` (default).
    #[default]
    Drop,
    /// Accumulate them into cumulative series (stateful, per series; see [`DeltaToCumulative`]).
    ToCumulative,
}

/// The result of translating one batch.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    /// Series with their samples in timestamp order; one entry per distinct label set.
    pub series: Vec<Series>,
    /// Points that could not be translated, by reason (`delta_temporality`, `invalid_name`, ...).
    pub dropped: Vec<(&'static str, u64)>,
    /// For each series, a hash of its labels: the same labels give the same hash in every call
    /// (a remote_write exporter picks a series' shard by it, so that its samples stay in order).
    pub fingerprints: Vec<u64>,
    /// Points whose series the label cache remembered, and points it did not (both 0 without a
    /// cache).
    pub label_cache_hits: u64,
    pub label_cache_misses: u64,
}

/// Reasons in [`Translation::dropped`].
pub mod reason {
    /// A delta sum or histogram while `DeltaPolicy::Drop` (or no state was given).
    pub const DELTA_TEMPORALITY: &str = "delta_temporality";
    /// A sum or histogram with `AGGREGATION_TEMPORALITY_UNSPECIFIED` (or an unknown value).
    pub const UNSPECIFIED_TEMPORALITY: &str = "unspecified_temporality";
    /// The metric name has no valid character left.
    pub const INVALID_NAME: &str = "invalid_name";
    /// An exponential histogram with scale below -4, or buckets Prometheus cannot index.
    pub const INVALID_SCALE: &str = "invalid_scale";
    /// A number point without a value (and not flagged "no recorded value").
    pub const MISSING_VALUE: &str = "missing_value";
    /// A delta point not newer than the last one of its series.
    pub const DELTA_OUT_OF_ORDER: &str = "delta_out_of_order";
}

const NAME: &str = "__name__";
const TARGET_INFO: &str = "target_info";
const NO_RECORDED_VALUE: u32 = 1;
/// OpenMetrics' limit on the characters of an exemplar's labels; beyond it only the trace and
/// span ids are kept.
const MAX_EXEMPLAR_RUNES: usize = 128;

type Labels = Vec<(String, String)>;

/// Translates a batch. `delta_state` is used when `opts.delta` is `ToCumulative`; without it
/// delta points are dropped like with `DeltaPolicy::Drop`.
pub fn translate(
    batch: &Batch,
    opts: &TranslateOptions,
    delta_state: Option<&mut DeltaToCumulative>,
) -> Translation {
    translate_cached(batch, opts, delta_state, None)
}

/// What an exporter keeps from one translation to the next: delta points accumulated into
/// cumulative ones, and the label sets of the series it has seen.
pub struct TranslationState {
    pub delta: DeltaToCumulative,
    pub labels: LabelCache,
    /// When it last warned that the label cache is too small.
    warned: Option<std::time::Instant>,
}

/// How often a too small label cache is logged, at most.
const CACHE_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

impl TranslationState {
    /// A state remembering at most `2 * label_cache_size` label sets (see [`LabelCache`]).
    pub fn new(label_cache_size: usize) -> Self {
        TranslationState {
            delta: DeltaToCumulative::default(),
            labels: LabelCache::new(label_cache_size),
            warned: None,
        }
    }

    /// Translates a batch for `exporter` with this state (`opts` must be the same in every
    /// call), and counts what it found in the label cache, and the cache's size.
    pub fn translate(
        &mut self,
        batch: &Batch,
        opts: &TranslateOptions,
        telemetry: &Telemetry,
        exporter: &str,
    ) -> Translation {
        let t = translate_cached(batch, opts, Some(&mut self.delta), Some(&mut self.labels));
        let (hits, misses) = (t.label_cache_hits, t.label_cache_misses);
        telemetry.exporter_label_cache(exporter, hits, misses, self.labels.len());
        if self.labels.too_small()
            && self
                .warned
                .is_none_or(|at| at.elapsed() >= CACHE_WARNING_INTERVAL)
        {
            self.warned = Some(std::time::Instant::now());
            tracing::warn!(
                exporter,
                label_cache_size = self.labels.capacity(),
                "most label cache lookups miss: if the exporter sees more series (histogram \
                 buckets count one each) than twice label_cache_size at once, raise it; each miss \
                 costs more than no cache (docs/configuration.md)"
            );
        }
        t
    }
}

/// [`translate`], taking series' label sets from `cache` when it remembers them, and leaving
/// there the ones it builds. A cache must only ever be used with the same `opts`.
pub fn translate_cached(
    batch: &Batch,
    opts: &TranslateOptions,
    delta_state: Option<&mut DeltaToCumulative>,
    cache: Option<&mut LabelCache>,
) -> Translation {
    let now = Instant::now();
    let mut delta = delta_state.filter(|_| opts.delta == DeltaPolicy::ToCumulative);
    if let Some(d) = delta.as_deref_mut() {
        d.sweep(now);
    }
    let mut t = Translator {
        opts,
        delta,
        now,
        tenant: batch.context.tenant.clone(),
        out: SeriesSet::with_capacity(series_estimate(batch)),
        dropped: Vec::new(),
        label_names: HashMap::new(),
        families: HashMap::new(),
        cache: cache.filter(|c| c.enabled()),
        ahead: KeysAhead::default(),
        key_hash: 0,
        series: Vec::new(),
        inserts: Vec::new(),
        hits: 0,
        misses: 0,
    };
    for rm in &batch.resource_metrics {
        t.resource(rm);
    }
    let mut series = std::mem::take(&mut t.out.series);
    std::mem::take(&mut t.out.index).give_back();
    for s in &mut series {
        s.sort_by_time();
        if s.metadata.family == TARGET_INFO && s.name() == TARGET_INFO {
            // Several resources of one job/instance in a batch: one sample per timestamp.
            s.samples.dedup_by_key(|s| s.timestamp_ms);
        }
    }
    Translation {
        series,
        dropped: t.dropped,
        fingerprints: t.out.fingerprints,
        label_cache_hits: t.hits,
        label_cache_misses: t.misses,
    }
}

/// About how many series a batch translates to (a histogram point is one per bucket, `_sum` and
/// `_count`; a summary one per quantile, `_sum` and `_count`; a resource may add `target_info`),
/// so that the translation's tables are sized once rather than grown.
fn series_estimate(batch: &Batch) -> usize {
    let metrics = batch
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics);
    metrics
        .map(|m| match &m.data {
            Some(Data::Histogram(h)) => h
                .data_points
                .iter()
                .map(|p| p.bucket_counts.len().max(1) + 2)
                .sum(),
            Some(Data::Summary(s)) => s
                .data_points
                .iter()
                .map(|p| p.quantile_values.len() + 2)
                .sum(),
            _ => metric_points(m),
        })
        .sum::<usize>()
        + batch.resource_metrics.len()
}

/// Labels shared by every point of a scope: `job`/`instance`, scope labels, promoted resource
/// attributes.
struct Shared<'c> {
    identity: &'c [(String, String)],
    scope: Labels,
    promoted: &'c [(String, String)],
    /// All of the above, as the start of the label cache's keys (empty without a cache).
    key: Vec<u8>,
}

/// A data point whose series' labels are being worked out.
struct Point<'a> {
    attrs: &'a [KeyValue],
    /// The point's own labels (without `__name__`), once built.
    base: Option<Labels>,
    /// The same as a set, once a remembered series needed it.
    base_set: Option<LabelSet>,
    /// Its series as the cache remembers them.
    cached: Option<PointSeries>,
    /// How many of them were asked for, in order.
    next: usize,
    /// A series was not remembered in order: the point's series are remembered anew.
    missed: bool,
}

/// A series' name: the family's name and a suffix.
#[derive(Clone, Copy)]
enum Suffix {
    None,
    Sum,
    Count,
    Bucket,
}

/// A number's series (no suffix, no extra label) is the variant the cache keeps in its slots.
const _: () = assert!(Suffix::None as u8 == Variant::PLAIN.suffix && Variant::PLAIN.extra == 0);

impl Suffix {
    fn variant(self, extra: Extra) -> Variant {
        let (tag, bits) = match extra {
            Extra::None => (0, 0),
            Extra::Le(b) => (1, b.to_bits()),
            Extra::Quantile(q) => (2, q.to_bits()),
        };
        Variant {
            suffix: self as u8,
            extra: tag,
            bits,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Sum => "_sum",
            Suffix::Count => "_count",
            Suffix::Bucket => "_bucket",
        }
    }
}

/// The label a series has besides its point's labels and `__name__`.
#[derive(Clone, Copy)]
enum Extra {
    None,
    Le(f64),
    Quantile(f64),
}

struct Translator<'a, 'o> {
    opts: &'o TranslateOptions,
    delta: Option<&'o mut DeltaToCumulative>,
    now: Instant,
    tenant: Option<Arc<str>>,
    out: SeriesSet,
    dropped: Vec<(&'static str, u64)>,
    /// Sanitized attribute keys, per call (keys repeat across the points of a batch).
    label_names: HashMap<&'a str, Option<Rc<str>>>,
    /// Metrics' metadata (and so their names), per call: a batch's resources mostly carry the
    /// same metrics, whose points then share one metadata, made once. `None`: no valid name.
    families: HashMap<FamilyKey<'a>, Option<Arc<Metadata>>>,
    cache: Option<&'o mut LabelCache>,
    /// The cache keys' hashes of the points at hand and the next ones, and of the point at hand.
    ahead: KeysAhead,
    key_hash: KeyHash,
    /// The series of the point at hand, once it missed the cache.
    series: Vec<Remembered>,
    /// The labels put into the remembered series of the last point missed, by series.
    inserts: Vec<Inserts>,
    /// Points found in the cache, and not.
    hits: u64,
    misses: u64,
}

/// The one-label sets put into a remembered series' labels, and the series they were made for.
struct Inserts {
    variant: Variant,
    name: LabelSet,
    extra: Option<LabelSet>,
}

/// What a metric's metadata is made from: its name, unit and description, and the kind of its
/// data.
type FamilyKey<'a> = (&'a str, &'a str, &'a str, NameKind, MetricType);

/// What a metric's points turn into.
struct Family {
    metadata: Arc<Metadata>,
    /// Keep the points' start times (counters, histograms, summaries; not gauges).
    start_times: bool,
    /// Delta points to accumulate.
    delta: bool,
}

impl Family {
    /// The points' metric name: the metadata's family.
    fn name(&self) -> &str {
        &self.metadata.family
    }
}

impl<'a> Translator<'a, '_> {
    fn drop_points(&mut self, reason: &'static str, n: usize) {
        if n == 0 {
            return;
        }
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n as u64,
            None => self.dropped.push((reason, n as u64)),
        }
    }

    fn resource(&mut self, rm: &'a ResourceMetrics) {
        let attrs: &'a [KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_ref())
                .map(any_value_string)
                .filter(|v| !v.is_empty())
        };
        let mut identity = Labels::new();
        if let Some(name) = get("service.name") {
            let job = match get("service.namespace") {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            identity.push(("job".to_string(), job));
        }
        if let Some(instance) = get("service.instance.id") {
            identity.push(("instance".to_string(), instance));
        }
        let promoted = if self.opts.resource_to_labels.is_empty() {
            Labels::new()
        } else {
            let keys = &self.opts.resource_to_labels;
            self.attribute_labels(attrs.iter().filter(|kv| keys.contains(&kv.key)))
        };

        let mut latest: Option<u64> = None;
        for sm in &rm.scope_metrics {
            let mut scope = Labels::new();
            if let Some(s) = sm.scope.as_ref().filter(|_| self.opts.scope_labels) {
                if !s.name.is_empty() {
                    scope.push(("otel_scope_name".to_string(), s.name.clone()));
                }
                if !s.version.is_empty() {
                    scope.push(("otel_scope_version".to_string(), s.version.clone()));
                }
            }
            let mut key = Vec::new();
            if self.cache.is_some() {
                for group in [&identity[..], &scope, &promoted] {
                    key.extend_from_slice(&(group.len() as u32).to_le_bytes());
                    for (k, v) in group {
                        put_str(&mut key, k);
                        put_str(&mut key, v);
                    }
                }
            }
            let shared = Shared {
                identity: &identity,
                scope,
                promoted: &promoted,
                key,
            };
            for m in &sm.metrics {
                self.metric(m, &shared, &mut latest);
            }
        }

        if let Some(latest) = latest.filter(|_| self.opts.target_info && !identity.is_empty()) {
            self.target_info(attrs, identity, latest);
        }
    }

    /// One `target_info` gauge (value 1, at the resource's latest point) with the resource's
    /// non-identifying attributes plus `job`/`instance`, when there are such attributes. Skipped
    /// when the resource has neither `job` nor `instance`: the spec allows one `target_info` per
    /// job/instance, and without them unrelated resources would share one series.
    fn target_info(&mut self, attrs: &'a [KeyValue], identity: Labels, latest_ns: u64) {
        const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];
        let others = self.attribute_labels(
            attrs
                .iter()
                .filter(|kv| !IDENTIFYING.contains(&kv.key.as_str())),
        );
        if others.iter().all(|(k, _)| k == "job" || k == "instance") {
            return;
        }
        let mut labels = identity;
        labels.extend(others);
        finish_labels(&mut labels);
        set_label(&mut labels, NAME, TARGET_INFO.to_string());
        let metadata = Arc::new(Metadata {
            metric_type: MetricType::Gauge,
            family: TARGET_INFO.to_string(),
            help: "Target metadata".to_string(),
            unit: String::new(),
        });
        let fingerprint = self.out.fingerprint(&labels);
        let i = self
            .out
            .slot(LabelSet::from(labels).into(), fingerprint, &metadata);
        self.out.series[i].samples.push(Sample {
            timestamp_ms: ms(latest_ns),
            value: 1.0,
            start_timestamp_ms: 0,
        });
    }

    fn metric(&mut self, m: &'a Metric, shared: &Shared, latest: &mut Option<u64>) {
        let Some(data) = &m.data else { return };
        let hint = prometheus_type_hint(m);
        let (kind, metric_type, temporality, start_times) = match data {
            Data::Gauge(_) => {
                let t = if hint == Some("unknown") {
                    MetricType::Unknown
                } else {
                    MetricType::Gauge
                };
                (NameKind::Gauge, t, None, false)
            }
            Data::Sum(s) if s.is_monotonic => (
                NameKind::Counter,
                MetricType::Counter,
                Some(s.aggregation_temporality),
                true,
            ),
            Data::Sum(s) => {
                let t = match hint {
                    Some("info") => MetricType::Info,
                    Some("stateset") => MetricType::StateSet,
                    _ => MetricType::Gauge,
                };
                (
                    NameKind::UpDownCounter,
                    t,
                    Some(s.aggregation_temporality),
                    false,
                )
            }
            Data::Histogram(h) => (
                NameKind::Histogram,
                MetricType::Histogram,
                Some(h.aggregation_temporality),
                true,
            ),
            Data::ExponentialHistogram(h) => (
                NameKind::Histogram,
                MetricType::Histogram,
                Some(h.aggregation_temporality),
                true,
            ),
            Data::Summary(_) => (NameKind::Summary, MetricType::Summary, None, true),
        };
        let delta = match temporality.map(AggregationTemporality::try_from) {
            None | Some(Ok(AggregationTemporality::Cumulative)) => false,
            Some(Ok(AggregationTemporality::Delta)) if self.delta.is_some() => true,
            Some(Ok(AggregationTemporality::Delta)) => {
                self.drop_points(reason::DELTA_TEMPORALITY, metric_points(m));
                return;
            }
            Some(Ok(AggregationTemporality::Unspecified) | Err(_)) => {
                self.drop_points(reason::UNSPECIFIED_TEMPORALITY, metric_points(m));
                return;
            }
        };
        let suffixes = self.opts.add_metric_suffixes;
        let key = (
            m.name.as_str(),
            m.unit.as_str(),
            m.description.as_str(),
            kind,
            metric_type,
        );
        // The family is the name as in a text-format `# TYPE` line: for counters that includes
        // `_total` (format 0.0.4 and remote-write 1 metadata use `http_requests_total`); for
        // histograms and summaries it is the base name without `_bucket`/`_sum`/`_count`.
        let metadata = self.families.entry(key).or_insert_with(|| {
            let name = names::metric_name(&m.name, &m.unit, kind, suffixes)?;
            Some(Arc::new(Metadata {
                metric_type,
                family: name,
                help: m.description.clone(),
                unit: names::unit_word(&m.unit),
            }))
        });
        let Some(metadata) = metadata.clone() else {
            self.drop_points(reason::INVALID_NAME, metric_points(m));
            return;
        };
        let family = Family {
            metadata,
            start_times,
            delta,
        };
        match data {
            Data::Gauge(g) => self.numbers(&g.data_points, &family, false, shared, latest),
            Data::Sum(s) => self.numbers(&s.data_points, &family, s.is_monotonic, shared, latest),
            Data::Histogram(h) => {
                for i in 0..h.data_points.len() {
                    self.histogram(&h.data_points, i, &family, shared, latest);
                }
            }
            Data::ExponentialHistogram(h) => {
                for i in 0..h.data_points.len() {
                    self.exponential(&h.data_points, i, &family, shared, latest);
                }
            }
            Data::Summary(s) => {
                for i in 0..s.data_points.len() {
                    self.summary(&s.data_points, i, &family, shared, latest);
                }
            }
        }
    }

    /// Gauges and sums; exemplars are kept on counters only (the spec drops them elsewhere).
    fn numbers(
        &mut self,
        points: &'a [NumberDataPoint],
        family: &Family,
        exemplars: bool,
        shared: &Shared,
        latest: &mut Option<u64>,
    ) {
        for (i, p) in points.iter().enumerate() {
            let stale = p.flags & NO_RECORDED_VALUE != 0;
            let value = match p.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                None if stale => 0.0,
                None => {
                    self.drop_points(reason::MISSING_VALUE, 1);
                    continue;
                }
            };
            let (labels, fingerprint) = self.only_series(points, i, shared, family);
            let (value, start_ns) = if stale {
                (stale_nan(), p.start_time_unix_nano)
            } else if family.delta {
                match self.accumulate(
                    labels.to_vec(),
                    DeltaKind::Sum,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    Acc::Number(value),
                ) {
                    Some((start, Acc::Number(v))) => (v, start),
                    _ => continue,
                }
            } else {
                (value, p.start_time_unix_nano)
            };
            let i = self.out.slot(labels, fingerprint, &family.metadata);
            self.out.series[i].samples.push(Sample {
                timestamp_ms: ms(p.time_unix_nano),
                value,
                start_timestamp_ms: if family.start_times { ms(start_ns) } else { 0 },
            });
            if exemplars && !stale {
                for e in &p.exemplars {
                    let e = self.exemplar(e);
                    self.out.series[i].exemplars_mut().push(e);
                }
            }
            *latest = (*latest).max(Some(p.time_unix_nano));
        }
    }

    fn histogram(
        &mut self,
        points: &'a [HistogramDataPoint],
        i: usize,
        family: &Family,
        shared: &Shared,
        latest: &mut Option<u64>,
    ) {
        let p = &points[i];
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let mut point = self.point(points, i, shared, family.name());
        let mut bounds = Cow::Borrowed(&p.explicit_bounds[..]);
        let mut counts = Cow::Borrowed(&p.bucket_counts[..]);
        let (mut count, mut sum, mut start_ns) = (p.count, p.sum, p.start_time_unix_nano);
        if family.delta && !stale {
            let mut key = self.base(&mut point, shared).clone();
            set_label(&mut key, NAME, family.name().to_string());
            let delta = Acc::Histogram {
                bounds: p.explicit_bounds.clone(),
                counts: p.bucket_counts.clone(),
                count: p.count,
                sum: p.sum,
            };
            match self.accumulate(key, DeltaKind::Histogram, start_ns, p.time_unix_nano, delta) {
                Some((
                    start,
                    Acc::Histogram {
                        bounds: b,
                        counts: c,
                        count: n,
                        sum: s,
                    },
                )) => {
                    (bounds, counts) = (Cow::Owned(b), Cow::Owned(c));
                    (count, sum, start_ns) = (n, s, start);
                }
                _ => return,
            }
        }
        let value = |v: f64| if stale { stale_nan() } else { v };
        let sample = |v: f64| Sample {
            timestamp_ms: ms(p.time_unix_nano),
            value: value(v),
            start_timestamp_ms: ms(start_ns),
        };
        if let Some(sum) = sum {
            self.push(
                &mut point,
                shared,
                family,
                Suffix::Sum,
                Extra::None,
                sample(sum),
            );
        }
        let count_sample = sample(count as f64);
        self.push(
            &mut point,
            shared,
            family,
            Suffix::Count,
            Extra::None,
            count_sample,
        );
        // Buckets: cumulative counts over ascending bounds, then `+Inf` = count. A bound of +Inf
        // or NaN in the OTLP data is skipped (the `+Inf` bucket always comes from the count).
        let mut buckets: Vec<(f64, usize)> = Vec::with_capacity(bounds.len() + 1);
        let mut cumulative = 0u64;
        for (&bound, &c) in bounds.iter().zip(counts.iter()) {
            cumulative = cumulative.saturating_add(c);
            if bound.is_nan() || bound == f64::INFINITY {
                continue;
            }
            let s = sample(cumulative as f64);
            let i = self.push(
                &mut point,
                shared,
                family,
                Suffix::Bucket,
                Extra::Le(bound),
                s,
            );
            buckets.push((bound, i));
        }
        let le = Extra::Le(f64::INFINITY);
        let inf = self.push(&mut point, shared, family, Suffix::Bucket, le, count_sample);
        self.finish(point);
        if !stale {
            // Each exemplar goes to the first bucket whose upper bound holds its value.
            for e in &p.exemplars {
                let e = self.exemplar(e);
                let i = buckets
                    .iter()
                    .find(|(b, _)| e.value <= *b)
                    .map_or(inf, |(_, i)| *i);
                self.out.series[i].exemplars_mut().push(e);
            }
        }
        *latest = (*latest).max(Some(p.time_unix_nano));
    }

    fn exponential(
        &mut self,
        points: &'a [ExponentialHistogramDataPoint],
        i: usize,
        family: &Family,
        shared: &Shared,
        latest: &mut Option<u64>,
    ) {
        let p = &points[i];
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let Some(mut hist) = ExpHist::from_point(p) else {
            self.drop_points(reason::INVALID_SCALE, 1);
            return;
        };
        let (labels, fingerprint) = self.only_series(points, i, shared, family);
        let mut start_ns = p.start_time_unix_nano;
        if family.delta && !stale {
            match self.accumulate(
                labels.to_vec(),
                DeltaKind::Exponential,
                start_ns,
                p.time_unix_nano,
                Acc::Exponential(hist),
            ) {
                Some((start, Acc::Exponential(h))) => (hist, start_ns) = (h, start),
                _ => return,
            }
        }
        let (ts, start) = (ms(p.time_unix_nano), ms(start_ns));
        let native = if stale {
            NativeHistogram {
                timestamp_ms: ts,
                start_timestamp_ms: start,
                sum: stale_nan(),
                schema: hist.scale,
                zero_threshold: hist.zero_threshold,
                stale: true,
                ..Default::default()
            }
        } else {
            match hist.to_native(ts, start) {
                Some(h) => h,
                None => {
                    self.drop_points(reason::INVALID_SCALE, 1);
                    return;
                }
            }
        };
        let i = self.out.slot(labels, fingerprint, &family.metadata);
        self.out.series[i].histograms_mut().push(native);
        if !stale {
            for e in &p.exemplars {
                let e = self.exemplar(e);
                self.out.series[i].exemplars_mut().push(e);
            }
        }
        *latest = (*latest).max(Some(p.time_unix_nano));
    }

    fn summary(
        &mut self,
        points: &'a [SummaryDataPoint],
        i: usize,
        family: &Family,
        shared: &Shared,
        latest: &mut Option<u64>,
    ) {
        let p = &points[i];
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let mut point = self.point(points, i, shared, family.name());
        let sample = |v: f64| Sample {
            timestamp_ms: ms(p.time_unix_nano),
            value: if stale { stale_nan() } else { v },
            start_timestamp_ms: ms(p.start_time_unix_nano),
        };
        let (sum, count) = (sample(p.sum), sample(p.count as f64));
        self.push(&mut point, shared, family, Suffix::Sum, Extra::None, sum);
        self.push(
            &mut point,
            shared,
            family,
            Suffix::Count,
            Extra::None,
            count,
        );
        for q in &p.quantile_values {
            let quantile = Extra::Quantile(q.quantile);
            let s = sample(q.value);
            self.push(&mut point, shared, family, Suffix::None, quantile, s);
        }
        self.finish(point);
        *latest = (*latest).max(Some(p.time_unix_nano));
    }

    /// Pushes a sample on one of a point's series; returns the series' index.
    fn push(
        &mut self,
        point: &mut Point<'a>,
        shared: &Shared,
        family: &Family,
        suffix: Suffix,
        extra: Extra,
        sample: Sample,
    ) -> usize {
        let (labels, fingerprint) = self.series_labels(point, shared, family.name(), suffix, extra);
        let i = self.out.slot(labels, fingerprint, &family.metadata);
        self.out.series[i].samples.push(sample);
        i
    }

    /// The labels of point `i`, one series (a number or a native histogram).
    fn only_series<P: Attributed>(
        &mut self,
        points: &'a [P],
        i: usize,
        shared: &Shared,
        family: &Family,
    ) -> (SeriesLabels, u64) {
        let mut point = self.point(points, i, shared, family.name());
        let labels =
            self.series_labels(&mut point, shared, family.name(), Suffix::None, Extra::None);
        self.finish(point);
        labels
    }

    /// Starts point `i` of a metric: its cache key's hash, and its series as remembered.
    fn point<P: Attributed>(
        &mut self,
        points: &'a [P],
        i: usize,
        shared: &Shared,
        family_name: &str,
    ) -> Point<'a> {
        let attrs = points[i].attributes();
        let mut cached = None;
        if let Some(cache) = self.cache.as_deref_mut() {
            self.key_hash = self.ahead.hash(cache, points, i, &shared.key, family_name);
            cached = cache.find(self.key_hash);
            match cached {
                Some(_) => self.hits += 1,
                None => self.misses += 1,
            }
            self.series.clear();
        }
        Point {
            attrs,
            base: None,
            base_set: None,
            missed: cached.is_none(),
            cached,
            next: 0,
        }
    }

    /// Ends a point: remembers its series if they were not remembered as asked for.
    fn finish(&mut self, point: Point<'a>) {
        if let Some(cache) = self.cache.as_deref_mut()
            && point.missed
            && !self.series.is_empty()
        {
            cache.remember_point(self.key_hash, PointSeries::take(&mut self.series));
        }
    }

    /// The point's own labels, built on first use.
    fn base<'p>(&mut self, point: &'p mut Point<'a>, shared: &Shared) -> &'p Labels {
        match point.base {
            Some(ref base) => base,
            None => point.base.insert(self.point_labels(point.attrs, shared)),
        }
    }

    /// The labels of one series of a point, and their fingerprint: from the cache when it
    /// remembers them, built (and left in the cache) otherwise.
    fn series_labels(
        &mut self,
        point: &mut Point<'a>,
        shared: &Shared,
        family_name: &str,
        suffix: Suffix,
        extra: Extra,
    ) -> (SeriesLabels, u64) {
        let variant = suffix.variant(extra);
        if let Some(cached) = point.cached.as_ref() {
            if !point.missed {
                let i = point.next;
                if let Some(fingerprint) = cached.fingerprint(i, variant) {
                    point.next += 1;
                    let labels = match point.cached.take().expect("a remembered point") {
                        // A number's one series takes the lookup's hold on its set rather
                        // than count another.
                        PointSeries::Number { labels, .. } => labels.into(),
                        many => {
                            let labels = SeriesLabels::remembered(&many, i);
                            point.cached = Some(many);
                            labels
                        }
                    };
                    return (labels, fingerprint);
                }
                // Out of the remembered order: the point's series are remembered anew.
                point.missed = true;
                self.series
                    .extend((0..point.next).map(|i| cached.remembered(i)));
            }
            // The point is remembered anew: its series hand on their own sets, so that they
            // do not keep the list the cache lets go of.
            if let Some(i) = cached.position(variant) {
                let r = cached.remembered(i);
                let labels = (&r.labels).into();
                let fingerprint = r.fingerprint;
                self.series.push(r);
                return (labels, fingerprint);
            }
        }
        self.base(point, shared);
        let name = format!("{family_name}{}", suffix.as_str());
        let extra = match extra {
            Extra::None => None,
            Extra::Le(bound) => Some(("le", float_string(bound))),
            Extra::Quantile(q) => Some(("quantile", float_string(q))),
        };
        // A series of a point of several series is built from parts shared with the point's
        // other series; a point of one series (a number) has a set of its own.
        let several = !matches!(suffix, Suffix::None) || extra.is_some();
        let spliced = match self.cache.is_some() && several {
            true => {
                let extra = extra.as_ref().map(|(k, v)| (*k, v.as_str()));
                self.spliced(point, variant, &name, extra)
            }
            false => None,
        };
        let base = point.base.as_deref().unwrap_or_default();
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(base.len() + 2);
        pairs.extend(base.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        set_label(&mut pairs, NAME, &name);
        if let Some((k, v)) = &extra {
            set_label(&mut pairs, k, v);
        }
        let fingerprint = self.out.fingerprint(&pairs);
        let labels = match spliced {
            Some(spliced) => {
                debug_assert!(spliced.iter().eq(pairs.iter().copied()));
                spliced
            }
            None => Spliced::whole(LabelSet::new(pairs.iter().copied())),
        };
        if self.cache.is_some() {
            self.series.push(Remembered {
                variant,
                labels: labels.clone(),
                fingerprint,
            });
        }
        (labels.into(), fingerprint)
    }

    /// A series' labels as the point's labels with its name and extra label put in; `None` when
    /// the point has a label of either name.
    fn spliced(
        &mut self,
        point: &mut Point<'a>,
        variant: Variant,
        name: &str,
        extra: Option<(&str, &str)>,
    ) -> Option<Spliced> {
        let base = match &point.base_set {
            Some(set) => set.clone(),
            None => {
                let labels = point.base.as_deref().unwrap_or_default();
                let set = LabelSet::new(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                point.base_set.insert(set).clone()
            }
        };
        let (name, extra) = self.inserts(variant, name, extra);
        Spliced::new(base, name, extra)
    }

    /// The one-label sets of a series' name and extra label. The next point of a family has the
    /// same series as the last (its buckets' bounds, its quantiles), in the same order: each
    /// series takes those of the series at its place in the last point missed when they are
    /// the same, and every series of the family shares them.
    fn inserts(
        &mut self,
        variant: Variant,
        name: &str,
        extra: Option<(&str, &str)>,
    ) -> (LabelSet, Option<LabelSet>) {
        let at = self.series.len();
        if let Some(p) = self.inserts.get(at)
            && p.variant == variant
            && p.name.get(NAME) == Some(name)
        {
            return (p.name.clone(), p.extra.clone());
        }
        let made = Inserts {
            variant,
            name: LabelSet::new([(NAME, name)]),
            extra: extra.map(|pair| LabelSet::new([pair])),
        };
        let sets = (made.name.clone(), made.extra.clone());
        match self.inserts.get_mut(at) {
            Some(p) => *p = made,
            None => self.inserts.push(made),
        }
        sets
    }

    /// Runs a delta point through the state; `None` (counted) when it was refused.
    fn accumulate(
        &mut self,
        labels: Vec<(String, String)>,
        kind: DeltaKind,
        start_ns: u64,
        time_ns: u64,
        delta: Acc,
    ) -> Option<(u64, Acc)> {
        let state = self.delta.as_deref_mut()?;
        let key = DeltaKey {
            tenant: self.tenant.clone(),
            kind,
            labels,
        };
        match state.accumulate(key, start_ns, time_ns, delta, self.now) {
            Ok((start, acc)) => Some((start, acc.clone())),
            Err(Refused::OutOfOrder) => {
                self.drop_points(reason::DELTA_OUT_OF_ORDER, 1);
                None
            }
        }
    }

    /// A point's labels without `__name__`: sorted, unique, non-empty, by the precedence in the
    /// module documentation.
    fn point_labels(&mut self, attrs: &'a [KeyValue], shared: &Shared) -> Labels {
        let attr_labels = self.attribute_labels(attrs.iter());
        if shared.identity.is_empty() && shared.scope.is_empty() && shared.promoted.is_empty() {
            return attr_labels;
        }
        let mut labels = Labels::with_capacity(
            shared.identity.len()
                + shared.scope.len()
                + attr_labels.len()
                + shared.promoted.len()
                + 3,
        );
        labels.extend(shared.identity.iter().cloned());
        labels.extend(shared.scope.iter().cloned());
        labels.extend(attr_labels);
        labels.extend(shared.promoted.iter().cloned());
        finish_labels(&mut labels);
        labels
    }

    /// Attributes as labels: keys sanitized (cached per call), empty values and invalid keys left
    /// out, colliding keys joined with `;` in bytewise order of the original keys. Sorted, unique.
    fn attribute_labels(&mut self, attrs: impl Iterator<Item = &'a KeyValue>) -> Labels {
        let mut named: Vec<(Rc<str>, &'a str, String)> = Vec::new();
        for kv in attrs {
            let value = kv.value.as_ref().map(any_value_string).unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            let name = self
                .label_names
                .entry(kv.key.as_str())
                .or_insert_with(|| names::label_name(&kv.key).map(Rc::from));
            if let Some(name) = name {
                named.push((name.clone(), kv.key.as_str(), value));
            }
        }
        named.sort_by(|a, b| (&*a.0, a.1).cmp(&(&*b.0, b.1)));
        let mut labels = Labels::with_capacity(named.len());
        for (name, _, value) in named {
            match labels.last_mut() {
                Some((last, joined)) if **last == *name => {
                    joined.push(';');
                    joined.push_str(&value);
                }
                _ => labels.push((name.to_string(), value)),
            }
        }
        labels
    }

    /// An OTLP exemplar: `trace_id`/`span_id` in lowercase hex plus the filtered attributes
    /// (sanitized), unless all labels together exceed OpenMetrics' 128 characters, in which case
    /// only the ids are kept.
    fn exemplar(&mut self, e: &'a OtlpExemplar) -> Exemplar {
        let value = match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => 0.0,
        };
        let mut ids = Labels::new();
        if !e.trace_id.is_empty() {
            ids.push(("trace_id".to_string(), hex(&e.trace_id)));
        }
        if !e.span_id.is_empty() {
            ids.push(("span_id".to_string(), hex(&e.span_id)));
        }
        let attrs = self.attribute_labels(e.filtered_attributes.iter());
        let runes: usize = ids
            .iter()
            .chain(&attrs)
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum();
        let mut labels = ids;
        if runes <= MAX_EXEMPLAR_RUNES {
            labels.extend(attrs);
        }
        finish_labels(&mut labels);
        Exemplar {
            labels,
            value,
            timestamp_ms: ms(e.time_unix_nano),
        }
    }
}

fn prometheus_type_hint(m: &Metric) -> Option<&str> {
    use crate::proto::otlp::common::v1::any_value::Value;
    m.metadata
        .iter()
        .find(|kv| kv.key == "prometheus.type")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Nanoseconds since the epoch -> milliseconds.
fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// Sorts by name and keeps the first label of each name (earlier entries have precedence).
fn finish_labels(labels: &mut Labels) {
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, earlier| later.0 == earlier.0);
}

/// Sets a label in a sorted label list, replacing one of the same name.
fn set_label<'n, K: AsRef<str> + From<&'n str>, V>(
    labels: &mut Vec<(K, V)>,
    name: &'n str,
    value: V,
) {
    match labels.binary_search_by(|(k, _)| k.as_ref().cmp(name)) {
        Ok(i) => labels[i].1 = value,
        Err(i) => labels.insert(i, (K::from(name), value)),
    }
}

/// Series by label set, in order of first appearance.
#[derive(Default)]
struct SeriesSet {
    series: Vec<Series>,
    /// Where the series are found by their labels' hash; this thread's, lent for the translation.
    index: SeriesIndex,
    /// Each series' label hash ([`Translation::fingerprints`]).
    fingerprints: Vec<u64>,
    hasher: foldhash::fast::FixedState,
}

/// A translation's index of its series by label hash. Its tables are a translation's largest
/// (about 40 bytes a series): each thread keeps one between translations (emptied, not freed), so
/// that a batch's translation does not take fresh memory from the system for them each time.
#[derive(Default)]
struct SeriesIndex {
    /// Label-set hash -> the latest series with that hash; `chain` links to earlier ones.
    heads: HashMap<u64, usize>,
    chain: Vec<Option<usize>>,
}

/// Series an index kept between translations may have room for (about 0.5 MiB of tables): a
/// larger one, made for an unusually large batch, is freed rather than kept, so that what each
/// thread keeps stays small on a machine of many threads.
const KEPT_INDEX_SERIES: usize = 1 << 14;

thread_local! {
    static SERIES_INDEX: std::cell::Cell<SeriesIndex> = std::cell::Cell::default();
}

impl SeriesIndex {
    /// This thread's index, empty, with room for `n` series.
    fn lend(n: usize) -> SeriesIndex {
        let mut index = SERIES_INDEX.take();
        index.heads.reserve(n);
        index.chain.reserve_exact(n);
        index
    }

    /// Gives the index back to this thread for the next translation.
    fn give_back(mut self) {
        if self.chain.capacity() <= KEPT_INDEX_SERIES {
            self.heads.clear();
            self.chain.clear();
            SERIES_INDEX.set(self);
        }
    }
}

impl SeriesSet {
    /// A set with room for `n` series (a batch of `n` points has at least that many, unless
    /// points share a series).
    fn with_capacity(n: usize) -> SeriesSet {
        SeriesSet {
            series: kept_lists::SERIES.take(n),
            index: SeriesIndex::lend(n),
            fingerprints: kept_lists::FINGERPRINTS.take(n),
            hasher: Default::default(),
        }
    }

    /// The fingerprint of a label set: the same labels give the same value in every call.
    fn fingerprint<K: Hash, V: Hash>(&self, labels: &[(K, V)]) -> u64 {
        self.hasher.hash_one(labels)
    }

    /// The index of the series with these labels (whose fingerprint is `hash`), created with
    /// `metadata` if new.
    fn slot(&mut self, labels: SeriesLabels, hash: u64, metadata: &Arc<Metadata>) -> usize {
        let index = &mut self.index;
        let mut at = index.heads.get(&hash).copied();
        while let Some(i) = at {
            let known = &self.series[i].labels;
            if SeriesLabels::same(known, &labels) || *known == labels {
                return i;
            }
            at = index.chain[i];
        }
        let i = self.series.len();
        index.chain.push(index.heads.insert(hash, i));
        self.fingerprints.push(hash);
        self.series.push(Series::new(labels, metadata.clone()));
        i
    }
}
