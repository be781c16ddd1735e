//! Native histograms -> OTLP. Exponential schemas (-4..=8) become exponential histograms (scale =
//! schema); custom buckets (schema -53) become explicit-bounds histograms.
//!
//! Prometheus bucket `i` covers `(base^(i-1), base^i]` where OTLP bucket `i` covers
//! `(base^i, base^(i+1)]`, so an OTLP offset is the Prometheus index minus one. Spans and deltas
//! (or absolute float counts) are expanded into dense counts, within a budget of buckets per
//! request, so that a few bytes of far-apart spans cannot allocate gigabytes.

use super::build::{FLAG_NO_RECORDED_VALUE, ms_to_ns, start_ns};
use sluice_core::prometheus::is_stale_nan;
use sluice_core::proto::otlp::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, exponential_histogram_data_point::Buckets,
};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};

/// The schema of native histograms with custom bucket boundaries.
const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Dense buckets one side of one histogram may span.
const MAX_SPAN: i64 = 1 << 16;
/// Counts above this are not exact in a float.
const MAX_EXACT_FLOAT: f64 = (1u64 << 53) as f64;

/// A converted native histogram point (without attributes or exemplars).
pub enum Native {
    Exponential(ExponentialHistogramDataPoint),
    Explicit(HistogramDataPoint),
}

/// A count field: integer histograms count in integers, float histograms in floats.
#[derive(Clone, Copy)]
pub enum Count {
    Int(u64),
    Float(f64),
}

/// The fields of a native histogram, the same in both protocol versions.
pub struct View<'a> {
    pub count: Count,
    pub sum: f64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: Count,
    pub negative_spans: Vec<(i32, u32)>,
    pub negative_deltas: &'a [i64],
    pub negative_counts: &'a [f64],
    pub positive_spans: Vec<(i32, u32)>,
    pub positive_deltas: &'a [i64],
    pub positive_counts: &'a [f64],
    /// Reset hint GAUGE: a gauge histogram.
    pub gauge: bool,
    pub timestamp: i64,
    pub custom_values: &'a [f64],
    pub start_timestamp: i64,
}

pub trait HistogramLike {
    fn view(&self) -> View<'_>;
}

macro_rules! histogram_like {
    ($m:ident, $start:expr) => {
        impl HistogramLike for $m::Histogram {
            fn view(&self) -> View<'_> {
                use $m::histogram::{Count as C, ZeroCount as Z};
                let spans = |s: &[$m::BucketSpan]| s.iter().map(|s| (s.offset, s.length)).collect();
                View {
                    count: match self.count {
                        Some(C::CountFloat(f)) => Count::Float(f),
                        Some(C::CountInt(n)) => Count::Int(n),
                        None => Count::Int(0),
                    },
                    sum: self.sum,
                    schema: self.schema,
                    zero_threshold: self.zero_threshold,
                    zero_count: match self.zero_count {
                        Some(Z::ZeroCountFloat(f)) => Count::Float(f),
                        Some(Z::ZeroCountInt(n)) => Count::Int(n),
                        None => Count::Int(0),
                    },
                    negative_spans: spans(&self.negative_spans),
                    negative_deltas: &self.negative_deltas,
                    negative_counts: &self.negative_counts,
                    positive_spans: spans(&self.positive_spans),
                    positive_deltas: &self.positive_deltas,
                    positive_counts: &self.positive_counts,
                    gauge: self.reset_hint == $m::histogram::ResetHint::Gauge as i32,
                    timestamp: self.timestamp,
                    custom_values: &self.custom_values,
                    start_timestamp: $start(self),
                }
            }
        }
    };
}

histogram_like!(v1, |_: &v1::Histogram| 0);
histogram_like!(v2, |h: &v2::Histogram| h.start_timestamp);

type Problem = (&'static str, String);

fn invalid(message: impl Into<String>) -> Problem {
    ("invalid", message.into())
}

/// Converts one native histogram. `budget` is the number of dense buckets the request may still
/// expand; it is reduced by what this one uses.
pub fn convert(v: &View<'_>, budget: &mut usize) -> Result<Native, Problem> {
    let time = ms_to_ns(v.timestamp).ok_or_else(|| {
        invalid(format!(
            "histogram timestamp {} ms is outside 1970..2554",
            v.timestamp
        ))
    })?;
    let float = matches!(v.count, Count::Float(_));
    let count = whole(v.count)?;
    let zero_count = whole(v.zero_count)?;
    let (positive_offset, positive) = if float {
        dense_from_counts(&v.positive_spans, v.positive_counts, budget)?
    } else {
        dense_from_deltas(&v.positive_spans, v.positive_deltas, budget)?
    };
    let (negative_offset, negative) = if float {
        dense_from_counts(&v.negative_spans, v.negative_counts, budget)?
    } else {
        dense_from_deltas(&v.negative_spans, v.negative_deltas, budget)?
    };
    let in_buckets = positive
        .iter()
        .chain(&negative)
        .try_fold(zero_count, |a, &b| a.checked_add(b));
    if in_buckets.is_none_or(|n| n > count) {
        return Err(invalid(format!(
            "histogram count {count} is less than the observations in its buckets"
        )));
    }
    let stale = is_stale_nan(v.sum);
    let flags = if stale { FLAG_NO_RECORDED_VALUE } else { 0 };
    let start = start_ns(v.start_timestamp);

    if v.schema == CUSTOM_BUCKETS_SCHEMA {
        if !negative.is_empty() {
            return Err(invalid(
                "a custom-bucket histogram has negative buckets".to_string(),
            ));
        }
        let bounds = v.custom_values;
        if bounds.iter().any(|b| !b.is_finite()) || !bounds.is_sorted_by(|a, b| a < b) {
            return Err(invalid(
                "custom bucket bounds must be finite and strictly increasing".to_string(),
            ));
        }
        let mut bucket_counts = vec![0u64; bounds.len() + 1];
        if !positive.is_empty() {
            let first = positive_offset;
            let last = first + positive.len() as i64 - 1;
            if first < 0 || last > bounds.len() as i64 {
                return Err(invalid(format!(
                    "custom-bucket histogram has buckets {first}..={last} for {} bounds",
                    bounds.len()
                )));
            }
            for (i, c) in positive.iter().enumerate() {
                bucket_counts[first as usize + i] = *c;
            }
        }
        return Ok(Native::Explicit(HistogramDataPoint {
            attributes: Vec::new(),
            start_time_unix_nano: start,
            time_unix_nano: time,
            count,
            sum: Some(v.sum),
            bucket_counts,
            explicit_bounds: bounds.to_vec(),
            exemplars: Vec::new(),
            flags,
            min: None,
            max: None,
        }));
    }
    if !(-4..=8).contains(&v.schema) {
        return Err(invalid(format!(
            "native histogram schema {} is not supported (-4 to 8, or -53 for custom buckets)",
            v.schema
        )));
    }
    let buckets = |offset: i64, counts: Vec<u64>| {
        (!counts.is_empty()).then(|| Buckets {
            offset: (offset - 1) as i32,
            bucket_counts: counts,
        })
    };
    Ok(Native::Exponential(ExponentialHistogramDataPoint {
        attributes: Vec::new(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count,
        sum: Some(v.sum),
        scale: v.schema,
        zero_count,
        positive: buckets(positive_offset, positive),
        negative: buckets(negative_offset, negative),
        flags,
        exemplars: Vec::new(),
        min: None,
        max: None,
        zero_threshold: v.zero_threshold,
    }))
}

/// An exact, non-negative whole count.
fn whole(c: Count) -> Result<u64, Problem> {
    match c {
        Count::Int(n) => Ok(n),
        Count::Float(f) => float_count(f),
    }
}

fn float_count(f: f64) -> Result<u64, Problem> {
    if (0.0..=MAX_EXACT_FLOAT).contains(&f) && f.fract() == 0.0 {
        Ok(f as u64)
    } else {
        Err((
            "native_histogram_unsupported",
            format!("float histogram count {f} is not a whole number, which OTLP cannot hold"),
        ))
    }
}

/// The absolute bucket index of each span's first bucket, with its length; checks that the
/// buckets fit `MAX_SPAN` and the budget. Returns the first index and the dense length.
fn layout(
    spans: &[(i32, u32)],
    values: usize,
    budget: &mut usize,
) -> Result<(i64, usize), Problem> {
    let total: u64 = spans.iter().map(|s| s.1 as u64).sum();
    if total != values as u64 {
        return Err(invalid(format!(
            "histogram spans hold {total} buckets but {values} counts are given"
        )));
    }
    let mut first: Option<i64> = None;
    let mut end = 0i64; // one past the last bucket of the previous span
    for (i, &(offset, length)) in spans.iter().enumerate() {
        let start = if i == 0 {
            offset as i64
        } else {
            end + offset as i64
        };
        if i > 0 && offset < 0 {
            return Err(invalid("histogram spans overlap".to_string()));
        }
        if length > 0 && first.is_none() {
            first = Some(start);
        }
        end = start + length as i64;
    }
    let Some(first) = first else {
        return Ok((0, 0));
    };
    if first <= i32::MIN as i64 || end > i32::MAX as i64 {
        return Err(invalid(format!(
            "histogram bucket indexes {first}..{end} are out of range"
        )));
    }
    let len = end - first;
    if len > MAX_SPAN {
        return Err(invalid(format!(
            "histogram buckets span {len} indexes, more than {MAX_SPAN}"
        )));
    }
    let len = len as usize;
    if len > *budget {
        return Err(invalid(
            "the request's histograms span too many buckets in all".to_string(),
        ));
    }
    *budget -= len;
    Ok((first, len))
}

/// Walks the spans, calling `put(dense index, value index)` for each bucket.
fn walk(spans: &[(i32, u32)], first: i64, mut put: impl FnMut(usize, usize)) {
    let mut end = 0i64;
    let mut k = 0;
    for (i, &(offset, length)) in spans.iter().enumerate() {
        let start = if i == 0 {
            offset as i64
        } else {
            end + offset as i64
        };
        for j in 0..length as i64 {
            put((start + j - first) as usize, k);
            k += 1;
        }
        end = start + length as i64;
    }
}

fn dense_from_deltas(
    spans: &[(i32, u32)],
    deltas: &[i64],
    budget: &mut usize,
) -> Result<(i64, Vec<u64>), Problem> {
    let (first, len) = layout(spans, deltas.len(), budget)?;
    let mut dense = vec![0u64; len];
    let mut running = 0i64;
    let mut negative = false;
    walk(spans, first, |d, k| {
        running = running.saturating_add(deltas[k]);
        negative |= running < 0;
        dense[d] = running.max(0) as u64;
    });
    if negative {
        return Err(invalid(
            "histogram bucket deltas give a negative count".to_string(),
        ));
    }
    Ok((first, dense))
}

fn dense_from_counts(
    spans: &[(i32, u32)],
    counts: &[f64],
    budget: &mut usize,
) -> Result<(i64, Vec<u64>), Problem> {
    let (first, len) = layout(spans, counts.len(), budget)?;
    let mut dense = vec![0u64; len];
    let mut bad = None;
    walk(spans, first, |d, k| match float_count(counts[k]) {
        Ok(c) => dense[d] = c,
        Err(e) => bad = Some(e),
    });
    match bad {
        Some(e) => Err(e),
        None => Ok((first, dense)),
    }
}
