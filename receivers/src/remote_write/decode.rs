//! remote_write 1.0 (`prometheus.WriteRequest`) and 2.0 (`io.prometheus.write.v2.Request`)
//! messages -> OTLP resources, with the checks each version's specification asks of receivers.

use super::build::{
    Builder, Counts, ExemplarIn, Meta, Rejections, SampleLike, show_labels, sort_labels,
};
use super::wire::Request;
use hashbrown::HashMap;
use sluice_core::prometheus::MetricType;
use sluice_core::proto::otlp::metrics::v1::ResourceMetrics;
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};
use std::ops::Range;
use std::sync::{PoisonError, RwLock};

/// Families the metadata cache holds at most; metadata for more is not kept.
const MAX_FAMILIES: usize = 50_000;
/// Longest help text or unit kept in the cache, in bytes.
const MAX_TEXT: usize = 512;

/// What one request became.
#[derive(Debug, Default)]
pub struct Decoded {
    pub resource_metrics: Vec<ResourceMetrics>,
    /// Items that made it into `resource_metrics`.
    pub written: Counts,
    pub rejected: Rejections,
}

impl SampleLike for v1::Sample {
    fn value(&self) -> f64 {
        self.value
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp
    }
}

impl SampleLike for v2::Sample {
    fn value(&self) -> f64 {
        self.value
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp
    }
    fn start_timestamp_ms(&self) -> i64 {
        self.start_timestamp
    }
}

/// A remote_write 1.0 request. Its metadata (and metadata from earlier requests, which is how
/// Prometheus sends it: apart from the samples, once a minute by default) types the series.
pub fn v1(req: &mut Request<'_>, cache: &MetadataCache, bucket_budget: usize) -> Decoded {
    cache.update(&req.metadata);
    let families = cache
        .families
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let Request {
        series,
        labels,
        samples,
        ..
    } = req;
    for ts in series.iter_mut() {
        // Labels out of order are not in their canonical encoding.
        if !sort_labels(&mut labels[ts.labels.clone()]) {
            ts.canonical = &[];
        }
    }
    let mut b = Builder::new(bucket_budget, false, series.len());
    // Senders group a family's series together: the previous series' metadata is reused for the
    // next of the same name.
    let mut last: Option<(&str, Meta<'_>)> = None;
    for ts in series.iter() {
        let labels = &labels[ts.labels.clone()];
        let name = labels
            .iter()
            .find(|l| l.0 == "__name__")
            .map_or("", |l| l.1);
        let meta = match last {
            Some((n, meta)) if n == name => meta,
            _ => {
                let meta = lookup(&families, name);
                last = Some((name, meta));
                meta
            }
        };
        let exemplars = ts
            .exemplars
            .iter()
            .map(|e| ExemplarIn {
                labels: e
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect(),
                value: e.value,
                timestamp_ms: e.timestamp,
            })
            .collect();
        b.series(
            labels,
            ts.canonical,
            meta,
            &samples[ts.samples.clone()],
            &ts.histograms,
            exemplars,
        );
    }
    finish(b)
}

/// A remote_write 2.0 request. `Err` when the symbol table itself is unusable (the whole
/// request is refused); bad references leave out the series or exemplar that holds them.
pub fn v2(req: &v2::Request, bucket_budget: usize) -> Result<Decoded, String> {
    let symbols = &req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(format!(
            "symbols[0] must be the empty string, not {:?}",
            symbols[0]
        ));
    }
    let sym = |r: u32| symbols.get(r as usize).map(String::as_str);
    let bad_ref = |r: u32| {
        format!(
            "reference {r} is outside the symbol table ({} symbols)",
            symbols.len()
        )
    };
    // Every series' labels are resolved into one array first, so that the builder may keep
    // them all for the whole request.
    let mut all_labels: Vec<(&str, &str)> = Vec::new();
    let resolved: Vec<Result<Range<usize>, String>> = req
        .timeseries
        .iter()
        .map(|ts| {
            let start = all_labels.len();
            let r = resolve(&ts.labels_refs, &sym, &bad_ref, &mut all_labels);
            if r.is_err() {
                all_labels.truncate(start);
            }
            r.map(|()| start..all_labels.len())
        })
        .collect();
    for range in resolved.iter().flatten() {
        let _sorted = sort_labels(&mut all_labels[range.clone()]);
    }
    let mut b = Builder::new(bucket_budget, true, req.timeseries.len());
    for (ts, range) in req.timeseries.iter().zip(resolved) {
        let all = Counts {
            samples: ts.samples.len() as u64,
            histograms: ts.histograms.len() as u64,
            exemplars: ts.exemplars.len() as u64,
        };
        let labels = match range {
            Ok(range) => &all_labels[range],
            Err(problem) => {
                b.reject(all, "invalid", format!("a series' labels_refs: {problem}"));
                continue;
            }
        };
        let md = ts.metadata.unwrap_or_default();
        let (Some(help), Some(unit)) = (sym(md.help_ref), sym(md.unit_ref)) else {
            let r = if sym(md.help_ref).is_none() {
                md.help_ref
            } else {
                md.unit_ref
            };
            let message = format!("series {}: metadata {}", show_labels(labels), bad_ref(r));
            b.reject(all, "invalid", message);
            continue;
        };
        let meta = Meta {
            metric_type: v2_type(md.r#type),
            help,
            unit,
        };
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let mut el = Vec::new();
            match resolve(&e.labels_refs, &sym, &bad_ref, &mut el) {
                Ok(()) => exemplars.push(ExemplarIn {
                    labels: el,
                    value: e.value,
                    timestamp_ms: e.timestamp,
                }),
                Err(problem) => {
                    let one = Counts {
                        exemplars: 1,
                        ..Counts::default()
                    };
                    let message = format!(
                        "series {}: an exemplar's labels_refs: {problem}",
                        show_labels(labels)
                    );
                    b.reject(one, "invalid", message);
                }
            }
        }
        b.series(labels, &[], meta, &ts.samples, &ts.histograms, exemplars);
    }
    Ok(finish(b))
}

/// Pairs of symbol references -> label pairs.
fn resolve<'s>(
    refs: &[u32],
    sym: &impl Fn(u32) -> Option<&'s str>,
    bad_ref: &impl Fn(u32) -> String,
    out: &mut Vec<(&'s str, &'s str)>,
) -> Result<(), String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!(
            "{} references, an odd number (they come in name, value pairs)",
            refs.len()
        ));
    }
    for pair in refs.chunks_exact(2) {
        let k = sym(pair[0]).ok_or_else(|| bad_ref(pair[0]))?;
        let v = sym(pair[1]).ok_or_else(|| bad_ref(pair[1]))?;
        out.push((k, v));
    }
    Ok(())
}

fn finish(b: Builder) -> Decoded {
    let (resource_metrics, written, rejected) = b.finish();
    Decoded {
        resource_metrics,
        written,
        rejected,
    }
}

fn v2_type(t: i32) -> MetricType {
    use v2::metadata::MetricType as T;
    match T::try_from(t) {
        Ok(T::Counter) => MetricType::Counter,
        Ok(T::Gauge) => MetricType::Gauge,
        Ok(T::Histogram) => MetricType::Histogram,
        Ok(T::Gaugehistogram) => MetricType::GaugeHistogram,
        Ok(T::Summary) => MetricType::Summary,
        Ok(T::Info) => MetricType::Info,
        Ok(T::Stateset) => MetricType::StateSet,
        Ok(T::Unspecified) | Err(_) => MetricType::Unknown,
    }
}

fn v1_type(t: i32) -> MetricType {
    use v1::metric_metadata::MetricType as T;
    match T::try_from(t) {
        Ok(T::Counter) => MetricType::Counter,
        Ok(T::Gauge) => MetricType::Gauge,
        Ok(T::Histogram) => MetricType::Histogram,
        Ok(T::Gaugehistogram) => MetricType::GaugeHistogram,
        Ok(T::Summary) => MetricType::Summary,
        Ok(T::Info) => MetricType::Info,
        Ok(T::Stateset) => MetricType::StateSet,
        Ok(T::Unknown) | Err(_) => MetricType::Unknown,
    }
}

/// Remote_write 1.0 metadata by metric family name, kept across requests (bounded).
#[derive(Debug, Default)]
pub struct MetadataCache {
    families: RwLock<HashMap<String, Family>>,
}

#[derive(Debug)]
struct Family {
    metric_type: MetricType,
    help: String,
    unit: String,
}

impl MetadataCache {
    pub fn update(&self, metadata: &[v1::MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for m in metadata {
            if m.metric_family_name.is_empty() {
                continue;
            }
            let family = Family {
                metric_type: v1_type(m.r#type),
                help: truncate(&m.help),
                unit: truncate(&m.unit),
            };
            let full = families.len() >= MAX_FAMILIES;
            match families.get_mut(m.metric_family_name.as_str()) {
                Some(f) => *f = family,
                None if !full => {
                    families.insert(m.metric_family_name.clone(), family);
                }
                None => {}
            }
        }
    }

    /// The metadata known for a series name (see [`lookup`]).
    #[cfg(test)]
    pub fn meta_type(&self, name: &str) -> MetricType {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        lookup(&families, name).metric_type
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Series name suffixes, and the family types they belong to.
const SUFFIXES: &[(&str, &[MetricType])] = &[
    (
        "_bucket",
        &[MetricType::Histogram, MetricType::GaugeHistogram],
    ),
    ("_sum", &[MetricType::Histogram, MetricType::Summary]),
    ("_count", &[MetricType::Histogram, MetricType::Summary]),
    ("_total", &[MetricType::Counter]),
    (
        "_created",
        &[
            MetricType::Counter,
            MetricType::Histogram,
            MetricType::Summary,
        ],
    ),
    ("_gsum", &[MetricType::GaugeHistogram]),
    ("_gcount", &[MetricType::GaugeHistogram]),
    ("_info", &[MetricType::Info]),
];

/// The metadata of the family a series belongs to: the family named like the series, or the one
/// the series is a `_bucket`, `_sum`, `_count`, `_total`... of (when its type has such series).
fn lookup<'a>(families: &'a HashMap<String, Family>, name: &str) -> Meta<'a> {
    let meta = |f: &'a Family| Meta {
        metric_type: f.metric_type,
        help: &f.help,
        unit: &f.unit,
    };
    if families.is_empty() {
        return Meta::default();
    }
    if let Some(f) = families.get(name) {
        return meta(f);
    }
    for (suffix, types) in SUFFIXES {
        if let Some(f) = name
            .strip_suffix(suffix)
            .and_then(|family| families.get(family))
            .filter(|f| types.contains(&f.metric_type))
        {
            return meta(f);
        }
    }
    Meta::default()
}
