//! What one run measured, and the tables: one row per run as it finishes, then per scenario the
//! medians per collector and the ratio Sluice / peer. Tables are Markdown, to paste into
//! `docs/performance.md` as they are.

use crate::scenarios::{Collector, Scenario};
use std::time::Duration;

/// One collector's run of one scenario.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: Scenario,
    pub collector: Collector,
    /// 1-based; A B A B ... runs share a round.
    pub round: usize,
    /// Samples (or data points) the collector accepted.
    pub sent: u64,
    pub retries: u64,
    /// Refused for good by the collector, or not sent before the deadline.
    pub refused: u64,
    pub first_error: Option<String>,
    /// What the sink should count, in its unit (remote_write samples or OTLP points).
    pub expected: u64,
    pub received: u64,
    /// Samples of series the collector added on its own (`target_info`, `up`, `scrape_*`).
    pub extra: u64,
    /// Staleness markers the collector wrote (W4: after the targets' last scrape).
    pub stale: u64,
    /// Distinct series the sink saw.
    pub series: usize,
    /// Distinct tenants (`X-Scope-OrgID`) the sink saw samples for (W5).
    pub tenants: usize,
    /// When the collector was to add the benchmark's labels: the received samples that have them.
    pub labelled: Option<u64>,
    /// Samples (or data points) in the workload: the unit of CPU per sample and of throughput.
    pub points: u64,
    /// Collector CPU time (user + sys) from the first request to the last arrival.
    pub cpu: Duration,
    /// Share of the run's wall time the collector's CPU spent on other processes (when pinned).
    pub others: Option<f64>,
    pub hwm_kib: u64,
    /// Bytes the collector wrote during the run (what it sent on, as sent).
    pub written: u64,
    /// First request to last arrival at the sink.
    pub elapsed: Duration,
    /// Exit status after SIGTERM (`0` when clean).
    pub exit: String,
    pub error: Option<String>,
}

impl Run {
    pub fn failed(scenario: Scenario, collector: Collector, error: String) -> Run {
        Run {
            scenario,
            collector,
            round: 0,
            sent: 0,
            retries: 0,
            refused: 0,
            first_error: None,
            expected: 0,
            received: 0,
            extra: 0,
            stale: 0,
            series: 0,
            tenants: 0,
            labelled: None,
            points: 0,
            cpu: Duration::ZERO,
            others: None,
            hwm_kib: 0,
            written: 0,
            elapsed: Duration::ZERO,
            exit: String::new(),
            error: Some(error),
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Received beyond what was expected (duplicates).
    pub fn duplicated(&self) -> u64 {
        self.received.saturating_sub(self.expected)
    }

    pub fn cpu_us_per_point(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.points.max(1) as f64
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }

    pub fn points_per_sec(&self) -> f64 {
        self.points as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub const RUN_HEADER: &str = "| scenario | collector | round | sent | received | lost | dup | own series | stale | series | retries | refused | CPU s | CPU µs/sample | peak RSS MiB | samples/s | MiB written | others on CPU | exit |\n\
     |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

pub fn run_row(r: &Run) -> String {
    if let Some(e) = &r.error {
        return format!(
            "| {} | {} | {} | failed: {} |",
            r.scenario.name(),
            r.collector.name(),
            r.round,
            e.replace('\n', " / ")
        );
    }
    let mut row = format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.3} | {:.1} | {:.0} | {:.1} | {} | {} |",
        r.scenario.name(),
        r.collector.name(),
        r.round,
        r.sent,
        r.received,
        r.lost(),
        r.duplicated(),
        r.extra,
        r.stale,
        r.series,
        r.retries,
        r.refused,
        r.cpu.as_secs_f64(),
        r.cpu_us_per_point(),
        r.hwm_mib(),
        r.points_per_sec(),
        r.written as f64 / 1048576.0,
        r.others
            .map_or("-".to_string(), |o| format!("{:.0}%", o * 100.0)),
        r.exit
    );
    if let Some(n) = r.labelled {
        row.push_str(&format!(" labelled: {n} of {}", r.received));
    }
    if r.tenants > 0 {
        row.push_str(&format!(" tenants at the sink: {}", r.tenants));
    }
    if let Some(e) = &r.first_error {
        row.push_str(&format!(" first refusal: {e}"));
    }
    row
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of one collector's successful runs.
struct Summary {
    runs: usize,
    failed: usize,
    cpu: f64,
    rss: f64,
    rate: f64,
    worst_lost: u64,
    expected: u64,
}

fn summarize(runs: &[&Run]) -> Summary {
    let ok: Vec<&&Run> = runs.iter().filter(|r| r.error.is_none()).collect();
    Summary {
        runs: ok.len(),
        failed: runs.len() - ok.len(),
        cpu: median(ok.iter().map(|r| r.cpu_us_per_point()).collect()),
        rss: median(ok.iter().map(|r| r.hwm_mib()).collect()),
        rate: median(ok.iter().map(|r| r.points_per_sec()).collect()),
        worst_lost: ok.iter().map(|r| r.lost()).max().unwrap_or(0),
        expected: ok.iter().map(|r| r.expected).max().unwrap_or(0),
    }
}

/// Medians per collector of each scenario, and the ratio Sluice / peer.
pub fn summary_table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| scenario | collector | runs | median CPU µs/sample | median peak RSS MiB | median samples/s | lost (worst run) |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    let mut scenarios: Vec<Scenario> = runs.iter().map(|r| r.scenario).collect();
    scenarios.dedup();
    for s in scenarios {
        let mut sluice = None;
        for &c in s.collectors() {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.scenario == s && r.collector == c)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let m = summarize(&mine);
            let failed = if m.failed > 0 {
                format!(" ({} failed)", m.failed)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| {} | {} | {}{failed} | {:.3} | {:.1} | {:.0} | {} of {} ({:.3}%) |\n",
                s.name(),
                c.name(),
                m.runs,
                m.cpu,
                m.rss,
                m.rate,
                m.worst_lost,
                m.expected,
                100.0 * m.worst_lost as f64 / m.expected.max(1) as f64
            ));
            match (c, &sluice) {
                (Collector::Sluice, _) => sluice = Some(m),
                (peer, Some(a)) => out.push_str(&format!(
                    "| {} | **sluice / {}** | | **{:.2}x** | **{:.2}x** | **{:.2}x** | |\n",
                    s.name(),
                    peer.name(),
                    a.cpu / m.cpu,
                    a.rss / m.rss,
                    a.rate / m.rate
                )),
                _ => {}
            }
        }
    }
    out
}
