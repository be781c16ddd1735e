//! An exporter's bounded in-memory queue, counted in points and split by tenant, so that one
//! tenant's flood or failing backend fills only that tenant's part.
//!
//! Each tenant has its own FIFO, bounded by the exporter's `queue_size` points (batches being sent
//! or retried included); all tenants together are bounded by `total_size`, of which a silver tenant
//! may fill 90% and a bronze (or untiered) tenant 80%, so that gold keeps room when the exporter is
//! full. When a tenant's part is full a new batch of that tenant is refused (backpressure to the
//! receivers) or, with `drop_oldest`, the tenant's oldest batches make room and are counted as
//! dropped (for the total, the worst-tiered tenants' oldest go first).
//!
//! Senders take the next batch from the tenant with the best SLA tier (gold, then silver, then
//! the rest), round robin among tenants of the same tier; within a tier, a tenant holding all
//! senders but one gives way to its peers (see [`Queue::with_senders`]). A batch whose send failed and is to be
//! retried goes back to the front of its tenant's FIFO with a not-before instant: meanwhile senders
//! serve the other tenants, and until one of its sends succeeds the tenant has at most one batch
//! in flight.

use crate::backoff::Backoff;
use crate::batch::Batch;
use crate::telemetry::{ExporterLabels, Telemetry};
use crate::tenancy::{TIERS, tier_rank};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// A queued batch, as a sender gets it from [`Queue::pop`].
pub struct Entry {
    pub batch: Batch,
    pub points: usize,
    pub bytes: usize,
    pub enqueued: Instant,
    /// The wait before the next attempt, kept across [`Queue::retry_later`]; `None` before the
    /// first failure.
    pub backoff: Option<Backoff>,
    tenant: Arc<str>,
}

impl Entry {
    /// The tenant as a telemetry label value (empty when there is none).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

/// One tenant's part of the queue.
struct TenantQueue {
    items: VecDeque<Entry>,
    /// Points queued plus points taken by a sender and not yet released.
    points: usize,
    /// Batches taken by senders and not yet released or put back.
    in_flight: usize,
    /// Rank of the tenant's SLA tier (see [`tier_rank`]), from its latest batch.
    rank: usize,
    /// Set by a failed attempt: none of the tenant's batches is sent before this instant (tokio's
    /// clock, so that tests can pause time).
    not_before: Option<tokio::time::Instant>,
    /// A send failed and none has succeeded since: one batch in flight at a time.
    failing: bool,
}

struct State {
    tenants: HashMap<Arc<str>, TenantQueue>,
    /// Tenants in serving order: the one served moves to the back (round robin within a tier).
    order: VecDeque<Arc<str>>,
    /// Points held by all tenants.
    points: usize,
    /// Batches queued (not in flight) across tenants.
    queued: usize,
    closed: bool,
}

pub struct Queue {
    exporter: String,
    /// Per tenant.
    capacity: usize,
    /// All tenants together (gold's share; see [`Queue::total_limit`]).
    total: usize,
    /// Batches in flight past which a tenant gives way to a tenant of its tier with fewer.
    fair_share: usize,
    policy: FullPolicy,
    state: Mutex<State>,
    notify: Notify,
    telemetry: Arc<Telemetry>,
}

impl Queue {
    /// A queue of `capacity` points per tenant and ten times that for all tenants together.
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
            total: capacity.saturating_mul(10),
            fair_share: usize::MAX,
            policy,
            state: Mutex::new(State {
                tenants: HashMap::new(),
                order: VecDeque::new(),
                points: 0,
                queued: 0,
                closed: false,
            }),
            notify: Notify::new(),
            telemetry,
        }
    }

    /// Sets the bound of all tenants together (at least the per-tenant capacity).
    pub fn with_total_size(mut self, total: usize) -> Self {
        self.total = total.max(self.capacity);
        self
    }

    /// Tells the queue how many senders drain it: a tenant with `senders - 1` batches in flight
    /// (at least 1) gives way to tenants of its tier with fewer, so that a tenant whose backend is
    /// slow leaves a sender to its peers. It never gives way to a worse tier.
    pub fn with_senders(mut self, senders: usize) -> Self {
        self.fair_share = senders.saturating_sub(1).max(1);
        self
    }

    pub fn exporter(&self) -> &str {
        &self.exporter
    }

    /// How many points of all tenants together a tenant of `rank` may fill: all of `total_size`
    /// for gold, 90% for silver, 80% for bronze and the rest.
    fn total_limit(&self, rank: usize) -> usize {
        let rank = rank.min(TIERS.len() - 1);
        self.total - self.total / 10 * rank
    }

    /// Whether a batch of `points` for a tenant without a tier would be taken now (see
    /// [`Queue::has_room_for`]).
    pub fn has_room(&self, points: usize) -> bool {
        self.has_room_for(&Batch::default(), points)
    }

    /// Whether `batch` (of `points` points) would be taken now. A batch larger than a tenant's
    /// part is taken when that part is empty, so that no batch is refused forever.
    pub fn has_room_for(&self, batch: &Batch, points: usize) -> bool {
        let rank = tier_rank(batch.context.sla_tier());
        let s = self.state.lock();
        if s.closed {
            return false;
        }
        if self.policy == FullPolicy::DropOldest {
            return true;
        }
        let held = s
            .tenants
            .get(batch.context.tenant_label())
            .map_or(0, |t| t.points);
        (held == 0 || held + points <= self.capacity)
            && (s.points == 0 || s.points + points <= self.total_limit(rank))
    }

    /// Under `drop_oldest`, whether `tenant`'s part, or all tenants together, hold more than that
    /// tenant's tier allows, senders' batches included, so that a sender whose attempt failed
    /// should give its batch up to make room.
    pub fn should_yield_oldest(&self, tenant: &str) -> bool {
        if self.policy != FullPolicy::DropOldest {
            return false;
        }
        let s = self.state.lock();
        s.tenants
            .get(tenant)
            .is_some_and(|t| t.points > self.capacity || s.points > self.total_limit(t.rank))
    }

    /// Points held by all tenants, queued or being sent.
    pub fn len_points(&self) -> usize {
        self.state.lock().points
    }

    /// Points held for `tenant` (the empty string for none), queued or being sent.
    pub fn tenant_points(&self, tenant: &str) -> usize {
        self.state
            .lock()
            .tenants
            .get(tenant)
            .map_or(0, |t| t.points)
    }

    /// Tenants that hold points or have a batch being sent.
    pub fn tenant_count(&self) -> usize {
        self.state.lock().tenants.len()
    }

    /// Adds a batch to its tenant's part. The caller checked `has_room_for` (a concurrent push may
    /// overshoot by one batch).
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
        let rank = tier_rank(batch.context.sla_tier());
        let mut s = self.state.lock();
        let tenant: Arc<str> = match s.tenants.get_key_value(batch.context.tenant_label()) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = batch.context.tenant_label().into();
                s.tenants.insert(
                    k.clone(),
                    TenantQueue {
                        items: VecDeque::new(),
                        points: 0,
                        in_flight: 0,
                        rank,
                        not_before: None,
                        failing: false,
                    },
                );
                s.order.push_back(k.clone());
                k
            }
        };
        let mut dropped = Vec::new();
        if self.policy == FullPolicy::DropOldest {
            while s.tenants[&tenant].points + points > self.capacity {
                let Some(old) = take_oldest(&mut s, &tenant) else {
                    break;
                };
                dropped.push(old);
            }
            let limit = self.total_limit(rank);
            while s.points + points > limit {
                let Some(victim) = shed_victim(&s, rank) else {
                    break;
                };
                let old = take_oldest(&mut s, &victim).expect("the victim has queued batches");
                dropped.push(old);
                if victim != tenant {
                    forget_if_idle(&mut s, &victim);
                }
            }
        }
        let t = s.tenants.get_mut(&tenant).expect("inserted above");
        t.rank = rank;
        t.points += points;
        t.items.push_back(Entry {
            batch,
            points,
            bytes,
            enqueued: Instant::now(),
            backoff: None,
            tenant: tenant.clone(),
        });
        s.points += points;
        s.queued += 1;
        drop(s);
        for old in dropped {
            self.telemetry.exporter_dropped(
                &self.exporter,
                &old.tenant,
                "queue_full",
                old.points as u64,
            );
            self.gauge(&old.tenant, -(old.points as i64), -(old.bytes as i64));
        }
        self.gauge(&tenant, points as i64, bytes as i64);
        self.notify.notify_one();
    }

    /// Gives back the room of an entry that `pop` returned, once it is delivered or dropped.
    pub fn release(&self, entry: &Entry) {
        {
            let mut s = self.state.lock();
            s.points -= entry.points;
            if let Some(t) = s.tenants.get_mut(&entry.tenant) {
                t.points -= entry.points;
                t.in_flight -= 1;
            }
            forget_if_idle(&mut s, &entry.tenant);
        }
        self.gauge(&entry.tenant, -(entry.points as i64), -(entry.bytes as i64));
        // A failing tenant's next batch may go now.
        self.notify.notify_one();
    }

    /// Records that `entry` was delivered: its tenant's backend works again, so its batches go
    /// without waiting and several at a time. Call [`Queue::release`] as well.
    pub fn delivered(&self, entry: &Entry) {
        let was_failing = {
            let mut s = self.state.lock();
            s.tenants.get_mut(&entry.tenant).is_some_and(|t| {
                t.not_before = None;
                std::mem::take(&mut t.failing)
            })
        };
        if was_failing {
            self.notify.notify_waiters();
        }
    }

    /// Puts a batch whose send failed back at the front of its tenant's part, not to be sent
    /// before `wait` has passed. Meanwhile senders serve other tenants; until one of its sends
    /// succeeds, the tenant has at most one batch in flight. The batch keeps its room.
    pub fn retry_later(&self, entry: Entry, wait: Duration) {
        {
            let mut s = self.state.lock();
            let t = s
                .tenants
                .get_mut(&entry.tenant)
                .expect("a tenant with a batch in flight is kept");
            t.in_flight -= 1;
            t.failing = true;
            t.not_before = Some(tokio::time::Instant::now() + wait);
            t.items.push_front(entry);
            s.queued += 1;
        }
        self.notify.notify_one();
    }

    /// The next batch: from the best-tiered tenant that has one ready, round robin within a tier;
    /// `None` once the queue is closed and holds no queued batch. Its points keep counting against
    /// the capacity until [`Queue::release`], so that batches being sent or retried are bounded
    /// too.
    pub async fn pop(&self) -> Option<Entry> {
        loop {
            let notified = self.notify.notified();
            let wake_at = {
                let mut s = self.state.lock();
                match next_ready(&mut s, tokio::time::Instant::now(), self.fair_share) {
                    Ok(e) => {
                        let more = s.queued > 0;
                        drop(s);
                        if more {
                            // Wake another consumer if more is waiting.
                            self.notify.notify_one();
                        }
                        return Some(e);
                    }
                    Err(wake_at) => {
                        if s.closed && s.queued == 0 {
                            drop(s);
                            self.notify.notify_waiters();
                            return None;
                        }
                        wake_at
                    }
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// No more pushes; consumers drain what is left, then `pop` returns `None`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Empties every tenant's part (batches being sent stay with their senders), counting what
    /// was queued as dropped for `reason`.
    pub fn drain_dropped(&self, reason: &str) -> usize {
        let items: Vec<Entry> = {
            let mut s = self.state.lock();
            let mut items = Vec::new();
            let keys: Vec<Arc<str>> = s.order.iter().cloned().collect();
            for k in keys {
                let t = s.tenants.get_mut(&k).expect("ordered tenants exist");
                let drained: Vec<Entry> = t.items.drain(..).collect();
                t.points -= drained.iter().map(|e| e.points).sum::<usize>();
                items.extend(drained);
                forget_if_idle(&mut s, &k);
            }
            s.points -= items.iter().map(|e| e.points).sum::<usize>();
            s.queued = 0;
            items
        };
        self.notify.notify_waiters();
        let mut total = 0;
        for e in items {
            self.telemetry
                .exporter_dropped(&self.exporter, &e.tenant, reason, e.points as u64);
            self.gauge(&e.tenant, -(e.points as i64), -(e.bytes as i64));
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

/// Takes the next ready batch (see [`Queue::pop`]), or says when the earliest tenant in backoff
/// becomes ready (`None`: nothing will be ready without a push, release or put-back).
fn next_ready(
    s: &mut State,
    now: tokio::time::Instant,
    fair_share: usize,
) -> Result<Entry, Option<tokio::time::Instant>> {
    // (rank, at its fair share, index in `order`): the least wins, the first in order on ties.
    let mut best: Option<(usize, bool, usize)> = None;
    let mut wake_at: Option<tokio::time::Instant> = None;
    for (i, key) in s.order.iter().enumerate() {
        let t = &s.tenants[key];
        if t.items.is_empty() {
            continue;
        }
        if let Some(at) = t.not_before
            && at > now
        {
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            continue;
        }
        if t.failing && t.in_flight > 0 {
            continue;
        }
        let full = t.in_flight >= fair_share;
        if best.is_none_or(|(rank, f, _)| (t.rank, full) < (rank, f)) {
            best = Some((t.rank, full, i));
        }
    }
    let Some((_, _, i)) = best else {
        return Err(wake_at);
    };
    let key = s.order.remove(i).expect("index from the scan");
    s.order.push_back(key.clone());
    let t = s.tenants.get_mut(&key).expect("ordered tenants exist");
    let e = t.items.pop_front().expect("chosen for having a batch");
    t.in_flight += 1;
    s.queued -= 1;
    Ok(e)
}

/// Removes the oldest queued batch of `tenant` from the accounting (for a drop).
fn take_oldest(s: &mut State, tenant: &str) -> Option<Entry> {
    let t = s.tenants.get_mut(tenant)?;
    let old = t.items.pop_front()?;
    t.points -= old.points;
    s.points -= old.points;
    s.queued -= 1;
    Some(old)
}

/// Under `drop_oldest`, the tenant whose oldest batch goes to make room in the total for a tenant
/// of `rank`: among tenants with queued batches and a tier no better than `rank`, the worst tier,
/// then the one holding the most points.
fn shed_victim(s: &State, rank: usize) -> Option<Arc<str>> {
    s.tenants
        .iter()
        .filter(|(_, t)| !t.items.is_empty() && t.rank >= rank)
        .max_by_key(|(_, t)| (t.rank, t.points))
        .map(|(k, _)| k.clone())
}

/// Forgets a tenant that holds nothing and has nothing in flight (it comes back with its next
/// batch).
fn forget_if_idle(s: &mut State, tenant: &str) {
    if s.tenants
        .get(tenant)
        .is_some_and(|t| t.items.is_empty() && t.in_flight == 0)
    {
        s.tenants.remove(tenant);
        if let Some(i) = s.order.iter().position(|k| &**k == tenant) {
            s.order.remove(i);
        }
    }
}

#[cfg(test)]
mod tests;
