//! The one sending engine every exporter uses: a bounded queue per tenant (see [`crate::queue`]),
//! a pool of consumers shared by the tenants in SLA order, retries with backoff on retryable
//! failures (honouring the peer's Retry-After / RetryInfo), and telemetry. A batch waiting for its
//! retry waits in its tenant's queue, not in a consumer, so a failing tenant does not hold the
//! others up. Each exporter only supplies `send` and says whether a failure is retryable.

use crate::backoff::Backoff;
use crate::component::{ComponentId, Exporter};
use crate::config::types::Duration;
use crate::queue::{Entry, FullPolicy, Queue};
use crate::telemetry::{ExporterLabels, ExporterOnlyLabels, Telemetry};
use serde::Deserialize;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `sending_queue` of an exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Capacity in data points of each tenant's queue, counting batches being sent or retried
    /// (default 100000).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Capacity in data points of all tenants' queues together (default ten times `queue_size`);
    /// silver tenants may fill 90% of it, bronze and untiered ones 80%.
    #[serde(default)]
    pub total_size: Option<usize>,
    /// Concurrent senders (default 4).
    #[serde(default = "default_num_consumers")]
    pub num_consumers: usize,
    /// `block` (default: refuse new data, receivers answer with a retryable status) or `drop_oldest`.
    #[serde(default)]
    pub full_policy: FullPolicy,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            queue_size: default_queue_size(),
            total_size: None,
            num_consumers: default_num_consumers(),
            full_policy: FullPolicy::Block,
        }
    }
}

fn default_queue_size() -> usize {
    100_000
}
fn default_num_consumers() -> usize {
    4
}

/// `retry_on_failure` of an exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retry retryable failures (default true). When false, a failed batch is dropped and counted.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// First wait (default 30ms); it doubles after each failure.
    #[serde(default = "default_initial_interval")]
    pub initial_interval: Duration,
    /// Longest wait between attempts (default 5s), unless the peer asks for longer.
    #[serde(default = "default_max_interval")]
    pub max_interval: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_initial_interval() -> Duration {
    Duration::from_millis(30)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(5)
}

#[derive(Clone, Debug, Default)]
pub struct SendingSettings {
    pub queue: QueueSettings,
    pub retry: RetrySettings,
    /// Give up on a batch this long after it was queued (none by default: retry until delivered).
    pub max_age: Option<std::time::Duration>,
}

/// A running exporter: its queue and its consumers.
pub struct ExporterRuntime {
    pub id: ComponentId,
    pub queue: Arc<Queue>,
    exporter: Arc<dyn Exporter>,
    workers: Vec<JoinHandle<()>>,
    hard_stop: CancellationToken,
}

impl ExporterRuntime {
    pub fn spawn(
        id: ComponentId,
        exporter: Arc<dyn Exporter>,
        settings: SendingSettings,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let name = id.to_string();
        let queue_size = settings.queue.queue_size.max(1);
        let senders = settings.queue.num_consumers.max(1);
        let mut queue = Queue::new(
            name.clone(),
            queue_size,
            settings.queue.full_policy,
            telemetry.clone(),
        )
        .with_senders(senders);
        if let Some(total) = settings.queue.total_size {
            queue = queue.with_total_size(total);
        }
        let queue = Arc::new(queue);
        let hard_stop = CancellationToken::new();
        let worker = Arc::new(Worker {
            name,
            exporter: exporter.clone(),
            settings: settings.clone(),
            telemetry,
            hard_stop: hard_stop.clone(),
        });
        let workers = (0..senders)
            .map(|_| {
                let (w, q) = (worker.clone(), queue.clone());
                tokio::spawn(async move {
                    loop {
                        let entry = tokio::select! {
                            e = q.pop() => e,
                            _ = w.hard_stop.cancelled() => None,
                        };
                        let Some(mut entry) = entry else {
                            break;
                        };
                        match w.attempt(&mut entry, &q).await {
                            Attempt::Done => q.release(&entry),
                            Attempt::RetryIn(wait) => q.retry_later(entry, wait),
                        }
                    }
                })
            })
            .collect();
        ExporterRuntime {
            id,
            queue,
            exporter,
            workers,
            hard_stop,
        }
    }

    /// Stops taking data, sends what is queued until `deadline`, then drops (and counts) the rest.
    pub async fn shutdown(self, deadline: tokio::time::Instant) {
        self.queue.close();
        let all = futures::future::join_all(self.workers);
        tokio::pin!(all);
        if tokio::time::timeout_at(deadline, &mut all).await.is_err() {
            self.hard_stop.cancel();
            let mut dropped = self.queue.drain_dropped("shutdown");
            let _ = all.await;
            // Batches whose failed attempt ended as the senders stopped were put back.
            dropped += self.queue.drain_dropped("shutdown");
            if dropped > 0 {
                tracing::warn!(exporter = %self.id, points = dropped, "shutdown deadline passed; queued points dropped");
            }
        }
        self.exporter.shutdown(deadline).await;
    }
}

/// How long a batch waits when the exporter was busy ([`crate::component::SendError::busy`]) and
/// gave no wait of its own.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// How one attempt at sending a batch ended.
enum Attempt {
    /// Delivered, or given up on (and counted): release its room.
    Done,
    /// Failed and to be retried after this wait; the batch goes back to its tenant's queue.
    RetryIn(std::time::Duration),
}

struct Worker {
    name: String,
    exporter: Arc<dyn Exporter>,
    settings: SendingSettings,
    telemetry: Arc<Telemetry>,
    hard_stop: CancellationToken,
}

impl Worker {
    /// Sends `entry` once and decides what follows: done (delivered or dropped and counted), or a
    /// retry after a backoff, which the queue waits out while this sender serves other tenants.
    async fn attempt(&self, entry: &mut Entry, queue: &Queue) -> Attempt {
        let tenant = entry.tenant().to_string();
        let labels = ExporterLabels {
            exporter: self.name.clone(),
            tenant: tenant.clone(),
        };
        let points = entry.points as u64;
        let retry = &self.settings.retry;
        let result = tokio::select! {
            r = self.exporter.send(&entry.batch) => r,
            _ = self.hard_stop.cancelled() => {
                self.telemetry.exporter_dropped(&self.name, &tenant, "shutdown", points);
                return Attempt::Done;
            }
        };
        let err = match result {
            Ok(d) if d.handed_off => {
                queue.delivered(entry);
                return Attempt::Done;
            }
            Ok(d) => {
                queue.delivered(entry);
                let sent = points.saturating_sub(d.rejected_points);
                self.telemetry
                    .exporter_sent
                    .get_or_create(&labels)
                    .inc_by(sent);
                if d.rejected_points > 0 {
                    tracing::warn!(exporter = %self.name, rejected = d.rejected_points, message = %d.message, "peer rejected some points");
                    self.telemetry.exporter_dropped(
                        &self.name,
                        &tenant,
                        "rejected",
                        d.rejected_points,
                    );
                }
                return Attempt::Done;
            }
            Err(e) if e.busy => {
                if self.hard_stop.is_cancelled() {
                    self.telemetry
                        .exporter_dropped(&self.name, &tenant, "shutdown", points);
                    return Attempt::Done;
                }
                tracing::debug!(exporter = %self.name, tenant, message = %e.message, "exporter busy; trying again shortly");
                self.telemetry.exporter_busy.get_or_create(&labels).inc();
                return Attempt::RetryIn(e.retry_after.unwrap_or(BUSY_WAIT));
            }
            Err(e) => e,
        };
        self.telemetry
            .exporter_failed
            .get_or_create(&labels)
            .inc_by(points);
        if !err.retryable || !retry.enabled {
            let reason = if err.retryable {
                "retry_disabled"
            } else {
                "permanent_error"
            };
            tracing::error!(exporter = %self.name, tenant, points, error = %err.message, "send failed; dropping the batch");
            self.telemetry
                .exporter_dropped(&self.name, &tenant, reason, points);
            return Attempt::Done;
        }
        if queue.should_yield_oldest(&tenant) {
            tracing::warn!(exporter = %self.name, tenant, points, error = %err.message, "queue full (drop_oldest); dropping the oldest batch");
            self.telemetry
                .exporter_dropped(&self.name, &tenant, "queue_full", points);
            return Attempt::Done;
        }
        let backoff = entry.backoff.get_or_insert_with(|| {
            Backoff::new(retry.initial_interval.get(), retry.max_interval.get())
        });
        let mut wait = backoff.next_wait();
        if let Some(hint) = err.retry_after {
            wait = wait.max(hint);
        }
        if let Some(max_age) = self.settings.max_age
            && entry.enqueued.elapsed() + wait > max_age
        {
            tracing::error!(exporter = %self.name, tenant, points, error = %err.message, "batch older than max_age; dropping it");
            self.telemetry
                .exporter_dropped(&self.name, &tenant, "max_age", points);
            return Attempt::Done;
        }
        if self.hard_stop.is_cancelled() {
            self.telemetry
                .exporter_dropped(&self.name, &tenant, "shutdown", points);
            return Attempt::Done;
        }
        tracing::warn!(exporter = %self.name, tenant, points, error = %err.message, retry_in = ?wait, "send failed; will retry");
        self.telemetry
            .exporter_retries
            .get_or_create(&ExporterOnlyLabels {
                exporter: self.name.clone(),
            })
            .inc();
        Attempt::RetryIn(wait)
    }
}

/// Hands each batch to several exporter queues (its tenant's part of each), all or none: if any
/// queue lacks room for it the batch is refused whole, so that a client's retry does not duplicate data in the other exporters. A batch
/// whose context carries a route (see [`crate::batch::Context::route`]) goes to those exporters only.
pub struct Fanout {
    pub queues: Vec<Arc<Queue>>,
}

impl crate::component::Consumer for Fanout {
    fn consume(&self, batch: crate::batch::Batch) -> Result<(), crate::component::Refusal> {
        let points = batch.point_count();
        if points == 0 {
            return Ok(());
        }
        let chosen: Vec<&Arc<Queue>> = match &batch.context.route {
            None => self.queues.iter().collect(),
            Some(route) => self
                .queues
                .iter()
                .filter(|q| route.iter().any(|e| e == q.exporter()))
                .collect(),
        };
        if let Some(q) = chosen.iter().find(|q| !q.has_room_for(&batch, points)) {
            return Err(crate::component::Refusal::full(format!(
                "the queue of exporter {} is full; retry later",
                q.exporter()
            )));
        }
        let Some((last, rest)) = chosen.split_last() else {
            return Ok(());
        };
        for q in rest {
            q.push(batch.clone());
        }
        last.push(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
