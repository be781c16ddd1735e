//! An exporter's bounded in-memory queue, counted in points. When it is full a new batch is refused
//! (backpressure to the receivers) or, with `drop_oldest`, the oldest batches make room and are
//! counted as dropped.

use crate::batch::Batch;
use crate::telemetry::{ExporterLabels, Telemetry};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse new data; receivers answer with a retryable status (default).
    #[default]
    Block,
    /// Drop the oldest queued batches to make room, counted as `queue_full`.
    DropOldest,
}

pub struct Entry {
    pub batch: Batch,
    pub points: usize,
    pub bytes: usize,
    pub enqueued: Instant,
}

struct State {
    items: VecDeque<Entry>,
    /// Points queued plus points taken by a sender and not yet released.
    points: usize,
    closed: bool,
}

pub struct Queue {
    exporter: String,
    capacity: usize,
    policy: FullPolicy,
    state: Mutex<State>,
    notify: Notify,
    telemetry: Arc<Telemetry>,
}

impl Queue {
    pub fn new(
        exporter: String,
        capacity: usize,
        policy: FullPolicy,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        telemetry
            .exporter_queue_capacity
            .get_or_create(&crate::telemetry::ExporterOnlyLabels {
                exporter: exporter.clone(),
            })
            .set(capacity as i64);
        Queue {
            exporter,
            capacity,
            policy,
            state: Mutex::new(State {
                items: VecDeque::new(),
                points: 0,
                closed: false,
            }),
            notify: Notify::new(),
            telemetry,
        }
    }

    pub fn exporter(&self) -> &str {
        &self.exporter
    }

    /// Whether `points` more would be taken now. A batch larger than the whole queue is taken when
    /// the queue is empty, so that no batch is refused forever.
    pub fn has_room(&self, points: usize) -> bool {
        let s = self.state.lock();
        !s.closed
            && (self.policy == FullPolicy::DropOldest
                || s.points == 0
                || s.points + points <= self.capacity)
    }

    /// Under `drop_oldest`, whether the queue holds more than its capacity (senders' batches
    /// included), so that a sender whose attempt failed should give its batch up to make room.
    pub fn should_yield_oldest(&self) -> bool {
        self.policy == FullPolicy::DropOldest && self.state.lock().points > self.capacity
    }

    pub fn len_points(&self) -> usize {
        self.state.lock().points
    }

    /// Adds a batch. The caller checked `has_room` (a concurrent push may overshoot by one batch).
    pub fn push(&self, batch: Batch) {
        let points = batch.point_count();
        let bytes = prost::Message::encoded_len(
            &crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest {
                resource_metrics: Vec::new(),
            },
        ) + batch
            .resource_metrics
            .iter()
            .map(prost::Message::encoded_len)
            .sum::<usize>();
        let tenant = batch.context.tenant_label().to_string();
        let mut s = self.state.lock();
        if self.policy == FullPolicy::DropOldest {
            while s.points + points > self.capacity {
                let Some(old) = s.items.pop_front() else {
                    break;
                };
                s.points -= old.points;
                let t = old.batch.context.tenant_label();
                self.telemetry
                    .exporter_dropped(&self.exporter, t, "queue_full", old.points as u64);
                self.gauge(t, -(old.points as i64), -(old.bytes as i64));
            }
        }
        s.points += points;
        s.items.push_back(Entry {
            batch,
            points,
            bytes,
            enqueued: Instant::now(),
        });
        drop(s);
        self.gauge(&tenant, points as i64, bytes as i64);
        self.notify.notify_one();
    }

    /// Gives back the room of an entry that `pop` returned, once it is delivered or dropped.
    pub fn release(&self, entry: &Entry) {
        self.state.lock().points -= entry.points;
        self.gauge(
            entry.batch.context.tenant_label(),
            -(entry.points as i64),
            -(entry.bytes as i64),
        );
    }

    /// The next batch; `None` once the queue is closed and empty. Its points keep counting against
    /// the capacity until [`Queue::release`], so that batches being sent or retried are bounded too.
    pub async fn pop(&self) -> Option<Entry> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock();
                if let Some(e) = s.items.pop_front() {
                    drop(s);
                    // Wake another consumer if more is waiting.
                    self.notify.notify_one();
                    return Some(e);
                }
                if s.closed {
                    self.notify.notify_waiters();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more pushes; consumers drain what is left, then `pop` returns `None`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Empties the queue, counting what it held as dropped for `reason`.
    pub fn drain_dropped(&self, reason: &str) -> usize {
        let items: Vec<Entry> = {
            let mut s = self.state.lock();
            let items: Vec<Entry> = s.items.drain(..).collect();
            s.points -= items.iter().map(|e| e.points).sum::<usize>();
            items
        };
        let mut total = 0;
        for e in items {
            let t = e.batch.context.tenant_label();
            self.telemetry
                .exporter_dropped(&self.exporter, t, reason, e.points as u64);
            self.gauge(t, -(e.points as i64), -(e.bytes as i64));
            total += e.points;
        }
        total
    }

    fn gauge(&self, tenant: &str, points: i64, bytes: i64) {
        let labels = ExporterLabels {
            exporter: self.exporter.clone(),
            tenant: tenant.to_string(),
        };
        self.telemetry
            .exporter_queue_points
            .get_or_create(&labels)
            .inc_by(points);
        self.telemetry
            .exporter_queue_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
    }
}

#[cfg(test)]
mod tests;
