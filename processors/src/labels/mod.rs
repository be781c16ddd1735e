//! Processor `labels`: writes the tenant, domain and SLA-tier labels (keys configurable), `static`
//! labels and resource attributes promoted by `from_attributes` onto every data point of every
//! metric kind, as point attributes: the Prometheus exporters emit them as series labels, OTLP
//! carries them as point attributes.
//!
//! Each of the three labels has sources tried in order (the batch's tenant, or for the SLA label
//! the tier its tenant has in the receiver's tenants file; a request header the receiver carried, a resource attribute, a regex capture over one, a lookup table, a default);
//! values are decided once per resource and written to all its points. With `overwrite` (the
//! default) a point's own label of that key is replaced, or removed when no source gives a value,
//! so a client cannot choose it; without, it is kept. The batch's context is never changed: a
//! tenant found in a header becomes a label, not the batch's tenant.

mod config;
mod metrics;
mod sources;
mod table;

pub use config::{LabelsConfig, RuleConfig, SourceConfig};
pub use metrics::LabelsMetrics;
pub use sources::Miss;

use config::Compiled;
use sluice_core::batch::Batch;
use sluice_core::component::{
    BoxError, Consumer, Processor, ProcessorConfig, ProcessorContext, Refusal,
};
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use sluice_core::proto::otlp::metrics::v1::{ResourceMetrics, ScopeMetrics};
use sources::{Inputs, attribute};
use std::sync::Arc;
use table::Table;

impl ProcessorConfig for LabelsConfig {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        Ok(Arc::new(LabelsProcessor::new(self, ctx)?))
    }
}

pub struct LabelsProcessor {
    compiled: Compiled,
    tables: Vec<Arc<Table>>,
    next: Arc<dyn Consumer>,
    metrics: LabelsMetrics,
}

/// One label to write on the points of a resource.
struct Write {
    key: Arc<str>,
    /// `None`: no value; with `overwrite` a point's own label of the key is removed.
    value: Option<Arc<str>>,
    overwrite: bool,
}

impl LabelsProcessor {
    pub fn new(cfg: &LabelsConfig, ctx: ProcessorContext) -> Result<Self, BoxError> {
        let compiled = cfg.compile(true).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let tables = compiled
            .rules
            .iter()
            .flat_map(|r| r.sources.iter().filter_map(|s| s.table().cloned()))
            .collect();
        let keys: Vec<Arc<str>> = compiled.rules.iter().map(|r| r.key.clone()).collect();
        Ok(LabelsProcessor {
            metrics: LabelsMetrics::new(
                ctx.telemetry.clone(),
                &ctx.id.to_string(),
                &ctx.pipeline,
                &keys,
            ),
            compiled,
            tables,
            next: ctx.next,
        })
    }

    /// The processor's counters.
    pub fn metrics(&self) -> &LabelsMetrics {
        &self.metrics
    }

    /// The labels for one resource's points, tallying labels without a value.
    fn writes(
        &self,
        batch_ctx: &sluice_core::batch::Context,
        rm: &ResourceMetrics,
        points: u64,
        tally: &mut metrics::Tally,
    ) -> Vec<Write> {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let c = &self.compiled;
        let mut out = Vec::with_capacity(c.rules.len() + c.static_labels.len());
        let mut tenant: Option<Arc<str>> = None;
        for (i, rule) in c.rules.iter().enumerate() {
            let inp = Inputs {
                context: batch_ctx,
                attributes: attrs,
                tenant: tenant.as_deref(),
            };
            let value = match rule.resolve(&inp) {
                Ok(v) => Some(v),
                Err(m) => {
                    tally.miss(i, m, points);
                    None
                }
            };
            if rule.which == config::Which::Tenant {
                tenant.clone_from(&value);
            }
            out.push(Write {
                key: rule.key.clone(),
                value,
                overwrite: rule.overwrite,
            });
        }
        for (k, v) in &c.static_labels {
            out.push(Write {
                key: k.clone(),
                value: Some(v.clone()),
                overwrite: false,
            });
        }
        for (a, k) in &c.from_attributes {
            if let Some(v) = attribute(attrs, a).filter(|v| !v.is_empty()) {
                out.push(Write {
                    key: k.clone(),
                    value: Some(Arc::from(v.as_ref())),
                    overwrite: false,
                });
            }
        }
        out
    }
}

/// Writes `writes` into one point's attributes. An overwriting label replaces every attribute of
/// its key (a client may send a key twice).
fn apply(attrs: &mut Vec<KeyValue>, writes: &[Write]) {
    // Room for the new labels at once: a push onto a full list would double it, and a batch
    // waiting in a queue would hold the unused half.
    attrs.reserve_exact(writes.iter().filter(|w| w.value.is_some()).count());
    for w in writes {
        if w.overwrite {
            attrs.retain(|kv| kv.key != *w.key);
        } else if attrs.iter().any(|kv| kv.key == *w.key) {
            continue;
        }
        if let Some(v) = &w.value {
            attrs.push(KeyValue {
                // From the `str`: `to_string` on an `Arc<str>` would go through `Display`.
                key: String::from(&*w.key),
                value: Some(string_value(v)),
            });
        }
    }
}

fn string_value(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}

fn label_scope(sm: &mut ScopeMetrics, writes: &[Write]) {
    macro_rules! points {
        ($points:expr) => {
            for p in $points {
                apply(&mut p.attributes, writes);
            }
        };
    }
    for m in &mut sm.metrics {
        match &mut m.data {
            Some(Data::Gauge(g)) => points!(&mut g.data_points),
            Some(Data::Sum(s)) => points!(&mut s.data_points),
            Some(Data::Histogram(h)) => points!(&mut h.data_points),
            Some(Data::ExponentialHistogram(h)) => points!(&mut h.data_points),
            Some(Data::Summary(s)) => points!(&mut s.data_points),
            None => {}
        }
    }
}

impl Consumer for LabelsProcessor {
    fn consume(&self, mut batch: Batch) -> Result<(), Refusal> {
        for t in &self.tables {
            t.refresh();
        }
        let mut tally = self.metrics.tally();
        for rm in &mut batch.resource_metrics {
            let points = sluice_core::batch::resource_points(rm) as u64;
            if points == 0 {
                continue;
            }
            let writes = self.writes(&batch.context, rm, points, &mut tally);
            if writes.iter().any(|w| w.value.is_some()) {
                tally.labelled += points;
            }
            for sm in &mut rm.scope_metrics {
                label_scope(sm, &writes);
            }
        }
        self.metrics.record(&tally);
        self.next.consume(batch)
    }

    fn ready(&self, context: &sluice_core::batch::Context, points: usize) -> Result<(), Refusal> {
        self.next.ready(context, points)
    }
}

impl Processor for LabelsProcessor {}

#[cfg(test)]
mod tests;
