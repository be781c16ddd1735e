//! Processor `batch`: gathers points per tenant context and passes them on when `send_batch_size`
//! points are pending or `timeout` has passed. When the next stage refuses (its queues are full),
//! the points stay pending and are offered again on the next tick; once `max_pending_points` of a
//! tenant are pending, that tenant's new data is refused with a retryable status, so backpressure
//! reaches its receivers while other tenants' data keeps flowing.

mod config;

pub use config::BatchConfig;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{
    BoxError, Consumer, Processor, ProcessorConfig, ProcessorContext, Refusal, Returned,
};
use sluice_core::telemetry::{ProcessorLabels, Telemetry};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

impl ProcessorConfig for BatchConfig {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        let p = Arc::new(BatchProcessor {
            name: ctx.id.to_string(),
            pipeline: ctx.pipeline,
            cfg: self.clone(),
            next: ctx.next,
            telemetry: ctx.telemetry,
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
        });
        // The ticker holds a weak reference, so a processor dropped without `shutdown` ends it.
        let ticker = Arc::downgrade(&p);
        let (period, stop) = (self.timeout.get(), p.stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => match ticker.upgrade() {
                        Some(p) => { p.flush_all("timeout"); }
                        None => break,
                    },
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(p)
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<Context, Batch>,
    /// Points held per tenant: pending, and taken out to be offered to the next stage but not yet
    /// taken. Entries are removed when they reach zero.
    points: HashMap<Option<Arc<str>>, usize>,
}

impl State {
    fn add(&mut self, tenant: &Option<Arc<str>>, points: usize) {
        *self.points.entry(tenant.clone()).or_default() += points;
    }

    fn remove(&mut self, tenant: &Option<Arc<str>>, points: usize) {
        if let Some(held) = self.points.get_mut(tenant) {
            *held = held.saturating_sub(points);
            if *held == 0 {
                self.points.remove(tenant);
            }
        }
    }
}

pub struct BatchProcessor {
    name: String,
    pipeline: String,
    cfg: BatchConfig,
    next: Arc<dyn Consumer>,
    telemetry: Arc<Telemetry>,
    state: Mutex<State>,
    stop: CancellationToken,
}

impl BatchProcessor {
    /// Takes everything pending for `ctx` out of the state, to be passed on. Its points stay
    /// counted in `State::points` until the next stage has taken them, so that the
    /// `max_pending_points` bound holds while a batch is being offered.
    fn take(state: &mut State, ctx: &Context) -> Option<Batch> {
        state.pending.remove(ctx)
    }

    /// Puts a batch the next stage refused back in front of what is pending for its context (its
    /// points are still counted).
    fn put_back(&self, mut batch: Batch) {
        let mut s = self.state.lock();
        if let Some(newer) = s.pending.remove(&batch.context) {
            batch.append(newer);
        }
        s.pending.insert(batch.context.clone(), batch);
    }

    /// Passes one context's batch on, in pieces of at most `send_batch_max_size`. Returns false if
    /// the next stage refused (what was not taken is pending again).
    fn send(&self, mut batch: Batch, trigger: &str) -> bool {
        let max = self.cfg.send_batch_max_size;
        while !batch.resource_metrics.is_empty() {
            let piece = if max > 0 && batch.point_count() > max {
                batch.split_off_front(max)
            } else {
                std::mem::take(&mut batch)
            };
            let tenant = piece.context.tenant.clone();
            let points = piece.point_count();
            match self.next.offer(piece) {
                Ok(()) => {
                    self.state.lock().remove(&tenant, points);
                    self.telemetry
                        .processor_batches
                        .get_or_create(&ProcessorLabels {
                            processor: self.name.clone(),
                            pipeline: self.pipeline.clone(),
                            reason: trigger.to_string(),
                        })
                        .inc();
                }
                Err(returned) => {
                    let Returned {
                        refusal,
                        batch: mut back,
                    } = *returned;
                    tracing::debug!(processor = %self.name, %refusal, "next stage refused; keeping the batch pending");
                    if !batch.resource_metrics.is_empty() {
                        back.append(batch);
                    }
                    self.put_back(back);
                    return false;
                }
            }
        }
        true
    }

    /// Whether `points` more of this context's tenant may wait here (a tenant with nothing
    /// pending always may, so that no batch is refused forever).
    fn room(&self, s: &State, context: &Context, points: usize) -> Result<(), Refusal> {
        let held = s.points.get(&context.tenant).copied().unwrap_or(0);
        if held > 0 && held + points > self.cfg.max_pending() {
            return Err(Refusal::full(format!(
                "processor {} is full for tenant {:?}: {held} points wait for the exporters; retry later",
                self.name,
                context.tenant_label()
            )));
        }
        Ok(())
    }

    /// Offers everything pending to the next stage. Returns false if anything is still pending.
    fn flush_all(&self, trigger: &str) -> bool {
        let batches: Vec<Batch> = {
            let mut s = self.state.lock();
            let keys: Vec<Context> = s.pending.keys().cloned().collect();
            keys.iter().filter_map(|k| Self::take(&mut s, k)).collect()
        };
        let mut all = true;
        for b in batches {
            all &= self.send(b, trigger);
        }
        all
    }
}

impl Consumer for BatchProcessor {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let points = batch.point_count();
        if points == 0 {
            return Ok(());
        }
        let ready = {
            let mut s = self.state.lock();
            self.room(&s, &batch.context, points)?;
            let ctx = batch.context.clone();
            s.add(&ctx.tenant, points);
            let total = match s.pending.get_mut(&ctx) {
                Some(p) => {
                    p.append(batch);
                    p.point_count()
                }
                None => {
                    s.pending.insert(ctx.clone(), batch);
                    points
                }
            };
            if total >= self.cfg.send_batch_size {
                Self::take(&mut s, &ctx)
            } else {
                None
            }
        };
        if let Some(b) = ready {
            self.send(b, "size");
        }
        Ok(())
    }

    /// Ready while the tenant's pending points are under `max_pending_points`: the processor holds
    /// what the exporters cannot take yet.
    fn ready(&self, context: &Context, points: usize) -> Result<(), Refusal> {
        self.room(&self.state.lock(), context, points)
    }
}

impl Processor for BatchProcessor {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            while !self.flush_all("shutdown") {
                if tokio::time::Instant::now() >= deadline {
                    let mut s = self.state.lock();
                    for (ctx, b) in s.pending.drain() {
                        self.telemetry
                            .processor_dropped
                            .get_or_create(&ProcessorLabels {
                                processor: self.name.clone(),
                                pipeline: self.pipeline.clone(),
                                reason: "shutdown".into(),
                            })
                            .inc_by(b.point_count() as u64);
                        tracing::warn!(processor = %self.name, tenant = ctx.tenant_label(), points = b.point_count(), "shutdown deadline passed; pending points dropped");
                    }
                    s.points.clear();
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests;
