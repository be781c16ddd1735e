//! OTLP -> Prometheus translation, shared by the `prometheus_remote_write` and `prometheus`
//! exporters, per the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification:
//! metric names with unit and type suffixes, attribute keys sanitized into label names, `job` and
//! `instance` from the resource, other resource attributes in `target_info`, scope labels,
//! histograms as `_bucket{le}` / `_sum` / `_count`, summaries with `quantile`, exponential
//! histograms as native histograms, and points flagged "no recorded value" as StaleNaN.

mod delta;
pub mod kept_lists;
mod keys_ahead;
mod label_cache;
mod label_set;
pub mod names;
mod native;
mod translate;
mod values;

#[cfg(test)]
mod tests;

pub use delta::{DEFAULT_MAX_IDLE, DEFAULT_MAX_SERIES};
pub use label_cache::{LabelCache, SeriesLabels};
pub use label_set::{LabelSet, write_v1_labels};
pub use translate::{
    DeltaPolicy, DeltaToCumulative, TranslateOptions, Translation, TranslationState, reason,
    translate, translate_cached,
};

use std::sync::Arc;

/// The NaN Prometheus uses as the staleness marker; no other NaN may carry this bit pattern.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// A Prometheus metric type, as in remote_write metadata and `# TYPE` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Metadata {
    pub metric_type: MetricType,
    /// The family name (without `_bucket`, `_sum`, `_count`, `_total` is part of it for counters).
    pub family: String,
    pub help: String,
    /// The unit word (`seconds`, `bytes`), empty when none.
    pub unit: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
    /// The series' start (created) time, 0 when unknown.
    pub start_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Sorted by name; `trace_id` and `span_id` (hex) when the OTLP exemplar had them.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// A native histogram (from an OTLP exponential histogram), in Prometheus' span/delta encoding.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NativeHistogram {
    pub timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    pub count: u64,
    pub sum: f64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub positive_spans: Vec<(i32, u32)>,
    pub positive_deltas: Vec<i64>,
    pub negative_spans: Vec<(i32, u32)>,
    pub negative_deltas: Vec<i64>,
    /// Set for a gauge histogram (delta temporality is not used here).
    pub reset_hint_gauge: bool,
    /// A stale marker: the sum is StaleNaN.
    pub stale: bool,
}

/// A series' samples in one batch. Most series carry one sample per batch (a scrape, a remote_write
/// request, a data point's bucket), and that one is held inline: no allocation per series.
pub type Samples = smallvec::SmallVec<[Sample; 1]>;

/// One Prometheus series with its samples. Labels are sorted by name, unique, with no empty name
/// or value, and include `__name__`.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub labels: SeriesLabels,
    pub samples: Samples,
    /// Native histograms and exemplars, which few series carry: boxed, so that a series of
    /// samples stays small (72 bytes, not 112). A series is written by the translation, moved
    /// to its shard, moved into a request, and dropped: bytes that cost on every step.
    extras: Option<Box<Extras>>,
    /// Shared by every series of the metric.
    pub metadata: Arc<Metadata>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Extras {
    histograms: Vec<NativeHistogram>,
    exemplars: Vec<Exemplar>,
}

/// Equal when labels, samples, histograms, exemplars and metadata are: a series whose extras were
/// made and left empty equals one that never had any.
impl PartialEq for Series {
    fn eq(&self, other: &Series) -> bool {
        self.labels == other.labels
            && self.samples == other.samples
            && self.histograms() == other.histograms()
            && self.exemplars() == other.exemplars()
            && self.metadata == other.metadata
    }
}

impl Series {
    /// A series with no samples yet. Built field by field: `..Default::default()` would make (and
    /// drop) a default `Arc<Metadata>` and label set for every series, two allocations or
    /// atomic reference counts per series on the translation's hot path.
    pub fn new(labels: impl Into<SeriesLabels>, metadata: Arc<Metadata>) -> Series {
        Series {
            labels: labels.into(),
            samples: Samples::new(),
            extras: None,
            metadata,
        }
    }

    pub fn histograms(&self) -> &[NativeHistogram] {
        self.extras.as_ref().map_or(&[], |e| &e.histograms)
    }

    pub fn exemplars(&self) -> &[Exemplar] {
        self.extras.as_ref().map_or(&[], |e| &e.exemplars)
    }

    pub fn histograms_mut(&mut self) -> &mut Vec<NativeHistogram> {
        &mut self.extras.get_or_insert_default().histograms
    }

    pub fn exemplars_mut(&mut self) -> &mut Vec<Exemplar> {
        &mut self.extras.get_or_insert_default().exemplars
    }

    /// Sorts the samples, histograms and exemplars by time (stably: equal times keep their order).
    pub fn sort_by_time(&mut self) {
        self.samples.sort_by_key(|s| s.timestamp_ms);
        if let Some(e) = self.extras.as_deref_mut() {
            e.histograms.sort_by_key(|h| h.timestamp_ms);
            e.exemplars.sort_by_key(|x| x.timestamp_ms);
        }
    }

    /// Keeps the samples and histograms whose timestamp (ms) `keep` accepts.
    pub fn retain_by_time(&mut self, keep: impl Fn(i64) -> bool) {
        self.samples.retain(|s| keep(s.timestamp_ms));
        if let Some(e) = self.extras.as_deref_mut() {
            e.histograms.retain(|h| keep(h.timestamp_ms));
        }
    }

    /// The series' exemplars, taken out.
    pub fn take_exemplars(&mut self) -> Vec<Exemplar> {
        self.extras
            .as_mut()
            .map_or_else(Vec::new, |e| std::mem::take(&mut e.exemplars))
    }

    pub fn name(&self) -> &str {
        self.labels.get("__name__").unwrap_or("")
    }
}
