//! OTLP exponential histograms -> Prometheus native histograms.
//!
//! An OTLP bucket with index `i` at scale `s` covers `(base^i, base^(i+1)]` with
//! `base = 2^(2^-s)`; a Prometheus bucket with index `j` covers `(base^(j-1), base^j]`. So the
//! Prometheus index is the OTLP index plus one (the same holds for negative buckets, mirrored).
//! Prometheus accepts schemas -4..=8: finer scales are merged down to 8 (2^(s-8) neighbours per
//! bucket), coarser ones cannot be represented.

use super::NativeHistogram;
use crate::proto::otlp::metrics::v1::ExponentialHistogramDataPoint;
use crate::proto::otlp::metrics::v1::exponential_histogram_data_point::Buckets;

pub(crate) const MAX_SCHEMA: i32 = 8;
pub(crate) const MIN_SCHEMA: i32 = -4;
/// The zero threshold Prometheus assumes when OTLP leaves it unset.
pub(crate) const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;
/// A gap of up to this many empty buckets is written as zero deltas rather than a new span
/// (client_golang's choice).
const MAX_INLINE_GAP: i64 = 2;
/// Widest dense bucket range kept when adding histograms; wider sums are merged to a coarser scale.
const MAX_DENSE_WIDTH: i64 = 1 << 14;

/// A Prometheus bucket span: offset and length.
type Span = (i32, u32);

/// Dense buckets at some scale: `counts[k]` belongs to OTLP index `offset + k`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Dense {
    pub offset: i64,
    pub counts: Vec<u64>,
}

impl Dense {
    pub(crate) fn from_otlp(b: Option<&Buckets>) -> Dense {
        b.map_or_else(Dense::default, |b| Dense {
            offset: i64::from(b.offset),
            counts: b.bucket_counts.clone(),
        })
    }

    fn end(&self) -> i64 {
        self.offset + self.counts.len() as i64
    }

    /// Merges each group of `2^by` neighbouring buckets into one (scale decreases by `by`).
    pub(crate) fn downscale(&mut self, by: u32) {
        if by == 0 {
            return;
        }
        let by = by.min(63);
        let new_offset = self.offset >> by;
        if self.counts.is_empty() {
            self.offset = new_offset;
            return;
        }
        let last = (self.end() - 1) >> by;
        let mut merged = vec![0u64; (last - new_offset + 1) as usize];
        for (k, c) in self.counts.iter().enumerate() {
            let idx = ((self.offset + k as i64) >> by) - new_offset;
            merged[idx as usize] = merged[idx as usize].saturating_add(*c);
        }
        self.offset = new_offset;
        self.counts = merged;
    }

    /// The width of the range covering both (same scale).
    fn joint_width(&self, other: &Dense) -> i64 {
        match (self.counts.is_empty(), other.counts.is_empty()) {
            (true, _) => other.counts.len() as i64,
            (_, true) => self.counts.len() as i64,
            _ => self.end().max(other.end()) - self.offset.min(other.offset),
        }
    }

    /// Adds `other` (same scale) bucket by bucket.
    fn add(&mut self, other: &Dense) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        let lo = self.offset.min(other.offset);
        let hi = self.end().max(other.end());
        if lo < self.offset || hi > self.end() {
            let mut grown = vec![0u64; (hi - lo) as usize];
            let at = (self.offset - lo) as usize;
            grown[at..at + self.counts.len()].copy_from_slice(&self.counts);
            self.counts = grown;
            self.offset = lo;
        }
        let at = (other.offset - self.offset) as usize;
        for (dst, src) in self.counts[at..].iter_mut().zip(&other.counts) {
            *dst = dst.saturating_add(*src);
        }
    }

    /// Prometheus spans (`(offset, length)`, the first offset absolute, later ones relative to the
    /// end of the previous span) and deltas (each bucket count minus the previous one). Empty
    /// buckets at the edges are left out; `None` when an index does not fit Prometheus' `i32`.
    pub(crate) fn spans(&self) -> Option<(Vec<Span>, Vec<i64>)> {
        let mut spans: Vec<Span> = Vec::new();
        let mut deltas = Vec::new();
        let mut prev_count = 0i64;
        let mut last_idx: Option<i64> = None;
        for (k, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let idx = self.offset + k as i64 + 1;
            match last_idx {
                None => spans.push((i32::try_from(idx).ok()?, 0)),
                Some(last) => {
                    let gap = idx - last - 1;
                    if gap > MAX_INLINE_GAP {
                        spans.push((i32::try_from(gap).ok()?, 0));
                    } else {
                        for _ in 0..gap {
                            deltas.push(-prev_count);
                            prev_count = 0;
                            spans.last_mut()?.1 += 1;
                        }
                    }
                }
            }
            let c = c as i64;
            deltas.push(c - prev_count);
            prev_count = c;
            spans.last_mut()?.1 += 1;
            last_idx = Some(idx);
        }
        i32::try_from(last_idx.unwrap_or(0)).ok()?;
        Some((spans, deltas))
    }
}

/// An exponential histogram at a Prometheus-compatible scale, owned: one OTLP point, or the
/// running total of delta points.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExpHist {
    pub scale: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub positive: Dense,
    pub negative: Dense,
}

impl ExpHist {
    /// The point at scale <= 8; `None` when its scale is below -4.
    pub(crate) fn from_point(p: &ExponentialHistogramDataPoint) -> Option<ExpHist> {
        if p.scale < MIN_SCHEMA {
            return None;
        }
        let mut h = ExpHist {
            scale: p.scale,
            zero_threshold: if p.zero_threshold > 0.0 {
                p.zero_threshold
            } else {
                DEFAULT_ZERO_THRESHOLD
            },
            zero_count: p.zero_count,
            count: p.count,
            sum: p.sum,
            positive: Dense::from_otlp(p.positive.as_ref()),
            negative: Dense::from_otlp(p.negative.as_ref()),
        };
        if h.scale > MAX_SCHEMA {
            h.downscale_to(MAX_SCHEMA);
        }
        Some(h)
    }

    fn downscale_to(&mut self, scale: i32) {
        let by = (self.scale - scale).max(0) as u32;
        self.positive.downscale(by);
        self.negative.downscale(by);
        self.scale = scale;
    }

    /// Adds a later delta. `false` (and nothing changed) when the sum is not representable.
    pub(crate) fn add(&mut self, other: &ExpHist) -> bool {
        let mut other = other.clone();
        let mut scale = self.scale.min(other.scale);
        let mut mine = self.clone();
        mine.downscale_to(scale);
        other.downscale_to(scale);
        while mine.positive.joint_width(&other.positive) > MAX_DENSE_WIDTH
            || mine.negative.joint_width(&other.negative) > MAX_DENSE_WIDTH
        {
            scale -= 1;
            if scale < MIN_SCHEMA {
                return false;
            }
            mine.downscale_to(scale);
            other.downscale_to(scale);
        }
        mine.positive.add(&other.positive);
        mine.negative.add(&other.negative);
        mine.zero_count = mine.zero_count.saturating_add(other.zero_count);
        mine.count = mine.count.saturating_add(other.count);
        mine.sum = mine.sum.zip(other.sum).map(|(a, b)| a + b);
        // The latest threshold wins; buckets are not re-split if it changed.
        mine.zero_threshold = other.zero_threshold;
        *self = mine;
        true
    }

    /// The native histogram; `None` when a bucket index does not fit.
    pub(crate) fn to_native(
        &self,
        timestamp_ms: i64,
        start_timestamp_ms: i64,
    ) -> Option<NativeHistogram> {
        let (positive_spans, positive_deltas) = self.positive.spans()?;
        let (negative_spans, negative_deltas) = self.negative.spans()?;
        Some(NativeHistogram {
            timestamp_ms,
            start_timestamp_ms,
            count: self.count,
            // Prometheus requires a sum; OTLP may leave it out (e.g. with negative values).
            sum: self.sum.unwrap_or(0.0),
            schema: self.scale,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            positive_spans,
            positive_deltas,
            negative_spans,
            negative_deltas,
            reset_hint_gauge: false,
            stale: false,
        })
    }
}
