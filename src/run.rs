//! `sluice run`: load, start the topology and the telemetry endpoint, wait for a signal, shut down
//! in stages.

use sluice_core::config::TelemetryLevel;
use sluice_core::config::{Config, load_file};
use sluice_core::telemetry::{self, Telemetry};
use sluice_core::topology;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn run(path: &Path) -> ExitCode {
    let config = match load_file(path, &crate::registry::Components) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{} error(s) in {}; nothing started",
                errors.0.len(),
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    init_logs(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(config))
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(&config.service.telemetry.logs.level)
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: Config) -> ExitCode {
    let telemetry = Arc::new(Telemetry::new());
    let telemetry_stop = CancellationToken::new();
    let metrics_cfg = &config.service.telemetry.metrics;
    let mut telemetry_task = None;
    if metrics_cfg.level != TelemetryLevel::None {
        match telemetry::serve(
            telemetry.clone(),
            metrics_cfg.address.as_str(),
            telemetry_stop.clone(),
        )
        .await
        {
            Ok((addr, task)) => {
                tracing::info!(address = %addr, "self-telemetry on /metrics, /healthz, /readyz");
                telemetry_task = Some(task);
            }
            Err(e) => {
                tracing::error!(address = %metrics_cfg.address, error = %e, "cannot serve self-telemetry");
                eprintln!(
                    "cannot listen on {} (service.telemetry.metrics.address): {e}",
                    metrics_cfg.address
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(limit) = config.service.memory_limit {
        sluice_core::memory::install(limit, &telemetry);
    }
    let running = match topology::start(&config, telemetry.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %config.source.display(), pipelines = config.service.pipelines.len(), "sluice started");
    let signal = wait_for_signal().await;
    tracing::info!(signal, "shutting down");
    running.shutdown(config.service.shutdown_timeout).await;
    telemetry_stop.cancel();
    if let Some(t) = telemetry_task {
        let _ = t.await;
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
