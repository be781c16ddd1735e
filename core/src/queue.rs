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
//!
//! With `storage: disk` (see [`Queue::with_disk`]) every batch is also appended to its tenant's
//! log before it is taken (so that a receiver acknowledges only what is on disk), only the first
//! few batches of each tenant stay in memory (the rest are read back when their turn comes), and
//! the log's record is acknowledged once the batch is delivered or dropped for a counted reason.
//! `max_bytes` bounds the files: when full, the batch is refused, or under `drop_oldest` the
//! oldest queued batches are dropped (counted) until their segments are freed.

use crate::backoff::Backoff;
use crate::batch::Batch;
use crate::component::{EncodedBatch, Exporter, Prepared, Refusal, Returned};
use crate::disk::{DiskStore, RecordRef, TenantLog, codec};
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
    /// Empty once the exporter encoded it into `encoded`.
    pub batch: Batch,
    /// The batch as its exporter's request, made at its first attempt when the exporter can (see
    /// [`crate::component::Exporter::encode`]).
    pub encoded: Option<EncodedBatch>,
    /// The batch in its exporter's own form, made as a memory queue took it (see
    /// [`crate::component::Exporter::prepare`]); `batch` then keeps only its context.
    pub prepared: Option<Prepared>,
    pub points: usize,
    pub bytes: usize,
    pub enqueued: Instant,
    /// The wait before the next attempt, kept across [`Queue::retry_later`]; `None` before the
    /// first failure.
    pub backoff: Option<Backoff>,
    tenant: Arc<str>,
    /// Its record, in a disk queue.
    stored: Option<Stored>,
    /// Whether the batch is in memory, in `batch` or as `encoded` (a disk queue reads the others
    /// back when they are popped).
    loaded: bool,
}

/// Where a disk queue keeps a batch: acknowledge it there once it is delivered or dropped.
#[derive(Clone)]
pub struct Stored {
    log: Arc<TenantLog>,
    at: RecordRef,
}

impl Stored {
    /// Marks the record done (delivered, or dropped for a counted reason): it is not replayed,
    /// and its segment is deleted once all of its records are done.
    pub fn ack(&self) {
        self.log.ack(self.at);
    }
}

impl Entry {
    /// The tenant as a telemetry label value (empty when there is none).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Its record, in a disk queue.
    pub fn stored(&self) -> Option<&Stored> {
        self.stored.as_ref()
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
    /// Queued entries that hold their batch in memory.
    loaded: usize,
    /// Found full by a receiver's probe: receivers' requests wait until the part has drained to
    /// [`Queue::resume_at`].
    draining: bool,
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
    disk: Option<DiskStore>,
    /// The exporter that prepares batches as a memory queue takes them.
    preparer: Option<Arc<dyn Exporter>>,
    /// Held from a batch's preparing to its queueing, so that the queue's order is the order in
    /// which its batches were prepared (remote_write's delta sums keep each series' order by it).
    preparing: Mutex<()>,
}

/// Queued batches of a tenant a disk queue keeps in memory; the others are read back from disk.
const WINDOW: usize = 8;

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
            disk: None,
            preparer: None,
            preparing: Mutex::new(()),
        }
    }

    /// Has `exporter`, one whose [`crate::component::Exporter::prepares`] is true, prepare each
    /// batch as this queue takes it, when it is a memory queue (see
    /// [`crate::component::Exporter::prepare`]); a disk queue keeps batches as they are written.
    pub fn with_preparer(mut self, exporter: Arc<dyn Exporter>) -> Self {
        self.preparer = Some(exporter);
        self
    }

    /// Makes this a disk queue on `store`, whose logs were replayed (see [`Queue::restore`]).
    pub fn with_disk(mut self, store: DiskStore) -> Self {
        self.disk = Some(store);
        self
    }

    /// The store of a disk queue.
    pub fn disk(&self) -> Option<&DiskStore> {
        self.disk.as_ref()
    }

    /// Queues a batch found in `log` at start (a disk queue's replay), without checking room:
    /// it was acknowledged before the restart. Returns its points. Records that cannot be decoded
    /// are acknowledged and returned as an error, for the caller to count.
    pub fn restore(
        &self,
        log: &Arc<TenantLog>,
        at: RecordRef,
        payload: &[u8],
    ) -> Result<usize, prost::DecodeError> {
        let batch = match codec::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                log.ack(at);
                return Err(e);
            }
        };
        let stored = Stored {
            log: log.clone(),
            at,
        };
        let points = batch.point_count();
        self.insert(batch, payload.len(), Some(stored), None, None);
        Ok(points)
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

    /// How many bytes of the disk queue's files a tenant of `rank` may fill: all of `max_bytes` for
    /// gold, 90% for silver, 80% for bronze and the rest (as [`Queue::total_limit`] for points).
    fn disk_limit(&self, rank: usize) -> u64 {
        let max = self.disk.as_ref().map_or(u64::MAX, DiskStore::max_bytes);
        max - max / 10 * rank.min(TIERS.len() - 1) as u64
    }

    /// Whether a batch of `points` for a tenant without a tier would be taken now (see
    /// [`Queue::has_room_for`]).
    pub fn has_room(&self, points: usize) -> bool {
        self.has_room_for(&Batch::default(), points)
    }

    /// Whether `batch` (of `points` points) would be taken now. A batch larger than a tenant's
    /// part is taken when that part is empty, so that no batch is refused forever.
    pub fn has_room_for(&self, batch: &Batch, points: usize) -> bool {
        self.room_in(&self.state.lock(), batch, points)
    }

    /// [`Queue::has_room_for`] on the state, locked by the caller.
    fn room_in(&self, s: &State, batch: &Batch, points: usize) -> bool {
        let rank = tier_rank(batch.context.sla_tier());
        if s.closed {
            return false;
        }
        if self.policy == FullPolicy::DropOldest {
            return true;
        }
        if let Some(d) = &self.disk {
            let need = record_estimate(batch);
            let tenant = d.tenant_used(batch.context.tenant_label());
            if (d.bytes() > 0 && d.used() + need > self.disk_limit(rank))
                || (tenant > 0 && tenant + need > d.max_tenant_bytes())
            {
                return false;
            }
        }
        let held = s
            .tenants
            .get(batch.context.tenant_label())
            .map_or(0, |t| t.points);
        (held == 0 || held + points <= self.capacity)
            && (s.points == 0 || s.points + points <= self.total_limit(rank))
    }

    /// Whether receivers should read a request of about `points` points for `batch`'s tenant:
    /// [`Queue::has_room_for`], except that once a probe found the tenant's part without room, not
    /// until the part has drained to [`Queue::resume_at`]. Refusing and taking requests by turns,
    /// one at a time as each send frees room, costs a fifth more CPU per point than taking them
    /// in runs (docs/performance.md): decoding, translating and sending each interleaved with the
    /// others, every step finds its data out of the caches. A batch already decoded is still
    /// taken whenever it fits ([`Queue::has_room_for`]).
    pub fn ready_for(&self, batch: &Batch, points: usize) -> bool {
        let mut s = self.state.lock();
        let room = self.room_in(&s, batch, points);
        let resume_at = self.resume_at();
        match s.tenants.get_mut(batch.context.tenant_label()) {
            Some(t) if !room => {
                t.draining = true;
                false
            }
            Some(t) if t.draining => {
                t.draining = t.points > resume_at;
                !t.draining
            }
            _ => room,
        }
    }

    /// The points a tenant's part drains to before receivers take its requests again once it was
    /// found full: nine tenths of `queue_size`.
    fn resume_at(&self) -> usize {
        self.capacity - self.capacity / 10
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
    /// overshoot by one batch). A disk queue that cannot take it drops it, counted as `io_error`;
    /// [`Queue::try_push`] refuses it instead.
    pub fn push(&self, batch: Batch) {
        let points = batch.point_count();
        let tenant = batch.context.tenant_label().to_string();
        if let Err(r) = self.try_push(batch) {
            tracing::error!(exporter = %self.exporter, tenant, points, error = %r.refusal, "cannot queue a batch; dropping it");
            self.telemetry
                .exporter_dropped(&self.exporter, &tenant, "io_error", points as u64);
        }
    }

    /// Adds a batch to its tenant's part (the caller checked `has_room_for`). A disk queue first
    /// appends it to the tenant's log (fsynced before returning under `fsync: batch`); it refuses
    /// the batch, handing it back, when that fails or when its files are at `max_bytes`, unless
    /// under `drop_oldest` dropping the oldest queued batches (counted) frees enough segments.
    pub fn try_push(&self, batch: Batch) -> Result<(), Box<Returned>> {
        let Some(disk) = &self.disk else {
            // A memory queue always takes the batch: it is prepared once, here.
            let Some(preparer) = &self.preparer else {
                let bytes = batch_bytes(&batch);
                self.insert(batch, bytes, None, Some(Vec::new()), None);
                return Ok(());
            };
            let _order = self.preparing.lock();
            match preparer.prepare(&batch) {
                Some((prepared, bytes)) => {
                    self.insert(batch, bytes, None, Some(Vec::new()), Some(prepared));
                }
                None => {
                    let bytes = batch_bytes(&batch);
                    self.insert(batch, bytes, None, Some(Vec::new()), None);
                }
            }
            return Ok(());
        };
        let refuse = |e: &dyn std::fmt::Display, batch: Batch| {
            let tenant = batch.context.tenant_label();
            tracing::error!(exporter = %self.exporter, tenant, error = %e, "cannot write to the disk queue; refusing the batch");
            let refusal = Refusal::full(format!(
                "the disk queue of exporter {} cannot be written ({e}); retry later",
                self.exporter
            ));
            Box::new(Returned { refusal, batch })
        };
        // The tenant's log first: its cursor file counts against `max_bytes` too.
        let log = match disk.log(batch.context.tenant_label()) {
            Ok(log) => log,
            Err(e) => return Err(refuse(&e, batch)),
        };
        let payload = codec::encode(&batch);
        let need = (payload.len() + crate::disk::record::HEADER) as u64;
        let limit = self.disk_limit(tier_rank(batch.context.sla_tier()));
        let over = || {
            (disk.bytes() > 0 && disk.used() + need > limit)
                || (log.bytes() > 0
                    && disk.tenant_used(batch.context.tenant_label()) + need
                        > disk.max_tenant_bytes())
        };
        let mut dropped = Vec::new();
        if over() && self.policy == FullPolicy::DropOldest {
            dropped = self.shed_bytes(&batch, need);
        }
        if over() {
            self.count_dropped(dropped);
            let refusal = Refusal::full(format!(
                "the disk queue of exporter {} is at max_bytes; retry later",
                self.exporter
            ));
            return Err(Box::new(Returned { refusal, batch }));
        }
        let at = match crate::disk::blocking(|| log.append(&payload)) {
            Ok(at) => at,
            Err(e) => {
                self.count_dropped(dropped);
                return Err(refuse(&e, batch));
            }
        };
        self.insert(
            batch,
            payload.len(),
            Some(Stored { log, at }),
            Some(dropped),
            None,
        );
        Ok(())
    }

    /// Under `drop_oldest`, drops the tenant's own oldest queued batches until its files have room
    /// for `need` more bytes, then the oldest of the worst-tiered tenants (no better than
    /// `batch`'s) until all files together have, or nothing queued is left to drop. Their records
    /// are acknowledged at once, so that their segments go.
    fn shed_bytes(&self, batch: &Batch, need: u64) -> Vec<Entry> {
        let Some(disk) = &self.disk else {
            return Vec::new();
        };
        let rank = tier_rank(batch.context.sla_tier());
        let limit = self.disk_limit(rank);
        let tenant = batch.context.tenant_label();
        let mut s = self.state.lock();
        let mut dropped = Vec::new();
        while disk.tenant_used(tenant) > 0
            && disk.tenant_used(tenant) + need > disk.max_tenant_bytes()
        {
            let Some(old) = take_oldest(&mut s, tenant) else {
                break;
            };
            if let Some(st) = &old.stored {
                st.ack();
            }
            dropped.push(old);
        }
        while disk.bytes() > 0 && disk.used() + need > limit {
            let Some(victim) = shed_victim(&s, rank) else {
                break;
            };
            let old = take_oldest(&mut s, &victim).expect("the victim has queued batches");
            if let Some(st) = &old.stored {
                st.ack();
            }
            forget_if_idle(&mut s, &victim);
            dropped.push(old);
        }
        dropped
    }

    /// Counts batches dropped to make room (`queue_full`) and acknowledges their records.
    fn count_dropped(&self, dropped: Vec<Entry>) {
        for old in dropped {
            if let Some(st) = &old.stored {
                st.ack();
            }
            self.telemetry.exporter_dropped(
                &self.exporter,
                &old.tenant,
                "queue_full",
                old.points as u64,
            );
            self.gauge(&old.tenant, -(old.points as i64), -(old.bytes as i64));
        }
    }

    /// Adds a batch of `bytes` encoded bytes to its tenant's part, dropping the tenant's oldest
    /// (and for the total, the worst-tiered tenants' oldest) under `drop_oldest`. `dropped` are
    /// batches already taken out to make room, counted with those; `None` makes no room (a
    /// replayed batch, acknowledged before the restart). With `prepared` (the batch in its
    /// exporter's form) the entry keeps only the batch's context.
    fn insert(
        &self,
        batch: Batch,
        bytes: usize,
        stored: Option<Stored>,
        dropped: Option<Vec<Entry>>,
        prepared: Option<Prepared>,
    ) {
        let make_room = dropped.is_some();
        let mut dropped = dropped.unwrap_or_default();
        let points = batch.point_count();
        // A prepared batch's points are freed here, not under the lock.
        let batch = match &prepared {
            Some(_) => Batch::new(batch.context, Vec::new()),
            None => batch,
        };
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
                        loaded: 0,
                        draining: false,
                    },
                );
                s.order.push_back(k.clone());
                k
            }
        };
        if make_room && self.policy == FullPolicy::DropOldest {
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
        // A disk queue keeps a tenant's first few batches in memory and reads the rest back.
        let loaded = stored.is_none() || t.loaded < WINDOW;
        if loaded {
            t.loaded += 1;
        }
        t.items.push_back(Entry {
            batch: if loaded { batch } else { Batch::default() },
            encoded: None,
            prepared,
            points,
            bytes,
            enqueued: Instant::now(),
            backoff: None,
            tenant: tenant.clone(),
            stored,
            loaded,
        });
        s.points += points;
        s.queued += 1;
        drop(s);
        self.count_dropped(dropped);
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
            t.loaded += usize::from(entry.loaded);
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
                        match self.load(e) {
                            Some(e) => return Some(e),
                            None => continue,
                        }
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

    /// Reads back the batch of an entry a disk queue did not keep in memory. One that cannot be
    /// read (the file was damaged since) is dropped, counted as `corrupt`, and logged.
    fn load(&self, mut e: Entry) -> Option<Entry> {
        if e.loaded {
            return Some(e);
        }
        let read = match &e.stored {
            Some(st) => crate::disk::blocking(|| st.log.read(st.at))
                .map_err(|err| err.to_string())
                .and_then(|p| codec::decode(&p).map_err(|err| err.to_string())),
            None => Err("the batch is neither in memory nor on disk".to_string()),
        };
        match read {
            Ok(batch) => {
                e.batch = batch;
                e.loaded = true;
                Some(e)
            }
            Err(error) => {
                tracing::error!(exporter = %self.exporter, tenant = %e.tenant, points = e.points, error, "cannot read a queued batch back from disk; dropping it");
                self.telemetry.exporter_dropped(
                    &self.exporter,
                    &e.tenant,
                    "corrupt",
                    e.points as u64,
                );
                if let Some(st) = &e.stored {
                    st.ack();
                }
                self.release(&e);
                None
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
    /// was queued as dropped for `reason`. A disk queue's batches stay in their logs, to be sent
    /// after the next start: they are not counted, and 0 is returned.
    pub fn drain_dropped(&self, reason: &str) -> usize {
        let items: Vec<Entry> = {
            let mut s = self.state.lock();
            let mut items = Vec::new();
            let keys: Vec<Arc<str>> = s.order.iter().cloned().collect();
            for k in keys {
                let t = s.tenants.get_mut(&k).expect("ordered tenants exist");
                let drained: Vec<Entry> = t.items.drain(..).collect();
                t.loaded = 0;
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
            if self.disk.is_some() {
                // Kept on disk for the next start: not dropped.
                self.gauge(&e.tenant, -(e.points as i64), -(e.bytes as i64));
                continue;
            }
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

/// Encoded bytes of a batch (as an OTLP request).
fn batch_bytes(batch: &Batch) -> usize {
    prost::Message::encoded_len(
        &crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest {
            resource_metrics: Vec::new(),
        },
    ) + batch
        .resource_metrics
        .iter()
        .map(prost::Message::encoded_len)
        .sum::<usize>()
}

/// About the bytes a batch's record takes on disk (framing and context included).
fn record_estimate(batch: &Batch) -> u64 {
    let c = &batch.context;
    let context = c.tenant_label().len()
        + c.sla_tier().map_or(0, str::len)
        + c.route
            .iter()
            .flat_map(|r| r.iter())
            .map(|e| e.len() + 2)
            .sum::<usize>()
        + c.metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    (batch_bytes(batch) + context + 32) as u64
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
    t.loaded -= usize::from(e.loaded);
    t.in_flight += 1;
    s.queued -= 1;
    Ok(e)
}

/// Removes the oldest queued batch of `tenant` from the accounting (for a drop).
fn take_oldest(s: &mut State, tenant: &str) -> Option<Entry> {
    let t = s.tenants.get_mut(tenant)?;
    let old = t.items.pop_front()?;
    t.loaded -= usize::from(old.loaded);
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
mod disk_tests;
#[cfg(test)]
mod tests;
