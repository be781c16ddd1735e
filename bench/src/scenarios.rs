//! The scenarios, the collectors each one compares, how each collector is configured for it, and
//! one measured run: sink, collector, load, wait for everything to arrive, measure, stop.

use crate::collector::{self, Process, Spec};
use crate::loadgen::{self, Target};
use crate::report::Run;
use crate::sink::Sink;
use crate::workload::{Format, Sizes, Workload};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[clap(rename_all = "UPPER")]
pub enum Scenario {
    /// remote_write in -> remote_write out; peer: vmagent.
    W1,
    /// OTLP/gRPC in -> remote_write out; Sluice only.
    W2,
    /// OTLP/gRPC in -> OTLP/gRPC out; peer: rotel.
    W3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    Sluice,
    Vmagent,
    Rotel,
}

impl Collector {
    pub fn name(self) -> &'static str {
        match self {
            Collector::Sluice => "sluice",
            Collector::Vmagent => "vmagent",
            Collector::Rotel => "rotel",
        }
    }
}

/// Compression of the collector's output where the protocol lets us choose (OTLP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::W1 => "W1",
            Scenario::W2 => "W2",
            Scenario::W3 => "W3",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::W1 => "remote_write in -> remote_write out (relay)",
            Scenario::W2 => "OTLP/gRPC in -> remote_write out (translation)",
            Scenario::W3 => "OTLP/gRPC in -> batch -> OTLP/gRPC out",
        }
    }

    pub fn input(self) -> Format {
        match self {
            Scenario::W1 => Format::RemoteWrite,
            Scenario::W2 | Scenario::W3 => Format::Otlp,
        }
    }

    /// The collectors compared, Sluice first.
    pub fn collectors(self) -> &'static [Collector] {
        match self {
            Scenario::W1 => &[Collector::Sluice, Collector::Vmagent],
            Scenario::W2 => &[Collector::Sluice],
            Scenario::W3 => &[Collector::Sluice, Collector::Rotel],
        }
    }

    /// What the sink should count once everything arrived (remote_write samples or OTLP points).
    fn expected(self, w: &Workload) -> u64 {
        match self {
            Scenario::W2 => w.rw_samples,
            Scenario::W1 | Scenario::W3 => w.points,
        }
    }
}

/// Where the collectors' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    pub sluice: PathBuf,
    pub vmagent: PathBuf,
    pub rotel: PathBuf,
}

impl Programs {
    pub fn of(&self, c: Collector) -> &PathBuf {
        match c {
            Collector::Sluice => &self.sluice,
            Collector::Vmagent => &self.vmagent,
            Collector::Rotel => &self.rotel,
        }
    }

    pub fn version(&self, c: Collector) -> String {
        let args: &[&str] = match c {
            Collector::Sluice => &["version"],
            Collector::Vmagent => &["-version"],
            Collector::Rotel => &["--version"],
        };
        let v = collector::version(self.of(c), args);
        if v.is_empty() && c == Collector::Vmagent {
            // Debian's build prints no version: ask the package.
            let pkg = collector::version(
                "dpkg-query".as_ref(),
                &["-W", "-f=victoria-metrics ${Version}", "victoria-metrics"],
            );
            return format!("vmagent from {pkg}");
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub sizes: Sizes,
    pub rounds: usize,
    pub connections: usize,
    pub compression: Compression,
    /// Sluice's `sending_queue.queue_size` (points).
    pub queue_size: usize,
    /// A run ends this long after the last arrival when not everything arrived.
    pub quiet: Duration,
    /// Longest a run may take.
    pub timeout: Duration,
    /// CPU the collector is pinned to.
    pub collector_core: Option<usize>,
    pub programs: Programs,
    /// Run only these collectors (all when empty).
    pub only: Vec<String>,
    /// Extra environment of the Sluice process (`LD_PRELOAD`, `GLIBC_TUNABLES`, ... for experiments).
    pub sluice_env: Vec<(String, String)>,
    /// Record a `perf` profile of each collector run into this folder (the figures of such runs
    /// include perf's sampling overhead).
    pub perf: Option<PathBuf>,
}

/// Builds the workload once, then runs each collector in turn, `rounds` times (A B A B ...).
pub async fn run(
    scenario: Scenario,
    opts: &Options,
    mut on_run: impl FnMut(&Run),
) -> anyhow::Result<Vec<Run>> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let t = Instant::now();
    let workload = Arc::new(Workload::build(scenario.input(), opts.sizes, now_ms));
    eprintln!(
        "{}: built {} requests ({} points, {} series, {:.1} MiB on the wire, {:.1} MiB protobuf) in {:.1?}",
        scenario.name(),
        workload.bodies.len(),
        workload.points,
        workload.series,
        workload.wire_bytes as f64 / 1048576.0,
        workload.proto_bytes as f64 / 1048576.0,
        t.elapsed()
    );
    let collectors: Vec<Collector> = scenario
        .collectors()
        .iter()
        .copied()
        .filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| o == c.name()))
        .collect();
    let mut runs = Vec::new();
    for round in 1..=opts.rounds {
        for &c in &collectors {
            let run = match run_once(scenario, c, &workload, opts, round).await {
                Ok(r) => r,
                Err(e) => Run::failed(scenario, c, format!("{e:#}")),
            };
            let run = Run { round, ..run };
            on_run(&run);
            runs.push(run);
        }
    }
    Ok(runs)
}

async fn run_once(
    scenario: Scenario,
    c: Collector,
    workload: &Arc<Workload>,
    opts: &Options,
    round: usize,
) -> anyhow::Result<Run> {
    let sink = Sink::start().await?;
    let listen = collector::free_addr()?;
    let spec = spec(scenario, c, listen, &sink, opts)?;
    let mut process = Process::start(spec, opts.collector_core, Duration::from_secs(30)).await?;
    let before = process.usage()?;
    let core_before = opts.collector_core.map(collector::core_busy).transpose()?;
    let profile = match &opts.perf {
        Some(dir) => {
            let file = dir.join(format!("{}-{}-{round}.data", scenario.name(), c.name()));
            Some(collector::Profiler::attach(process.pid(), &file)?)
        }
        None => None,
    };
    let url = match scenario.input() {
        Format::RemoteWrite => format!("http://{listen}/api/v1/write"),
        Format::Otlp => format!("http://{listen}"),
    };
    let target = Target {
        format: scenario.input(),
        url,
    };
    let started = Instant::now();
    let deadline = started + opts.timeout;
    // A collector that dies under load would otherwise leave the load generator retrying until
    // the deadline.
    let sent = tokio::select! {
        sent = loadgen::send(workload.clone(), target, opts.connections, deadline) => sent?,
        died = watch(&mut process) => return Err(died),
    };
    let expected = scenario.expected(workload);
    let sent_at = Instant::now();
    loop {
        let seen = sink.seen();
        let last = seen.last_arrival.map_or(sent_at, |l| l.max(sent_at));
        if seen.points >= expected || last.elapsed() >= opts.quiet || Instant::now() >= deadline {
            break;
        }
        process.check_alive()?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Measure before stopping: the kernel forgets VmHWM when the process exits.
    let after = process.usage()?;
    let core_after = opts.collector_core.map(collector::core_busy).transpose()?;
    let done = sink.seen();
    if let Some(p) = profile {
        p.finish().await?;
    }
    let exit = match process.stop(Duration::from_secs(60)).await {
        Ok(s) if s.success() => "0".to_string(),
        Ok(s) => s.to_string(),
        Err(e) => format!("{e:#}"),
    };
    // Whatever the shutdown flushed still counts as received (not as CPU time).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sink.seen();
    let elapsed = done
        .last_arrival
        .map_or(sent.elapsed, |l| l.saturating_duration_since(started));
    let cpu = after.cpu.saturating_sub(before.cpu);
    // Other processes' time on the collector's CPU, as a share of the run's wall time.
    let others = core_before.zip(core_after).map(|(b, a)| {
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        (a.saturating_sub(b).saturating_sub(cpu)).as_secs_f64() / wall
    });
    Ok(Run {
        scenario,
        collector: c,
        round: 0,
        sent: sent.points,
        retries: sent.retries,
        refused: sent.refused_points + sent.unsent,
        first_error: sent.first_error,
        expected,
        received: seen.points,
        extra: seen.extra,
        series: seen.series,
        points: workload.points,
        cpu,
        others,
        written: after.written.saturating_sub(before.written),
        hwm_kib: after.hwm_kib,
        elapsed,
        exit,
        error: None,
    })
}

/// Resolves (with the reason) once the collector has exited.
async fn watch(process: &mut Process) -> anyhow::Error {
    loop {
        if let Err(e) = process.check_alive() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The command line (and config file) of collector `c` in `scenario`, receiving on `listen` and
/// sending to `sink`.
fn spec(
    scenario: Scenario,
    c: Collector,
    listen: SocketAddr,
    sink: &Sink,
    opts: &Options,
) -> anyhow::Result<Spec> {
    let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let program = opts.programs.of(c).clone();
    anyhow::ensure!(
        program.exists(),
        "{} is missing at {}: {}",
        c.name(),
        program.display(),
        match c {
            Collector::Sluice => "run `cargo build --release` first",
            Collector::Vmagent | Collector::Rotel => "run bench/install-peers.sh",
        }
    );
    let per_request = opts.sizes.per_request;
    let args = match c {
        Collector::Sluice => {
            let yaml = sluice_config(scenario, listen, sink, opts);
            let path = dir.path().join("pipeline.yaml");
            std::fs::write(&path, yaml)?;
            vec!["run".into(), "--config".into(), path.display().to_string()]
        }
        Collector::Vmagent => vec![
            format!("-httpListenAddr={listen}"),
            format!("-remoteWrite.url={}", sink.rw_url()),
            format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("data").display()
            ),
            format!("-remoteWrite.maxRowsPerBlock={per_request}"),
            "-loggerLevel=WARN".into(),
        ],
        Collector::Rotel => {
            let http = collector::free_addr()?;
            vec![
                "start".into(),
                "--otlp-grpc-endpoint".into(),
                listen.to_string(),
                "--otlp-http-endpoint".into(),
                http.to_string(),
                "--otlp-receiver-traces-disabled".into(),
                "--otlp-receiver-logs-disabled".into(),
                "--exporter".into(),
                "otlp".into(),
                "--otlp-exporter-endpoint".into(),
                sink.otlp_endpoint(),
                "--otlp-exporter-compression".into(),
                opts.compression.name().into(),
                "--pid-file".into(),
                dir.path().join("rotel.pid").display().to_string(),
                "--log-file".into(),
                dir.path().join("rotel.log").display().to_string(),
            ]
        }
    };
    let env = match c {
        Collector::Sluice => opts.sluice_env.clone(),
        Collector::Vmagent | Collector::Rotel => Vec::new(),
    };
    Ok(Spec {
        name: c.name(),
        program,
        args,
        env,
        listen,
        dir,
    })
}

/// Sluice's pipeline for a scenario: its own telemetry endpoint off, warnings only on the log.
fn sluice_config(scenario: Scenario, listen: SocketAddr, sink: &Sink, opts: &Options) -> String {
    let (q, n) = (opts.queue_size, opts.sizes.per_request);
    let service = |receiver: &str, processors: &str, exporter: &str| {
        format!(
            "service:\n  telemetry: {{ metrics: {{ level: none }}, logs: {{ level: warn }} }}\n  pipelines:\n    \
             metrics: {{ receivers: [{receiver}], processors: [{processors}], exporters: [{exporter}] }}\n"
        )
    };
    let rw_exporter = format!(
        "exporters:\n  prometheus_remote_write:\n    endpoint: {}\n    \
         queue_config: {{ max_samples_per_send: {n} }}\n    sending_queue: {{ queue_size: {q} }}\n",
        sink.rw_url()
    );
    let otlp_receiver =
        format!("receivers:\n  otlp:\n    protocols:\n      grpc: {{ endpoint: {listen} }}\n");
    match scenario {
        Scenario::W1 => format!(
            "receivers:\n  prometheus_remote_write:\n    endpoint: {listen}\n{rw_exporter}{}",
            service("prometheus_remote_write", "", "prometheus_remote_write")
        ),
        Scenario::W2 => format!(
            "{otlp_receiver}{rw_exporter}{}",
            service("otlp", "", "prometheus_remote_write")
        ),
        Scenario::W3 => format!(
            "{otlp_receiver}processors:\n  batch: {{}}\nexporters:\n  otlp:\n    endpoint: {}\n    \
             compression: {}\n    sending_queue: {{ queue_size: {q} }}\n{}",
            sink.otlp_endpoint(),
            opts.compression.name(),
            service("otlp", "batch", "otlp")
        ),
    }
}
