//! Per-series ordered sending: every series is hashed (with its tenant) to one shard; a shard sends
//! one request at a time and retries it until it is delivered or must be dropped, so the samples of
//! a series are never reordered or sent twice, while different series go out in parallel. The
//! number of shards follows the backlog between `min_shards` and `max_shards`, as Prometheus does.

use super::client::{Client, Outcome};
use super::config::{Protocol, RemoteWriteConfig};
use super::encode::{Encoder, estimated_bytes};
use sluice_core::backoff::Backoff;
use sluice_core::prometheus::Series;
use sluice_core::telemetry::{ExporterLabels, ExporterOnlyLabels, Telemetry};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One series on its way to a shard.
pub struct Item {
    pub tenant: Arc<str>,
    pub series: Series,
}

/// What every shard shares.
pub struct Shared {
    pub name: String,
    pub cfg: RemoteWriteConfig,
    pub client: Client,
    pub telemetry: Arc<Telemetry>,
    /// Set once an endpoint answered 415 to v2 (or ignored it): send v1 from then on.
    pub v1_only: AtomicBool,
    /// Cancelled at the shutdown deadline: stop retrying, drop and count.
    pub hard_stop: CancellationToken,
    /// Samples held by shards (queued to them or being sent).
    pub held: AtomicI64,
    samples_out: AtomicU64,
    send_nanos: AtomicU64,
    last_success: parking_lot::Mutex<Instant>,
}

impl Shared {
    pub fn new(
        name: String,
        cfg: RemoteWriteConfig,
        client: Client,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Shared {
            name,
            cfg,
            client,
            telemetry,
            v1_only: AtomicBool::new(false),
            hard_stop: CancellationToken::new(),
            held: AtomicI64::new(0),
            samples_out: AtomicU64::new(0),
            send_nanos: AtomicU64::new(0),
            last_success: parking_lot::Mutex::new(Instant::now()),
        }
    }

    fn hold(&self, samples: i64) {
        let now = self.held.fetch_add(samples, Ordering::Relaxed) + samples;
        self.telemetry
            .exporter_shard_samples
            .get_or_create(&ExporterOnlyLabels {
                exporter: self.name.clone(),
            })
            .set(now);
    }
}

pub fn samples_of(s: &Series) -> u64 {
    (s.samples.len() + s.histograms.len()) as u64
}

/// The running shards; only the dispatcher (the exporter's `send`) and shutdown touch it.
pub struct ShardSet {
    senders: Vec<mpsc::Sender<Item>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    samples_in: u64,
    last_update: Instant,
}

impl ShardSet {
    pub fn start(shared: Arc<Shared>, n: usize) -> Self {
        let per_shard = shared.cfg.queue_config.capacity.max(1);
        let (senders, workers) = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel(per_shard);
                (tx, tokio::spawn(run_shard(shared.clone(), rx)))
            })
            .unzip();
        shared
            .telemetry
            .exporter_shards
            .get_or_create(&ExporterOnlyLabels {
                exporter: shared.name.clone(),
            })
            .set(n as i64);
        ShardSet {
            senders,
            workers,
            shared,
            samples_in: 0,
            last_update: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Hands a series to its shard, waiting while that shard is full (backpressure). Returns false
    /// if the hard stop came first (the series is then counted as dropped).
    pub async fn enqueue(&mut self, tenant: &Arc<str>, series: Series) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tenant.hash(&mut h);
        series.labels.hash(&mut h);
        let idx = (h.finish() % self.senders.len() as u64) as usize;
        let samples = samples_of(&series);
        self.shared.hold(samples as i64);
        self.samples_in += samples;
        let item = Item {
            tenant: tenant.clone(),
            series,
        };
        tokio::select! {
            r = self.senders[idx].send(item) => r.is_ok(),
            _ = self.shared.hard_stop.cancelled() => {
                self.shared.hold(-(samples as i64));
                self.shared.telemetry.exporter_dropped(&self.shared.name, tenant, "shutdown", samples);
                false
            }
        }
    }

    /// Closes the shards and waits until they have sent what they hold (or the hard stop).
    pub async fn stop(self) {
        drop(self.senders);
        futures::future::join_all(self.workers).await;
    }

    /// Every `shard_update_interval`, resizes to what the input rate and the measured send cost
    /// need (Prometheus' formula: time per sample x (input rate + 5% of the backlog per second)),
    /// within `min_shards..=max_shards`, ignoring changes under 30%, and never while sends fail.
    pub async fn maybe_reshard(self, interval: Duration) -> ShardSet {
        let elapsed = self.last_update.elapsed();
        if elapsed < interval {
            return self;
        }
        let shared = self.shared.clone();
        let out = shared.samples_out.swap(0, Ordering::Relaxed);
        let nanos = shared.send_nanos.swap(0, Ordering::Relaxed);
        let in_rate = self.samples_in as f64 / elapsed.as_secs_f64();
        let backlog = shared.held.load(Ordering::Relaxed).max(0) as f64;
        let current = self.len();
        let mut set = self;
        set.samples_in = 0;
        set.last_update = Instant::now();
        tracing::debug!(exporter = %shared.name, out, nanos, in_rate, backlog, current, "shard update");
        if out == 0 || shared.last_success.lock().elapsed() > interval {
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
        tracing::info!(exporter = %shared.name, from = current, to = desired, in_rate, backlog, "resharding");
        set.stop().await;
        ShardSet::start(shared, desired)
    }
}

/// A shard: gathers series into requests of at most `max_samples_per_send` samples (and
/// `max_bytes_per_send`), one tenant per request, sent when full or after `batch_send_deadline`.
async fn run_shard(shared: Arc<Shared>, mut rx: mpsc::Receiver<Item>) {
    let q = &shared.cfg.queue_config;
    let mut pending: Vec<Series> = Vec::new();
    let mut tenant: Option<Arc<str>> = None;
    let (mut samples, mut bytes) = (0usize, 0usize);
    let mut encoder = Encoder::default();
    let mut deadline = tokio::time::Instant::now() + q.batch_send_deadline.get();
    loop {
        let item = if pending.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                i = rx.recv() => i,
                _ = tokio::time::sleep_until(deadline) => {
                    flush(&shared, &mut encoder, tenant.as_ref(), &mut pending).await;
                    (samples, bytes) = (0, 0);
                    continue;
                }
            }
        };
        let Some(item) = item else { break };
        if tenant.as_ref().is_some_and(|t| *t != item.tenant) && !pending.is_empty() {
            flush(&shared, &mut encoder, tenant.as_ref(), &mut pending).await;
            (samples, bytes) = (0, 0);
        }
        if pending.is_empty() {
            deadline = tokio::time::Instant::now() + q.batch_send_deadline.get();
        }
        tenant = Some(item.tenant);
        samples += samples_of(&item.series) as usize;
        bytes += estimated_bytes(&item.series);
        pending.push(item.series);
        if samples >= q.max_samples_per_send || bytes >= q.max_bytes_per_send.get() as usize {
            flush(&shared, &mut encoder, tenant.as_ref(), &mut pending).await;
            (samples, bytes) = (0, 0);
        }
    }
    if !pending.is_empty() {
        flush(&shared, &mut encoder, tenant.as_ref(), &mut pending).await;
    }
}

/// Sends one request, retrying as the protocol allows, until it is delivered, dropped, or the
/// hard stop comes.
async fn flush(
    shared: &Shared,
    encoder: &mut Encoder,
    tenant: Option<&Arc<str>>,
    pending: &mut Vec<Series>,
) {
    let series = std::mem::take(pending);
    let samples: u64 = series.iter().map(samples_of).sum();
    let tenant = tenant.map_or(shared.cfg.default_tenant.as_str(), |t| t);
    let labels = ExporterLabels {
        exporter: shared.name.clone(),
        tenant: tenant.to_string(),
    };
    let q = &shared.cfg.queue_config;
    let mut backoff = Backoff::new(q.min_backoff.get(), q.max_backoff.get());
    let result = loop {
        let protocol = if shared.v1_only.load(Ordering::Relaxed) {
            Protocol::V1
        } else {
            shared.cfg.protocol
        };
        let body = encoder
            .encode(&series, protocol, shared.cfg.send_metadata)
            .to_vec();
        let started = Instant::now();
        let outcome = tokio::select! {
            o = shared.client.send(tenant, protocol, body, samples) => o,
            _ = shared.hard_stop.cancelled() => break "shutdown",
        };
        match outcome {
            Outcome::Delivered => {
                shared.samples_out.fetch_add(samples, Ordering::Relaxed);
                shared
                    .send_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                *shared.last_success.lock() = Instant::now();
                shared
                    .telemetry
                    .exporter_sent
                    .get_or_create(&labels)
                    .inc_by(samples);
                break "";
            }
            Outcome::FallBackToV1(why) => {
                tracing::warn!(exporter = %shared.name, reason = %why, "the endpoint does not take remote_write 2.0; sending 1.0 from now on");
                shared.v1_only.store(true, Ordering::Relaxed);
            }
            Outcome::Permanent(msg) => {
                tracing::error!(exporter = %shared.name, tenant, samples, error = %msg, "remote_write request refused; dropping it");
                shared
                    .telemetry
                    .exporter_failed
                    .get_or_create(&labels)
                    .inc_by(samples);
                break "permanent_error";
            }
            Outcome::Retry {
                message,
                retry_after,
            } => {
                shared
                    .telemetry
                    .exporter_failed
                    .get_or_create(&labels)
                    .inc_by(samples);
                shared
                    .telemetry
                    .exporter_retries
                    .get_or_create(&ExporterOnlyLabels {
                        exporter: shared.name.clone(),
                    })
                    .inc();
                // As Prometheus: sleep for Retry-After when given, else the current backoff.
                let wait = retry_after
                    .filter(|d| !d.is_zero())
                    .unwrap_or_else(|| backoff.next_wait());
                tracing::warn!(exporter = %shared.name, tenant, samples, error = %message, retry_in = ?wait, "remote_write request failed; will retry");
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
            .exporter_dropped(&shared.name, tenant, result, samples);
    }
    shared.hold(-(samples as i64));
}
