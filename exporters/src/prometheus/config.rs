use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::{Duration, Endpoint};
use sluice_core::config::{DeError, LoadContext, Node};
use sluice_core::prometheus::names::is_valid_label_name;
use sluice_core::prometheus::{DeltaPolicy, LabelCache, TranslateOptions};
use sluice_core::sending::{QueueSettings, SendingSettings};
use std::collections::BTreeMap;

/// `exporters.prometheus`: serves `/metrics` for a Prometheus server (or any OpenMetrics scraper)
/// to scrape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// Listening address of the exposition endpoint (default `127.0.0.1:9464`).
    #[serde(default = "default_endpoint")]
    pub endpoint: Endpoint,
    /// A series that has not been updated for this long is no longer exposed (default 5m).
    #[serde(default = "default_metric_expiration")]
    pub metric_expiration: Duration,
    /// Labels added to every series; a series' own label of the same name wins (default none).
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
    /// Answer `Accept: application/openmetrics-text` with OpenMetrics 1.0 (default true); when
    /// false, every scrape gets the text format 0.0.4.
    #[serde(default = "default_true")]
    pub enable_open_metrics: bool,
    /// Add unit and type suffixes to metric names (default true).
    #[serde(default = "default_true")]
    pub add_metric_suffixes: bool,
    /// Resource attributes copied onto every series as labels (default none; the others go to
    /// `target_info`).
    #[serde(default)]
    pub resource_to_labels: Vec<String>,
    /// Expose `target_info` per resource (default true).
    #[serde(default = "default_true")]
    pub target_info: bool,
    /// Add `otel_scope_name` / `otel_scope_version` labels (default true).
    #[serde(default = "default_true")]
    pub scope_labels: bool,
    /// `drop` (default, counted) or `to_cumulative`.
    #[serde(default)]
    pub delta_temporality: DeltaPolicy,
    /// Translated label sets remembered between batches, per generation (default 262144; two
    /// generations are kept, so up to twice this many; 0 remembers none). See
    /// `sluice_core::prometheus::LabelCache`.
    #[serde(default = "LabelCache::default_capacity")]
    pub label_cache_size: usize,
    /// The exporter's input queue (points), as for every exporter; `num_consumers` is ignored
    /// (one consumer updates the exposed state).
    #[serde(default)]
    pub sending_queue: QueueSettings,
}

impl Default for PrometheusExporterConfig {
    fn default() -> Self {
        PrometheusExporterConfig {
            endpoint: default_endpoint(),
            metric_expiration: default_metric_expiration(),
            const_labels: BTreeMap::new(),
            enable_open_metrics: true,
            add_metric_suffixes: true,
            resource_to_labels: Vec::new(),
            target_info: true,
            scope_labels: true,
            delta_temporality: DeltaPolicy::default(),
            label_cache_size: LabelCache::default_capacity(),
            sending_queue: QueueSettings::default(),
        }
    }
}

fn default_endpoint() -> Endpoint {
    Endpoint("127.0.0.1:9464".into())
}
fn default_metric_expiration() -> Duration {
    Duration::from_secs(300)
}
fn default_true() -> bool {
    true
}

/// Label names a constant label may not take: `__name__` and the other reserved `__` names, and
/// the ones histograms and summaries use for their own series.
const RESERVED_LABELS: &[&str] = &["le", "quantile"];

impl PrometheusExporterConfig {
    pub fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_labels: self.resource_to_labels.clone(),
            target_info: self.target_info,
            scope_labels: self.scope_labels,
            delta: self.delta_temporality,
        }
    }

    pub fn sending(&self) -> SendingSettings {
        SendingSettings {
            queue: QueueSettings {
                num_consumers: 1,
                ..self.sending_queue.clone()
            },
            ..Default::default()
        }
    }
}

impl Validate for PrometheusExporterConfig {
    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        let at = |key: &str| node.field_pos(key);
        if self.metric_expiration.get().is_zero() {
            errs.push(DeError::new(
                at("metric_expiration"),
                "metric_expiration must be above 0",
            ));
        }
        for (name, value) in &self.const_labels {
            if !is_valid_label_name(name) {
                errs.push(DeError::new(
                    at("const_labels"),
                    format!("{name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                ));
            } else if name.starts_with("__") || RESERVED_LABELS.contains(&name.as_str()) {
                errs.push(DeError::new(
                    at("const_labels"),
                    format!("{name:?} is reserved and cannot be a constant label"),
                ));
            }
            if value.is_empty() {
                errs.push(DeError::new(
                    at("const_labels"),
                    format!("the value of constant label {name:?} is empty"),
                ));
            }
        }
        errs
    }
}
