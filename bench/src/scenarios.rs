//! The scenarios, the collectors each one compares, how each collector is configured for it, and
//! one measured run: sink, collector, load (requests, or targets to scrape), wait for everything
//! to arrive, measure, stop.

use crate::collector::{self, Process, Spec};
use crate::loadgen::{self, Sent, Target};
use crate::report::Run;
use crate::sink::{BENCH_LABEL, Sink};
use crate::targets::{Exposition, Targets};
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
    /// Scrape targets -> remote_write out; peers: vmagent, Prometheus in agent mode.
    W4,
    /// W2 over many tenants (tenant header in, per-tenant queues, tenant header out); Sluice only.
    W5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    Sluice,
    Vmagent,
    Rotel,
    /// Prometheus in agent mode.
    Prometheus,
}

impl Collector {
    pub fn name(self) -> &'static str {
        match self {
            Collector::Sluice => "sluice",
            Collector::Vmagent => "vmagent",
            Collector::Rotel => "rotel",
            Collector::Prometheus => "prometheus",
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
            Scenario::W4 => "W4",
            Scenario::W5 => "W5",
        }
    }

    /// What the load generator sends: remote_write, OTLP, or nothing (W4 is scraped).
    pub fn input(self) -> Option<Format> {
        match self {
            Scenario::W1 => Some(Format::RemoteWrite),
            Scenario::W2 | Scenario::W3 | Scenario::W5 => Some(Format::Otlp),
            Scenario::W4 => None,
        }
    }

    /// The collectors compared, Sluice first.
    pub fn collectors(self) -> &'static [Collector] {
        match self {
            Scenario::W1 => &[Collector::Sluice, Collector::Vmagent],
            Scenario::W2 | Scenario::W5 => &[Collector::Sluice],
            Scenario::W3 => &[Collector::Sluice, Collector::Rotel],
            Scenario::W4 => &[Collector::Sluice, Collector::Vmagent, Collector::Prometheus],
        }
    }

    /// Whether Sluice's pipeline has the `normalize` and `labels` processors (unless
    /// `--no-processors`), and vmagent the matching relabeling.
    pub fn has_processors(self) -> bool {
        matches!(self, Scenario::W1 | Scenario::W2 | Scenario::W5)
    }

    /// What the sink should count once everything arrived (remote_write samples or OTLP points).
    fn expected(self, w: &Workload) -> u64 {
        match self {
            Scenario::W2 | Scenario::W5 => w.rw_samples,
            Scenario::W1 | Scenario::W3 | Scenario::W4 => w.points,
        }
    }
}

/// Where the collectors' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    pub sluice: PathBuf,
    pub vmagent: PathBuf,
    pub rotel: PathBuf,
    pub prometheus: PathBuf,
}

impl Programs {
    pub fn of(&self, c: Collector) -> &PathBuf {
        match c {
            Collector::Sluice => &self.sluice,
            Collector::Vmagent => &self.vmagent,
            Collector::Rotel => &self.rotel,
            Collector::Prometheus => &self.prometheus,
        }
    }

    pub fn version(&self, c: Collector) -> String {
        let args: &[&str] = match c {
            Collector::Sluice => &["version"],
            Collector::Vmagent => &["-version"],
            Collector::Rotel | Collector::Prometheus => &["--version"],
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
    /// Sluice's OTLP exporter `compression_params.level` (W3), when not its default.
    pub compression_level: Option<u32>,
    /// Sluice's `sending_queue.queue_size` (points), when not its default.
    pub queue_size: Option<usize>,
    /// Sluice's remote_write `label_cache_size`, when not its default.
    pub label_cache_size: Option<usize>,
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
    /// Sluice's pipeline in W1, W2 and W5 has `normalize` and `labels` (and vmagent's W1 the
    /// matching relabeling); false for the relay-only figures.
    pub processors: bool,
    /// Tenants of W5.
    pub tenants: usize,
    /// The scrape targets of W4.
    pub scrape: Scrape,
}

impl Options {
    /// The queue W5's tenants share: `--queue-size`, or Sluice's default `queue_size` (what
    /// W2's single queue holds when it is not given).
    pub fn shared_queue(&self) -> usize {
        self.queue_size
            .unwrap_or(sluice_core::sending::DEFAULT_QUEUE_SIZE)
    }
}

/// W4's targets and how long they are scraped.
#[derive(Clone, Copy, Debug)]
pub struct Scrape {
    pub targets: usize,
    /// Series (one sample each) per target and scrape.
    pub series: usize,
    pub interval: Duration,
    /// Scrapes each target serves; it answers 503 after that.
    pub cycles: u64,
}

impl Scrape {
    pub const FULL: Scrape = Scrape {
        targets: 50,
        series: 2000,
        interval: Duration::from_secs(5),
        cycles: 12,
    };
    pub const QUICK: Scrape = Scrape {
        cycles: 3,
        ..Scrape::FULL
    };
}

/// What a scenario sends, built once for all its runs.
enum Load {
    /// Request bodies for the load generator.
    Requests(Arc<Workload>),
    /// The targets' expositions (each run serves them on fresh ports).
    Scrape(Vec<Arc<Exposition>>),
}

/// Builds the workload once, then runs each collector in turn, `rounds` times (A B A B ...).
pub async fn run(
    scenario: Scenario,
    opts: &Options,
    mut on_run: impl FnMut(&Run),
) -> anyhow::Result<Vec<Run>> {
    let t = Instant::now();
    let load = match scenario.input() {
        Some(format) => {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            let workload = Arc::new(Workload::build(format, opts.sizes, now_ms));
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
            Load::Requests(workload)
        }
        None => {
            let sc = opts.scrape;
            let expositions: Vec<Arc<Exposition>> = (0..sc.targets)
                .map(|i| Arc::new(Exposition::build(i, sc.series)))
                .collect();
            eprintln!(
                "{}: built {} targets of {} series, {:.1} KiB per scrape, in {:.1?}",
                scenario.name(),
                sc.targets,
                sc.series,
                expositions.first().map_or(0, |e| e.render(0).len()) as f64 / 1024.0,
                t.elapsed()
            );
            Load::Scrape(expositions)
        }
    };
    let collectors: Vec<Collector> = scenario
        .collectors()
        .iter()
        .copied()
        .filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| o == c.name()))
        .collect();
    let mut runs = Vec::new();
    for round in 1..=opts.rounds {
        for &c in &collectors {
            let run = match run_once(scenario, c, &load, opts, round).await {
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
    load: &Load,
    opts: &Options,
    round: usize,
) -> anyhow::Result<Run> {
    let sink = Sink::start().await?;
    let targets = match load {
        Load::Scrape(e) => Some(Targets::start(e, opts.scrape.cycles).await?),
        Load::Requests(_) => None,
    };
    let listen = collector::free_addr()?;
    let spec = spec(scenario, c, listen, &sink, targets.as_ref(), opts)?;
    let mut process = Process::start(spec, opts.collector_core, Duration::from_secs(30)).await?;
    if let Some(t) = &targets {
        // A scrape run's CPU time is small: leave the start-up out of it, then let the scrapes
        // begin.
        process.settle(Duration::from_secs(10)).await?;
        t.open();
    }
    let before = process.usage()?;
    let core_before = opts.collector_core.map(collector::core_busy).transpose()?;
    let profile = match &opts.perf {
        Some(dir) => {
            let file = dir.join(format!("{}-{}-{round}.data", scenario.name(), c.name()));
            Some(collector::Profiler::attach(process.pid(), &file)?)
        }
        None => None,
    };
    let started = Instant::now();
    let deadline = started + opts.timeout;
    // A collector that dies under load would otherwise leave the load generator retrying (or the
    // targets waiting) until the deadline.
    let (sent, expected, points) = match (load, &targets) {
        (Load::Requests(workload), _) => {
            let format = workload.format;
            let target = Target {
                format,
                url: match format {
                    Format::RemoteWrite => format!("http://{listen}/api/v1/write"),
                    Format::Otlp => format!("http://{listen}"),
                },
                tenants: if scenario == Scenario::W5 {
                    opts.tenants
                } else {
                    0
                },
            };
            let sent = tokio::select! {
                sent = loadgen::send(workload.clone(), target, opts.connections, deadline) => sent?,
                died = watch(&mut process) => return Err(died),
            };
            (sent, scenario.expected(workload), workload.points)
        }
        (Load::Scrape(_), Some(targets)) => {
            let stall = opts.scrape.interval * 3 + SCRAPE_QUIET;
            tokio::select! {
                () = scraped(targets, deadline, stall) => {}
                died = watch(&mut process) => return Err(died),
            }
            let (served, all) = (targets.scrapes(), targets.planned());
            if served < all {
                eprintln!(
                    "{} {}: the collector stopped scraping ({served} of {all} scrapes served, none \
                     for {}s); the run goes on with what was served",
                    scenario.name(),
                    c.name(),
                    stall.as_secs()
                );
            }
            // Every target has served its scrapes (or the deadline passed): what was served is
            // what should arrive.
            let samples = targets.samples();
            let sent = Sent {
                points: samples,
                requests: targets.scrapes(),
                elapsed: started.elapsed(),
                ..Sent::default()
            };
            (sent, samples, samples)
        }
        (Load::Scrape(_), None) => anyhow::bail!("scrape targets were not started"),
    };
    let sent_at = Instant::now();
    // Prometheus sends a partial batch after `batch_send_deadline` (5 s): a scrape run waits
    // longer for the last one.
    let quiet = match load {
        Load::Scrape(_) => opts.quiet.max(SCRAPE_QUIET),
        Load::Requests(_) => opts.quiet,
    };
    loop {
        let seen = sink.seen();
        let last = seen.last_arrival.map_or(sent_at, |l| l.max(sent_at));
        if seen.points >= expected || last.elapsed() >= quiet || Instant::now() >= deadline {
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
        stale: seen.stale,
        series: seen.series,
        tenants: seen.tenants,
        labelled: (opts.processors && scenario.has_processors()).then_some(seen.labelled),
        points,
        cpu,
        others,
        written: after.written.saturating_sub(before.written),
        hwm_kib: after.hwm_kib,
        elapsed,
        exit,
        error: None,
    })
}

/// The shortest wait after the last arrival in W4, when not everything arrived.
const SCRAPE_QUIET: Duration = Duration::from_secs(10);

/// Resolves once every target has served all its scrapes, or at `deadline`.
/// Waits until every target has served its scrapes, the deadline, or `stall` without any scrape
/// served (a collector that stopped scraping some target would otherwise hold the run until the
/// deadline).
async fn scraped(targets: &Targets, deadline: Instant, stall: Duration) {
    let (mut served, mut since) = (targets.scrapes(), Instant::now());
    while !targets.done() && Instant::now() < deadline && since.elapsed() < stall {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = targets.scrapes();
        if now != served {
            (served, since) = (now, Instant::now());
        }
    }
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

/// The command line (and config files) of collector `c` in `scenario`, receiving on `listen` (or,
/// in W4, serving its own HTTP endpoint there and scraping `targets`) and sending to `sink`.
fn spec(
    scenario: Scenario,
    c: Collector,
    listen: SocketAddr,
    sink: &Sink,
    targets: Option<&Targets>,
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
            Collector::Vmagent | Collector::Rotel | Collector::Prometheus =>
                "run bench/install-peers.sh",
        }
    );
    let per_request = opts.sizes.per_request;
    let processors = opts.processors && scenario.has_processors();
    let write = |name: &str, text: String| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let scrape_configs = |indent: usize| {
        targets.map_or(String::new(), |t| {
            scrape_configs(t, opts.scrape.interval, indent)
        })
    };
    let args = match c {
        Collector::Sluice => {
            let yaml = sluice_config(scenario, listen, sink, &scrape_configs(6), opts);
            vec![
                "run".into(),
                "--config".into(),
                write("pipeline.yaml", yaml)?,
            ]
        }
        Collector::Vmagent => {
            let mut args = vec![
                format!("-httpListenAddr={listen}"),
                format!("-remoteWrite.url={}", sink.rw_url()),
                format!(
                    "-remoteWrite.tmpDataPath={}",
                    dir.path().join("data").display()
                ),
                format!("-remoteWrite.maxRowsPerBlock={per_request}"),
                "-loggerLevel=WARN".into(),
            ];
            if processors {
                let file = write("relabel.yaml", vmagent_relabel())?;
                args.push(format!("-remoteWrite.urlRelabelConfig={file}"));
            }
            if scenario == Scenario::W4 {
                let file = write("scrape.yaml", scrape_configs(0))?;
                args.push(format!("-promscrape.config={file}"));
            }
            args
        }
        Collector::Prometheus => {
            let yaml = format!(
                "{}remote_write:\n  - url: {}\n    queue_config: {{ max_samples_per_send: {per_request} }}\n",
                scrape_configs(0),
                sink.rw_url()
            );
            vec![
                "--enable-feature=agent".into(),
                format!("--config.file={}", write("prometheus.yaml", yaml)?),
                format!(
                    "--storage.agent.path={}",
                    dir.path().join("agent").display()
                ),
                format!("--web.listen-address={listen}"),
                "--log.level=warn".into(),
            ]
        }
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
        Collector::Vmagent | Collector::Rotel | Collector::Prometheus => Vec::new(),
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

/// vmagent's counterpart of Sluice's `labels` processor in W1 ([`sluice_processors`]): the same
/// static label, and the domain from the job (which Sluice's remote_write receiver makes
/// `service.name`).
fn vmagent_relabel() -> String {
    let (key, value) = BENCH_LABEL;
    format!(
        "- target_label: {key}\n  replacement: {value}\n\
         - source_labels: [job]\n  regex: '([a-z]+).*'\n  target_label: domain\n"
    )
}

/// Sluice's processors in W1, W2 and W5: names and label keys into Sluice's convention, then a
/// static label and the domain from the first word of `service.name`.
pub fn sluice_processors() -> String {
    let (key, value) = BENCH_LABEL;
    format!(
        "processors:\n  normalize: {{}}\n  labels:\n    static: {{ {key}: {value} }}\n    \
         domain: {{ from_attribute: service.name, pattern: '^([a-z]+)' }}\n"
    )
}

/// A `scrape_configs:` list for `targets`, one job per service, indented by `indent` spaces; the
/// same for every collector (Sluice takes no `global` section, so each job has its interval).
fn scrape_configs(targets: &Targets, interval: Duration, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let interval = format!("{}ms", interval.as_millis());
    let mut out = format!("{pad}scrape_configs:\n");
    for (job, addrs) in targets.jobs() {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
        out.push_str(&format!(
            "{pad}  - job_name: {job}\n{pad}    scrape_interval: {interval}\n{pad}    \
             scrape_timeout: {interval}\n{pad}    static_configs: [{{ targets: [{}] }}]\n",
            addrs.join(", ")
        ));
    }
    out
}

/// Sluice's pipeline for a scenario: warnings only on the log; its own telemetry endpoint off,
/// except in W4, where it is the address that tells the harness Sluice is up (as vmagent's and
/// Prometheus' own HTTP endpoints do).
fn sluice_config(
    scenario: Scenario,
    listen: SocketAddr,
    sink: &Sink,
    scrape_configs: &str,
    opts: &Options,
) -> String {
    let n = opts.sizes.per_request;
    let processors = opts.processors && scenario.has_processors();
    let (processor_section, processor_list) = if processors {
        (sluice_processors(), "normalize, labels")
    } else {
        (String::new(), "")
    };
    let metrics = if scenario == Scenario::W4 {
        format!("{{ level: basic, address: '{listen}' }}")
    } else {
        "{ level: none }".to_string()
    };
    let service = |receiver: &str, processors: &str, exporter: &str| {
        format!(
            "service:\n  telemetry: {{ metrics: {metrics}, logs: {{ level: warn }} }}\n  pipelines:\n    \
             metrics: {{ receivers: [{receiver}], processors: [{processors}], exporters: [{exporter}] }}\n"
        )
    };
    // W5: each tenant gets an equal share of W2's queue, and all of them together W2's queue
    // (tenants without an SLA tier may fill 80% of `total_size`).
    let (sending_queue, tenant_header) = if scenario == Scenario::W5 {
        let (q, tenants) = (opts.shared_queue(), opts.tenants.max(1));
        (
            format!(
                "    sending_queue: {{ queue_size: {}, total_size: {} }}\n",
                (q / tenants).max(n),
                q * 5 / 4
            ),
            "    tenant_header: X-Scope-OrgID\n",
        )
    } else {
        let q = opts.queue_size;
        let queue = q.map_or(String::new(), |q| {
            format!("    sending_queue: {{ queue_size: {q} }}\n")
        });
        (queue, "")
    };
    let label_cache = opts
        .label_cache_size
        .map_or(String::new(), |c| format!("    label_cache_size: {c}\n"));
    let rw_exporter = format!(
        "exporters:\n  prometheus_remote_write:\n    endpoint: {}\n{tenant_header}{label_cache}    \
         queue_config: {{ max_samples_per_send: {n} }}\n{sending_queue}",
        sink.rw_url()
    );
    let tenant = if scenario == Scenario::W5 {
        "    tenant: { header: X-Scope-OrgID }\n"
    } else {
        ""
    };
    let otlp_receiver = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{ endpoint: '{listen}' }}\n{tenant}"
    );
    match scenario {
        Scenario::W1 => format!(
            "receivers:\n  prometheus_remote_write:\n    endpoint: '{listen}'\n{processor_section}{rw_exporter}{}",
            service(
                "prometheus_remote_write",
                processor_list,
                "prometheus_remote_write"
            )
        ),
        Scenario::W2 | Scenario::W5 => format!(
            "{otlp_receiver}{processor_section}{rw_exporter}{}",
            service("otlp", processor_list, "prometheus_remote_write")
        ),
        Scenario::W3 => format!(
            "{otlp_receiver}processors:\n  batch: {{}}\nexporters:\n  otlp:\n    endpoint: {}\n    \
             compression: {}\n{}{sending_queue}{}",
            sink.otlp_endpoint(),
            opts.compression.name(),
            opts.compression_level.map_or(String::new(), |l| format!(
                "    compression_params: {{ level: {l} }}\n"
            )),
            service("otlp", "batch", "otlp")
        ),
        Scenario::W4 => format!(
            "receivers:\n  prometheus:\n    config:\n{scrape_configs}{rw_exporter}{}",
            service("prometheus", "", "prometheus_remote_write")
        ),
    }
}
