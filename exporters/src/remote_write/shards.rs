//! Per-series ordered sending, per tenant: each tenant has its own shard set (see `tenants`), every
//! series of the tenant is hashed to one of its shards, and a shard sends one request at a time and
//! retries it until it is delivered or must be dropped, so the samples of a series are never
//! reordered or sent twice, while different series go out in parallel. A tenant's shard count
//! follows its backlog between `min_shards` and `max_shards`, as Prometheus does; requests in
//! flight across all tenants are bounded by the exporter's send slots (`slots`).

use super::client::{Client, Outcome};
use super::config::{Protocol, QueueConfig, RemoteWriteConfig};
use super::encode::{Encoder, estimated_bytes};
use super::slots::Slots;
use sluice_core::backoff::Backoff;
use sluice_core::prometheus::kept_lists::{FINGERPRINTS, SERIES};
use sluice_core::prometheus::{Series, Translation};
use sluice_core::sending::Part;
use sluice_core::telemetry::{ExporterLabels, ExporterOnlyLabels, Telemetry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What every shard of every tenant shares.
pub struct Shared {
    pub name: String,
    pub cfg: RemoteWriteConfig,
    pub client: Client,
    pub telemetry: Arc<Telemetry>,
    /// Set once the endpoint answered 415 to v2 (or ignored it): send v1 from then on. With
    /// `${tenant}` in the endpoint each tenant has its own flag instead.
    v1_only: Arc<AtomicBool>,
    /// Cancelled at the shutdown deadline: stop retrying, drop and count.
    pub hard_stop: CancellationToken,
    /// Requests in flight, exporter-wide, granted by SLA tier.
    pub slots: Slots,
    /// Samples held by all shards (queued to them or being sent).
    held: AtomicI64,
    /// Shards running, all tenants together.
    shards: AtomicI64,
}

impl Shared {
    pub fn new(
        name: String,
        cfg: RemoteWriteConfig,
        client: Client,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let slots = Slots::new(cfg.queue_config.max_shards);
        Shared {
            name,
            cfg,
            client,
            telemetry,
            v1_only: Arc::new(AtomicBool::new(false)),
            hard_stop: CancellationToken::new(),
            slots,
            held: AtomicI64::new(0),
            shards: AtomicI64::new(0),
        }
    }

    fn exporter_labels(&self) -> ExporterOnlyLabels {
        ExporterOnlyLabels {
            exporter: self.name.clone(),
        }
    }

    fn hold(&self, tenant: &Tenant, samples: i64) {
        tenant.held.fetch_add(samples, Ordering::Relaxed);
        let now = self.held.fetch_add(samples, Ordering::Relaxed) + samples;
        self.telemetry
            .exporter_shard_samples
            .get_or_create(&self.exporter_labels())
            .set(now);
    }

    fn add_shards(&self, n: i64) {
        let now = self.shards.fetch_add(n, Ordering::Relaxed) + n;
        self.telemetry
            .exporter_shards
            .get_or_create(&self.exporter_labels())
            .set(now);
    }
}

/// One tenant's sending state, shared by its shards.
pub struct Tenant {
    pub name: Arc<str>,
    labels: ExporterLabels,
    /// SLA tier rank of the tenant's latest batch (`tier_rank`: 0 gold .. 2 bronze and others).
    rank: AtomicUsize,
    v1_only: Arc<AtomicBool>,
    /// Samples held by this tenant's shards.
    held: AtomicI64,
    samples_out: AtomicU64,
    send_nanos: AtomicU64,
    last_success: parking_lot::Mutex<Instant>,
}

impl Tenant {
    pub fn new(shared: &Shared, name: Arc<str>) -> Self {
        let v1_only = if shared.cfg.endpoint.contains("${tenant}") {
            Arc::new(AtomicBool::new(false))
        } else {
            shared.v1_only.clone()
        };
        Tenant {
            labels: ExporterLabels {
                exporter: shared.name.clone(),
                tenant: name.to_string(),
            },
            name,
            rank: AtomicUsize::new(sluice_core::tenancy::TIERS.len() - 1),
            v1_only,
            held: AtomicI64::new(0),
            samples_out: AtomicU64::new(0),
            send_nanos: AtomicU64::new(0),
            last_success: parking_lot::Mutex::new(Instant::now()),
        }
    }

    pub fn set_rank(&self, rank: usize) {
        self.rank.store(rank, Ordering::Relaxed);
    }

    /// Samples queued to the tenant's shards or being sent.
    pub fn held(&self) -> i64 {
        self.held.load(Ordering::Relaxed)
    }
}

pub fn samples_of(s: &Series) -> u64 {
    (s.samples.len() + s.histograms().len()) as u64
}

/// A run of one batch's series on its way to their shard, in the batch's order, with the batch's
/// completion part: settled once every series of the run is sent or dropped for a counted reason,
/// so that a disk queue acknowledges the batch only then (dropped unsettled at shutdown, it keeps
/// the batch for the next start). A batch goes to a shard as one run (or a few, when it has more
/// series for the shard than the shard holds), not series by series: a channel operation and a
/// part per series cost more than the series' encoding.
pub struct Tracked {
    series: Vec<Series>,
    part: Part,
}

impl Tracked {
    fn samples(&self) -> u64 {
        self.series.iter().map(samples_of).sum()
    }
}

/// The way into one shard: its channel, and the room left in it, in series (`capacity` in all;
/// a run takes its series' worth before it is sent, and the shard gives it back on receiving it).
#[derive(Clone)]
struct Inlet {
    tx: mpsc::UnboundedSender<Tracked>,
    room: Arc<Semaphore>,
}

impl Inlet {
    /// Sends the run if the shard has room for it now; gives it back otherwise.
    fn try_send(&self, t: Tracked) -> Result<(), TrySend> {
        match self.room.try_acquire_many(t.series.len() as u32) {
            Ok(permit) => {
                permit.forget();
                self.tx.send(t).map_err(|e| TrySend::Closed(e.0))
            }
            Err(_) => Err(TrySend::Full(t)),
        }
    }

    /// Sends the run once the shard has room for it; gives it back if the shard is gone.
    async fn send(&self, t: Tracked) -> Result<(), Tracked> {
        match self.room.acquire_many(t.series.len() as u32).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(t),
        }
        self.tx.send(t).map_err(|e| e.0)
    }
}

enum TrySend {
    Full(Tracked),
    Closed(Tracked),
}

/// One tenant's running shards; only that tenant's dispatcher (the exporter's `send`, under the
/// tenant's lock) and shutdown touch it.
pub struct ShardSet {
    inlets: Vec<Inlet>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    pub tenant: Arc<Tenant>,
    samples_in: u64,
    last_update: Instant,
    /// Hands over the series that did not fit when their batch came (see `hand_over`).
    feeder: Option<JoinHandle<()>>,
}

impl ShardSet {
    pub fn start(shared: Arc<Shared>, tenant: Arc<Tenant>, n: usize) -> Self {
        let capacity = shard_capacity(&shared);
        let (inlets, workers) = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let room = Arc::new(Semaphore::new(capacity));
                let worker =
                    tokio::spawn(run_shard(shared.clone(), tenant.clone(), rx, room.clone()));
                (Inlet { tx, room }, worker)
            })
            .unzip();
        shared.add_shards(n as i64);
        ShardSet {
            inlets,
            workers,
            shared,
            tenant,
            samples_in: 0,
            last_update: Instant::now(),
            feeder: None,
        }
    }

    pub fn len(&self) -> usize {
        self.inlets.len()
    }

    /// Whether series handed over earlier are still waiting for room in a full shard: the tenant
    /// takes no new batch until they are all in.
    pub fn is_feeding(&self) -> bool {
        self.feeder.as_ref().is_some_and(|f| !f.is_finished())
    }

    /// A series' shard, from its fingerprint ([`Translation::fingerprints`]).
    fn shard_of(&self, fingerprint: u64) -> usize {
        (fingerprint % self.inlets.len() as u64) as usize
    }

    /// Hands the series to their shards without waiting, as one run per shard (in the batch's
    /// order; several when a shard gets more series than it holds): the runs that do not fit
    /// (from the first that meets a full shard on, to keep their order), or all of them while a
    /// previous shard set still drains after a reshard, are handed over by a feeder task as the
    /// shards make room. The caller takes no new batch for the tenant while
    /// [`ShardSet::is_feeding`].
    pub fn hand_over(&mut self, translation: Translation, part: &Part) {
        let before = self.feeder.take().filter(|f| !f.is_finished());
        // Held from here on, all at once: the held-samples gauge is set once per batch, not once
        // per series (a lost run gives its samples back).
        let (mut all, fingerprints) = (translation.series, translation.fingerprints);
        debug_assert_eq!(all.len(), fingerprints.len());
        let total: u64 = all.iter().map(samples_of).sum();
        self.shared.hold(&self.tenant, total as i64);
        self.samples_in += total;
        let per_shard = if self.len() == 1 {
            // One shard takes the batch's list as it is.
            vec![all]
        } else {
            // Sized for an even spread with some slack, so that a shard's list is rarely grown.
            let n = all.len();
            let expected = n / self.len() + n / 32 + 8;
            let mut per_shard: Vec<Vec<Series>> =
                (0..self.len()).map(|_| SERIES.take(expected)).collect();
            for (series, &fingerprint) in all.drain(..).zip(&fingerprints) {
                per_shard[self.shard_of(fingerprint)].push(series);
            }
            SERIES.give_back(all);
            per_shard
        };
        FINGERPRINTS.give_back(fingerprints);
        let capacity = shard_capacity(&self.shared);
        let runs = per_shard
            .into_iter()
            .enumerate()
            .flat_map(|(idx, series)| split_runs(series, capacity).map(move |run| (idx, run)));
        let mut rest = Vec::new();
        for (idx, series) in runs {
            let run = Tracked {
                series,
                part: part.clone(),
            };
            if before.is_some() || !rest.is_empty() {
                rest.push((idx, run));
                continue;
            }
            match self.inlets[idx].try_send(run) {
                Ok(()) => {}
                Err(TrySend::Full(run)) => rest.push((idx, run)),
                Err(TrySend::Closed(run)) => self.lost(run.samples()),
            }
        }
        if rest.is_empty() {
            self.feeder = before;
            return;
        }
        let inlets = self.inlets.clone();
        let (shared, tenant) = (self.shared.clone(), self.tenant.clone());
        self.feeder = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let mut rest = rest.into_iter();
            for (idx, run) in rest.by_ref() {
                let samples = run.samples();
                tokio::select! {
                    r = inlets[idx].send(run) => if r.is_err() {
                        shared.hold(&tenant, -(samples as i64));
                        shared.telemetry.exporter_dropped(&shared.name, &tenant.name, "shutdown", samples);
                    },
                    _ = shared.hard_stop.cancelled() => {
                        let samples = samples + rest.map(|(_, run)| run.samples()).sum::<u64>();
                        shared.hold(&tenant, -(samples as i64));
                        shared.telemetry.exporter_dropped(&shared.name, &tenant.name, "shutdown", samples);
                        return;
                    }
                }
            }
        }));
    }

    /// Samples of a run whose shard is gone (only at shutdown): dropped and counted.
    fn lost(&self, samples: u64) {
        self.shared.hold(&self.tenant, -(samples as i64));
        self.shared.telemetry.exporter_dropped(
            &self.shared.name,
            &self.tenant.name,
            "shutdown",
            samples,
        );
    }

    /// Closes the shards and waits until they have sent what they hold, the feeder's series
    /// included (or the hard stop).
    pub async fn stop(self) {
        let n = self.len() as i64;
        drop(self.inlets);
        if let Some(f) = self.feeder {
            let _ = f.await;
        }
        futures::future::join_all(self.workers).await;
        self.shared.add_shards(-n);
    }

    /// Every `shard_update_interval`, resizes to what the tenant's input rate and measured send
    /// cost need (Prometheus' formula: time per sample x (input rate + 5% of the backlog per
    /// second)), within `min_shards..=max_shards`, ignoring changes under 30%, and never while
    /// the tenant's sends fail. The old shards drain in the background; the new set takes series
    /// only once they have (see [`ShardSet::hand_over`]), so no series is reordered.
    pub fn maybe_reshard(self, interval: Duration) -> ShardSet {
        let elapsed = self.last_update.elapsed();
        if elapsed < interval {
            return self;
        }
        let (shared, tenant) = (self.shared.clone(), self.tenant.clone());
        let out = tenant.samples_out.swap(0, Ordering::Relaxed);
        let nanos = tenant.send_nanos.swap(0, Ordering::Relaxed);
        let in_rate = self.samples_in as f64 / elapsed.as_secs_f64();
        let backlog = tenant.held().max(0) as f64;
        let current = self.len();
        let mut set = self;
        set.samples_in = 0;
        set.last_update = Instant::now();
        tracing::debug!(exporter = %shared.name, tenant = %tenant.name, out, nanos, in_rate, backlog, current, "shard update");
        if out == 0 || tenant.last_success.lock().elapsed() > interval {
            return set;
        }
        let time_per_sample = nanos as f64 / 1e9 / out as f64;
        let q = &shared.cfg.queue_config;
        let desired = (time_per_sample * (in_rate + 0.05 * backlog)).ceil() as usize;
        let desired = desired.clamp(q.min_shards, q.max_shards);
        let lower = (current as f64 * 0.7) as usize;
        let upper = (current as f64 * 1.3).ceil() as usize;
        if desired == current || (desired > lower && desired < upper) {
            return set;
        }
        tracing::info!(exporter = %shared.name, tenant = %tenant.name, from = current, to = desired, in_rate, backlog, "resharding");
        let draining = tokio::spawn(set.stop());
        let mut set = ShardSet::start(shared, tenant, desired);
        set.feeder = Some(draining);
        set
    }
}

/// Series entries a shard holds (`queue_config.capacity`), as semaphore permits (a run takes
/// its length's worth at once, as a `u32`).
fn shard_capacity(shared: &Shared) -> usize {
    let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
    shared.cfg.queue_config.capacity.clamp(1, most)
}

/// A shard's series in runs of at most `capacity` (so that each fits the shard when it is empty).
fn split_runs(mut series: Vec<Series>, capacity: usize) -> impl Iterator<Item = Vec<Series>> {
    std::iter::from_fn(move || {
        if series.is_empty() {
            return None;
        }
        if series.len() <= capacity {
            return Some(std::mem::take(&mut series));
        }
        let mut tail = SERIES.take(series.len() - capacity);
        tail.extend(series.drain(capacity..));
        Some(std::mem::replace(&mut series, tail))
    })
}

/// The request a shard is gathering: its series, and the parts of the runs they came in.
#[derive(Default)]
struct Pending {
    series: Vec<Series>,
    parts: Vec<Part>,
    samples: usize,
    bytes: usize,
}

/// A shard: gathers its tenant's series into requests of at most `max_samples_per_send` samples
/// (and `max_bytes_per_send`), sent when full or after `batch_send_deadline`. A run that fills a
/// request goes on into the next one, its part going with both.
async fn run_shard(
    shared: Arc<Shared>,
    tenant: Arc<Tenant>,
    mut rx: mpsc::UnboundedReceiver<Tracked>,
    room: Arc<Semaphore>,
) {
    let q = &shared.cfg.queue_config;
    let mut pending = Pending::default();
    let mut deadline = tokio::time::Instant::now() + q.batch_send_deadline.get();
    loop {
        let run = if pending.series.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep_until(deadline) => {
                    flush(&shared, &tenant, &mut pending).await;
                    continue;
                }
            }
        };
        let Some(Tracked { series, part }) = run else {
            break;
        };
        room.add_permits(series.len());
        if pending.series.is_empty()
            && !series.is_empty()
            && let Some((samples, bytes)) = whole_run(&series, q)
        {
            // A run an empty request takes whole: its list becomes the request's, rather than
            // being moved into it series by series.
            deadline = tokio::time::Instant::now() + q.batch_send_deadline.get();
            pending.samples = samples;
            pending.bytes = bytes;
            SERIES.give_back(std::mem::replace(&mut pending.series, series));
            pending.parts.push(part);
            if fills(q, samples, bytes) {
                flush(&shared, &tenant, &mut pending).await;
            }
            continue;
        }
        let mut part = Some(part);
        let mut run = series;
        let mut series = run.drain(..);
        while let Some(s) = series.next() {
            if pending.series.is_empty() {
                deadline = tokio::time::Instant::now() + q.batch_send_deadline.get();
            }
            pending.samples += samples_of(&s) as usize;
            pending.bytes += estimated_bytes(&s);
            pending.series.push(s);
            if fills(q, pending.samples, pending.bytes) {
                // The run's part goes with this request, and with the next too if the run
                // goes on.
                let more = series.len() > 0;
                pending
                    .parts
                    .extend(if more { part.clone() } else { part.take() });
                flush(&shared, &tenant, &mut pending).await;
            }
        }
        pending.parts.extend(part);
        drop(series);
        SERIES.give_back(run);
    }
    if !pending.series.is_empty() {
        flush(&shared, &tenant, &mut pending).await;
    }
}

/// Whether a request of `samples` samples and about `bytes` bytes is full and goes out.
fn fills(q: &QueueConfig, samples: usize, bytes: usize) -> bool {
    samples >= q.max_samples_per_send || bytes >= q.max_bytes_per_send.get() as usize
}

/// The samples and estimated bytes of a run that an empty request can take whole: no series but
/// the last brings the request to `max_samples_per_send` or `max_bytes_per_send` (the last may,
/// and the request is then sent, as it would be when the run is taken series by series). A run
/// of more series than a request takes samples is not looked through: it could fit only if some
/// of its series carried none, and the series-by-series path would sum it all over again.
pub(super) fn whole_run(series: &[Series], q: &QueueConfig) -> Option<(usize, usize)> {
    if series.len() > q.max_samples_per_send {
        return None;
    }
    let (mut samples, mut bytes) = (0, 0);
    for s in series {
        if fills(q, samples, bytes) {
            return None;
        }
        samples += samples_of(s) as usize;
        bytes += estimated_bytes(s);
    }
    Some((samples, bytes))
}

/// Sends one request, retrying as the protocol allows, until it is delivered, dropped, or the
/// hard stop comes. Each attempt takes a send slot; the waits between attempts do not. The
/// series' completion parts are settled unless the hard stop came first.
async fn flush(shared: &Shared, tenant: &Tenant, pending: &mut Pending) {
    // Cleared, not taken: the list keeps its room for the next request (a run an empty request
    // takes whole brings its own list instead).
    let series = &mut pending.series;
    pending.samples = 0;
    pending.bytes = 0;
    let held: u64 = series.iter().map(samples_of).sum();
    let mut samples = held;
    let mut retried = false;
    let labels = &tenant.labels;
    let name = &*tenant.name;
    let q = &shared.cfg.queue_config;
    let mut backoff = Backoff::new(q.min_backoff.get(), q.max_backoff.get());
    let result = loop {
        // Samples that grew older than `sample_age_limit` while this request was retried (a
        // backend down for long) are dropped before the next attempt.
        if retried && let Some(limit) = shared.cfg.sample_age_limit {
            let too_old = drop_older_than(series, limit.get());
            if too_old > 0 {
                samples -= too_old;
                shared
                    .telemetry
                    .exporter_dropped(&shared.name, name, "too_old", too_old);
            }
            if samples == 0 {
                break "";
            }
        }
        retried = true;
        let protocol = if tenant.v1_only.load(Ordering::Relaxed) {
            Protocol::V1
        } else {
            shared.cfg.protocol
        };
        let body = Encoder::body(series, protocol, shared.cfg.send_metadata);
        let outcome = {
            let _slot = tokio::select! {
                s = shared.slots.acquire(tenant.rank.load(Ordering::Relaxed)) => s,
                _ = shared.hard_stop.cancelled() => break "shutdown",
            };
            let started = Instant::now();
            let outcome = tokio::select! {
                o = shared.client.send(name, protocol, body, samples) => o,
                _ = shared.hard_stop.cancelled() => break "shutdown",
            };
            (outcome, started.elapsed())
        };
        match outcome {
            (Outcome::Delivered, took) => {
                tenant.samples_out.fetch_add(samples, Ordering::Relaxed);
                tenant
                    .send_nanos
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                *tenant.last_success.lock() = Instant::now();
                shared
                    .telemetry
                    .exporter_sent
                    .get_or_create(labels)
                    .inc_by(samples);
                break "";
            }
            (Outcome::FallBackToV1(why), _) => {
                tracing::warn!(exporter = %shared.name, tenant = name, reason = %why, "the endpoint does not take remote_write 2.0; sending 1.0 from now on");
                tenant.v1_only.store(true, Ordering::Relaxed);
            }
            (Outcome::Permanent(msg), _) => {
                tracing::error!(exporter = %shared.name, tenant = name, samples, error = %msg, "remote_write request refused; dropping it");
                shared
                    .telemetry
                    .exporter_failed
                    .get_or_create(labels)
                    .inc_by(samples);
                break "permanent_error";
            }
            (
                Outcome::Retry {
                    message,
                    retry_after,
                },
                _,
            ) => {
                shared
                    .telemetry
                    .exporter_failed
                    .get_or_create(labels)
                    .inc_by(samples);
                shared
                    .telemetry
                    .exporter_retries
                    .get_or_create(&shared.exporter_labels())
                    .inc();
                // As Prometheus: sleep for Retry-After when given, else the current backoff.
                let wait = retry_after
                    .filter(|d| !d.is_zero())
                    .unwrap_or_else(|| backoff.next_wait());
                tracing::warn!(exporter = %shared.name, tenant = name, samples, error = %message, retry_in = ?wait, "remote_write request failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.hard_stop.cancelled() => break "shutdown",
                }
            }
        }
    };
    if !result.is_empty() {
        shared
            .telemetry
            .exporter_dropped(&shared.name, name, result, samples);
    }
    if result != "shutdown" {
        pending.parts.drain(..).for_each(Part::settle);
    }
    // Unsettled at shutdown: dropped, so that a disk queue keeps their batches.
    pending.parts.clear();
    series.clear();
    shared.hold(tenant, -(held as i64));
}

/// Removes samples and histograms stamped more than `limit` ago (unstamped ones stay; series
/// left empty go too); returns how many were removed.
fn drop_older_than(series: &mut Vec<Series>, limit: Duration) -> u64 {
    let cutoff = (sluice_core::batch::age::cutoff_unix_nano(limit) / 1_000_000) as i64;
    let before: u64 = series.iter().map(samples_of).sum();
    for s in series.iter_mut() {
        s.retain_by_time(|ms| ms == 0 || ms >= cutoff);
    }
    series.retain(|s| samples_of(s) > 0);
    before - series.iter().map(samples_of).sum::<u64>()
}
