//! The one sending engine every exporter uses: a bounded queue, a pool of consumers, retries with
//! backoff on retryable failures (honouring the peer's Retry-After / RetryInfo), and telemetry.
//! Each exporter only supplies `send` and says whether a failure is retryable.

use crate::backoff::Backoff;
use crate::component::{ComponentId, Exporter};
use crate::config::types::Duration;
use crate::queue::{Entry, FullPolicy, Queue};
use crate::telemetry::{ExporterLabels, ExporterOnlyLabels, Telemetry};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `sending_queue` of an exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Capacity in data points, counting batches being sent or retried (default 100000).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
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
        let queue = Arc::new(Queue::new(
            name.clone(),
            settings.queue.queue_size.max(1),
            settings.queue.full_policy,
            telemetry.clone(),
        ));
        let hard_stop = CancellationToken::new();
        let worker = Arc::new(Worker {
            name,
            exporter: exporter.clone(),
            settings: settings.clone(),
            telemetry,
            hard_stop: hard_stop.clone(),
        });
        let workers = (0..settings.queue.num_consumers.max(1))
            .map(|_| {
                let (w, q) = (worker.clone(), queue.clone());
                tokio::spawn(async move {
                    while let Some(entry) = q.pop().await {
                        w.deliver(&entry, &q).await;
                        q.release(&entry);
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
            let dropped = self.queue.drain_dropped("shutdown");
            let _ = all.await;
            if dropped > 0 {
                tracing::warn!(exporter = %self.id, points = dropped, "shutdown deadline passed; queued points dropped");
            }
        }
        self.exporter.shutdown(deadline).await;
    }
}

struct Worker {
    name: String,
    exporter: Arc<dyn Exporter>,
    settings: SendingSettings,
    telemetry: Arc<Telemetry>,
    hard_stop: CancellationToken,
}

impl Worker {
    async fn deliver(&self, entry: &Entry, queue: &Queue) {
        let tenant = entry.batch.context.tenant_label().to_string();
        let labels = ExporterLabels {
            exporter: self.name.clone(),
            tenant: tenant.clone(),
        };
        let points = entry.points as u64;
        let retry = &self.settings.retry;
        let mut backoff = Backoff::new(retry.initial_interval.get(), retry.max_interval.get());
        loop {
            let result = tokio::select! {
                r = self.exporter.send(&entry.batch) => r,
                _ = self.hard_stop.cancelled() => {
                    self.telemetry.exporter_dropped(&self.name, &tenant, "shutdown", points);
                    return;
                }
            };
            let err = match result {
                Ok(d) if d.handed_off => return,
                Ok(d) => {
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
                    return;
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
                tracing::error!(exporter = %self.name, points, error = %err.message, "send failed; dropping the batch");
                self.telemetry
                    .exporter_dropped(&self.name, &tenant, reason, points);
                return;
            }
            if queue.should_yield_oldest() {
                tracing::warn!(exporter = %self.name, points, error = %err.message, "queue full (drop_oldest); dropping the oldest batch");
                self.telemetry
                    .exporter_dropped(&self.name, &tenant, "queue_full", points);
                return;
            }
            let mut wait = backoff.next_wait();
            if let Some(hint) = err.retry_after {
                wait = wait.max(hint);
            }
            if let Some(max_age) = self.settings.max_age
                && entry.enqueued.elapsed() + wait > max_age
            {
                tracing::error!(exporter = %self.name, points, error = %err.message, "batch older than max_age; dropping it");
                self.telemetry
                    .exporter_dropped(&self.name, &tenant, "max_age", points);
                return;
            }
            tracing::warn!(exporter = %self.name, points, error = %err.message, retry_in = ?wait, "send failed; will retry");
            self.telemetry
                .exporter_retries
                .get_or_create(&ExporterOnlyLabels {
                    exporter: self.name.clone(),
                })
                .inc();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.hard_stop.cancelled() => {
                    self.telemetry.exporter_dropped(&self.name, &tenant, "shutdown", points);
                    return;
                }
            }
        }
    }
}

/// Hands each batch to several exporter queues, all or none: if any queue lacks room the batch is
/// refused whole, so that a client's retry does not duplicate data in the other exporters. A batch
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
        if let Some(q) = chosen.iter().find(|q| !q.has_room(points)) {
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

#[allow(dead_code)]
fn _instant_is_std(_: Instant) {}
