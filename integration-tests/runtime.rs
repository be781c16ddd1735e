//! The `runtime` receiver in the real binary: it reports Sluice itself (`self`) and a child
//! process (`{ pid: N }`) every 200ms through the `otlp` exporter to an in-process OTLP server.
//! Guarantees: Sluice's own figures agree with `/proc/<pid>/status` and with `ps` (resident memory
//! within 20%, threads within a few), its CPU time never goes backwards across collections, the
//! child's resource names it correctly (pid, parent, executable, command line), and when the
//! child exits it is logged once and counted as skipped at every collection.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::any_value;
use sluice_core::proto::otlp::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use std::process::{Child, Command};
use std::time::Duration;
use support::{Behaviour, OtlpSink, Sluice, wait_until};

/// A `sleep 60` whose argv[0] is a marker; killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

fn attr(rm: &ResourceMetrics, key: &str) -> Option<any_value::Value> {
    rm.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .clone()
}

fn str_attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    match attr(rm, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => panic!("{key}: {other:?}"),
    }
}

fn pid_of(rm: &ResourceMetrics) -> Option<i64> {
    match attr(rm, "process.pid")? {
        any_value::Value::IntValue(i) => Some(i),
        other => panic!("process.pid: {other:?}"),
    }
}

/// Every resource of process `pid` received so far, in arrival order.
fn resources_of(reqs: &[ExportMetricsServiceRequest], pid: u32) -> Vec<ResourceMetrics> {
    reqs.iter()
        .flat_map(|r| &r.resource_metrics)
        .filter(|rm| pid_of(rm) == Some(pid.into()))
        .cloned()
        .collect()
}

fn metric<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a Metric> {
    rm.scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Sum(s)) => &s.data_points,
        Some(Data::Gauge(g)) => &g.data_points,
        other => panic!("{}: {other:?}", m.name),
    }
}

/// The value of the point of `name` that has attribute `attr` (or the only point).
fn value(rm: &ResourceMetrics, name: &str, attr: Option<(&str, &str)>) -> f64 {
    let m = metric(rm, name).unwrap_or_else(|| panic!("no {name}"));
    let p = points(m)
        .iter()
        .find(|p| match attr {
            None => p.attributes.is_empty(),
            Some((k, v)) => p.attributes.iter().any(|kv| {
                kv.key == k
                    && kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&any_value::Value::StringValue(v.into()))
            }),
        })
        .unwrap_or_else(|| panic!("{name}: no point with {attr:?}"));
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("{name}: no value"),
    }
}

/// The collection time of a resource's points.
fn time_of(rm: &ResourceMetrics) -> u64 {
    points(metric(rm, "process.cpu.time").unwrap())[0].time_unix_nano
}

/// (VmRSS in KiB, Threads) from `/proc/<pid>/status`.
fn proc_status(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("Threads:"))
}

/// (RSS in KiB, threads) as `ps` shows them.
fn ps(pid: u32) -> (f64, f64) {
    let out = Command::new("ps")
        .args(["-o", "rss=,nlwp=", "-p", &pid.to_string()])
        .output()
        .expect("`ps` is missing: apt-get install procps");
    assert!(out.status.success(), "ps failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(v.len(), 2, "ps said {text:?}");
    (v[0], v[1])
}

fn within_pct(what: &str, got: f64, want: f64, pct: f64) {
    assert!(
        (got - want).abs() <= want * pct / 100.0,
        "{what}: reported {got}, expected {want} (within {pct}%)"
    );
}

#[test]
fn runtime_receiver_reports_self_and_a_child_in_agreement_with_proc_and_ps() {
    let sink = OtlpSink::start(Behaviour::Accept);
    let marker = format!("sluice-runtime-e2e-{}", std::process::id());
    let mut child = Sleeper({
        use std::os::unix::process::CommandExt;
        Command::new("sleep")
            .arg0(&marker)
            .arg("60")
            .spawn()
            .expect("spawning sleep")
    });
    let child_pid = child.0.id();
    let s = Sluice::start(
        &format!(
            r#"
receivers:
  runtime:
    collection_interval: 200ms
    processes: [self, {{ pid: {child_pid} }}]
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [runtime], exporters: [otlp] }}
"#,
            sink = sink.addr
        ),
        &["telemetry"],
    );
    let sluice_pid = s.child.id();
    wait_until(
        Duration::from_secs(30),
        "five collections of sluice and its child",
        || {
            let reqs = sink.requests();
            resources_of(&reqs, sluice_pid).len() >= 5 && !resources_of(&reqs, child_pid).is_empty()
        },
    );

    // Sluice's own figures agree with /proc and ps, read at about the time of a fresh collection.
    let seen = resources_of(&sink.requests(), sluice_pid).len();
    wait_until(Duration::from_secs(10), "a fresh collection", || {
        resources_of(&sink.requests(), sluice_pid).len() > seen
    });
    let (status_rss, status_threads) = proc_status(sluice_pid);
    let (ps_rss, ps_threads) = ps(sluice_pid);
    let mine = resources_of(&sink.requests(), sluice_pid);
    let latest = mine.iter().max_by_key(|rm| time_of(rm)).unwrap();
    let rss_kib = value(latest, "process.memory.usage", None) / 1024.0;
    within_pct("rss vs /proc status VmRSS", rss_kib, status_rss, 20.0);
    within_pct("rss vs ps rss", rss_kib, ps_rss, 20.0);
    let threads = value(latest, "process.thread.count", None);
    assert!(
        (threads - status_threads).abs() <= 3.0 && (threads - ps_threads).abs() <= 3.0,
        "threads {threads}, /proc status {status_threads}, ps {ps_threads}"
    );
    assert!(value(latest, "sluice.runtime.workers", None) >= 1.0);
    assert!(metric(latest, "sluice.runtime.busy.time").is_some());
    assert_eq!(
        str_attr(latest, "process.executable.name").as_deref(),
        Some("sluice")
    );

    // CPU time never goes backwards across collections.
    let mut mine = mine;
    mine.sort_by_key(time_of);
    for mode in ["user", "system"] {
        let series: Vec<f64> = mine
            .iter()
            .map(|rm| value(rm, "process.cpu.time", Some(("cpu.mode", mode))))
            .collect();
        assert!(
            series.windows(2).all(|w| w[0] <= w[1]),
            "cpu.mode={mode} went backwards: {series:?}"
        );
    }
    let starts: Vec<u64> = mine
        .iter()
        .map(|rm| points(metric(rm, "process.cpu.time").unwrap())[0].start_time_unix_nano)
        .collect();
    assert!(
        starts.iter().all(|s| *s == starts[0] && *s > 0),
        "start times {starts:?}"
    );

    // The child: its resource names it, and its figures agree with ps.
    let theirs = resources_of(&sink.requests(), child_pid);
    let c = theirs.last().unwrap();
    assert_eq!(
        attr(c, "process.parent_pid"),
        Some(any_value::Value::IntValue(std::process::id().into()))
    );
    assert_eq!(
        str_attr(c, "process.executable.name").as_deref(),
        Some("sleep")
    );
    assert_eq!(
        str_attr(c, "process.command").as_deref(),
        Some(marker.as_str())
    );
    assert_eq!(
        str_attr(c, "process.command_line"),
        Some(format!("{marker} 60"))
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(str_attr(c, "host.name").as_deref(), Some(host_name.trim()));
    assert!(
        metric(c, "sluice.runtime.workers").is_none(),
        "only self has the runtime's counters"
    );
    let (child_rss, child_threads) = ps(child_pid);
    within_pct(
        "child rss vs ps",
        value(c, "process.memory.usage", None) / 1024.0,
        child_rss,
        20.0,
    );
    assert_eq!(value(c, "process.thread.count", None), child_threads);

    // The host is there too.
    let reqs = sink.requests();
    let host = reqs
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .find(|rm| pid_of(rm).is_none())
        .expect("a host resource");
    assert!(value(host, "system.memory.limit", None) > 0.0);

    // The child exits: logged once, counted at every collection, the rest keeps flowing.
    child.kill();
    let skipped = || {
        s.metric(
            "sluice_receiver_skipped_processes_total",
            &[("receiver", "runtime"), ("reason", "gone")],
        )
    };
    wait_until(Duration::from_secs(20), "three skipped collections", || {
        skipped() >= 3.0
    });
    let log = s.log_text();
    let reports = log
        .lines()
        .filter(|l| {
            l.contains("cannot read; skipped") && l.contains(&format!("process {child_pid}"))
        })
        .count();
    assert_eq!(reports, 1, "the exit is logged once:\n{log}");
    let before = resources_of(&sink.requests(), sluice_pid).len();
    wait_until(Duration::from_secs(10), "sluice still reported", || {
        resources_of(&sink.requests(), sluice_pid).len() > before
    });
    assert!(
        s.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "runtime")]
        ) > 0.0
    );

    let status = s.stop("TERM");
    assert!(status.success(), "sluice exited with {status}");
}
