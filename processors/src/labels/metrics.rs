//! The labels processor's self-telemetry: points labelled, and points where a label had no value
//! (by label key and the reason of the last source tried). A batch tallies into plain integers and
//! adds them once at its end.
//! The families are Sluice's own (`sluice_core::telemetry`), served on `/metrics`.

use super::sources::Miss;
use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::{LabelMissingLabels, ProcessorOnlyLabels, Telemetry};
use std::sync::Arc;

pub struct LabelsMetrics {
    telemetry: Arc<Telemetry>,
    labelled: Counter,
    /// Per rule, per [`Miss`] reason.
    missing: Vec<Counter>,
}

/// What one batch did.
pub struct Tally {
    pub labelled: u64,
    pub missing: Vec<u64>,
}

impl LabelsMetrics {
    pub fn new(
        telemetry: Arc<Telemetry>,
        processor: &str,
        pipeline: &str,
        rule_keys: &[Arc<str>],
    ) -> Self {
        let missing = rule_keys
            .iter()
            .flat_map(|k| {
                Miss::ALL.iter().map(|m| {
                    telemetry
                        .labels_missing_points
                        .get_or_create(&LabelMissingLabels {
                            processor: processor.to_string(),
                            pipeline: pipeline.to_string(),
                            label: k.to_string(),
                            reason: m.as_str().to_string(),
                        })
                        .clone()
                })
            })
            .collect();
        let labelled = telemetry
            .labels_points
            .get_or_create(&ProcessorOnlyLabels {
                processor: processor.to_string(),
                pipeline: pipeline.to_string(),
            })
            .clone();
        LabelsMetrics {
            telemetry,
            labelled,
            missing,
        }
    }

    pub fn tally(&self) -> Tally {
        Tally {
            labelled: 0,
            missing: vec![0; self.missing.len()],
        }
    }

    pub fn record(&self, t: &Tally) {
        if t.labelled > 0 {
            self.labelled.inc_by(t.labelled);
        }
        for (c, n) in self.missing.iter().zip(&t.missing) {
            if *n > 0 {
                c.inc_by(*n);
            }
        }
    }

    /// One counter's value, summed over series carrying `labels` (as `Telemetry::value`).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.telemetry.value(name, labels)
    }
}

impl Tally {
    pub fn miss(&mut self, rule: usize, m: Miss, points: u64) {
        self.missing[rule * Miss::ALL.len() + m as usize] += points;
    }
}
