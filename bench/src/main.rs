//! `sluice-bench run W1 [W2 W3] [--quick] [--rounds N]`: runs each scenario through Sluice and its
//! peer alternately and prints a row per run and a summary (medians, ratio Sluice / peer).
//!
//! The harness pins itself to one CPU (re-running itself under `taskset`) and each collector to
//! another, so that the load generator and the sink never compete with the collector measured.

use clap::{Args, Parser, Subcommand};
use sluice_bench::report::{self, RUN_HEADER};
use sluice_bench::scenarios::{self, Compression, Options, Programs, Scenario, Scrape};
use sluice_bench::workload::Sizes;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sluice-bench",
    about = "Benchmarks Sluice against peer collectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios through Sluice and their peer, alternately, and print the tables.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// W1 (remote_write -> remote_write, vs vmagent), W2 (OTLP -> remote_write, Sluice only), W3
    /// (OTLP relay with batching, vs rotel), W4 (scraping -> remote_write, vs vmagent and
    /// Prometheus in agent mode), W5 (W2 over many tenants, Sluice only).
    #[arg(required = true, value_enum)]
    scenarios: Vec<Scenario>,
    /// 1M samples over 10k series instead of 10M over 50k, and 3 scrapes per target instead of
    /// 12 in W4 (unless given explicitly).
    #[arg(long)]
    quick: bool,
    /// Runs per collector; runs alternate between collectors.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Samples (remote_write) or data points (OTLP) per run [default: 10M, quick 1M].
    #[arg(long)]
    samples: Option<u64>,
    /// Distinct series [default: 50k, quick 10k].
    #[arg(long)]
    series: Option<usize>,
    /// Samples or data points per request, sent and (where configurable) forwarded.
    #[arg(long, default_value_t = 2000)]
    per_request: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// OTLP exporter compression, the same for Sluice and rotel (W3). rotel 0.0.1-alpha10 gzips
    /// even when told `none`, so only gzip compares like with like.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    compression: Compression,
    /// Sluice's OTLP exporter `compression_params.level` in W3 (default: Sluice's own, gzip 1).
    /// rotel gzips at level 6 (tonic's fixed level): `--compression-level 6` compares like with
    /// like.
    #[arg(long)]
    compression_level: Option<u32>,
    /// Sluice's exporter `sending_queue.queue_size`, in points (default: Sluice's own, 100,000;
    /// W5: shared among the tenants).
    #[arg(long)]
    queue_size: Option<usize>,
    /// Sluice's remote_write exporter `label_cache_size` (default: Sluice's own default).
    #[arg(long)]
    label_cache_size: Option<usize>,
    /// No `normalize` and `labels` in Sluice's W1, W2 and W5 pipelines and no relabeling in
    /// vmagent's W1: the relay-only figures.
    #[arg(long)]
    no_processors: bool,
    /// Tenants of W5 (the load generator's `X-Scope-OrgID`, request by request in turn).
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// W4: scrape targets, each on its own port.
    #[arg(long, default_value_t = Scrape::FULL.targets)]
    scrape_targets: usize,
    /// W4: series (one sample each) per target; at least 91.
    #[arg(long, default_value_t = Scrape::FULL.series as u64, value_parser = clap::value_parser!(u64).range(91..))]
    scrape_series: u64,
    /// W4: scrape interval (and timeout) in seconds.
    #[arg(long, default_value_t = 5.0)]
    scrape_interval: f64,
    /// W4: scrapes each target serves before it answers 503 [default: 12, quick 3].
    #[arg(long)]
    scrape_cycles: Option<u64>,
    /// End a run this many seconds after the last arrival when not everything arrived.
    #[arg(long, default_value_t = 5)]
    quiet_secs: u64,
    /// Longest a run may take, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Do not pin the collector and the harness to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// CPU the collector runs on.
    #[arg(long, default_value_t = 0)]
    collector_core: usize,
    /// CPU the harness (load generator and sink) runs on.
    #[arg(long, default_value_t = 1)]
    harness_core: usize,
    /// Run only these collectors (comma-separated: sluice, vmagent, rotel, prometheus).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Record a perf profile (`perf record -e cpu-clock --call-graph dwarf`) of every collector run
    /// into this folder; such runs pay perf's overhead, so use them for profiles, not figures.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Extra environment for the Sluice process, `NAME=VALUE` (repeatable), for experiments such
    /// as another allocator (`LD_PRELOAD=...`).
    #[arg(long, value_parser = env_pair)]
    sluice_env: Vec<(String, String)>,
    /// The Sluice binary [default: target/release/sluice].
    #[arg(long)]
    sluice: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/vmagent")]
    vmagent: PathBuf,
    /// Prometheus (run in agent mode in W4).
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus: PathBuf,
    /// The rotel agent [default: target/bench-peers/rotel-agent, see bench/install-peers.sh].
    #[arg(long)]
    rotel: Option<PathBuf>,
}

/// Set in the environment of the harness once it runs pinned.
const PINNED: &str = "SLUICE_BENCH_PINNED";

fn main() -> anyhow::Result<()> {
    let Cli {
        command: Cmd::Run(args),
    } = Cli::parse();
    // Once pinned, this process sees one CPU only: the variable says it is the pinned one.
    let pinned = std::env::var_os(PINNED).is_some();
    let pin = !args.no_pin && (pinned || cpus() >= 2);
    if pin && !pinned {
        // Re-run pinned; exec only returns on failure.
        let err = Command::new("taskset")
            .arg("-c")
            .arg(args.harness_core.to_string())
            .arg(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(PINNED, args.harness_core.to_string())
            .exec();
        anyhow::bail!("re-running under `taskset` (util-linux) failed: {err}");
    }
    if !args.no_pin && !pin {
        eprintln!("warning: fewer than 2 CPUs; nothing is pinned");
    }
    // reqwest is built without a default TLS provider (the load generator speaks plain HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = options(&args, pin);
    print_header(&args, &opts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    println!("{RUN_HEADER}");
    for &s in &args.scenarios {
        let run = scenarios::run(s, &opts, |r| println!("{}", report::run_row(r)));
        // On SIGINT or SIGTERM the run is dropped, which kills the collector it started.
        let mut done = rt.block_on(async {
            tokio::select! {
                r = run => r,
                _ = stop_signal() => anyhow::bail!("interrupted"),
            }
        })?;
        runs.append(&mut done);
    }
    println!("\n{}", report::summary_table(&runs));
    println!("load average at the end: {}", loadavg());
    Ok(())
}

fn options(args: &RunArgs, pin: bool) -> Options {
    let (base, scrape) = if args.quick {
        (Sizes::QUICK, Scrape::QUICK)
    } else {
        (Sizes::FULL, Scrape::FULL)
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Options {
        sizes: Sizes {
            samples: args.samples.unwrap_or(base.samples),
            series: args.series.unwrap_or(base.series),
            per_request: args.per_request,
        },
        rounds: args.rounds,
        connections: args.connections,
        compression: args.compression,
        compression_level: args.compression_level,
        queue_size: args.queue_size,
        label_cache_size: args.label_cache_size,
        quiet: Duration::from_secs(args.quiet_secs),
        timeout: Duration::from_secs(args.timeout_secs),
        collector_core: pin.then_some(args.collector_core),
        programs: Programs {
            sluice: args
                .sluice
                .clone()
                .unwrap_or_else(|| target.join("release/sluice")),
            vmagent: args.vmagent.clone(),
            rotel: args
                .rotel
                .clone()
                .unwrap_or_else(|| target.join("bench-peers/rotel-agent")),
            prometheus: args.prometheus.clone(),
        },
        only: args.only.clone(),
        perf: args.perf.clone(),
        sluice_env: args.sluice_env.clone(),
        processors: !args.no_processors,
        tenants: args.tenants.max(1),
        scrape: Scrape {
            targets: args.scrape_targets.max(1),
            series: args.scrape_series as usize,
            interval: Duration::from_secs_f64(args.scrape_interval.max(0.1)),
            cycles: args.scrape_cycles.unwrap_or(scrape.cycles).max(1),
        },
    }
}

async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// When a program was built (its modification time, UTC), to tell builds apart in reports.
fn modified(path: &Path) -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC", "-r"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn env_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine, the date, the versions and the sizes, as the first lines of the report.
fn print_header(args: &RunArgs, opts: &Options) {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let nproc = Command::new("nproc")
        .arg("--all")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("# sluice-bench, {date}");
    println!();
    println!(
        "- machine: {nproc} CPUs, {model}; load average {}",
        loadavg()
    );
    if !opts.sluice_env.is_empty() {
        println!("- sluice environment: {:?}", opts.sluice_env);
    }
    match opts.collector_core {
        Some(c) => println!(
            "- collector on CPU {c}, harness on CPU {}",
            args.harness_core
        ),
        None => println!("- nothing pinned"),
    }
    let s = opts.sizes;
    let has = |f: fn(Scenario) -> bool| args.scenarios.iter().any(|&s| f(s));
    if has(Scenario::has_processors) {
        println!(
            "- W1, W2, W5 processors: {}",
            if opts.processors {
                "Sluice `normalize`, `labels` (static `env`, `domain` from service.name); vmagent the same labels by `-remoteWrite.urlRelabelConfig`"
            } else {
                "none (--no-processors): relay only"
            }
        );
    }
    if has(|s| s == Scenario::W4) {
        let sc = opts.scrape;
        println!(
            "- W4: {} targets x {} series, scraped every {:?}, {} scrapes each ({} samples)",
            sc.targets,
            sc.series,
            sc.interval,
            sc.cycles,
            sc.targets as u64 * sc.series as u64 * sc.cycles
        );
    }
    if has(|s| s == Scenario::W5) {
        println!(
            "- W5: {} tenants, Sluice's queue shared among them ({} points each)",
            opts.tenants,
            (opts.shared_queue() / opts.tenants).max(s.per_request)
        );
    }
    println!("- {} runs per collector", opts.rounds);
    if has(|s| s.input().is_some()) {
        println!(
            "- {} samples, {} series ({} samples each), {} per request, {} connections, OTLP export compression {:?}",
            s.samples,
            s.series,
            s.rounds(),
            s.per_request,
            opts.connections,
            opts.compression
        );
        if let Some(level) = opts.compression_level {
            println!("- Sluice's OTLP export compression_params.level: {level}");
        }
    }
    let mut collectors = Vec::new();
    for c in args.scenarios.iter().flat_map(|s| s.collectors()) {
        if !collectors.contains(c) {
            collectors.push(*c);
        }
    }
    for c in collectors {
        let path = opts.programs.of(c);
        println!(
            "- {}: {} ({}, modified {})",
            c.name(),
            opts.programs.version(c),
            path.display(),
            modified(path)
        );
    }
    println!();
}
