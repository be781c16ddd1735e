//! Processor `route`: chooses the exporters of each batch's data. A route matches by the batch's
//! tenant (`tenants`), resource attributes (`attributes`) and data-point attributes (`labels`);
//! every condition a route sets must hold, and the first matching route wins. Data no route
//! matches goes to `default`, or is dropped and counted (`no_route`) when there is none.
//!
//! A tenant match decides for the whole batch, an attribute match per resource, a label match per
//! data point: the batch is split accordingly (see [`partition`]), each part keeping the batch's
//! context with [`Context::route`](sluice_core::batch::Context::route) set to its exporters, and
//! the final fanout hands each part to those exporters only. Parts bound for the same exporters
//! travel as one batch. Parts are handed on in the order of their routes; when one is refused, the
//! refusal is returned (the receiver answers with a retryable status) and the parts handed before
//! it stay taken, so a client's retry may deliver them twice (at-least-once). Put `limits` before
//! `route` so that a tenant limit refuses the request before any part is taken.

mod config;
pub mod partition;

pub use config::{RouteConfig, RouteEntry};

use config::{Compiled, Route};
use partition::{Choice, partition};
use prometheus_client::metrics::counter::Counter;
use sluice_core::batch::{Batch, Context, resource_points};
use sluice_core::component::{
    BoxError, ComponentId, Consumer, Processor, ProcessorConfig, ProcessorContext, Refusal,
};
use sluice_core::config::Located;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::ResourceMetrics;
use sluice_core::telemetry::{ProcessorLabels, RouteLabels};
use std::sync::Arc;

impl ProcessorConfig for RouteConfig {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        Ok(Arc::new(RouteProcessor::new(self, ctx)?))
    }

    fn routes_to(&self) -> Vec<Located<ComponentId>> {
        self.targets()
    }
}

pub struct RouteProcessor {
    routes: Vec<Route>,
    /// Per target, the part it joins (targets with the same exporters share one).
    group: Vec<usize>,
    /// Per part, its exporters.
    groups: Vec<Arc<[String]>>,
    /// Some route looks at resource attributes or point labels (else a batch is never split).
    splits: bool,
    next: Arc<dyn Consumer>,
    /// Per target, points passed on.
    routed: Vec<Counter>,
    no_route: Counter,
}

impl RouteProcessor {
    pub fn new(cfg: &RouteConfig, ctx: ProcessorContext) -> Result<Self, BoxError> {
        let Compiled { routes, default } = cfg.compile().map_err(|errs| {
            errs.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let (processor, pipeline) = (ctx.id.to_string(), ctx.pipeline.clone());
        let targets: Vec<(&str, Option<&Arc<[String]>>)> = routes
            .iter()
            .map(|r| (r.name.as_str(), Some(&r.exporters)))
            .chain([("default", default.as_ref())])
            .collect();
        let mut groups: Vec<Arc<[String]>> = Vec::new();
        let mut group = Vec::new();
        for (_, exporters) in &targets {
            let g = match exporters {
                Some(e) => match groups.iter().position(|g| g == *e) {
                    Some(g) => g,
                    None => {
                        groups.push((*e).clone());
                        groups.len() - 1
                    }
                },
                None => usize::MAX,
            };
            group.push(g);
        }
        let routed = targets
            .iter()
            .map(|(name, _)| {
                ctx.telemetry
                    .route_points
                    .get_or_create(&RouteLabels {
                        processor: processor.clone(),
                        pipeline: pipeline.clone(),
                        route: name.to_string(),
                    })
                    .clone()
            })
            .collect();
        let no_route = ctx
            .telemetry
            .processor_dropped
            .get_or_create(&ProcessorLabels {
                processor,
                pipeline,
                reason: "no_route".into(),
            })
            .clone();
        let splits = routes
            .iter()
            .any(|r| !r.attributes.is_empty() || !r.labels.is_empty());
        Ok(RouteProcessor {
            routes,
            group,
            groups,
            splits,
            next: ctx.next,
            routed,
            no_route,
        })
    }

    /// The default's target index.
    fn default_target(&self) -> usize {
        self.routes.len()
    }

    /// Which routes the batch's tenant allows.
    fn tenant_matches(&self, context: &Context) -> Vec<bool> {
        let tenant = context.tenant_label();
        self.routes
            .iter()
            .map(|r| {
                r.tenants
                    .as_ref()
                    .is_none_or(|ts| ts.iter().any(|t| t == tenant))
            })
            .collect()
    }

    /// Where a resource's data goes: one target, or per point among the candidate routes (those
    /// whose tenant and attributes match and that look at labels), falling back to `fallback`.
    fn by_resource(&self, allowed: &[bool], rm: &ResourceMetrics) -> Choice<Candidates> {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let mut candidates = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !allowed[i] || !r.attributes.iter().all(|(k, v)| has(attrs, k, v)) {
                continue;
            }
            if r.labels.is_empty() {
                if candidates.is_empty() {
                    return Choice::Whole(i);
                }
                return Choice::PerPoint(Candidates {
                    routes: candidates,
                    fallback: i,
                });
            }
            candidates.push(i);
        }
        if candidates.is_empty() {
            return Choice::Whole(self.default_target());
        }
        Choice::PerPoint(Candidates {
            routes: candidates,
            fallback: self.default_target(),
        })
    }

    fn by_point(&self, c: &Candidates, attrs: &[KeyValue]) -> usize {
        c.routes
            .iter()
            .copied()
            .find(|&i| self.routes[i].labels.iter().all(|(k, v)| has(attrs, k, v)))
            .unwrap_or(c.fallback)
    }

    /// The parts by target.
    fn split(&self, batch: Batch) -> (Context, Vec<Vec<ResourceMetrics>>) {
        let targets = self.routes.len() + 1;
        let allowed = self.tenant_matches(&batch.context);
        if !self.splits {
            let t = allowed
                .iter()
                .position(|a| *a)
                .unwrap_or(self.default_target());
            let mut parts: Vec<Vec<ResourceMetrics>> = (0..targets).map(|_| Vec::new()).collect();
            parts[t] = batch.resource_metrics;
            return (batch.context, parts);
        }
        let parts = partition(
            batch.resource_metrics,
            targets,
            |rm| self.by_resource(&allowed, rm),
            |c, attrs| self.by_point(c, attrs),
        );
        (batch.context, parts)
    }
}

/// What goes to one set of exporters: the metrics, and the points of each target among them.
#[derive(Default)]
struct Part {
    metrics: Vec<ResourceMetrics>,
    counts: Vec<(usize, u64)>,
}

/// The routes a resource's points are matched against, in order, and where the others go.
struct Candidates {
    routes: Vec<usize>,
    fallback: usize,
}

/// Whether `attrs` has `key` with a value equal to `want` (strings exactly; integers, doubles and
/// booleans by their value).
fn has(attrs: &[KeyValue], key: &str, want: &str) -> bool {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .is_some_and(|v| value_is(v, want))
}

fn value_is(v: &AnyValue, want: &str) -> bool {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s == want,
        Some(any_value::Value::IntValue(i)) => want.parse::<i64>() == Ok(*i),
        Some(any_value::Value::DoubleValue(d)) => want.parse::<f64>() == Ok(*d),
        Some(any_value::Value::BoolValue(b)) => want.parse::<bool>() == Ok(*b),
        _ => false,
    }
}

impl Consumer for RouteProcessor {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let (context, parts) = self.split(batch);
        let mut out: Vec<Part> = (0..self.groups.len()).map(|_| Part::default()).collect();
        for (t, rms) in parts.into_iter().enumerate() {
            let points: u64 = rms.iter().map(|rm| resource_points(rm) as u64).sum();
            if points == 0 {
                continue;
            }
            match self.group[t] {
                usize::MAX => {
                    self.no_route.inc_by(points);
                }
                g => {
                    out[g].metrics.extend(rms);
                    out[g].counts.push((t, points));
                }
            }
        }
        for (g, part) in out.into_iter().enumerate() {
            if part.counts.is_empty() {
                continue;
            }
            let context = Context {
                route: Some(self.groups[g].clone()),
                ..context.clone()
            };
            self.next.consume(Batch::new(context, part.metrics))?;
            for (t, points) in part.counts {
                self.routed[t].inc_by(points);
            }
        }
        Ok(())
    }
}

impl Processor for RouteProcessor {}

#[cfg(test)]
mod tests;
