//! What the exporter exposes: per series the latest sample, its metadata, its latest exemplar and
//! when it was last updated, kept in exposition order so that a scrape only walks it.
//!
//! Layout: families by name -> "points" by label set without `__name__`, `le` and `quantile` ->
//! the parts of the point (a gauge or counter has one; a histogram its buckets by bound, `_sum`,
//! `_count`; a summary its quantiles, `_sum`, `_count`). Grouping the parts of one point keeps
//! them contiguous in the output, as OpenMetrics requires, and ordered by bound.

use sluice_core::prometheus::{Exemplar, Metadata, MetricType, Sample, Series, is_stale_nan};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type Labels = Vec<(String, String)>;

pub(crate) struct Store {
    pub(crate) families: BTreeMap<String, Family>,
    /// Sorted by name; added to every series that does not have a label of that name.
    const_labels: Labels,
    expiration: Duration,
    last_sweep: Instant,
}

pub(crate) struct Family {
    pub(crate) metadata: Metadata,
    pub(crate) points: BTreeMap<Labels, Point>,
}

#[derive(Default)]
pub(crate) struct Point {
    /// Sorted by `kind`.
    pub(crate) parts: Vec<Part>,
}

pub(crate) struct Part {
    pub(crate) kind: Kind,
    /// The series' metric name (`__name__`).
    pub(crate) name: String,
    /// `le` of a bucket or `quantile` of a quantile, as received.
    pub(crate) bound_label: Option<(&'static str, String)>,
    pub(crate) sample: Sample,
    pub(crate) exemplar: Option<Exemplar>,
    pub(crate) updated: Instant,
}

/// Which series of a point a part is; also its place in the output.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A histogram bucket (`le`) or a summary quantile (`quantile`).
    Bound(f64),
    /// The one series of a counter, gauge or unknown metric.
    Plain,
    Sum,
    Count,
    /// A series whose name does not fit its family's type (hand-made data): kept as it is.
    Other(String),
}

impl Kind {
    fn rank(&self) -> u8 {
        match self {
            Kind::Bound(_) | Kind::Plain => 0,
            Kind::Sum => 1,
            Kind::Count => 2,
            Kind::Other(_) => 3,
        }
    }

    fn order(&self, other: &Kind) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| match (self, other) {
                (Kind::Bound(a), Kind::Bound(b)) => a.total_cmp(b),
                (Kind::Other(a), Kind::Other(b)) => a.cmp(b),
                _ => Ordering::Equal,
            })
    }
}

/// What one update did, for counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Native histogram samples, which the text formats cannot carry.
    pub(crate) native_histograms: usize,
}

impl Store {
    pub(crate) fn new(
        const_labels: &BTreeMap<String, String>,
        expiration: Duration,
        now: Instant,
    ) -> Store {
        Store {
            families: BTreeMap::new(),
            const_labels: const_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            expiration,
            last_sweep: now,
        }
    }

    /// Number of series exposed (before expiry is applied).
    #[cfg(test)]
    pub(crate) fn series_count(&self) -> usize {
        self.families
            .values()
            .flat_map(|f| f.points.values())
            .map(|p| p.parts.len())
            .sum()
    }

    /// Takes the latest sample of `series` unless the series already holds a newer one; a
    /// StaleNaN as the latest sample removes the series.
    pub(crate) fn update(&mut self, mut series: Series, now: Instant) -> Applied {
        let applied = Applied {
            native_histograms: series.histograms().len(),
        };
        // `max_by_key` keeps the last of equal timestamps: the later write wins.
        let Some(sample) = series
            .samples
            .iter()
            .copied()
            .max_by_key(|s| s.timestamp_ms)
        else {
            return applied;
        };
        let exemplar = series
            .take_exemplars()
            .into_iter()
            .max_by_key(|e| e.timestamp_ms);
        let metadata = Arc::unwrap_or_clone(series.metadata);
        let mut name = String::new();
        let mut labels = Labels::with_capacity(series.labels.len() + self.const_labels.len());
        for (k, v) in series.labels.iter() {
            if k == "__name__" {
                name = v.to_string();
            } else {
                labels.push((k.to_string(), v.to_string()));
            }
        }
        if !labels.is_sorted_by(|a, b| a.0 <= b.0) {
            labels.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let family_name = if metadata.family.is_empty() {
            name.as_str()
        } else {
            metadata.family.as_str()
        };
        let (kind, bound_label) = classify(metadata.metric_type, family_name, &name, &mut labels);
        if !self.const_labels.is_empty() {
            labels = with_const_labels(labels, &self.const_labels);
        }
        let stale = is_stale_nan(sample.value);

        let family = match self.families.get_mut(family_name) {
            Some(f) => {
                if f.metadata.metric_type != metadata.metric_type {
                    if stale {
                        return applied;
                    }
                    // The metric changed its type: what was exposed under the old one goes.
                    tracing::debug!(
                        family = family_name,
                        "metric type changed; its old series are no longer exposed"
                    );
                    f.points.clear();
                }
                if f.metadata.help != metadata.help
                    || f.metadata.unit != metadata.unit
                    || f.metadata.metric_type != metadata.metric_type
                {
                    f.metadata.metric_type = metadata.metric_type;
                    f.metadata.help = metadata.help;
                    f.metadata.unit = metadata.unit;
                }
                f
            }
            None if stale => return applied,
            None => {
                let key = family_name.to_string();
                let family = Family {
                    metadata: Metadata {
                        family: key.clone(),
                        ..metadata
                    },
                    points: BTreeMap::new(),
                };
                self.families.entry(key).or_insert(family)
            }
        };

        if stale {
            let Some(point) = family.points.get_mut(&labels) else {
                return applied;
            };
            if let Ok(i) = point.parts.binary_search_by(|p| p.kind.order(&kind))
                && point.parts[i].sample.timestamp_ms <= sample.timestamp_ms
            {
                point.parts.remove(i);
                if point.parts.is_empty() {
                    family.points.remove(&labels);
                    if family.points.is_empty() {
                        let key = family.metadata.family.clone();
                        self.families.remove(&key);
                    }
                }
            }
            return applied;
        }

        let point = family.points.entry(labels).or_default();
        match point.parts.binary_search_by(|p| p.kind.order(&kind)) {
            Ok(i) => {
                let part = &mut point.parts[i];
                if part.sample.timestamp_ms > sample.timestamp_ms {
                    return applied;
                }
                part.sample = sample;
                part.updated = now;
                if let Some(e) = exemplar
                    && part
                        .exemplar
                        .as_ref()
                        .is_none_or(|old| old.timestamp_ms <= e.timestamp_ms)
                {
                    part.exemplar = Some(e);
                }
            }
            Err(i) => point.parts.insert(
                i,
                Part {
                    kind,
                    name,
                    bound_label,
                    sample,
                    exemplar,
                    updated: now,
                },
            ),
        }
        applied
    }

    /// Removes what has not been updated within the expiration.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let expiration = self.expiration;
        let fresh = |p: &Part| now.saturating_duration_since(p.updated) < expiration;
        self.families.retain(|_, f| {
            f.points.retain(|_, p| {
                p.parts.retain(fresh);
                !p.parts.is_empty()
            });
            !f.points.is_empty()
        });
        self.last_sweep = now;
    }

    /// Sweeps if a quarter of the expiration has passed since the last sweep, so that memory is
    /// bounded even when nobody scrapes.
    pub(crate) fn maybe_sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) >= self.expiration / 4 {
            self.sweep(now);
        }
    }
}

/// Where a series goes in its family: its kind, and the `le`/`quantile` label taken out of
/// `labels` when it is the bound of a bucket/quantile.
fn classify(
    t: MetricType,
    family: &str,
    name: &str,
    labels: &mut Labels,
) -> (Kind, Option<(&'static str, String)>) {
    let suffix = name.strip_prefix(family);
    let bound = |labels: &mut Labels,
                 label: &'static str|
     -> Option<(Kind, Option<(&'static str, String)>)> {
        let i = labels.iter().position(|(k, _)| k == label)?;
        let value = parse_bound(&labels[i].1)?;
        let (_, v) = labels.remove(i);
        Some((Kind::Bound(value), Some((label, v))))
    };
    let found = match (t, suffix) {
        (MetricType::Histogram | MetricType::GaugeHistogram, Some("_bucket")) => {
            bound(labels, "le")
        }
        (MetricType::Summary, Some("")) => bound(labels, "quantile"),
        (
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary,
            Some("_sum"),
        ) => Some((Kind::Sum, None)),
        (
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary,
            Some("_count"),
        ) => Some((Kind::Count, None)),
        (MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary, _) => None,
        (_, Some("")) => Some((Kind::Plain, None)),
        _ => None,
    };
    found.unwrap_or_else(|| (Kind::Other(name.to_string()), None))
}

fn parse_bound(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}

/// Merges two label lists sorted by name; `labels` wins over `consts` on the same name.
fn with_const_labels(labels: Labels, consts: &[(String, String)]) -> Labels {
    let mut out = Labels::with_capacity(labels.len() + consts.len());
    let mut consts = consts.iter().peekable();
    for (k, v) in labels {
        while let Some((ck, cv)) = consts.next_if(|(ck, _)| *ck <= k) {
            if *ck != k {
                out.push((ck.clone(), cv.clone()));
            }
        }
        out.push((k, v));
    }
    out.extend(consts.cloned());
    out
}
