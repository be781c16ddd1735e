//! The normalize processor's self-telemetry. The counters are resolved once at build time; a batch
//! tallies into plain integers and adds them once at its end.

use super::rules::{Reason, drop_reason};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_core::telemetry::{ProcessorLabels, ProcessorOnlyLabels, Telemetry};

const DROP_REASONS: [&str; 2] = [drop_reason::INVALID_NAME, drop_reason::COLLISION];

pub struct Metrics {
    rewrites: Vec<Counter>,
    dropped: Vec<Counter>,
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    entries: Gauge,
}

/// What one batch did.
#[derive(Default)]
pub struct Tally {
    pub rewrites: [u64; Reason::ALL.len()],
    pub dropped: [u64; DROP_REASONS.len()],
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl Tally {
    pub fn rewrite(&mut self, r: Reason, points: u64) {
        self.rewrites[r as usize] += points;
    }

    pub fn drop(&mut self, reason: &str, points: u64) {
        let i = DROP_REASONS
            .iter()
            .position(|r| *r == reason)
            .expect("a known drop reason");
        self.dropped[i] += points;
    }
}

impl Metrics {
    pub fn new(t: &Telemetry, processor: &str, pipeline: &str) -> Self {
        let labels = |reason: &str| ProcessorLabels {
            processor: processor.to_string(),
            pipeline: pipeline.to_string(),
            reason: reason.to_string(),
        };
        let only = ProcessorOnlyLabels {
            processor: processor.to_string(),
            pipeline: pipeline.to_string(),
        };
        Metrics {
            rewrites: Reason::ALL
                .iter()
                .map(|r| {
                    t.normalize_rewrites
                        .get_or_create(&labels(r.as_str()))
                        .clone()
                })
                .collect(),
            dropped: DROP_REASONS
                .iter()
                .map(|r| t.processor_dropped.get_or_create(&labels(r)).clone())
                .collect(),
            hits: t.normalize_cache_hits.get_or_create(&only).clone(),
            misses: t.normalize_cache_misses.get_or_create(&only).clone(),
            evictions: t.normalize_cache_evictions.get_or_create(&only).clone(),
            entries: t.normalize_cache_entries.get_or_create(&only).clone(),
        }
    }

    pub fn record(&self, tally: &Tally, cache_entries: usize) {
        for (c, n) in self.rewrites.iter().zip(tally.rewrites) {
            if n > 0 {
                c.inc_by(n);
            }
        }
        for (c, n) in self.dropped.iter().zip(tally.dropped) {
            if n > 0 {
                c.inc_by(n);
            }
        }
        self.hits.inc_by(tally.hits);
        self.misses.inc_by(tally.misses);
        self.evictions.inc_by(tally.evictions);
        self.entries
            .set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
    }
}
