//! The scrape loop: per scrape config, a task that keeps the set of targets (static ones and
//! `file_sd_configs` files, through `relabel_configs`), and per target a task that scrapes over
//! HTTP into a reused buffer.

use super::build::{Options, Target, TargetState};
use super::config::{
    BasicAuth, FileSdConfig, PrometheusReceiverConfig, ScrapeConfig, check_target,
};
use super::parser::Format;
use super::relabel::relabel;
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, ReceiverContext};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// What the scraper asks for: OpenMetrics first, the text format otherwise.
pub const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Prometheus' default `file_sd_configs` refresh interval.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// How often file_sd files are checked for changes (their modification times), at most.
const FILE_POLL: Duration = Duration::from_secs(1);

/// How a scrape authenticates.
#[derive(Clone, Debug, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Basic(BasicAuth),
    Bearer(String),
    BearerFile(PathBuf),
}

impl Auth {
    fn of(sc: &ScrapeConfig) -> Auth {
        if let Some(b) = &sc.basic_auth {
            Auth::Basic(b.clone())
        } else if let Some(t) = &sc.bearer_token {
            Auth::Bearer(t.clone())
        } else if let Some(f) = &sc.bearer_token_file {
            Auth::BearerFile(f.clone())
        } else {
            Auth::None
        }
    }

    /// Adds the credentials (files are read at every scrape, as Prometheus does).
    pub(crate) fn apply(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("reading {}: {e}", p.display()))
        };
        Ok(match self {
            Auth::None => req,
            Auth::Basic(b) => {
                let password = match (&b.password, &b.password_file) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(f)) => Some(read(f)?),
                    (None, None) => None,
                };
                req.basic_auth(&b.username, password)
            }
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::BearerFile(f) => req.bearer_auth(read(f)?),
        })
    }
}

/// One target's scrape settings.
pub(crate) struct Job {
    pub target: Target,
    pub options: Options,
    pub interval: Duration,
    pub timeout: Duration,
    /// 0: no limit.
    pub body_size_limit: u64,
    pub auth: Auth,
}

/// A target group: addresses and the labels they share.
pub(crate) type Group = (Vec<String>, BTreeMap<String, String>);

/// Starts one task per scrape config; the returned task ends when they all have (at shutdown).
pub(crate) fn start(
    cfg: &PrometheusReceiverConfig,
    ctx: ReceiverContext,
) -> Result<JoinHandle<()>, BoxError> {
    let mut clients = Vec::new();
    for sc in &cfg.config.scrape_configs {
        let client = Clients::for_config(sc).map_err(|e| format!("job {:?}: {e}", sc.job_name))?;
        clients.push(client);
    }
    let ctx = Arc::new(ctx);
    let name = ctx.id.to_string();
    let bodies = Arc::new(BodyPool::default());
    let mut tasks = JoinSet::new();
    for (sc, client) in cfg.config.scrape_configs.iter().zip(clients) {
        tasks.spawn(run_config(sc.clone(), client, ctx.clone(), bodies.clone()));
    }
    Ok(tokio::spawn(async move {
        while tasks.join_next().await.is_some() {}
        tracing::debug!(receiver = %name, "prometheus receiver stopped");
    }))
}

/// The HTTP clients of a scrape config, with its TLS settings.
#[derive(Clone)]
pub(crate) struct Clients {
    /// Keeps its connections between scrapes.
    kept: reqwest::Client,
    /// Opens a connection per scrape.
    per_scrape: reqwest::Client,
}

impl Clients {
    pub(crate) fn for_config(sc: &ScrapeConfig) -> Result<Clients, BoxError> {
        Ok(Clients {
            kept: client_for(sc, true)?,
            per_scrape: client_for(sc, false)?,
        })
    }

    /// A kept connection keeps its read buffer, grown to the size of the last body's reads (up
    /// to 400 KiB), for the whole interval: with many targets that is most of the receiver's
    /// memory. So a plain-HTTP target named by its IP address gets a connection per scrape,
    /// which costs tens of microseconds on a local network. A TLS handshake costs milliseconds,
    /// and a host name would be resolved again at every scrape: those targets keep theirs.
    fn for_target(&self, target: &super::build::Target) -> &reqwest::Client {
        let by_ip = reqwest::Url::parse(&target.url).is_ok_and(|u| {
            u.host_str().is_some_and(|h| {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                h.parse::<std::net::IpAddr>().is_ok()
            })
        });
        if target.scheme == "http" && by_ip {
            &self.per_scrape
        } else {
            &self.kept
        }
    }
}

/// An HTTP client with the scrape config's TLS settings (rustls with the ring provider).
pub(crate) fn client_for(sc: &ScrapeConfig, keep: bool) -> Result<reqwest::Client, BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("Sluice/", env!("CARGO_PKG_VERSION")));
    if !keep {
        b = b.pool_max_idle_per_host(0);
    }
    if let Some(tls) = &sc.tls_config {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        if let Some(ca) = &tls.ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)? {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        b = b.danger_accept_invalid_certs(tls.insecure_skip_verify);
    }
    Ok(b.build()?)
}

/// Keeps the targets of one scrape config running: a task per target, started and stopped as
/// `file_sd_configs` files change.
async fn run_config(
    sc: ScrapeConfig,
    clients: Clients,
    ctx: Arc<ReceiverContext>,
    bodies: Arc<BodyPool>,
) {
    let name = ctx.id.to_string();
    let statics: Vec<Group> = sc
        .static_configs
        .iter()
        .map(|s| (s.targets.clone(), s.labels.clone()))
        .collect();
    let mut files = FileSd::new(&sc.file_sd_configs);
    let mut running: HashMap<String, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let mut groups = statics.clone();
        groups.extend(files.groups(&name, &sc.job_name));
        let mut wanted: HashMap<String, Job> = HashMap::new();
        for job in jobs_for(&sc, &groups) {
            wanted.entry(job_key(&job)).or_insert(job);
        }
        running.retain(|key, (token, _)| {
            if wanted.contains_key(key) {
                return true;
            }
            token.cancel();
            false
        });
        for (key, job) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            tracing::info!(
                receiver = %name,
                job = %job.target.job,
                target = %job.target.url,
                interval = ?job.interval,
                "prometheus receiver scraping"
            );
            let token = ctx.shutdown.child_token();
            let client = clients.for_target(&job.target).clone();
            let task = tokio::spawn(run(job, client, ctx.clone(), bodies.clone(), token.clone()));
            running.insert(key, (token, task));
        }
        if sc.file_sd_configs.is_empty() {
            ctx.shutdown.cancelled().await;
            break;
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = files.changed() => {}
        }
    }
    for (_, (token, task)) in running {
        token.cancel();
        let _ = task.await;
    }
}

/// A target's identity: its URL and labels.
fn job_key(job: &Job) -> String {
    let mut key = job.target.url.clone();
    for (k, v) in &job.target.labels {
        key.push('\u{0}');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// `file_sd_configs`: reads the files, remembers the last good content of each, and tells when
/// they (may) have changed.
struct FileSd {
    configs: Vec<FileSdConfig>,
    /// The last good groups per file.
    last: HashMap<PathBuf, Vec<Group>>,
    /// Modification times at the last read.
    seen: Vec<(PathBuf, Option<SystemTime>)>,
    last_read: tokio::time::Instant,
}

impl FileSd {
    fn new(configs: &[FileSdConfig]) -> FileSd {
        FileSd {
            configs: configs.to_vec(),
            last: HashMap::new(),
            seen: Vec::new(),
            last_read: tokio::time::Instant::now(),
        }
    }

    fn refresh(&self) -> Duration {
        self.configs
            .iter()
            .map(|c| c.refresh_interval.map_or(DEFAULT_REFRESH, |d| d.get()))
            .min()
            .unwrap_or(DEFAULT_REFRESH)
    }

    /// Every file the patterns name now, with its modification time.
    fn listing(&self) -> Vec<(PathBuf, Option<SystemTime>)> {
        let mut out = Vec::new();
        for c in &self.configs {
            for pattern in &c.files {
                for path in expand(pattern) {
                    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                    out.push((path, mtime));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The groups of every file; a file that cannot be read or parsed keeps its last good
    /// content (and is logged).
    fn groups(&mut self, receiver: &str, job: &str) -> Vec<Group> {
        self.seen = self.listing();
        self.last_read = tokio::time::Instant::now();
        let mut out = Vec::new();
        let present: Vec<PathBuf> = self.seen.iter().map(|(p, _)| p.clone()).collect();
        self.last.retain(|p, _| present.contains(p));
        for path in present {
            match read_groups(&path) {
                Ok(groups) => {
                    self.last.insert(path.clone(), groups);
                }
                Err(e) => {
                    tracing::warn!(receiver = %receiver, job = %job, file = %path.display(), error = %e, "file_sd file unreadable; keeping its last targets");
                }
            }
            if let Some(g) = self.last.get(&path) {
                out.extend(g.iter().cloned());
            }
        }
        out
    }

    /// Returns when a file changed, appeared or disappeared, or the refresh interval passed.
    async fn changed(&self) {
        let poll = FILE_POLL.min(self.refresh());
        loop {
            tokio::time::sleep(poll).await;
            if self.last_read.elapsed() >= self.refresh() || self.listing() != self.seen {
                return;
            }
        }
    }
}

/// The files a path names: itself, or the matches of `*` wildcards in its last element.
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return vec![pattern.to_path_buf()];
    };
    if !name.contains('*') {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Whether `text` matches `pattern`, where `*` is any run of characters.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A file_sd file: `[{ "targets": [...], "labels": {...} }]` in JSON or YAML.
pub(crate) fn read_groups(path: &Path) -> Result<Vec<Group>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let json = path.extension().and_then(|e| e.to_str()) == Some("json");
    let groups: Vec<FileGroup> = if json {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())?
    };
    Ok(groups.into_iter().map(|g| (g.targets, g.labels)).collect())
}

/// The targets of a scrape config for these groups, after `relabel_configs`.
pub(crate) fn jobs_for(sc: &ScrapeConfig, groups: &[Group]) -> Vec<Job> {
    let options = Options {
        honor_labels: sc.honor_labels,
        honor_timestamps: sc.honor_timestamps,
        sample_limit: sc.sample_limit,
        label_limit: sc.label_limit,
        label_name_length_limit: sc.label_name_length_limit,
        label_value_length_limit: sc.label_value_length_limit,
        metric_relabel: sc.metric_relabel_configs.clone(),
    };
    let auth = Auth::of(sc);
    let mut out = Vec::new();
    for (targets, group_labels) in groups {
        for address in targets {
            let Some(target) = target_of(sc, address, group_labels) else {
                continue;
            };
            out.push(Job {
                target,
                options: options.clone(),
                interval: sc.interval(),
                timeout: sc.timeout(),
                body_size_limit: sc.body_size_limit.get(),
                auth: auth.clone(),
            });
        }
    }
    out
}

/// The static targets of a scrape config.
#[cfg(test)]
pub(crate) fn jobs(sc: &ScrapeConfig) -> Vec<Job> {
    let groups: Vec<Group> = sc
        .static_configs
        .iter()
        .map(|s| (s.targets.clone(), s.labels.clone()))
        .collect();
    jobs_for(sc, &groups)
}

/// One target, as Prometheus builds it: the `__` labels, `job` and the group's labels, then
/// `relabel_configs`; `None` when relabeling drops it or leaves no valid address.
fn target_of(
    sc: &ScrapeConfig,
    address: &str,
    group_labels: &BTreeMap<String, String>,
) -> Option<Target> {
    let mut labels: Vec<(String, String)> = vec![
        ("__address__".into(), address.into()),
        ("__scheme__".into(), sc.scheme.clone()),
        ("__metrics_path__".into(), sc.metrics_path.clone()),
        (
            "__scrape_interval__".into(),
            sluice_core::config::types::Duration(sc.interval()).to_string(),
        ),
        (
            "__scrape_timeout__".into(),
            sluice_core::config::types::Duration(sc.timeout()).to_string(),
        ),
        ("job".into(), sc.job_name.clone()),
    ];
    for (k, v) in &sc.params {
        if let Some(first) = v.first() {
            labels.push((format!("__param_{k}"), first.clone()));
        }
    }
    for (k, v) in group_labels {
        match labels.iter_mut().find(|(n, _)| n == k) {
            Some(l) => l.1 = v.clone(),
            None => labels.push((k.clone(), v.clone())),
        }
    }
    if !relabel(&mut labels, &sc.relabel_configs) {
        return None;
    }
    let get = |n: &str| {
        labels
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let address = get("__address__");
    if let Some(problem) = check_target(&address) {
        tracing::warn!(job = %sc.job_name, %problem, "target left out");
        return None;
    }
    let scheme = get("__scheme__");
    let path = get("__metrics_path__");
    let mut params = sc.params.clone();
    for (k, v) in &labels {
        if let Some(p) = k.strip_prefix("__param_") {
            params.insert(p.to_string(), vec![v.clone()]);
        }
    }
    let url = target_url(&scheme, &address, &path, &params);
    if get("instance").is_empty() {
        labels.push(("instance".into(), address.clone()));
    }
    labels.retain(|(k, _)| !k.starts_with("__"));
    Some(Target::from_labels(labels, &scheme, url))
}

pub(crate) fn target_url(
    scheme: &str,
    address: &str,
    path: &str,
    params: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut url = format!("{scheme}://{address}{path}");
    let mut first = !path.contains('?');
    for (k, values) in params {
        for v in values {
            url.push(if first { '?' } else { '&' });
            first = false;
            percent_encode(&mut url, k);
            url.push('=');
            percent_encode(&mut url, v);
        }
    }
    url
}

fn percent_encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Where in the interval a target is scraped: a hash of its job and URL.
pub(crate) fn offset(target: &Target, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.job.hash(&mut h);
    target.url.hash(&mut h);
    let nanos = interval.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Scrapes one target every interval until `stop`; when it stops because the target went away
/// (not at shutdown), its series get staleness markers.
async fn run(
    job: Job,
    client: reqwest::Client,
    ctx: Arc<ReceiverContext>,
    bodies: Arc<BodyPool>,
    stop: CancellationToken,
) {
    let name = ctx.id.to_string();
    let start = tokio::time::Instant::now() + offset(&job.target, job.interval);
    let mut ticker = tokio::time::interval_at(start, job.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut state = TargetState::default();
    let mut failing: Option<String> = None;
    let mut refusing = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let began = Instant::now();
        let time = now_ns();
        let mut body = bodies.take();
        let fetched = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = fetch(&client, &job, &mut body) => r,
        };
        let duration = began.elapsed().as_secs_f64();
        let input = match &fetched {
            Ok((format, gzipped)) => Ok((body.bytes(*gzipped), *format)),
            Err(e) => Err(e.clone()),
        };
        let report = state.scrape(input, duration, time, &job.target, &job.options);
        bodies.put(body);
        match (&report.error, &failing) {
            (Some(e), None) => {
                tracing::warn!(receiver = %name, target = %job.target.url, error = %e, "scrape failed (up 0)");
                failing = Some(e.clone());
            }
            (Some(e), Some(before)) if e != before => {
                tracing::debug!(receiver = %name, target = %job.target.url, error = %e, "scrape failed (up 0)");
                failing = Some(e.clone());
            }
            (None, Some(_)) => {
                tracing::info!(receiver = %name, target = %job.target.url, "scrape succeeded again (up 1)");
                failing = None;
            }
            _ => {}
        }
        deliver(&ctx, &name, report.resource_metrics, &mut refusing);
    }
    if !ctx.shutdown.is_cancelled() {
        tracing::info!(receiver = %name, target = %job.target.url, "target removed; its series are marked stale");
        let stale = state.stale_all(now_ns(), &job.target);
        deliver(&ctx, &name, stale, &mut refusing);
    }
}

/// The buffers of one scrape: the body as received, and decompressed when it was gzipped.
#[derive(Default)]
pub(crate) struct Body {
    raw: Vec<u8>,
    plain: Vec<u8>,
}

/// Body buffers shared by a receiver's targets. A target holds one only from its GET to the end
/// of the parse; targets' scrapes are spread over the interval, so a few buffers serve them all,
/// where one per target would keep every target's largest body in memory between scrapes.
#[derive(Default)]
pub(crate) struct BodyPool(std::sync::Mutex<Vec<Body>>);

impl BodyPool {
    /// Buffers kept for reuse at most; more scrapes at once make (and then free) their own.
    const KEPT: usize = 4;

    fn take(&self) -> Body {
        self.0
            .lock()
            .map(|mut free| free.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    fn put(&self, body: Body) {
        if let Ok(mut free) = self.0.lock()
            && free.len() < Self::KEPT
        {
            free.push(body);
        }
    }
}

impl Body {
    fn bytes(&self, gzipped: bool) -> &[u8] {
        if gzipped { &self.plain } else { &self.raw }
    }
}

/// GETs the target into `body`; the format its `Content-Type` announces, and whether the body
/// was gzipped (and so is in `body.plain`).
async fn fetch(
    client: &reqwest::Client,
    job: &Job,
    body: &mut Body,
) -> Result<(Format, bool), String> {
    body.raw.clear();
    let timeout = job.timeout;
    let url = &job.target.url;
    let limit = if job.body_size_limit > 0 {
        job.body_size_limit
    } else {
        u64::MAX
    };
    let too_large = || {
        format!(
            "the response body is larger than body_size_limit ({} bytes)",
            job.body_size_limit
        )
    };
    let work = async {
        let req = client
            .get(url)
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            );
        let mut resp = job
            .auth
            .apply(req)?
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url}: server returned HTTP status {status}"));
        }
        let header = |name: http::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase)
        };
        let format = header(http::header::CONTENT_TYPE)
            .map_or(Format::Text, |ct| Format::from_content_type(&ct));
        let gzipped = match header(http::header::CONTENT_ENCODING).as_deref() {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(format!("GET {url}: unsupported Content-Encoding {other:?}"));
            }
        };
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {}", error_chain(&e)))?
        {
            body.raw.extend_from_slice(&chunk);
            if body.raw.len() as u64 > limit {
                return Err(too_large());
            }
        }
        Ok((format, gzipped))
    };
    let (format, gzipped) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!(
                "GET {url}: no complete answer within scrape_timeout {timeout:?}"
            ));
        }
    };
    if gzipped {
        use std::io::Read;
        body.plain.clear();
        flate2::read::GzDecoder::new(body.raw.as_slice())
            .take(limit.saturating_add(1))
            .read_to_end(&mut body.plain)
            .map_err(|e| format!("GET {url}: decompressing the gzipped body: {e}"))?;
        if body.plain.len() as u64 > limit {
            return Err(too_large());
        }
    }
    Ok((format, gzipped))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// Hands a scrape's points to the pipeline and counts them.
fn deliver(
    ctx: &ReceiverContext,
    name: &str,
    resource_metrics: Vec<sluice_core::proto::otlp::metrics::v1::ResourceMetrics>,
    refusing: &mut bool,
) {
    let batch = Batch::new(Context::default(), resource_metrics);
    let points = batch.point_count() as u64;
    if points == 0 {
        return;
    }
    match ctx.next.consume(batch) {
        Ok(()) => {
            ctx.telemetry.receiver_accepted(name, "", points);
            if std::mem::take(refusing) {
                tracing::info!(receiver = %name, "the pipeline takes the prometheus receiver's points again");
            }
        }
        Err(refusal) => {
            ctx.telemetry
                .receiver_refused(name, "", refusal.reason(), points);
            if !std::mem::replace(refusing, true) {
                tracing::warn!(
                    receiver = %name,
                    reason = refusal.reason(),
                    points,
                    error = %refusal,
                    "the pipeline refused a scrape; dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod body_pool_tests {
    use super::*;

    #[test]
    fn hands_back_kept_buffers_and_keeps_only_a_few() {
        let pool = BodyPool::default();
        let mut first = pool.take();
        first.raw.extend_from_slice(&[0; 1000]);
        let at = first.raw.as_ptr();
        pool.put(first);
        let again = pool.take();
        assert_eq!(again.raw.as_ptr(), at, "the same buffer, reused");
        assert!(again.raw.capacity() >= 1000);
        // More scrapes at once than kept: each gets a buffer, the pool keeps only KEPT after.
        let many: Vec<Body> = (0..BodyPool::KEPT + 3).map(|_| pool.take()).collect();
        for b in many {
            pool.put(b);
        }
        pool.put(again);
        assert_eq!(pool.0.lock().unwrap().len(), BodyPool::KEPT);
    }
}
