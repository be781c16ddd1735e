//! The `sluice` command: `run`, `validate`, `explain`, `version`.

mod explain;
mod registry;
mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the hot paths allocate and free many small label strings across threads, where glibc's
/// allocator spent most of Sluice's CPU (docs/performance.md), and it hands freed memory back to the
/// system promptly, which the memory limit (`service.memory_limit`, measured as resident memory)
/// relies on. Version 2.x (the `v2` feature in Cargo.toml): it returns freed memory after 10 ms,
/// where 3.x waits a second and so peaked up to half again higher on the benchmarks, for the same
/// CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` (mimalloc's own
/// option) is set: then mimalloc decides, as it documents.
/// mimalloc asks for huge pages on its arenas, and the kernel then backs (and zeroes) 2 MiB at a
/// time where a few KiB are used: on the benchmarks that was 17-20% more peak RSS, and zeroing
/// those pages up to a fifth of the CPU of a short scrape run (docs/performance.md). Without them
/// the resident memory, which `service.memory_limit` measures, follows what is in use.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // A kernel without the setting only keeps the huge pages.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A metrics pipeline: receive, clean up, label, route and ship metrics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the pipelines of a config file until SIGINT or SIGTERM.
    Run {
        /// The pipeline file.
        #[arg(long, short, default_value = "pipeline.yaml")]
        config: PathBuf,
    },
    /// Checks a config file and prints every problem with file:line:column; exits 1 if any.
    Validate {
        #[arg(long, short, default_value = "pipeline.yaml")]
        config: PathBuf,
    },
    /// Shows how the `normalize` processor names a metric: each rule that fired, then the name.
    Explain {
        /// The metric name as a client sends it (`http.server.request.duration`,
        /// `/gc/heap/allocs:bytes`).
        name: String,
        /// The metric type.
        #[arg(long = "type", value_name = "TYPE", default_value = "gauge",
              value_parser = clap::builder::PossibleValuesParser::new(explain::TYPES))]
        kind: String,
        /// The metric's OTLP (UCUM) unit: `s`, `ms`, `By`, `By/s`, `1`, `{packets}`.
        #[arg(long, default_value = "")]
        unit: String,
        /// Convert to seconds and bytes, as `base_units: true` does.
        #[arg(long)]
        base_units: bool,
        /// Apply the settings of this file's `normalize` processor.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Prints the version.
    Version,
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    // One TLS crypto provider for every HTTPS client in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => {
            match sluice_core::config::load_file(&config, &registry::Components) {
                Ok(c) => {
                    println!(
                        "{}: valid ({} pipelines, {} receivers, {} processors, {} exporters)",
                        config.display(),
                        c.service.pipelines.len(),
                        c.receivers.len(),
                        c.processors.len(),
                        c.exporters.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{} error(s) in {}", errors.0.len(), config.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => run::run(&config),
        Command::Explain {
            name,
            kind,
            unit,
            base_units,
            config,
        } => explain::run(&name, &kind, &unit, base_units, config.as_deref()),
    }
}
