//! Sluice's own tokio runtime, reported with `self`: the stable subset of
//! `tokio::runtime::RuntimeMetrics` (no `tokio_unstable` needed).

use super::{MetricSet, int};
use sluice_core::proto::otlp::metrics::v1::number_data_point::Value;
use std::time::Duration;
use tokio::runtime::RuntimeMetrics;

/// The runtime's figures at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TokioSample {
    pub workers: usize,
    pub alive_tasks: usize,
    pub global_queue_depth: usize,
    /// Busy time of all workers together.
    pub busy: Duration,
}

impl TokioSample {
    pub fn read(m: &RuntimeMetrics) -> TokioSample {
        let workers = m.num_workers();
        TokioSample {
            workers,
            alive_tasks: m.num_alive_tasks(),
            global_queue_depth: m.global_queue_depth(),
            busy: (0..workers).map(|w| m.worker_total_busy_duration(w)).sum(),
        }
    }
}

/// Appends the runtime's metrics; the busy-time counter starts with the process (the runtime is
/// built as Sluice starts).
pub(crate) fn append_metrics(m: &mut MetricSet, s: &TokioSample, start_unix_nanos: u64) {
    m.gauge(
        "sluice.runtime.workers",
        "{thread}",
        "Worker threads of Sluice's tokio runtime.",
        vec![(vec![], int(s.workers as u64))],
    );
    m.gauge(
        "sluice.runtime.tasks.alive",
        "{task}",
        "Tasks alive in Sluice's tokio runtime.",
        vec![(vec![], int(s.alive_tasks as u64))],
    );
    m.gauge(
        "sluice.runtime.global_queue.depth",
        "{task}",
        "Tasks waiting in the runtime's global (injection) queue.",
        vec![(vec![], int(s.global_queue_depth as u64))],
    );
    m.counter(
        "sluice.runtime.busy.time",
        "s",
        "Time the runtime's workers spent busy, all workers together.",
        start_unix_nanos,
        vec![(vec![], Value::AsDouble(s.busy.as_secs_f64()))],
    );
}
