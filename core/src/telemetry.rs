//! Sluice's own metrics (Prometheus/OpenMetrics text on `service.telemetry.metrics.address`), with
//! `/healthz` and `/readyz`. The names are fixed per component kind: every receiver counts accepted
//! and refused points, every exporter sent, failed, dropped and retried, and its queue.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverReasonLabels {
    pub receiver: String,
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorLabels {
    pub processor: String,
    pub pipeline: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorOnlyLabels {
    pub processor: String,
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub processor: String,
    pub pipeline: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorTenantLabels {
    pub processor: String,
    pub pipeline: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorTenantReasonLabels {
    pub processor: String,
    pub pipeline: String,
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelMissingLabels {
    pub processor: String,
    pub pipeline: String,
    pub label: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterLabels {
    pub exporter: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterReasonLabels {
    pub exporter: String,
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterOnlyLabels {
    pub exporter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantsFileLabels {
    pub file: String,
    /// `success` or `failure`.
    pub result: String,
}

pub struct Telemetry {
    registry: Mutex<Registry>,
    ready: AtomicBool,
    /// Points taken by a receiver (acknowledged to the client).
    pub receiver_accepted: Family<ReceiverLabels, Counter>,
    /// Points a receiver refused, by reason (queue_full, invalid, too_large, ...).
    pub receiver_refused: Family<ReceiverReasonLabels, Counter>,
    /// Requests a receiver refused before it could read their points (malformed, too large, ...).
    pub receiver_refused_requests: Family<ReceiverReasonLabels, Counter>,
    /// Processes a pull receiver (`runtime`) was to report but could not read, by reason (gone,
    /// unreadable, pidfile_unreadable); counted once per collection that skips them.
    pub receiver_skipped_processes: Family<ReceiverReasonLabels, Counter>,
    /// Points a processor dropped, by reason.
    pub processor_dropped: Family<ProcessorLabels, Counter>,
    /// Batches a batch processor sent, by trigger (size, timeout, shutdown).
    pub processor_batches: Family<ProcessorLabels, Counter>,
    /// Points whose metric name or label keys a normalize processor rewrote, by rule (a point
    /// counts once under each rule that changed it).
    pub normalize_rewrites: Family<ProcessorLabels, Counter>,
    /// Name and label-key lookups a normalize processor answered from its cache.
    pub normalize_cache_hits: Family<ProcessorOnlyLabels, Counter>,
    /// Name and label-key lookups a normalize processor had to compute.
    pub normalize_cache_misses: Family<ProcessorOnlyLabels, Counter>,
    /// Entries a normalize processor's caches let go because they were full.
    pub normalize_cache_evictions: Family<ProcessorOnlyLabels, Counter>,
    /// Entries in a normalize processor's caches.
    pub normalize_cache_entries: Family<ProcessorOnlyLabels, Gauge>,
    pub exporter_sent: Family<ExporterLabels, Counter>,
    /// Points in send attempts that failed (each failed attempt counts).
    pub exporter_failed: Family<ExporterLabels, Counter>,
    /// Points given up on, by reason (permanent_error, rejected, max_age, queue_full, shutdown).
    pub exporter_dropped: Family<ExporterReasonLabels, Counter>,
    /// Send attempts that were retried.
    pub exporter_retries: Family<ExporterOnlyLabels, Counter>,
    /// Batches the exporter's own sending stage had no room for yet (not failures): they wait
    /// in their tenant's queue and are offered again shortly.
    pub exporter_busy: Family<ExporterLabels, Counter>,
    pub exporter_queue_points: Family<ExporterLabels, Gauge>,
    pub exporter_queue_bytes: Family<ExporterLabels, Gauge>,
    pub exporter_queue_capacity: Family<ExporterOnlyLabels, Gauge>,
    /// Bytes of a disk queue's segment files.
    pub exporter_disk_bytes: Family<ExporterOnlyLabels, Gauge>,
    /// Bytes of a disk queue's files found torn or corrupt at start (skipped, data lost).
    pub exporter_disk_corrupt: Family<ExporterOnlyLabels, Counter>,
    /// Shards of a sharded exporter (remote_write).
    pub exporter_shards: Family<ExporterOnlyLabels, Gauge>,
    /// Samples held by a sharded exporter's shards (queued to them or being sent).
    pub exporter_shard_samples: Family<ExporterOnlyLabels, Gauge>,
    /// Points whose series' labels a Prometheus exporter took from its label cache.
    pub exporter_label_cache_hits: Family<ExporterOnlyLabels, Counter>,
    /// Points whose series' labels a Prometheus exporter had to build.
    pub exporter_label_cache_misses: Family<ExporterOnlyLabels, Counter>,
    /// Label sets in a Prometheus exporter's label cache.
    pub exporter_label_cache_sets: Family<ExporterOnlyLabels, Gauge>,
    /// Points a labels processor wrote at least one label on.
    pub labels_points: Family<ProcessorOnlyLabels, Counter>,
    /// Points left without a label (no source gave a value, no default), by label and reason.
    pub labels_missing_points: Family<LabelMissingLabels, Counter>,
    /// Reloads of a tenants file after it changed, by result (success, failure: the previous
    /// version is kept).
    pub tenants_file_reloads: Family<TenantsFileLabels, Counter>,
    /// Points a route processor passed on, by route (its `name`, else its index; `default`).
    pub route_points: Family<RouteLabels, Counter>,
    /// Points a limits processor refused, by tenant and reason (limited_rate, limited_series).
    pub limits_refused: Family<ProcessorTenantReasonLabels, Counter>,
    /// Series a limits processor saw in the last 10 minutes, by tenant.
    pub limits_active_series: Family<ProcessorTenantLabels, Gauge>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let t = Telemetry {
            registry: Mutex::new(Registry::default()),
            ready: AtomicBool::new(false),
            receiver_accepted: Family::default(),
            receiver_refused: Family::default(),
            receiver_refused_requests: Family::default(),
            receiver_skipped_processes: Family::default(),
            processor_dropped: Family::default(),
            processor_batches: Family::default(),
            normalize_rewrites: Family::default(),
            normalize_cache_hits: Family::default(),
            normalize_cache_misses: Family::default(),
            normalize_cache_evictions: Family::default(),
            normalize_cache_entries: Family::default(),
            exporter_sent: Family::default(),
            exporter_failed: Family::default(),
            exporter_dropped: Family::default(),
            exporter_retries: Family::default(),
            exporter_busy: Family::default(),
            exporter_queue_points: Family::default(),
            exporter_queue_bytes: Family::default(),
            exporter_queue_capacity: Family::default(),
            exporter_disk_bytes: Family::default(),
            exporter_disk_corrupt: Family::default(),
            exporter_shards: Family::default(),
            exporter_shard_samples: Family::default(),
            exporter_label_cache_hits: Family::default(),
            exporter_label_cache_misses: Family::default(),
            exporter_label_cache_sets: Family::default(),
            labels_points: Family::default(),
            labels_missing_points: Family::default(),
            tenants_file_reloads: Family::default(),
            route_points: Family::default(),
            limits_refused: Family::default(),
            limits_active_series: Family::default(),
        };
        r.register(
            "sluice_receiver_accepted_points",
            "Points accepted by a receiver",
            t.receiver_accepted.clone(),
        );
        r.register(
            "sluice_receiver_refused_points",
            "Points refused by a receiver, by reason",
            t.receiver_refused.clone(),
        );
        r.register(
            "sluice_receiver_refused_requests",
            "Requests refused before their points could be read, by reason",
            t.receiver_refused_requests.clone(),
        );
        r.register(
            "sluice_receiver_skipped_processes",
            "Processes a runtime receiver could not read in a collection, by reason",
            t.receiver_skipped_processes.clone(),
        );
        r.register(
            "sluice_processor_dropped_points",
            "Points dropped by a processor, by reason",
            t.processor_dropped.clone(),
        );
        r.register(
            "sluice_processor_batch_sent_batches",
            "Batches sent by a batch processor, by trigger",
            t.processor_batches.clone(),
        );
        r.register(
            "sluice_processor_normalize_rewrites",
            "Points whose metric name or label keys a normalize processor rewrote, by rule",
            t.normalize_rewrites.clone(),
        );
        r.register(
            "sluice_processor_normalize_cache_hits",
            "Name and label-key lookups a normalize processor answered from its cache",
            t.normalize_cache_hits.clone(),
        );
        r.register(
            "sluice_processor_normalize_cache_misses",
            "Name and label-key lookups a normalize processor had to compute",
            t.normalize_cache_misses.clone(),
        );
        r.register(
            "sluice_processor_normalize_cache_evictions",
            "Cache entries a normalize processor let go because its caches were full",
            t.normalize_cache_evictions.clone(),
        );
        r.register(
            "sluice_processor_normalize_cache_entries",
            "Entries in a normalize processor's caches",
            t.normalize_cache_entries.clone(),
        );
        r.register(
            "sluice_exporter_sent_points",
            "Points delivered by an exporter",
            t.exporter_sent.clone(),
        );
        r.register(
            "sluice_exporter_failed_points",
            "Points in failed send attempts",
            t.exporter_failed.clone(),
        );
        r.register(
            "sluice_exporter_dropped_points",
            "Points an exporter gave up on, by reason",
            t.exporter_dropped.clone(),
        );
        r.register(
            "sluice_exporter_busy_deferrals",
            "Batches offered again later because the exporter's own sending stage (remote_write shards) was full",
            t.exporter_busy.clone(),
        );
        r.register(
            "sluice_exporter_retries",
            "Send attempts retried",
            t.exporter_retries.clone(),
        );
        r.register(
            "sluice_exporter_queue_points",
            "Points held in an exporter's queue for a tenant, including batches being sent or retried",
            t.exporter_queue_points.clone(),
        );
        r.register(
            "sluice_exporter_queue_bytes",
            "Encoded bytes held in an exporter's queue for a tenant, including batches being sent or retried",
            t.exporter_queue_bytes.clone(),
        );
        r.register(
            "sluice_exporter_queue_capacity_points",
            "Capacity in points of each tenant's part of an exporter's queue",
            t.exporter_queue_capacity.clone(),
        );
        r.register(
            "sluice_exporter_disk_bytes",
            "Bytes of a disk queue's segment files, all tenants together",
            t.exporter_disk_bytes.clone(),
        );
        r.register(
            "sluice_exporter_disk_corrupt_bytes",
            "Bytes of a disk queue's files found torn or corrupt at start and skipped",
            t.exporter_disk_corrupt.clone(),
        );
        r.register(
            "sluice_exporter_shards",
            "Shards of a sharded exporter (remote_write)",
            t.exporter_shards.clone(),
        );
        r.register(
            "sluice_exporter_shard_samples",
            "Samples held by a sharded exporter's shards",
            t.exporter_shard_samples.clone(),
        );
        r.register(
            "sluice_exporter_label_cache_hits",
            "Points whose series' labels a Prometheus exporter took from its label cache",
            t.exporter_label_cache_hits.clone(),
        );
        r.register(
            "sluice_exporter_label_cache_misses",
            "Points whose series' labels a Prometheus exporter had to build",
            t.exporter_label_cache_misses.clone(),
        );
        r.register(
            "sluice_exporter_label_cache_sets",
            "Label sets in a Prometheus exporter's label cache",
            t.exporter_label_cache_sets.clone(),
        );
        r.register(
            "sluice_processor_labels_points",
            "Points a labels processor wrote at least one label on",
            t.labels_points.clone(),
        );
        r.register(
            "sluice_processor_labels_missing_points",
            "Points left without a label because no source gave a value and there is no default, by label and reason",
            t.labels_missing_points.clone(),
        );
        r.register(
            "sluice_tenants_file_reloads",
            "Reloads of a tenants file after it changed, by result (on failure the previous version is kept)",
            t.tenants_file_reloads.clone(),
        );
        r.register(
            "sluice_processor_route_points",
            "Points a route processor passed on, by route",
            t.route_points.clone(),
        );
        r.register(
            "sluice_processor_limits_refused_points",
            "Points a limits processor refused, by tenant and reason",
            t.limits_refused.clone(),
        );
        r.register(
            "sluice_processor_limits_active_series",
            "Series a limits processor saw in the last 10 minutes, by tenant",
            t.limits_active_series.clone(),
        );
        *t.registry.lock() = r;
        t
    }

    /// Registers a metric family that a module keeps for itself (e.g. the memory limiter's gauges).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.lock().register(name, help, metric);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }

    pub fn receiver_accepted(&self, receiver: &str, tenant: &str, points: u64) {
        self.receiver_accepted
            .get_or_create(&ReceiverLabels {
                receiver: receiver.into(),
                tenant: tenant.into(),
            })
            .inc_by(points);
    }

    pub fn receiver_refused(&self, receiver: &str, tenant: &str, reason: &str, points: u64) {
        self.receiver_refused
            .get_or_create(&ReceiverReasonLabels {
                receiver: receiver.into(),
                tenant: tenant.into(),
                reason: reason.into(),
            })
            .inc_by(points);
    }

    /// What a translation found in an exporter's label cache, and the cache's size after it.
    pub fn exporter_label_cache(&self, exporter: &str, hits: u64, misses: u64, sets: usize) {
        let labels = ExporterOnlyLabels {
            exporter: exporter.to_string(),
        };
        self.exporter_label_cache_hits
            .get_or_create(&labels)
            .inc_by(hits);
        self.exporter_label_cache_misses
            .get_or_create(&labels)
            .inc_by(misses);
        self.exporter_label_cache_sets
            .get_or_create(&labels)
            .set(sets as i64);
    }

    pub fn exporter_dropped(&self, exporter: &str, tenant: &str, reason: &str, points: u64) {
        self.exporter_dropped
            .get_or_create(&ExporterReasonLabels {
                exporter: exporter.into(),
                tenant: tenant.into(),
                reason: reason.into(),
            })
            .inc_by(points);
    }

    /// Reads one counter or gauge value by its exposed name and labels (for tests and `sluice`'s
    /// own checks); sums over series whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_exposition_value(&self.encode(), name, labels)
    }
}

/// Sums the samples of `name` whose label set includes every pair of `labels`.
pub fn parse_exposition_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` is cancelled.
pub async fn serve(
    telemetry: Arc<Telemetry>,
    address: &str,
    shutdown: CancellationToken,
) -> std::io::Result<(std::net::SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok((local, task))
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.encode(),
    )
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    if t.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
