//! Receiver `prometheus`: scrapes Prometheus `/metrics` endpoints (text format 0.0.4 or
//! OpenMetrics 1.0, negotiated) on a Prometheus `scrape_configs` subset and hands what it reads to
//! its pipelines as OTLP: one resource per (`job`, `instance`), counters as monotonic cumulative
//! Sums, histograms and summaries as such, everything else as gauges (see `build.rs`), plus `up`
//! and the `scrape_*` series of every target, and staleness markers (points flagged "no recorded
//! value", StaleNaN) for series that disappear or targets that fail.
//!
//! Each target is scraped by its own task, every `scrape_interval`, offset within the interval by
//! a hash of the job and URL so that targets spread out; one target's scrapes never overlap.
//! A pull receiver has no client to push back to: a scrape the pipeline refuses is counted
//! (`sluice_receiver_refused_points_total`) and dropped.

mod build;
mod config;
pub mod parser;
mod relabel;
mod scrape;

pub use config::{
    BasicAuth, FileSdConfig, PrometheusConfig, PrometheusReceiverConfig, ScrapeConfig,
    StaticConfig, TlsConfig,
};
pub use relabel::{Action, RelabelConfig, RelabelRegex};

use futures::future::BoxFuture;
use sluice_core::component::{BoxError, ReceiverConfig, ReceiverContext};
use tokio::task::JoinHandle;

impl ReceiverConfig for PrometheusReceiverConfig {
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>> {
        let cfg = self.clone();
        Box::pin(async move { scrape::start(&cfg, ctx) })
    }
}

#[cfg(test)]
mod tests;
