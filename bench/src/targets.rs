//! The scrape targets of W4: one HTTP listener per target on 127.0.0.1, each serving `/metrics` in
//! the Prometheus text format 0.0.4, the series of one Go HTTP service (the same series and value
//! models as the remote_write workload, with as many routes as it takes to reach the asked series
//! count). Everything but the values is rendered before the clock starts; a scrape only writes
//! the values, which move from scrape to scrape as they would on a live service.
//!
//! Targets answer 503 until [`Targets::open`], so that a collector's start-up is over before the
//! measured scrapes begin. Then each serves a fixed number of scrapes (`cycles`), counted, and
//! answers 503 again, so that what the collector should deliver is known exactly: scrapes served
//! x series per target. The 503s make the collectors record `up` 0 and, after the last cycle,
//! write staleness markers; the sink counts both apart.

use crate::workload::{self, Model};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use sluice_core::proto::prometheus_v1::metric_metadata::MetricType;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use tokio::task::JoinHandle;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One target's exposition with everything but the values rendered.
pub struct Exposition {
    /// The scrape config's `job_name` the target belongs to.
    pub job: &'static str,
    lines: Vec<Line>,
    /// Bytes of the last rendering, to size the next one.
    size_hint: usize,
}

/// `# HELP`/`# TYPE` when a family starts, then `name{labels} `; the value follows.
struct Line {
    head: String,
    model: Model,
    seed: u64,
}

impl Exposition {
    /// Target `target` of the fleet with `series` series.
    pub fn build(target: usize, series: usize) -> Exposition {
        let families = workload::families();
        let mut lines = Vec::with_capacity(series);
        let mut family = None;
        for (i, s) in workload::scrape_target(target, series)
            .into_iter()
            .enumerate()
        {
            let mut head = String::new();
            if family != Some(s.family) {
                family = Some(s.family);
                let f = &families[s.family as usize];
                let kind = match f.kind {
                    MetricType::Counter => "counter",
                    MetricType::Gauge => "gauge",
                    MetricType::Histogram => "histogram",
                    MetricType::Summary => "summary",
                    _ => "untyped",
                };
                let _ = write!(head, "# HELP {0} {1}\n# TYPE {0} {kind}\n", f.name, f.help);
            }
            let mut name = "";
            let mut labels = Vec::new();
            for l in &s.labels {
                match l.name.as_str() {
                    "__name__" => name = &l.value,
                    // The scraper adds these itself.
                    "job" | "instance" => {}
                    _ => labels.push(format!("{}=\"{}\"", l.name, l.value)),
                }
            }
            head.push_str(name);
            if !labels.is_empty() {
                let _ = write!(head, "{{{}}}", labels.join(","));
            }
            head.push(' ');
            lines.push(Line {
                head,
                model: s.model,
                seed: (target * 100_000 + i) as u64,
            });
        }
        let mut e = Exposition {
            job: workload::job(target),
            lines,
            size_hint: 0,
        };
        e.size_hint = e.render(0).len();
        e
    }

    /// Samples in one scrape.
    pub fn samples(&self) -> usize {
        self.lines.len()
    }

    /// The body of scrape number `scrape` (0-based).
    pub fn render(&self, scrape: u64) -> String {
        let mut out = String::with_capacity(self.size_hint + 4096);
        for l in &self.lines {
            out.push_str(&l.head);
            let _ = writeln!(out, "{}", l.model.value(l.seed, scrape));
        }
        out
    }
}

/// A target being served: what it exposes, and its scrapes so far.
struct Target {
    exposition: Arc<Exposition>,
    /// Scrapes answered with the exposition, at most `cycles`.
    served: AtomicU64,
    /// Scrapes answered 503 because `cycles` had been served.
    refused: AtomicU64,
    cycles: u64,
    /// Set once the measured scrapes may begin.
    open: Arc<AtomicBool>,
}

/// Running targets; their listeners stop when this is dropped.
pub struct Targets {
    /// (job, address) of each target.
    pub addrs: Vec<(&'static str, SocketAddr)>,
    targets: Vec<Arc<Target>>,
    open: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Targets {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Targets {
    /// Listens for each exposition on its own loopback port, answering 503 until [`Targets::open`],
    /// then serving `cycles` scrapes each (call from within the harness runtime).
    pub async fn start(expositions: &[Arc<Exposition>], cycles: u64) -> anyhow::Result<Targets> {
        let mut t = Targets {
            addrs: Vec::new(),
            targets: Vec::new(),
            open: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
        };
        for e in expositions {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            t.addrs.push((e.job, listener.local_addr()?));
            let target = Arc::new(Target {
                exposition: e.clone(),
                served: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                cycles,
                open: t.open.clone(),
            });
            t.targets.push(target.clone());
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(scrape))
                .with_state(target);
            t.tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        Ok(t)
    }

    /// Starts serving the expositions.
    pub fn open(&self) {
        self.open.store(true, Relaxed);
    }

    /// The targets by job, in the order of their first target: (job, addresses).
    pub fn jobs(&self) -> Vec<(&'static str, Vec<SocketAddr>)> {
        let mut jobs: Vec<(&'static str, Vec<SocketAddr>)> = Vec::new();
        for &(job, addr) in &self.addrs {
            match jobs.iter_mut().find(|(j, _)| *j == job) {
                Some((_, addrs)) => addrs.push(addr),
                None => jobs.push((job, vec![addr])),
            }
        }
        jobs
    }

    /// Whether every target has served all its scrapes.
    pub fn done(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.served.load(Relaxed) >= t.cycles)
    }

    /// Scrapes the targets are to serve in all.
    pub fn planned(&self) -> u64 {
        self.targets.iter().map(|t| t.cycles).sum()
    }

    /// Scrapes served with the exposition.
    pub fn scrapes(&self) -> u64 {
        self.targets.iter().map(|t| t.served.load(Relaxed)).sum()
    }

    /// Samples served: scrapes x samples per scrape, over all targets.
    pub fn samples(&self) -> u64 {
        self.targets
            .iter()
            .map(|t| t.served.load(Relaxed) * t.exposition.samples() as u64)
            .sum()
    }

    /// Scrapes answered 503 after the last cycle.
    pub fn refused(&self) -> u64 {
        self.targets.iter().map(|t| t.refused.load(Relaxed)).sum()
    }
}

async fn scrape(State(t): State<Arc<Target>>) -> Response {
    if !t.open.load(Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the benchmark has not begun",
        )
            .into_response();
    }
    let taken = t
        .served
        .fetch_update(Relaxed, Relaxed, |n| (n < t.cycles).then_some(n + 1));
    match taken {
        Ok(n) => ([(CONTENT_TYPE, TEXT_FORMAT)], t.exposition.render(n)).into_response(),
        Err(_) => {
            t.refused.fetch_add(1, Relaxed);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the benchmark's scrapes are over",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A target exposes exactly the asked series, each family announced once before its series,
    // without `job` or `instance`, one sample per line.
    #[test]
    fn exposition_has_the_asked_series_grouped_by_family() {
        for n in [91, 500, 2000] {
            let e = Exposition::build(3, n);
            let body = e.render(7);
            let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(samples.len(), n);
            assert_eq!(e.samples(), n);
            assert!(!body.contains("job=") && !body.contains("instance="));
            let types: Vec<&str> = body.lines().filter(|l| l.starts_with("# TYPE")).collect();
            let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "a family announced twice");
            let distinct: std::collections::HashSet<&str> = samples
                .iter()
                .map(|l| l.rsplit_once(' ').unwrap().0)
                .collect();
            assert_eq!(distinct.len(), n, "series repeated");
        }
    }

    // Sluice's own exposition parser reads every sample of a scrape.
    #[test]
    fn sluice_parses_the_exposition() {
        use sluice_receivers::prometheus::parser::{Entry, Format, Parser};
        let body = Exposition::build(5, 2000).render(3);
        let mut p = Parser::new(body.as_bytes(), Format::Text);
        let mut samples = 0;
        while let Some(e) = p.next().expect("a valid exposition") {
            if let Entry::Sample(_) = e {
                samples += 1;
            }
        }
        assert_eq!(samples, 2000);
    }

    // Values move between scrapes, and counters never go down.
    #[test]
    fn counters_grow_from_scrape_to_scrape() {
        let e = Exposition::build(0, 2000);
        let value = |body: &str, series: &str| -> f64 {
            body.lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit_once(' '))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        let (a, b) = (e.render(1), e.render(2));
        assert_ne!(a, b);
        let series = "http_requests_total{method=\"GET\",route=\"/api/v1/orders\",status=\"200\"}";
        assert!(value(&b, series) >= value(&a, series));
    }
}
