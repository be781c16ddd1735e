//! Processor `limits`: per-tenant limits. The tenant is the batch's (`context.tenant`; no tenant
//! is a tenant of its own, the empty one). Each setting comes from the tenants file
//! (`context.tenant_info.limits`), else the processor's `tenants.<name>`, else its `default`;
//! unset everywhere means unlimited.
//!
//! - `rate`/`burst`: a token bucket in samples (data points). A batch with more points than the
//!   tokens left is refused whole (`RefusalKind::Limited`, with the time until enough tokens are
//!   back, at least 1 s); a batch larger than `burst` passes only when the bucket is full, and the
//!   tenant then owes the difference.
//! - `max_series`: series (resource attributes, metric name, point attributes) seen in the last
//!   10 minutes. A batch that would bring the tenant over the limit with new series is refused
//!   whole (retry in 60 s); batches of known series keep passing. A tenant's map never holds more
//!   than `max_series` entries.
//! - `max_label_names_per_series`, `max_label_name_length`, `max_label_value_length`: points
//!   breaking them are dropped (counted with reason `label_limit`), the rest goes on.
//!
//! Refusals are counted per tenant and reason (`limited_rate`, `limited_series`); the receiver
//! also counts them as refused (`limited`) and answers 429 / RESOURCE_EXHAUSTED with a retry hint.

mod config;
mod metrics;
mod series;
mod state;

pub use config::{Effective, LabelLimits, LimitSettings, LimitsConfig};

use metrics::LimitsMetrics;
use parking_lot::{Mutex, RwLock};
use series::SeriesHasher;
use sluice_core::batch::{Batch, metric_points};
use sluice_core::component::{
    BoxError, Consumer, Processor, ProcessorConfig, ProcessorContext, Refusal, RefusalKind,
};
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use state::{Over, SERIES_RETRY, SERIES_WINDOW, TenantState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl ProcessorConfig for LimitsConfig {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        Ok(Arc::new(LimitsProcessor::new(self, ctx)))
    }
}

/// How often tenants idle for longer than the series window are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

pub struct LimitsProcessor {
    cfg: LimitsConfig,
    next: Arc<dyn Consumer>,
    metrics: LimitsMetrics,
    hasher: SeriesHasher,
    tenants: RwLock<HashMap<Arc<str>, Arc<Mutex<TenantState>>>>,
    epoch: Instant,
    forgot: Mutex<Instant>,
}

impl LimitsProcessor {
    pub fn new(cfg: &LimitsConfig, ctx: ProcessorContext) -> Self {
        let now = Instant::now();
        LimitsProcessor {
            cfg: cfg.clone(),
            next: ctx.next,
            metrics: LimitsMetrics::new(ctx.telemetry, &ctx.id.to_string(), &ctx.pipeline),
            hasher: SeriesHasher::default(),
            tenants: RwLock::new(HashMap::new()),
            epoch: now,
            forgot: Mutex::new(now),
        }
    }

    /// Checks and passes on a batch as of `now` (the clock is a parameter for tests).
    pub fn consume_at(&self, mut batch: Batch, now: Instant) -> Result<(), Refusal> {
        let file = batch.context.tenant_info.as_ref().map(|i| &i.limits);
        let limits = self.cfg.effective(batch.context.tenant_label(), file);
        if !limits.any() {
            return self.next.consume(batch);
        }
        if limits.labels.any() {
            let dropped = drop_over_label_limits(&mut batch, &limits.labels);
            self.metrics.label_dropped(dropped);
        }
        let points = batch.point_count();
        if points == 0 {
            return Ok(());
        }
        if limits.rate.is_none() && limits.max_series.is_none() {
            return self.next.consume(batch);
        }
        let tenant = batch
            .context
            .tenant
            .clone()
            .unwrap_or_else(|| Arc::from(""));
        self.admit(&tenant, &limits, &batch, points, now)?;
        self.next.consume(batch).inspect_err(|_| {
            // Not taken: the client will send it again, and be charged then.
            if let Some((_, burst)) = limits.rate {
                self.state(&tenant, now).lock().refund(points, burst);
            }
        })
    }

    fn admit(
        &self,
        tenant: &Arc<str>,
        limits: &Effective,
        batch: &Batch,
        points: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.forget_idle(now);
        let mut hashes = Vec::new();
        if limits.max_series.is_some() {
            hashes.reserve(points);
            self.hasher.hash_batch(batch, &mut hashes);
        }
        let state = self.state(tenant, now);
        let mut state = state.lock();
        let result = state.admit(limits, points, &hashes, self.epoch, now);
        if limits.max_series.is_some() {
            self.metrics.active_series(tenant, state.active_series());
        }
        drop(state);
        let over = match result {
            Ok(()) => return Ok(()),
            Err(over) => over,
        };
        let name = if tenant.is_empty() {
            "(no tenant)".to_string()
        } else {
            format!("`{tenant}`")
        };
        let (reason, message, retry_after) = match over {
            Over::Rate {
                retry_after,
                rate,
                burst,
            } => (
                "limited_rate",
                format!(
                    "tenant {name} is over its rate limit ({rate} samples/s, burst {burst}); \
                     this request has {points} samples; retry later"
                ),
                retry_after,
            ),
            Over::Series { would, max } => (
                "limited_series",
                format!(
                    "tenant {name} would have {would} active series, over its max_series {max} \
                     (series seen in the last {} minutes); new series are refused until old ones \
                     expire",
                    SERIES_WINDOW.as_secs() / 60
                ),
                SERIES_RETRY,
            ),
        };
        self.metrics.refused(tenant, reason, points as u64);
        Err(Refusal {
            kind: RefusalKind::Limited,
            message,
            retry_after: Some(retry_after),
        })
    }

    fn state(&self, tenant: &Arc<str>, now: Instant) -> Arc<Mutex<TenantState>> {
        if let Some(s) = self.tenants.read().get(tenant) {
            return s.clone();
        }
        self.tenants
            .write()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Mutex::new(TenantState::new(now))))
            .clone()
    }

    /// Every minute, forgets tenants that sent nothing for longer than the series window (their
    /// series have all expired; their bucket starts full again).
    fn forget_idle(&self, now: Instant) {
        {
            let mut forgot = self.forgot.lock();
            if now.saturating_duration_since(*forgot) < FORGET_IDLE_EVERY {
                return;
            }
            *forgot = now;
        }
        let mut tenants = self.tenants.write();
        tenants.retain(|tenant, s| {
            let idle = now.saturating_duration_since(s.lock().last_seen) > SERIES_WINDOW;
            if idle {
                self.metrics.forget(tenant);
            }
            !idle
        });
    }

    /// Tenants with state (for tests).
    pub fn tenant_count(&self) -> usize {
        self.tenants.read().len()
    }
}

/// Drops the points that break a label limit; returns how many.
fn drop_over_label_limits(batch: &mut Batch, l: &LabelLimits) -> u64 {
    let breaks = |attrs: &[KeyValue]| {
        l.names.is_some_and(|n| attrs.len() > n)
            || attrs.iter().any(|kv| {
                l.name_length.is_some_and(|n| kv.key.len() > n)
                    || l.value_length.is_some_and(|n| match &kv.value {
                        Some(v) => match &v.value {
                            Some(any_value::Value::StringValue(s)) => s.len() > n,
                            _ => false,
                        },
                        None => false,
                    })
            })
    };
    let mut dropped = 0;
    for rm in &mut batch.resource_metrics {
        for sm in &mut rm.scope_metrics {
            sm.metrics.retain_mut(|m| {
                let before = metric_points(m);
                macro_rules! points {
                    ($points:expr) => {
                        $points.retain(|p| !breaks(&p.attributes))
                    };
                }
                match &mut m.data {
                    Some(Data::Gauge(g)) => points!(g.data_points),
                    Some(Data::Sum(s)) => points!(s.data_points),
                    Some(Data::Histogram(h)) => points!(h.data_points),
                    Some(Data::ExponentialHistogram(h)) => points!(h.data_points),
                    Some(Data::Summary(s)) => points!(s.data_points),
                    None => {}
                }
                let after = metric_points(m);
                dropped += (before - after) as u64;
                // A metric that lost all its points goes; one that had none stays as it was.
                after > 0 || before == 0
            });
        }
    }
    dropped
}

impl Consumer for LimitsProcessor {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        self.consume_at(batch, Instant::now())
    }

    fn ready(&self, context: &sluice_core::batch::Context, points: usize) -> Result<(), Refusal> {
        self.next.ready(context, points)
    }
}

impl Processor for LimitsProcessor {}

#[cfg(test)]
mod tests;
