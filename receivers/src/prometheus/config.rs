use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::{ByteSize, Duration};
use sluice_core::config::{DeError, LoadContext, Node};
use std::collections::{BTreeMap, HashSet};

use super::parser::is_legacy_label_name;
use super::relabel::RelabelConfig;
use std::path::PathBuf;

/// `receivers.prometheus`: scrapes Prometheus `/metrics` endpoints. `config` holds a subset of
/// Prometheus' own configuration file: `scrape_configs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReceiverConfig {
    pub config: PrometheusConfig,
}

/// The Prometheus configuration file (the subset Sluice reads).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// One Prometheus `scrape_config`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label of every series scraped; unique among the scrape configs.
    pub job_name: String,
    /// How often each target is scraped (default 1m, as in Prometheus).
    #[serde(default)]
    pub scrape_interval: Option<Duration>,
    /// How long a scrape may take (default 10s, or the interval when that is shorter); at most
    /// the interval.
    #[serde(default)]
    pub scrape_timeout: Option<Duration>,
    /// The HTTP path scraped (default `/metrics`).
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` (the default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// URL query parameters, each with one or more values.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// When false (the default), a scraped label that collides with a target label (`job`,
    /// `instance`, a static label) is renamed `exported_<name>`; when true the scraped one wins.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target writes (default true); when false, every sample gets the
    /// scrape's time.
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// The targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// A scrape with more samples fails (`up` 0); 0 means no limit.
    #[serde(default)]
    pub sample_limit: u64,
    /// A scrape with a series of more labels (the metric name included) fails; 0 means no limit.
    #[serde(default)]
    pub label_limit: u64,
    /// A scrape with a longer label name fails; 0 means no limit.
    #[serde(default)]
    pub label_name_length_limit: u64,
    /// A scrape with a longer label value fails; 0 means no limit.
    #[serde(default)]
    pub label_value_length_limit: u64,
    /// A larger response body fails the scrape; 0 means no limit (the default: 0).
    #[serde(default)]
    pub body_size_limit: ByteSize,
    /// Rules applied to each target's labels before it is scraped (`__address__`, `__scheme__`,
    /// `__metrics_path__`, `__param_<name>`, `job`, the static labels).
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped sample's labels (`__name__` included).
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding the bearer token, read again at every scrape (relative to the config
    /// file's folder).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Targets read from JSON or YAML files, read again when they change.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// TLS settings for `https` targets.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
}

/// `tls_config`: how `https` targets are verified, and the client certificate, if any.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) to verify targets with, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (for tests only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `basic_auth`: a username and a password (or a file holding it, read at every scrape).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// One entry of `file_sd_configs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files (`.json`, `.yml`, `.yaml`) holding `[{ targets: [...], labels: {...} }]`; the last
    /// path element may hold `*` wildcards.
    pub files: Vec<PathBuf>,
    /// How often the files are read again even when they look unchanged (default 5m); changes
    /// are noticed within a second or the interval, whichever is shorter.
    #[serde(default)]
    pub refresh_interval: Option<Duration>,
}

/// One entry of `static_configs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every series of these targets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_true() -> bool {
    true
}

/// Prometheus' default scrape interval.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Prometheus' default scrape timeout.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl ScrapeConfig {
    pub fn interval(&self) -> std::time::Duration {
        self.scrape_interval.map_or(DEFAULT_INTERVAL, |d| d.get())
    }

    pub fn timeout(&self) -> std::time::Duration {
        match self.scrape_timeout {
            Some(d) => d.get(),
            None => DEFAULT_TIMEOUT.min(self.interval()),
        }
    }
}

/// What is wrong with a target address, if anything.
pub(crate) fn check_target(t: &str) -> Option<String> {
    if t.contains("://") || t.contains('/') {
        return Some(format!(
            "target {t:?} must be host:port (the scheme and path are `scheme` and `metrics_path`)"
        ));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Some(format!("target {t:?} has no port; write host:port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Some(format!("target {t:?} is not host:port"));
    }
    None
}

impl Validate for PrometheusReceiverConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        for sc in &mut self.config.scrape_configs {
            if let Some(p) = &mut sc.bearer_token_file {
                *p = ctx.base_dir.join(&*p);
            }
            if let Some(BasicAuth {
                password_file: Some(p),
                ..
            }) = &mut sc.basic_auth
            {
                *p = ctx.base_dir.join(&*p);
            }
            for f in &mut sc.file_sd_configs {
                for p in &mut f.files {
                    *p = ctx.base_dir.join(&*p);
                }
            }
            if let Some(t) = &mut sc.tls_config {
                for p in [&mut t.ca_file, &mut t.cert_file, &mut t.key_file]
                    .into_iter()
                    .flatten()
                {
                    *p = ctx.base_dir.join(&*p);
                }
            }
        }
    }

    fn validate(&self, node: &Node, _ctx: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        let mut err = |m: String| errs.push(DeError::new(node.pos, m));
        if self.config.scrape_configs.is_empty() {
            err("config.scrape_configs is empty; give at least one scrape config".into());
        }
        let mut jobs = HashSet::new();
        for sc in &self.config.scrape_configs {
            let job = &sc.job_name;
            if job.is_empty() {
                err("a scrape config has an empty job_name".into());
            } else if !jobs.insert(job.as_str()) {
                err(format!(
                    "job_name {job:?} is used by more than one scrape config"
                ));
            }
            if sc.interval() < MIN_INTERVAL {
                err(format!(
                    "job {job:?}: scrape_interval must be at least 10ms"
                ));
            }
            if sc.timeout().is_zero() {
                err(format!("job {job:?}: scrape_timeout must be above 0"));
            }
            if sc.timeout() > sc.interval() {
                err(format!(
                    "job {job:?}: scrape_timeout ({}) is longer than scrape_interval ({})",
                    humantime_fmt(sc.timeout()),
                    humantime_fmt(sc.interval())
                ));
            }
            if !sc.metrics_path.starts_with('/') {
                err(format!(
                    "job {job:?}: metrics_path {:?} must start with `/`",
                    sc.metrics_path
                ));
            }
            if sc.scheme != "http" && sc.scheme != "https" {
                err(format!(
                    "job {job:?}: scheme {:?} must be http or https",
                    sc.scheme
                ));
            }
            if let Some(t) = &sc.tls_config
                && t.cert_file.is_some() != t.key_file.is_some()
            {
                err(format!(
                    "job {job:?}: tls_config needs both cert_file and key_file, or neither"
                ));
            }
            if sc.static_configs.iter().all(|s| s.targets.is_empty())
                && sc.file_sd_configs.is_empty()
            {
                err(format!(
                    "job {job:?}: no targets (give static_configs or file_sd_configs)"
                ));
            }
            for r in sc.relabel_configs.iter().chain(&sc.metric_relabel_configs) {
                if let Some(m) = r.problem() {
                    err(format!("job {job:?}: {m}"));
                }
            }
            let bearer = sc.bearer_token.is_some() || sc.bearer_token_file.is_some();
            if sc.bearer_token.is_some() && sc.bearer_token_file.is_some() {
                err(format!(
                    "job {job:?}: give bearer_token or bearer_token_file, not both"
                ));
            }
            if let Some(b) = &sc.basic_auth {
                if bearer {
                    err(format!(
                        "job {job:?}: give basic_auth or a bearer token, not both"
                    ));
                }
                if b.password.is_some() && b.password_file.is_some() {
                    err(format!(
                        "job {job:?}: basic_auth takes password or password_file, not both"
                    ));
                }
            }
            for f in &sc.file_sd_configs {
                if f.files.is_empty() {
                    err(format!("job {job:?}: a file_sd_config has no files"));
                }
                for p in &f.files {
                    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                    if !matches!(ext, "json" | "yml" | "yaml") {
                        err(format!(
                            "job {job:?}: file_sd file {} must end in .json, .yml or .yaml",
                            p.display()
                        ));
                    }
                }
                if f.refresh_interval.is_some_and(|d| d.get() < MIN_INTERVAL) {
                    err(format!(
                        "job {job:?}: file_sd refresh_interval must be at least 10ms"
                    ));
                }
            }
            for s in &sc.static_configs {
                for t in &s.targets {
                    if let Some(m) = check_target(t) {
                        err(format!("job {job:?}: {m}"));
                    }
                }
                for k in s.labels.keys() {
                    if !is_legacy_label_name(k) || k.starts_with("__") {
                        err(format!(
                            "job {job:?}: static label name {k:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                        ));
                    }
                }
            }
        }
        errs
    }
}

fn humantime_fmt(d: std::time::Duration) -> String {
    Duration(d).to_string()
}
