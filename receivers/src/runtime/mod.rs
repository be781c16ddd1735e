//! Receiver `runtime`: every `collection_interval`, reads process and host counters from `/proc`
//! (through `procfs`) and Sluice's own tokio runtime counters, and hands them to its pipelines as
//! OTLP metrics named by the OpenTelemetry semantic conventions: one resource per process, one for
//! the host.
//!
//! A pull receiver has no client to push back to: a collection its pipeline refuses is counted
//! (`sluice_receiver_refused_points_total`) and dropped; the next collection reports the
//! cumulative counters again, so only resolution is lost. A configured process that cannot be read
//! (it exited, or another user's process cannot be read) is logged once, counted in
//! `sluice_receiver_skipped_processes_total` at every collection that skips it, and picked up again
//! as soon as it can be read; `name` and `pidfile` selectors are evaluated again at every
//! collection.

mod config;
mod host;
mod process;
mod tokio_stats;

pub use config::{NamePattern, ProcessSelector, RuntimeReceiverConfig};

use futures::future::BoxFuture;
use procfs::{FromRead, FromReadSI, KernelStats, Uptime};
use sluice_core::batch::{Batch, Context};
use sluice_core::component::{BoxError, ReceiverConfig, ReceiverContext};
use sluice_core::proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::number_data_point::Value;
use sluice_core::proto::otlp::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::ReceiverReasonLabels;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::runtime::RuntimeMetrics;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

impl ReceiverConfig for RuntimeReceiverConfig {
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>> {
        let cfg = self.clone();
        Box::pin(async move {
            let self_pid = std::process::id() as i32;
            start_with(&cfg, ctx, ProcFs::system(), self_pid)
        })
    }
}

/// Starts collecting from `proc` (the real `/proc`, or a fixture folder in tests).
fn start_with(
    cfg: &RuntimeReceiverConfig,
    ctx: ReceiverContext,
    proc: ProcFs,
    self_pid: i32,
) -> Result<JoinHandle<()>, BoxError> {
    let name = ctx.id.to_string();
    let tokio = tokio::runtime::Handle::current().metrics();
    let collector = Collector::new(cfg, proc, self_pid, Some(tokio))?;
    let processes: Vec<String> = cfg.processes.iter().map(|p| p.value.to_string()).collect();
    tracing::info!(
        receiver = %name,
        interval = %cfg.collection_interval,
        processes = %processes.join(", "),
        host = cfg.host,
        "runtime receiver collecting"
    );
    Ok(tokio::spawn(run(
        collector,
        cfg.collection_interval.get(),
        ctx,
    )))
}

/// Collects every `interval` (the first at once) until shutdown. The reading happens on the
/// blocking pool: a `name` selector walks all of `/proc`.
async fn run(collector: Collector, interval: Duration, ctx: ReceiverContext) {
    let name = ctx.id.to_string();
    let collector = Arc::new(Mutex::new(collector));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refusing = false;
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let c = collector.clone();
        let job = tokio::task::spawn_blocking(move || {
            c.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .collect(SystemTime::now())
        });
        let collection = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            r = job => r,
        };
        match collection {
            Ok(c) => deliver(&ctx, &name, c, &mut refusing),
            Err(e) => tracing::error!(receiver = %name, error = %e, "runtime collection failed"),
        }
    }
    tracing::debug!(receiver = %name, "runtime receiver stopped");
}

/// Logs what is new, counts skipped processes, and hands the points to the pipeline.
fn deliver(ctx: &ReceiverContext, name: &str, c: Collection, refusing: &mut bool) {
    for n in &c.notices {
        n.log(name);
    }
    for (reason, n) in &c.skipped {
        ctx.telemetry
            .receiver_skipped_processes
            .get_or_create(&ReceiverReasonLabels {
                receiver: name.to_string(),
                tenant: String::new(),
                reason: reason.to_string(),
            })
            .inc_by(*n);
    }
    let batch = Batch::new(Context::default(), c.resource_metrics);
    let points = batch.point_count() as u64;
    if points == 0 {
        return;
    }
    match ctx.next.consume(batch) {
        Ok(()) => {
            ctx.telemetry.receiver_accepted(name, "", points);
            if std::mem::take(refusing) {
                tracing::info!(receiver = %name, "the pipeline takes the runtime receiver's points again");
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
                    "the pipeline refused a collection; dropped (the next one reports the counters again)"
                );
            }
        }
    }
}

/// A view of `/proc`.
#[derive(Clone, Debug)]
pub(crate) struct ProcFs {
    pub root: PathBuf,
    pub ticks_per_second: u64,
    pub page_size: u64,
}

impl ProcFs {
    pub fn system() -> ProcFs {
        ProcFs {
            root: PathBuf::from("/proc"),
            ticks_per_second: procfs::ticks_per_second(),
            page_size: procfs::page_size(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A whole file. A missing file, or a process that exited while it was read, is `Gone`.
    pub fn read_bytes(&self, rel: &str) -> Result<Vec<u8>, ReadError> {
        let path = self.path(rel);
        std::fs::read(&path).map_err(|e| ReadError::io(&path, e))
    }

    pub fn parse<T: FromRead>(&self, rel: &str) -> Result<T, ReadError> {
        let raw = self.read_bytes(rel)?;
        T::from_read(raw.as_slice()).map_err(|e| ReadError::parse(&self.path(rel), e))
    }

    pub fn parse_si<T: FromReadSI>(&self, rel: &str) -> Result<T, ReadError> {
        let raw = self.read_bytes(rel)?;
        let si = procfs::ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: self.ticks_per_second,
            page_size: self.page_size,
            is_little_endian: cfg!(target_endian = "little"),
        };
        T::from_read(raw.as_slice(), &si).map_err(|e| ReadError::parse(&self.path(rel), e))
    }

    /// The number of entries of a folder (open file descriptors in `<pid>/fd`).
    pub fn count_entries(&self, rel: &str) -> Result<u64, ReadError> {
        let path = self.path(rel);
        let dir = std::fs::read_dir(&path).map_err(|e| ReadError::io(&path, e))?;
        Ok(dir.filter(|e| e.is_ok()).count() as u64)
    }
}

/// Why something could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// It is not there (any more): the process exited.
    Gone,
    /// It is there but cannot be read (permissions) or parsed.
    Unreadable(String),
}

impl ReadError {
    fn io(path: &Path, e: std::io::Error) -> ReadError {
        const ESRCH: i32 = 3;
        if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH) {
            ReadError::Gone
        } else {
            ReadError::Unreadable(format!("{}: {e}", path.display()))
        }
    }

    fn parse(path: &Path, e: procfs::ProcError) -> ReadError {
        ReadError::Unreadable(format!("{}: cannot parse: {e}", path.display()))
    }

    /// The `reason` label of `sluice_receiver_skipped_processes_total`.
    fn reason(&self) -> &'static str {
        match self {
            ReadError::Gone => "gone",
            ReadError::Unreadable(_) => "unreadable",
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ReadError::Gone => f.write_str("no such process"),
            ReadError::Unreadable(e) => f.write_str(e),
        }
    }
}

/// What one collection produced.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    pub resource_metrics: Vec<ResourceMetrics>,
    /// Configured processes that could not be read, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// What changed since the last collection and deserves a log line.
    pub notices: Vec<Notice>,
}

/// A log line: each problem is reported once, when it starts, not at every collection.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Notice {
    /// A process (or a pidfile, or the host) cannot be read and is skipped until it can.
    Skipped {
        subject: String,
        selector: String,
        reason: &'static str,
        detail: String,
        /// A process a `name` selector found that exited before it could be read: logged at debug.
        quiet: bool,
    },
    /// Some of a process's files cannot be read; its other figures are reported.
    Partial {
        subject: String,
        selector: String,
        missing: String,
    },
    /// Something reported above can be read again.
    Readable { subject: String, selector: String },
    /// A `name` selector matches no process (any more).
    NoMatch { selector: String },
}

impl Notice {
    fn log(&self, receiver: &str) {
        match self {
            Notice::Skipped {
                subject,
                selector,
                reason,
                detail,
                quiet: true,
            } => {
                tracing::debug!(receiver, %subject, %selector, reason, %detail, "process exited before it could be read")
            }
            Notice::Skipped {
                subject,
                selector,
                reason,
                detail,
                quiet: false,
            } => {
                tracing::warn!(receiver, %subject, %selector, reason, %detail, "cannot read; skipped until it can be read")
            }
            Notice::Partial {
                subject,
                selector,
                missing,
            } => {
                tracing::warn!(receiver, %subject, %selector, %missing, "cannot read some of a process's files; their figures are left out")
            }
            Notice::Readable { subject, selector } => {
                tracing::info!(receiver, %subject, %selector, "readable again")
            }
            Notice::NoMatch { selector } => {
                tracing::info!(receiver, %selector, "no process matches")
            }
        }
    }
}

/// What a problem concerns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Host,
    Pid(i32),
    Pidfile(PathBuf),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Subject::Host => f.write_str("host"),
            Subject::Pid(pid) => write!(f, "process {pid}"),
            Subject::Pidfile(path) => write!(f, "pidfile {}", path.display()),
        }
    }
}

/// The problems of one collection, compared with those already reported.
struct Problems {
    reported: HashMap<Subject, String>,
    now: HashMap<Subject, String>,
    notices: Vec<Notice>,
}

impl Problems {
    /// `subject` has a problem, told apart from others by `fingerprint`; `notice` is reported
    /// unless this very problem already was.
    fn problem(&mut self, subject: Subject, fingerprint: String, notice: impl FnOnce() -> Notice) {
        if self.reported.get(&subject) != Some(&fingerprint) {
            self.notices.push(notice());
        }
        self.now.insert(subject, fingerprint);
    }

    /// `subject` reads fine: if a problem was reported for it, says that it is over.
    fn fine(&mut self, subject: Subject, selector: &str) {
        if self.reported.contains_key(&subject) {
            self.notices.push(Notice::Readable {
                subject: subject.to_string(),
                selector: selector.to_string(),
            });
        }
    }
}

/// A process to read in this collection, and why.
struct Target {
    /// The first selector that named it.
    selector: String,
    is_self: bool,
    by_name: bool,
}

/// Reads everything the config asks for; keeps what was reported between collections.
pub(crate) struct Collector {
    proc: ProcFs,
    host_name: String,
    boot_unix_nanos: u64,
    selectors: Vec<ProcessSelector>,
    host: bool,
    self_pid: i32,
    tokio: Option<RuntimeMetrics>,
    reported: HashMap<Subject, String>,
    /// `name` selectors (by index) that matched nothing at the last collection.
    unmatched: HashSet<usize>,
}

impl Collector {
    /// Fails when `/proc` cannot be read at all. The boot time is read once, so that the start
    /// time of every counter stays the same across collections.
    pub fn new(
        cfg: &RuntimeReceiverConfig,
        proc: ProcFs,
        self_pid: i32,
        tokio: Option<RuntimeMetrics>,
    ) -> Result<Collector, BoxError> {
        let stat: KernelStats = proc.parse_si("stat").map_err(|e| {
            format!(
                "cannot read {}: {e}; the runtime receiver needs Linux's /proc",
                proc.path("stat").display()
            )
        })?;
        let host_name = proc
            .read_bytes("sys/kernel/hostname")
            .ok()
            .map(|raw| String::from_utf8_lossy(&raw).trim().to_string())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        Ok(Collector {
            proc,
            host_name,
            boot_unix_nanos: stat.btime.saturating_mul(1_000_000_000),
            selectors: cfg.processes.iter().map(|p| p.value.clone()).collect(),
            host: cfg.host,
            self_pid,
            tokio,
            reported: HashMap::new(),
            unmatched: HashSet::new(),
        })
    }

    /// One collection, stamped `now`.
    pub fn collect(&mut self, now: SystemTime) -> Collection {
        let now_unix_nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut problems = Problems {
            reported: std::mem::take(&mut self.reported),
            now: HashMap::new(),
            notices: Vec::new(),
        };
        let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut resource_metrics = Vec::new();
        let uptime = self.proc.parse::<Uptime>("uptime").ok().map(|u| u.uptime);

        if self.host {
            let sample = self
                .proc
                .parse_si::<KernelStats>("stat")
                .and_then(|stat| host::read(&self.proc, &stat));
            match sample {
                Ok(mut s) => {
                    s.uptime_seconds = uptime;
                    let mut m = MetricSet::new(now_unix_nanos);
                    host::append_metrics(
                        &mut m,
                        &s,
                        self.boot_unix_nanos,
                        self.proc.ticks_per_second,
                    );
                    resource_metrics.push(m.into_resource(self.host_resource()));
                    problems.fine(Subject::Host, "host");
                }
                Err(e) => {
                    let detail = e.to_string();
                    problems.problem(Subject::Host, detail.clone(), || Notice::Skipped {
                        subject: "host".into(),
                        selector: "host".into(),
                        reason: "unreadable",
                        detail,
                        quiet: false,
                    })
                }
            }
        }

        let targets = self.targets(&mut problems, &mut skipped);
        let clock = process::Clock {
            boot_unix_nanos: self.boot_unix_nanos,
            ticks_per_second: self.proc.ticks_per_second,
            host_uptime_seconds: uptime,
        };
        for (pid, t) in targets {
            let subject = Subject::Pid(pid);
            match process::read(&self.proc, pid) {
                Ok(s) => {
                    if s.missing.is_empty() {
                        problems.fine(subject, &t.selector);
                    } else {
                        let missing = s.missing.join(", ");
                        problems.problem(subject.clone(), format!("partial: {missing}"), || {
                            Notice::Partial {
                                subject: subject.to_string(),
                                selector: t.selector.clone(),
                                missing,
                            }
                        });
                    }
                    let mut m = MetricSet::new(now_unix_nanos);
                    process::append_metrics(&mut m, &s, &clock);
                    if let (true, Some(rt)) = (t.is_self, &self.tokio) {
                        let sample = tokio_stats::TokioSample::read(rt);
                        tokio_stats::append_metrics(
                            &mut m,
                            &sample,
                            clock.start_unix_nanos(s.start_ticks),
                        );
                    }
                    resource_metrics.push(m.into_resource(process::resource(&s, &self.host_name)));
                }
                Err(e) => {
                    let reason = e.reason();
                    *skipped.entry(reason).or_default() += 1;
                    problems.problem(subject.clone(), reason.to_string(), || Notice::Skipped {
                        subject: subject.to_string(),
                        selector: t.selector.clone(),
                        reason,
                        detail: e.to_string(),
                        quiet: t.by_name && e == ReadError::Gone,
                    });
                }
            }
        }

        let Problems { now, notices, .. } = problems;
        self.reported = now;
        Collection {
            resource_metrics,
            skipped,
            notices,
        }
    }

    /// The processes the selectors name now, by pid. Pidfiles are read and `/proc` is searched
    /// again at every collection.
    fn targets(
        &mut self,
        problems: &mut Problems,
        skipped: &mut BTreeMap<&'static str, u64>,
    ) -> BTreeMap<i32, Target> {
        let mut targets: BTreeMap<i32, Target> = BTreeMap::new();
        let mut add = |pid: i32, selector: &ProcessSelector, is_self: bool, by_name: bool| {
            let t = targets.entry(pid).or_insert_with(|| Target {
                selector: selector.to_string(),
                is_self: false,
                by_name,
            });
            t.is_self |= is_self;
            t.by_name &= by_name;
        };
        let mut patterns = Vec::new();
        for (i, sel) in self.selectors.iter().enumerate() {
            match sel {
                ProcessSelector::Myself => add(self.self_pid, sel, true, false),
                ProcessSelector::Pid(pid) => {
                    add(*pid as i32, sel, *pid as i32 == self.self_pid, false)
                }
                ProcessSelector::Pidfile(path) => {
                    let subject = Subject::Pidfile(path.clone());
                    match read_pidfile(path) {
                        Ok(pid) => {
                            problems.fine(subject, &sel.to_string());
                            add(pid, sel, pid == self.self_pid, false);
                        }
                        Err(detail) => {
                            *skipped.entry("pidfile_unreadable").or_default() += 1;
                            problems.problem(subject.clone(), detail.clone(), || Notice::Skipped {
                                subject: subject.to_string(),
                                selector: sel.to_string(),
                                reason: "pidfile_unreadable",
                                detail,
                                quiet: false,
                            });
                        }
                    }
                }
                ProcessSelector::Name(pattern) => patterns.push((i, pattern)),
            }
        }
        if patterns.is_empty() {
            return targets;
        }
        let mut unmatched: HashSet<usize> = patterns.iter().map(|(i, _)| *i).collect();
        for (pid, hits) in process::scan(&self.proc, &patterns) {
            for i in &hits {
                unmatched.remove(i);
            }
            add(pid, &self.selectors[hits[0]], pid == self.self_pid, true);
        }
        for i in &unmatched {
            if !self.unmatched.contains(i) {
                problems.notices.push(Notice::NoMatch {
                    selector: self.selectors[*i].to_string(),
                });
            }
        }
        self.unmatched = unmatched;
        targets
    }

    fn host_resource(&self) -> Resource {
        let mut attributes = Vec::new();
        if !self.host_name.is_empty() {
            attributes.push(str_attr("host.name", &self.host_name));
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }
}

/// The pid a pidfile holds.
fn read_pidfile(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "{} holds {:?}, not a process id",
            path.display(),
            text.trim()
        )),
    }
}

/// The data points of one metric: attributes (key, value) and a value.
type Points = Vec<(Vec<(&'static str, &'static str)>, Value)>;

/// The metrics of one resource, all stamped with the collection's time.
pub(crate) struct MetricSet {
    now: u64,
    metrics: Vec<Metric>,
}

impl MetricSet {
    fn new(now_unix_nanos: u64) -> MetricSet {
        MetricSet {
            now: now_unix_nanos,
            metrics: Vec::new(),
        }
    }

    fn points(&self, start: u64, points: Points) -> Vec<NumberDataPoint> {
        points
            .into_iter()
            .map(|(attrs, value)| NumberDataPoint {
                attributes: attrs.into_iter().map(|(k, v)| str_attr(k, v)).collect(),
                start_time_unix_nano: start,
                time_unix_nano: self.now,
                value: Some(value),
                ..Default::default()
            })
            .collect()
    }

    fn push(&mut self, name: &str, unit: &str, description: &str, data: metric::Data) {
        self.metrics.push(Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        });
    }

    /// A cumulative monotonic Sum starting at `start`.
    fn counter(&mut self, name: &str, unit: &str, description: &str, start: u64, points: Points) {
        self.sum(name, unit, description, start, points, true);
    }

    /// A cumulative non-monotonic Sum (an up-down counter) starting at `start`.
    fn updown(&mut self, name: &str, unit: &str, description: &str, start: u64, points: Points) {
        self.sum(name, unit, description, start, points, false);
    }

    fn sum(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        start: u64,
        points: Points,
        is_monotonic: bool,
    ) {
        let data_points = self.points(start, points);
        self.push(
            name,
            unit,
            description,
            metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic,
            }),
        );
    }

    fn gauge(&mut self, name: &str, unit: &str, description: &str, points: Points) {
        let data_points = self.points(0, points);
        self.push(
            name,
            unit,
            description,
            metric::Data::Gauge(Gauge { data_points }),
        );
    }

    fn into_resource(self, resource: Resource) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: self.metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

/// The instrumentation scope of everything this receiver produces.
pub const SCOPE_NAME: &str = "sluice/receiver/runtime";

/// An integer point value (saturating at `i64::MAX`).
pub(crate) fn int(v: u64) -> Value {
    Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(crate) fn str_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

#[cfg(test)]
mod tests;
