//! The one sending engine every exporter uses: a bounded queue per tenant (see [`crate::queue`]),
//! a pool of consumers shared by the tenants in SLA order, retries with backoff on retryable
//! failures (honouring the peer's Retry-After / RetryInfo), and telemetry. A batch waiting for its
//! retry waits in its tenant's queue, not in a consumer, so a failing tenant does not hold the
//! others up. Each exporter only supplies `send` and says whether a failure is retryable; one
//! whose request is the same at every attempt also supplies `encode`, and the engine then keeps
//! the request instead of the batch from the first attempt on.
//!
//! With `storage: disk` the queue also writes every batch to its tenant's log before the receiver
//! acknowledges it, and a record is acknowledged in the log once its batch is delivered (for an
//! exporter with a sending stage of its own, once that stage says so through a [`Completion`]) or
//! dropped for a counted reason; what is left at shutdown stays on disk for the next start.

mod completion;

pub use completion::{Completion, Part};

use crate::backoff::Backoff;
use crate::component::{BoxError, ComponentId, Exporter};
use crate::config::types::{ByteSize, Duration};
use crate::disk::{DiskStore, Fsync, LogSettings};
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
    /// (default 100000; for a disk queue, unbounded: `max_bytes` bounds it).
    #[serde(default)]
    pub queue_size: Option<usize>,
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
    /// `memory` (default) or `disk`: a segmented log per tenant under `directory`.
    #[serde(default)]
    pub storage: Storage,
    /// The disk queue's folder (required with `storage: disk`), one per exporter; relative paths
    /// are relative to the config file.
    #[serde(default)]
    pub directory: Option<String>,
    /// Bound of the disk queue's files, all tenants together (default 1GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Bound of one tenant's files (default half of `max_bytes`), so that a tenant whose backend
    /// is down leaves room to the others.
    #[serde(default)]
    pub max_bytes_per_tenant: Option<ByteSize>,
    /// Disk queue: acknowledge a request only once its batch is written to the log (default
    /// true). When false, records are written but never fsynced but when a segment is sealed.
    #[serde(default = "default_true")]
    pub durable: bool,
    /// Disk queue, when `durable`: `batch` (default: every write fsynced before the request is
    /// acknowledged) or `{ interval: 1s }` (fsynced that often).
    #[serde(default)]
    pub fsync: FsyncSetting,
}

/// `sending_queue.storage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    #[default]
    Memory,
    Disk,
}

/// `sending_queue.fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FsyncSetting {
    /// Every write is fsynced before the request is acknowledged.
    #[default]
    Batch,
    /// Writes are fsynced this often.
    Interval(Duration),
}

impl QueueSettings {
    /// Makes a relative `directory` relative to the config file's folder.
    pub fn resolve_paths(&mut self, ctx: &crate::config::LoadContext) {
        if let Some(dir) = &mut self.directory {
            *dir = ctx.resolve(dir).display().to_string();
        }
    }

    /// What is wrong with these settings, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.storage == Storage::Disk && self.directory.as_deref().is_none_or(str::is_empty) {
            v.push("sending_queue: storage: disk needs a directory".to_string());
        }
        if self.storage == Storage::Disk && self.max_bytes.get() < 64 * 1024 {
            v.push("sending_queue.max_bytes must be at least 64KiB".to_string());
        }
        if self
            .max_bytes_per_tenant
            .is_some_and(|b| b.get() < 32 * 1024)
        {
            v.push("sending_queue.max_bytes_per_tenant must be at least 32KiB".to_string());
        }
        if let FsyncSetting::Interval(d) = self.fsync
            && d.get().is_zero()
        {
            v.push("sending_queue.fsync.interval must be more than 0".to_string());
        }
        v
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            queue_size: None,
            total_size: None,
            num_consumers: default_num_consumers(),
            full_policy: FullPolicy::Block,
            storage: Storage::Memory,
            directory: None,
            max_bytes: default_max_bytes(),
            max_bytes_per_tenant: None,
            durable: true,
            fsync: FsyncSetting::Batch,
        }
    }
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

/// `queue_size` of a memory queue when the config leaves it out.
pub const DEFAULT_QUEUE_SIZE: usize = 100_000;

/// `queue_size` of a disk queue when the config leaves it out: no bound in points (its files are
/// bounded by `max_bytes`, its memory by the window it keeps).
const UNBOUNDED_POINTS: usize = usize::MAX / 16;
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
    /// A disk queue's fsync ticks and size gauge.
    upkeep: Option<JoinHandle<()>>,
}

impl ExporterRuntime {
    /// Starts the exporter's senders; a disk queue is opened first and what it holds is queued
    /// again (an error when its directory cannot be used).
    pub fn spawn(
        id: ComponentId,
        exporter: Arc<dyn Exporter>,
        settings: SendingSettings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, BoxError> {
        let name = id.to_string();
        let queue_size = match (settings.queue.queue_size, settings.queue.storage) {
            (Some(n), _) => n.max(1),
            (None, Storage::Memory) => DEFAULT_QUEUE_SIZE,
            (None, Storage::Disk) => UNBOUNDED_POINTS,
        };
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
        if settings.queue.storage == Storage::Disk {
            queue = open_disk(queue, &settings.queue, &telemetry)?;
        }
        if exporter.prepares() {
            queue = queue.with_preparer(exporter.clone());
        }
        let queue = Arc::new(queue);
        let upkeep = queue.disk().is_some().then(|| {
            tokio::spawn(upkeep(
                queue.clone(),
                settings.queue.fsync,
                telemetry.clone(),
            ))
        });
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
                            Attempt::Done(completion) => {
                                q.release(&entry);
                                if let Some(st) = entry.stored().cloned() {
                                    match completion {
                                        Some(c) => c.on_done(move |ok| {
                                            if ok {
                                                st.ack();
                                            }
                                        }),
                                        None => st.ack(),
                                    }
                                }
                            }
                            Attempt::Stopped => q.release(&entry),
                            Attempt::RetryIn(wait) => q.retry_later(entry, wait),
                        }
                    }
                })
            })
            .collect();
        Ok(ExporterRuntime {
            id,
            queue,
            exporter,
            workers,
            hard_stop,
            upkeep,
        })
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
        if let Some(u) = self.upkeep {
            u.abort();
        }
        if let Some(disk) = self.queue.disk() {
            crate::disk::blocking(|| disk.close());
            if disk.bytes() > 0 {
                tracing::info!(exporter = %self.id, bytes = disk.bytes(), dir = %disk.dir().display(), "undelivered batches stay in the disk queue for the next start");
            }
        }
    }
}

/// How long a batch waits when the exporter was busy ([`crate::component::SendError::busy`]) and
/// gave no wait of its own.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// How one attempt at sending a batch ended.
enum Attempt {
    /// Delivered, or given up on (and counted): release its room, and acknowledge its record in a
    /// disk queue (once the completion says so, if there is one).
    Done(Option<Completion>),
    /// Not sent because the exporter is stopping: release its room; a disk queue keeps its
    /// record for the next start (a memory queue counted it as dropped).
    Stopped,
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
    /// The exporter is stopping before `entry` was sent: a memory queue's batch is dropped
    /// (counted), a disk queue's stays in its log for the next start.
    fn stopped(&self, entry: &Entry) -> Attempt {
        if entry.stored().is_none() {
            self.telemetry.exporter_dropped(
                &self.name,
                entry.tenant(),
                "shutdown",
                entry.points as u64,
            );
        }
        Attempt::Stopped
    }

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
        if entry.encoded.is_none()
            && entry.prepared.is_none()
            && let Some(encoded) = self.exporter.encode(&entry.batch)
        {
            entry.encoded = Some(encoded);
            entry.batch = crate::batch::Batch::default();
        }
        // Taken out for the attempt and put back after it: a retry sends it again.
        let mut prepared = entry.prepared.take();
        let send = match (&mut prepared, &entry.encoded) {
            (Some(_), _) => self
                .exporter
                .send_prepared(&entry.batch.context, &mut prepared),
            (None, Some(encoded)) => self.exporter.send_encoded(encoded),
            (None, None) => self.exporter.send(&entry.batch),
        };
        let result = tokio::select! {
            r = send => r,
            _ = self.hard_stop.cancelled() => return self.stopped(entry),
        };
        entry.prepared = prepared;
        let err = match result {
            Ok(d) if d.handed_off => {
                queue.delivered(entry);
                return Attempt::Done(d.completion);
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
                return Attempt::Done(None);
            }
            Err(e) if e.busy => {
                if self.hard_stop.is_cancelled() {
                    return self.stopped(entry);
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
            return Attempt::Done(None);
        }
        if queue.should_yield_oldest(&tenant) {
            tracing::warn!(exporter = %self.name, tenant, points, error = %err.message, "queue full (drop_oldest); dropping the oldest batch");
            self.telemetry
                .exporter_dropped(&self.name, &tenant, "queue_full", points);
            return Attempt::Done(None);
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
            return Attempt::Done(None);
        }
        if self.hard_stop.is_cancelled() {
            return self.stopped(entry);
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

/// Opens the disk queue of `settings` for `queue` and queues again what its logs hold, logging
/// and counting what is damaged.
fn open_disk(
    queue: Queue,
    settings: &QueueSettings,
    telemetry: &Telemetry,
) -> Result<Queue, BoxError> {
    if let Some(p) = settings.problems().into_iter().next() {
        return Err(p.into());
    }
    let dir = std::path::PathBuf::from(settings.directory.clone().unwrap_or_default());
    let max_bytes = settings.max_bytes.get();
    let log = LogSettings {
        segment_bytes: (max_bytes / 8).clamp(32 * 1024, 16 << 20),
        fsync: match (settings.durable, settings.fsync) {
            (false, _) => Fsync::Never,
            (true, FsyncSetting::Batch) => Fsync::Batch,
            (true, FsyncSetting::Interval(d)) => Fsync::Interval(d.get()),
        },
    };
    let name = queue.exporter().to_string();
    let corrupt = |bytes: u64| {
        telemetry
            .exporter_disk_corrupt
            .get_or_create(&ExporterOnlyLabels {
                exporter: name.clone(),
            })
            .inc_by(bytes);
    };
    let (mut restored, mut points) = (0usize, 0usize);
    let (store, damage) = DiskStore::open(dir.clone(), log, max_bytes, |log, at, payload| {
        match queue.restore(log, at, payload) {
            Ok(n) => {
                restored += 1;
                points += n;
            }
            Err(e) => {
                tracing::error!(exporter = %name, dir = %log.dir().display(), segment = at.segment, offset = at.offset, error = %e, "a disk queue record cannot be decoded; skipping it");
                corrupt(at.file_bytes());
            }
        }
    })
    .map_err(|e| format!("cannot open the disk queue in {}: {e}", dir.display()))?;
    for d in &damage {
        tracing::error!(exporter = %name, file = %d.file.display(), offset = d.offset, bytes = d.bytes, kind = d.kind, "damaged disk queue segment: its good records are kept, the rest of it is skipped");
        corrupt(d.bytes);
    }
    if restored > 0 {
        tracing::info!(exporter = %name, batches = restored, points, bytes = store.bytes(), dir = %dir.display(), "disk queue replayed");
    }
    let per_tenant = settings
        .max_bytes_per_tenant
        .map_or(max_bytes / 2, ByteSize::get);
    Ok(queue.with_disk(store.with_tenant_limit(per_tenant)))
}

/// A disk queue's periodic work: fsync under `fsync: { interval }`, and the size gauge.
async fn upkeep(queue: Arc<Queue>, fsync: FsyncSetting, telemetry: Arc<Telemetry>) {
    let every = match fsync {
        FsyncSetting::Interval(d) => d.get().min(std::time::Duration::from_secs(1)),
        FsyncSetting::Batch => std::time::Duration::from_secs(1),
    };
    let labels = ExporterOnlyLabels {
        exporter: queue.exporter().to_string(),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(disk) = queue.disk() else { return };
        if let FsyncSetting::Interval(d) = fsync
            && synced.elapsed() >= d.get()
        {
            synced = tokio::time::Instant::now();
            let q = queue.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(d) = q.disk() {
                    d.sync();
                }
            })
            .await;
        }
        telemetry
            .exporter_disk_bytes
            .get_or_create(&labels)
            .set(disk.bytes() as i64);
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
        self.offer(batch).map_err(|returned| returned.refusal)
    }

    fn ready(
        &self,
        context: &crate::batch::Context,
        points: usize,
    ) -> Result<(), crate::component::Refusal> {
        let probe = crate::batch::Batch::new(context.clone(), Vec::new());
        room(self.queues.iter(), |q| q.ready_for(&probe, points))
    }

    /// A batch refused (for room, or by a disk write) comes back uncopied. Disk queues are written
    /// first: their write is the one that can still fail, and a batch refused then is in no
    /// queue yet unless another disk queue took it (then the client's retry duplicates it there:
    /// at-least-once).
    fn offer(&self, batch: crate::batch::Batch) -> Result<(), Box<crate::component::Returned>> {
        let points = batch.point_count();
        if points == 0 {
            return Ok(());
        }
        let mut chosen = self.chosen(&batch);
        if let Err(refusal) = room(chosen.iter().copied(), |q| q.has_room_for(&batch, points)) {
            return Err(Box::new(crate::component::Returned { refusal, batch }));
        }
        chosen.sort_by_key(|q| q.disk().is_none());
        let Some((last, rest)) = chosen.split_last() else {
            return Ok(());
        };
        for q in rest {
            if let Err(returned) = q.try_push(batch.clone()) {
                return Err(Box::new(crate::component::Returned {
                    refusal: returned.refusal,
                    batch,
                }));
            }
        }
        last.try_push(batch)
    }
}

impl Fanout {
    /// The queues a batch goes to: all of them, or those of its route.
    fn chosen(&self, batch: &crate::batch::Batch) -> Vec<&Arc<Queue>> {
        match &batch.context.route {
            None => self.queues.iter().collect(),
            Some(route) => self
                .queues
                .iter()
                .filter(|q| route.iter().any(|e| e == q.exporter()))
                .collect(),
        }
    }
}

/// Refuses, naming the first of `queues` without room (as `has_room` says), if any.
fn room<'q>(
    mut queues: impl Iterator<Item = &'q Arc<Queue>>,
    has_room: impl Fn(&Queue) -> bool,
) -> Result<(), crate::component::Refusal> {
    match queues.find(|q| !has_room(q)) {
        Some(q) => Err(crate::component::Refusal::full(format!(
            "the queue of exporter {} is full; retry later",
            q.exporter()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod tests;
