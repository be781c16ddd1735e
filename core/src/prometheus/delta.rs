//! Delta -> cumulative accumulation for the Prometheus translation.

use super::native::ExpHist;
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Series kept at most, by default; beyond it the least recently seen are forgotten.
pub const DEFAULT_MAX_SERIES: usize = 100_000;
/// A series not seen for this long is forgotten (its next point starts a new cumulative series).
pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(600);

/// State for turning delta points into cumulative ones: per series (tenant, kind and full label
/// set including `__name__`) the start time of the first point, the time of the last one and the
/// running total.
///
/// A point continues its series when its start time is not after the last point's time (deltas
/// normally start where the previous one ended); a later start means points were missed or the
/// source restarted, so the series starts over from that point. A point not newer than the last
/// one is dropped (`delta_out_of_order`). Bounded: at most `max_series` series (the least recently
/// seen are evicted when a new one would exceed it) and series idle for `max_idle` are forgotten.
#[derive(Debug)]
pub struct DeltaToCumulative {
    series: HashMap<DeltaKey, Entry>,
    max_series: usize,
    max_idle: Duration,
    last_sweep: Option<Instant>,
    /// Counts accumulations: orders series by recency without ties.
    tick: u64,
}

impl Default for DeltaToCumulative {
    fn default() -> Self {
        DeltaToCumulative::with_limits(DEFAULT_MAX_SERIES, DEFAULT_MAX_IDLE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DeltaKey {
    pub tenant: Option<Arc<str>>,
    pub kind: DeltaKind,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DeltaKind {
    Sum,
    Histogram,
    Exponential,
}

/// A running total.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Acc {
    Number(f64),
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: Option<f64>,
    },
    Exponential(ExpHist),
}

impl Acc {
    /// Adds a later delta; `false` when the two cannot be added (other bucket layout).
    fn add(&mut self, delta: &Acc) -> bool {
        match (self, delta) {
            (Acc::Number(a), Acc::Number(b)) => {
                *a += b;
                true
            }
            (
                Acc::Histogram {
                    bounds,
                    counts,
                    count,
                    sum,
                },
                Acc::Histogram {
                    bounds: b_bounds,
                    counts: b_counts,
                    count: b_count,
                    sum: b_sum,
                },
            ) => {
                if bounds != b_bounds || counts.len() != b_counts.len() {
                    return false;
                }
                for (a, b) in counts.iter_mut().zip(b_counts) {
                    *a = a.saturating_add(*b);
                }
                *count = count.saturating_add(*b_count);
                *sum = sum.zip(*b_sum).map(|(a, b)| a + b);
                true
            }
            (Acc::Exponential(a), Acc::Exponential(b)) => a.add(b),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Entry {
    start_ns: u64,
    last_ns: u64,
    seen: Instant,
    /// The `tick` of the last point.
    order: u64,
    acc: Acc,
}

/// Why a delta point produced no cumulative point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    OutOfOrder,
}

impl DeltaToCumulative {
    pub fn new() -> Self {
        DeltaToCumulative::default()
    }

    /// A state keeping at most `max_series` series (at least one) and forgetting series idle for
    /// `max_idle`.
    pub fn with_limits(max_series: usize, max_idle: Duration) -> Self {
        DeltaToCumulative {
            series: HashMap::new(),
            max_series: max_series.max(1),
            max_idle,
            last_sweep: None,
            tick: 0,
        }
    }

    /// Series currently tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Forgets every series not seen within `max_idle` before `now`.
    pub fn forget_idle(&mut self, now: Instant) {
        let max_idle = self.max_idle;
        self.series
            .retain(|_, e| now.saturating_duration_since(e.seen) < max_idle);
        self.last_sweep = Some(now);
    }

    /// Forgets idle series, at most every eighth of `max_idle` (a sweep walks every series).
    pub(crate) fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= self.max_idle / 8);
        if due {
            self.forget_idle(now);
        }
    }

    /// Adds a delta point to its series and returns the series' start time and running total.
    pub(crate) fn accumulate(
        &mut self,
        key: DeltaKey,
        start_ns: u64,
        time_ns: u64,
        delta: Acc,
        now: Instant,
    ) -> Result<(u64, &Acc), Refused> {
        if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
            self.evict_oldest();
        }
        self.tick += 1;
        let order = self.tick;
        let entry = match self.series.entry(key) {
            MapEntry::Vacant(v) => v.insert(Entry {
                start_ns,
                last_ns: time_ns,
                seen: now,
                order,
                acc: delta,
            }),
            MapEntry::Occupied(o) => {
                let entry = o.into_mut();
                entry.seen = now;
                entry.order = order;
                if time_ns <= entry.last_ns {
                    return Err(Refused::OutOfOrder);
                }
                if start_ns > entry.last_ns || !entry.acc.add(&delta) {
                    entry.start_ns = start_ns;
                    entry.acc = delta;
                }
                entry.last_ns = time_ns;
                entry
            }
        };
        Ok((entry.start_ns, &entry.acc))
    }

    /// Evicts the least recently seen series (about 1/64 of the limit at once, so that a stream
    /// of new series does not pay a full scan each).
    fn evict_oldest(&mut self) {
        let n = (self.max_series / 64).max(1).min(self.series.len());
        if n == 0 {
            return;
        }
        let mut orders: Vec<u64> = self.series.values().map(|e| e.order).collect();
        let (_, cutoff, _) = orders.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        self.series.retain(|_, e| e.order > cutoff);
    }
}
