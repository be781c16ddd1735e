//! Exporter `prometheus`: serves `/metrics` for a Prometheus server to scrape, like the
//! Collector's `prometheus` exporter.
//!
//! Each batch is translated to Prometheus series (`sluice_core::prometheus::translate`, the same
//! rules as `prometheus_remote_write`) and folded into an in-memory state that keeps, per series,
//! the latest sample by timestamp (older ones are ignored), its metadata, its latest exemplar and
//! when it was last updated. A StaleNaN sample (an OTLP point flagged "no recorded value")
//! removes its series; series not updated within `metric_expiration` are no longer exposed.
//!
//! A scrape gets OpenMetrics 1.0 when its `Accept` header prefers `application/openmetrics-text`
//! (as Prometheus' does) and `enable_open_metrics` is on, and the text format 0.0.4 otherwise;
//! gzip-compressed when the scraper accepts it. See `exposition` for the details of both formats.
//!
//! Counting: the sending engine counts the batch's points as sent, except points that cannot be
//! exposed, reported as rejected (dropped with reason `rejected`): those the translation drops
//! (delta temporality with `delta_temporality: drop`, invalid names, ...) and points of
//! exponential histograms, whose native histograms the text formats cannot carry.

mod config;
mod exposition;
mod store;

pub use config::PrometheusExporterConfig;
pub use exposition::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, negotiate};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_core::batch::Batch;
use sluice_core::component::{
    BoxError, Delivered, Exporter, ExporterConfig, ExporterContext, SendError,
};
use sluice_core::prometheus::{Series, TranslateOptions, TranslationState};
use sluice_core::sending::SendingSettings;
use sluice_core::telemetry::Telemetry;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;
use store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

impl ExporterConfig for PrometheusExporterConfig {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        let exporter = PrometheusExporter::new(ctx.id.to_string(), self, ctx.telemetry);
        Ok(Arc::new(exporter))
    }

    fn sending(&self) -> SendingSettings {
        PrometheusExporterConfig::sending(self)
    }
}

/// The state a scrape reads and `send` updates.
pub(crate) struct Exposed {
    store: Mutex<Store>,
    open_metrics: bool,
    /// The size of the last body, to allocate the next one at once.
    last_len: AtomicUsize,
}

impl Exposed {
    fn new(cfg: &PrometheusExporterConfig) -> Exposed {
        Exposed {
            store: Mutex::new(Store::new(
                &cfg.const_labels,
                cfg.metric_expiration.get(),
                Instant::now(),
            )),
            open_metrics: cfg.enable_open_metrics,
            last_len: AtomicUsize::new(0),
        }
    }

    /// The exposition body in `format`, as of `now` (expired series are removed first).
    pub(crate) fn render(&self, format: Format, now: Instant) -> String {
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 1024);
        {
            let mut store = self.store.lock();
            store.sweep(now);
            exposition::encode(&store, format, &mut out);
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}

pub(crate) struct PrometheusExporter {
    name: String,
    endpoint: String,
    opts: TranslateOptions,
    /// Delta sums and remembered label sets, from one batch to the next.
    translation: Mutex<TranslationState>,
    exposed: Arc<Exposed>,
    stop: CancellationToken,
    server: Mutex<Option<JoinHandle<()>>>,
    local_addr: Mutex<Option<SocketAddr>>,
    logged_native: AtomicBool,
    /// Where the label cache's counts go.
    telemetry: Arc<Telemetry>,
}

impl PrometheusExporter {
    pub(crate) fn new(
        name: String,
        cfg: &PrometheusExporterConfig,
        telemetry: Arc<Telemetry>,
    ) -> PrometheusExporter {
        PrometheusExporter {
            name,
            endpoint: cfg.endpoint.to_string(),
            opts: cfg.translate_options(),
            translation: Mutex::new(TranslationState::new(cfg.label_cache_size)),
            exposed: Arc::new(Exposed::new(cfg)),
            stop: CancellationToken::new(),
            server: Mutex::new(None),
            local_addr: Mutex::new(None),
            logged_native: AtomicBool::new(false),
            telemetry,
        }
    }

    /// The address the endpoint is bound to, once started.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.lock()
    }

    /// Folds translated series into the exposed state; returns the points that cannot be exposed
    /// (native histogram samples).
    pub(crate) fn apply(&self, series: Vec<Series>, now: Instant) -> u64 {
        let mut native = 0u64;
        let mut store = self.exposed.store.lock();
        for s in series {
            native += store.update(s, now).native_histograms as u64;
        }
        store.maybe_sweep(now);
        native
    }

    #[cfg(test)]
    pub(crate) fn render(&self, format: Format) -> String {
        self.exposed.render(format, Instant::now())
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Exporter for PrometheusExporter {
    /// Binds the endpoint and serves `/metrics` until `shutdown`.
    fn start(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            if self.server.lock().is_some() {
                return Ok(());
            }
            let listener = tokio::net::TcpListener::bind(&self.endpoint)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", self.endpoint))?;
            let local = listener.local_addr()?;
            let app = Router::new()
                .route("/metrics", get(metrics))
                .with_state(self.exposed.clone());
            let stop = self.stop.clone();
            let name = self.name.clone();
            let task = tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                {
                    tracing::error!(exporter = %name, error = %e, "prometheus exporter endpoint failed");
                }
            });
            tracing::info!(exporter = %self.name, endpoint = %local, "prometheus exporter listening");
            *self.local_addr.lock() = Some(local);
            *self.server.lock() = Some(task);
            Ok(())
        })
    }

    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let translation =
                self.translation
                    .lock()
                    .translate(batch, &self.opts, &self.telemetry, &self.name);
            let native = self.apply(translation.series, Instant::now());
            let mut reasons: Vec<String> = Vec::new();
            let mut rejected = 0u64;
            for (reason, points) in &translation.dropped {
                tracing::debug!(exporter = %self.name, reason, points, "points not translatable to Prometheus");
                reasons.push(format!("{points} {reason}"));
                rejected += points;
            }
            if native > 0 {
                if !self.logged_native.swap(true, Ordering::Relaxed) {
                    tracing::debug!(
                        exporter = %self.name,
                        "exponential histograms are not exposed: their native histograms have no text format (logged once)"
                    );
                }
                reasons.push(format!("{native} exponential_histogram"));
                rejected += native;
            }
            Ok(Delivered {
                rejected_points: rejected,
                message: if reasons.is_empty() {
                    String::new()
                } else {
                    format!(
                        "not exposable in the Prometheus text formats: {}",
                        reasons.join(", ")
                    )
                },
                handed_off: false,
                completion: None,
            })
        })
    }

    /// Stops serving: in-flight scrapes are answered until `deadline`, then cut.
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let task = self.server.lock().take();
            if let Some(mut task) = task
                && tokio::time::timeout_at(deadline, &mut task).await.is_err()
            {
                task.abort();
            }
        })
    }
}

/// `GET /metrics`. Encoding (and compressing) a large state takes a while: it runs off the
/// async workers.
async fn metrics(State(exposed): State<Arc<Exposed>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = negotiate(accept, exposed.open_metrics);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let encoded = tokio::task::spawn_blocking(move || {
        let body = exposed.render(format, Instant::now());
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            if enc.write_all(body.as_bytes()).is_ok()
                && let Ok(compressed) = enc.finish()
            {
                return (compressed, true);
            }
        }
        (body.into_bytes(), false)
    })
    .await;
    match encoded {
        Ok((body, true)) => (
            [
                content_type,
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            body,
        )
            .into_response(),
        Ok((body, false)) => ([content_type], body).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `*` with a non-zero `q`).
fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f64>().unwrap_or(0.0));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
    })
}

#[cfg(test)]
mod tests;
