use super::host::{HostSample, Memory};
use super::process::ProcessSample;
use super::*;
use sluice_core::component::{
    Class, ComponentId, ExporterConfig, ParseFn, ProcessorConfig, Registry, parse_config,
};
use sluice_core::config::{LoadContext, Located, Pos};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;
use std::cell::RefCell;
use std::future::Future;
use std::process::{Child, Command};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

const RECEIVER: &str = "runtime";
const TICKS: u64 = 100;
const PAGE: u64 = 4096;
/// `btime` of the fixture's `/proc/stat`.
const FIXTURE_BOOT: u64 = 1_795_363_181;

fn fixtures() -> ProcFs {
    ProcFs {
        root: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/runtime/fixtures/proc"
        )),
        ticks_per_second: TICKS,
        page_size: PAGE,
    }
}

fn at(pos: Pos, value: ProcessSelector) -> Located<ProcessSelector> {
    Located { value, pos }
}

fn config(processes: Vec<ProcessSelector>, host: bool) -> RuntimeReceiverConfig {
    RuntimeReceiverConfig {
        collection_interval: sluice_core::config::types::Duration::from_millis(50),
        processes: processes
            .into_iter()
            .map(|p| at(Pos::default(), p))
            .collect(),
        host,
    }
}

fn name(pattern: &str) -> ProcessSelector {
    ProcessSelector::Name(NamePattern::new(pattern).unwrap())
}

/// A fixed collection time after the fixture's boot.
fn fixture_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FIXTURE_BOOT + 4000)
}

// ---- reading the results ----

fn resource_attr(rm: &ResourceMetrics, key: &str) -> Option<any_value::Value> {
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

fn resource_str(rm: &ResourceMetrics, key: &str) -> Option<String> {
    match resource_attr(rm, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn pid_of(rm: &ResourceMetrics) -> Option<i64> {
    match resource_attr(rm, "process.pid")? {
        any_value::Value::IntValue(i) => Some(i),
        other => panic!("process.pid is not an int: {other:?}"),
    }
}

fn by_pid(rms: &[ResourceMetrics], pid: i32) -> Option<&ResourceMetrics> {
    rms.iter().find(|rm| pid_of(rm) == Some(pid.into()))
}

fn pids(rms: &[ResourceMetrics]) -> Vec<i64> {
    rms.iter().filter_map(pid_of).collect()
}

fn host_of(rms: &[ResourceMetrics]) -> &ResourceMetrics {
    rms.iter()
        .find(|rm| pid_of(rm).is_none())
        .expect("a host resource")
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
        other => panic!("{}: unexpected data {other:?}", m.name),
    }
}

/// The point of `name` whose attributes are exactly `attrs`.
fn point<'a>(rm: &'a ResourceMetrics, name: &str, attrs: &[(&str, &str)]) -> &'a NumberDataPoint {
    let m = metric(rm, name).unwrap_or_else(|| panic!("no metric {name}"));
    points(m)
        .iter()
        .find(|p| {
            p.attributes.len() == attrs.len()
                && attrs.iter().all(|(k, v)| {
                    p.attributes.iter().any(|kv| {
                        kv.key == *k
                            && kv.value.as_ref().and_then(|v| v.value.as_ref())
                                == Some(&any_value::Value::StringValue(v.to_string()))
                    })
                })
        })
        .unwrap_or_else(|| panic!("{name}: no point with {attrs:?} in {m:?}"))
}

fn value(rm: &ResourceMetrics, name: &str, attrs: &[(&str, &str)]) -> f64 {
    match point(rm, name, attrs).value {
        Some(Value::AsDouble(d)) => d,
        Some(Value::AsInt(i)) => i as f64,
        None => panic!("{name}: no value"),
    }
}

fn int_value(rm: &ResourceMetrics, name: &str, attrs: &[(&str, &str)]) -> i64 {
    match point(rm, name, attrs).value {
        Some(Value::AsInt(i)) => i,
        other => panic!("{name}: not an int: {other:?}"),
    }
}

/// (kind, unit, monotonic) of a metric: kind is "sum" or "gauge".
fn shape(m: &Metric) -> (&'static str, &str, bool) {
    match &m.data {
        Some(Data::Sum(s)) => {
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32,
                "{}",
                m.name
            );
            ("sum", &m.unit, s.is_monotonic)
        }
        Some(Data::Gauge(_)) => ("gauge", &m.unit, false),
        other => panic!("{}: unexpected data {other:?}", m.name),
    }
}

// ---- children for the selector tests ----

/// A `sleep 30` whose argv[0] is `marker`; killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn(marker: &str) -> Sleeper {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sleep")
            .arg0(marker)
            .arg("30")
            .spawn()
            .expect("spawning sleep");
        Sleeper(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Kills it and waits until it is reaped (a zombie would still be readable).
    fn kill(mut self) -> i32 {
        let pid = self.pid();
        let _ = self.0.kill();
        let _ = self.0.wait();
        pid
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A marker unique to this test run and `what`.
fn marker(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("sluicetest-{what}-{}-{nanos}", std::process::id())
}

/// Waits until `/proc/<pid>/cmdline` starts with `marker` (the child has exec'd).
fn wait_exec(pid: i32, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(marker.as_bytes()) {
            return;
        }
        assert!(Instant::now() < deadline, "child {pid} did not exec");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn real_collector(processes: Vec<ProcessSelector>) -> Collector {
    Collector::new(
        &config(processes, false),
        ProcFs::system(),
        std::process::id() as i32,
        None,
    )
    .unwrap()
}

// ---- config ----

thread_local! {
    static PARSED: RefCell<Option<RuntimeReceiverConfig>> = const { RefCell::new(None) };
}

/// A registry with the `runtime` receiver only, which keeps the last config it parsed.
struct OnlyRuntime;

impl Registry for OnlyRuntime {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn ReceiverConfig>> {
        match kind {
            "runtime" => Some(|n, c| {
                let cfg = parse_config::<RuntimeReceiverConfig>(n, c)?;
                PARSED.with(|p| *p.borrow_mut() = Some(cfg.clone()));
                Ok(Box::new(cfg))
            }),
            _ => None,
        }
    }
    fn processor(&self, _: &str) -> Option<ParseFn<dyn ProcessorConfig>> {
        None
    }
    fn exporter(&self, _: &str) -> Option<ParseFn<dyn ExporterConfig>> {
        None
    }
    fn kinds(&self, _: Class) -> &'static [&'static str] {
        &["runtime"]
    }
}

/// Parses `receivers: { runtime: <body> }` from a config file in `/etc/sluice`; returns the
/// config, or the errors that concern the receiver (as `line:column: message`).
fn parse(body: &str) -> Result<RuntimeReceiverConfig, Vec<String>> {
    PARSED.with(|p| *p.borrow_mut() = None);
    let text = format!("receivers:\n  runtime:\n{body}\n");
    let result = sluice_core::config::load_str(
        &text,
        "pipeline.yaml".into(),
        LoadContext {
            base_dir: PathBuf::from("/etc/sluice"),
        },
        &OnlyRuntime,
    );
    let errs: Vec<String> = match result {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.into_iter()
                .filter(|e| e.component.as_deref() == Some("receivers.runtime"))
                .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.column, e.message))
                .collect()
        }
    };
    match PARSED.with(|p| p.borrow_mut().take()) {
        Some(cfg) if errs.is_empty() => Ok(cfg),
        _ => Err(errs),
    }
}

#[test]
fn config_defaults_to_self_and_host_every_10s() {
    let cfg = parse("    {}").unwrap();
    assert_eq!(cfg.collection_interval.get(), Duration::from_secs(10));
    assert_eq!(cfg.processes.len(), 1);
    assert_eq!(cfg.processes[0].value, ProcessSelector::Myself);
    assert!(cfg.host);
}

#[test]
fn config_takes_every_selector_and_resolves_pidfiles_against_the_config_folder() {
    let cfg = parse(
        "    collection_interval: 200ms\n    host: false\n    processes:\n      - self\n      - { pid: 42 }\n      - { pidfile: run/app.pid }\n      - { pidfile: /var/run/abs.pid }\n      - { name: \"^post(gres|master)$\" }",
    )
    .unwrap();
    assert_eq!(cfg.collection_interval.get(), Duration::from_millis(200));
    assert!(!cfg.host);
    let sels: Vec<ProcessSelector> = cfg.processes.iter().map(|p| p.value.clone()).collect();
    assert_eq!(
        sels,
        vec![
            ProcessSelector::Myself,
            ProcessSelector::Pid(42),
            ProcessSelector::Pidfile(PathBuf::from("/etc/sluice/run/app.pid")),
            ProcessSelector::Pidfile(PathBuf::from("/var/run/abs.pid")),
            name("^post(gres|master)$"),
        ]
    );
    assert_eq!(
        cfg.processes[1].pos.line, 7,
        "selectors keep their position"
    );
}

#[test]
fn config_errors_point_at_the_bad_selector() {
    let errs = parse("    processes:\n      - self\n      - { name: \"(unclosed\" }").unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("5:") && errs[0].contains("invalid regular expression"),
        "{errs:?}"
    );

    let errs = parse("    processes: [ { pid: 0 } ]").unwrap_err();
    assert!(errs[0].contains("pid 0 is not a process id"), "{errs:?}");

    let errs = parse("    processes: [ { process: 12 } ]").unwrap_err();
    assert!(
        errs[0].contains("unknown variant `process`") && errs[0].contains("`pidfile`"),
        "{errs:?}"
    );

    let errs = parse("    processes: [ myself ]").unwrap_err();
    assert!(errs[0].contains("unknown variant `myself`"), "{errs:?}");

    let errs = parse("    processes: [ { name: \"\" } ]").unwrap_err();
    assert!(errs[0].contains("name pattern is empty"), "{errs:?}");
}

#[test]
fn config_refuses_nothing_to_do_too_short_an_interval_and_unknown_keys() {
    let errs = parse("    processes: []\n    host: false").unwrap_err();
    assert!(errs[0].contains("nothing to collect"), "{errs:?}");

    let errs = parse("    collection_interval: 1ms").unwrap_err();
    assert!(errs[0].contains("at least 10ms"), "{errs:?}");

    let errs = parse("    interval: 10s").unwrap_err();
    assert!(errs[0].contains("interval"), "{errs:?}");
}

// ---- parsing the fixtures ----

#[test]
fn reads_a_process_from_fixture_files() {
    let s = process::read(&fixtures(), 4242).unwrap();
    assert_eq!(
        s,
        ProcessSample {
            pid: 4242,
            ppid: 1,
            comm: "my daemon".into(),
            exe: Some("/usr/bin/mydaemon".into()),
            cmdline: vec!["/usr/bin/mydaemon".into(), "--port".into(), "8080".into()],
            user_ticks: 1234,
            system_ticks: 567,
            start_ticks: 313_561,
            rss_bytes: 8192 * 1024,
            virtual_bytes: 104_857_600,
            threads: 3,
            minor_faults: 2514,
            major_faults: 7,
            voluntary_switches: Some(150),
            involuntary_switches: Some(12),
            disk_read_bytes: Some(45056),
            disk_written_bytes: Some(8192),
            open_fds: Some(4),
            fd_limit: Some(1024),
            missing: vec![],
        }
    );
    assert_eq!(s.executable_name(), "mydaemon");
    assert_eq!(s.command_line(), "/usr/bin/mydaemon --port 8080");
}

#[test]
fn reads_what_it_can_of_a_kernel_thread() {
    let s = process::read(&fixtures(), 4343).unwrap();
    assert_eq!(s.comm, "kworker/0:1-events");
    assert_eq!(
        s.executable_name(),
        "kworker/0:1-events",
        "no exe: the short name"
    );
    assert!(s.cmdline.is_empty());
    assert_eq!(s.rss_bytes, 0, "no VmRSS: stat's rss");
    assert_eq!((s.system_ticks, s.threads), (25, 1));
    assert_eq!(s.missing, vec!["io", "fd"]);
    assert_eq!((s.disk_read_bytes, s.open_fds), (None, None));
}

#[test]
fn tells_a_vanished_process_from_an_unreadable_one() {
    assert_eq!(process::read(&fixtures(), 9999), Err(ReadError::Gone));
    match process::read(&fixtures(), 4444) {
        Err(ReadError::Unreadable(e)) => assert!(e.contains("4444/stat"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_the_host_from_fixture_files() {
    let proc = fixtures();
    let stat: KernelStats = proc.parse_si("stat").unwrap();
    assert_eq!(stat.btime, FIXTURE_BOOT);
    let s: HostSample = host::read(&proc, &stat).unwrap();
    assert_eq!(
        s.cpu_ticks,
        vec![
            ("user", 259_533),
            ("nice", 120),
            ("system", 33_700),
            ("idle", 329_525),
            ("iowait", 1109),
            ("interrupt", 40),
            ("softirq", 377),
            ("steal", 75),
        ]
    );
    let kib = 1024;
    assert_eq!(
        s.memory,
        Memory {
            total: 24_684_100 * kib,
            free: 18_138_212 * kib,
            buffers: 25_032 * kib,
            cached: (5_821_024 + 384_780) * kib,
            used: (24_684_100 - 18_138_212 - 25_032 - 5_821_024 - 384_780) * kib,
        }
    );
    let m = s.memory;
    assert_eq!(m.used + m.free + m.cached + m.buffers, m.total);
    assert_eq!(proc.parse::<Uptime>("uptime").unwrap().uptime, 3135.62);
}

#[test]
fn a_fixture_collection_names_types_and_stamps_every_metric() {
    let proc = fixtures();
    let cfg = config(vec![ProcessSelector::Pid(4242)], true);
    let mut c = Collector::new(&cfg, proc, 1, None).unwrap();
    let out = c.collect(fixture_now());
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    assert!(out.skipped.is_empty());
    assert_eq!(out.resource_metrics.len(), 2);
    let now = (FIXTURE_BOOT + 4000) * 1_000_000_000;
    let boot = FIXTURE_BOOT * 1_000_000_000;
    let start = boot + 3_135_610_000_000;

    let p = by_pid(&out.resource_metrics, 4242).unwrap();
    assert_eq!(
        resource_str(p, "host.name").as_deref(),
        Some("fixture-host")
    );
    assert_eq!(
        resource_attr(p, "process.parent_pid"),
        Some(any_value::Value::IntValue(1))
    );
    assert_eq!(
        resource_str(p, "process.executable.name").as_deref(),
        Some("mydaemon")
    );
    assert_eq!(
        resource_str(p, "process.executable.path").as_deref(),
        Some("/usr/bin/mydaemon")
    );
    assert_eq!(
        resource_str(p, "process.command").as_deref(),
        Some("/usr/bin/mydaemon")
    );
    assert_eq!(
        resource_str(p, "process.command_line").as_deref(),
        Some("/usr/bin/mydaemon --port 8080")
    );
    let scope = p.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, SCOPE_NAME);

    let expected: &[(&str, (&str, &str, bool))] = &[
        ("process.cpu.time", ("sum", "s", true)),
        ("process.memory.usage", ("sum", "By", false)),
        ("process.memory.virtual", ("sum", "By", false)),
        ("process.thread.count", ("sum", "{thread}", false)),
        (
            "process.unix.file_descriptor.count",
            ("sum", "{file_descriptor}", false),
        ),
        (
            "process.unix.file_descriptor.limit",
            ("sum", "{file_descriptor}", false),
        ),
        (
            "process.context_switches",
            ("sum", "{context_switch}", true),
        ),
        ("process.disk.io", ("sum", "By", true)),
        ("process.paging.faults", ("sum", "{fault}", true)),
        ("process.start_time", ("gauge", "s", false)),
        ("process.uptime", ("gauge", "s", false)),
    ];
    let names: Vec<&str> = p.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, expected.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    for (name, want) in expected {
        let m = metric(p, name).unwrap();
        assert_eq!(shape(m), *want, "{name}");
        assert!(!m.description.is_empty(), "{name}");
        for pt in points(m) {
            assert_eq!(pt.time_unix_nano, now, "{name}");
            let want_start = if want.0 == "sum" { start } else { 0 };
            assert_eq!(pt.start_time_unix_nano, want_start, "{name}");
        }
    }
    assert_eq!(value(p, "process.cpu.time", &[("cpu.mode", "user")]), 12.34);
    assert_eq!(
        value(p, "process.cpu.time", &[("cpu.mode", "system")]),
        5.67
    );
    assert_eq!(int_value(p, "process.memory.usage", &[]), 8192 * 1024);
    assert_eq!(int_value(p, "process.memory.virtual", &[]), 104_857_600);
    assert_eq!(int_value(p, "process.thread.count", &[]), 3);
    assert_eq!(int_value(p, "process.unix.file_descriptor.count", &[]), 4);
    assert_eq!(
        int_value(p, "process.unix.file_descriptor.limit", &[]),
        1024
    );
    let switches = |t| {
        int_value(
            p,
            "process.context_switches",
            &[("process.context_switch.type", t)],
        )
    };
    assert_eq!((switches("voluntary"), switches("involuntary")), (150, 12));
    let io = |d| int_value(p, "process.disk.io", &[("disk.io.direction", d)]);
    assert_eq!((io("read"), io("write")), (45056, 8192));
    let faults = |t| {
        int_value(
            p,
            "process.paging.faults",
            &[("system.paging.fault.type", t)],
        )
    };
    assert_eq!((faults("major"), faults("minor")), (7, 2514));
    assert_eq!(value(p, "process.start_time", &[]), start as f64 / 1e9);
    assert!((value(p, "process.uptime", &[]) - 0.01).abs() < 1e-6);

    let h = host_of(&out.resource_metrics);
    assert_eq!(
        resource_str(h, "host.name").as_deref(),
        Some("fixture-host")
    );
    assert_eq!(h.resource.as_ref().unwrap().attributes.len(), 1);
    let expected: &[(&str, (&str, &str, bool))] = &[
        ("system.cpu.time", ("sum", "s", true)),
        ("system.memory.usage", ("sum", "By", false)),
        ("system.memory.limit", ("sum", "By", false)),
        ("system.cpu.load_average.1m", ("gauge", "{thread}", false)),
        ("system.cpu.load_average.5m", ("gauge", "{thread}", false)),
        ("system.cpu.load_average.15m", ("gauge", "{thread}", false)),
        ("system.uptime", ("gauge", "s", false)),
    ];
    for (name, want) in expected {
        let m = metric(h, name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(shape(m), *want, "{name}");
        for pt in points(m) {
            assert_eq!(pt.time_unix_nano, now, "{name}");
            let want_start = if want.0 == "sum" { boot } else { 0 };
            assert_eq!(pt.start_time_unix_nano, want_start, "{name}");
        }
    }
    assert_eq!(
        value(h, "system.cpu.time", &[("cpu.mode", "user")]),
        2595.33
    );
    assert_eq!(
        value(h, "system.cpu.time", &[("cpu.mode", "interrupt")]),
        0.4
    );
    assert_eq!(points(metric(h, "system.cpu.time").unwrap()).len(), 8);
    assert_eq!(
        int_value(
            h,
            "system.memory.usage",
            &[("system.memory.state", "buffers")]
        ),
        25_032 * 1024
    );
    assert_eq!(int_value(h, "system.memory.limit", &[]), 24_684_100 * 1024);
    assert_eq!(value(h, "system.cpu.load_average.1m", &[]), 1.58);
    assert_eq!(value(h, "system.cpu.load_average.5m", &[]), 2.1);
    assert_eq!(value(h, "system.cpu.load_average.15m", &[]), 1.61);
    assert_eq!(value(h, "system.uptime", &[]), 3135.62);
}

#[test]
fn unreadable_and_vanished_processes_are_reported_once_and_counted_every_time() {
    let cfg = config(
        vec![
            ProcessSelector::Pid(4242),
            ProcessSelector::Pid(4444),
            ProcessSelector::Pid(9999),
            ProcessSelector::Pid(4343),
        ],
        false,
    );
    let mut c = Collector::new(&cfg, fixtures(), 1, None).unwrap();
    let first = c.collect(fixture_now());
    assert_eq!(pids(&first.resource_metrics), vec![4242, 4343]);
    assert_eq!(
        first.skipped,
        BTreeMap::from([("gone", 1), ("unreadable", 1)])
    );
    assert_eq!(first.notices.len(), 3, "{:?}", first.notices);
    assert!(matches!(
        &first.notices[0],
        Notice::Partial { subject, missing, .. } if subject == "process 4343" && missing == "io, fd"
    ));
    assert!(matches!(
        &first.notices[1],
        Notice::Skipped { subject, reason: "unreadable", quiet: false, .. } if subject == "process 4444"
    ));
    assert!(matches!(
        &first.notices[2],
        Notice::Skipped { subject, reason: "gone", quiet: false, selector, .. }
            if subject == "process 9999" && selector == "pid: 9999"
    ));
    // The kernel thread's readable figures are still there.
    let k = by_pid(&first.resource_metrics, 4343).unwrap();
    assert!(metric(k, "process.cpu.time").is_some());
    assert!(metric(k, "process.disk.io").is_none());
    assert!(metric(k, "process.unix.file_descriptor.count").is_none());
    assert_eq!(resource_str(k, "process.command"), None);

    let second = c.collect(fixture_now());
    assert!(second.notices.is_empty(), "{:?}", second.notices);
    assert_eq!(second.skipped, first.skipped);
    assert_eq!(pids(&second.resource_metrics), vec![4242, 4343]);
}

#[test]
fn self_carries_the_tokio_runtime_counters() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = rt.handle().metrics();
    let cfg = config(
        vec![ProcessSelector::Myself, ProcessSelector::Pid(4343)],
        false,
    );
    // In the fixtures, "self" is 4242.
    let mut c = Collector::new(&cfg, fixtures(), 4242, Some(metrics)).unwrap();
    let out = c.collect(fixture_now());
    let me = by_pid(&out.resource_metrics, 4242).unwrap();
    assert_eq!(int_value(me, "sluice.runtime.workers", &[]), 2);
    assert!(int_value(me, "sluice.runtime.tasks.alive", &[]) >= 0);
    assert!(int_value(me, "sluice.runtime.global_queue.depth", &[]) >= 0);
    let busy = metric(me, "sluice.runtime.busy.time").unwrap();
    assert_eq!(shape(busy), ("sum", "s", true));
    assert_eq!(
        points(busy)[0].start_time_unix_nano,
        (FIXTURE_BOOT * 1_000_000_000) + 3_135_610_000_000
    );
    let other = by_pid(&out.resource_metrics, 4343).unwrap();
    assert!(metric(other, "sluice.runtime.workers").is_none());
}

#[test]
fn name_selector_matches_comm_and_command_line_in_fixtures() {
    let cfg = config(
        vec![name("^kworker/"), name("--port 8080"), name("^nothing$")],
        false,
    );
    let mut c = Collector::new(&cfg, fixtures(), 1, None).unwrap();
    let out = c.collect(fixture_now());
    assert_eq!(pids(&out.resource_metrics), vec![4242, 4343]);
    assert_eq!(
        out.notices,
        vec![
            Notice::NoMatch {
                selector: "name: ^nothing$".into()
            },
            Notice::Partial {
                subject: "process 4343".into(),
                selector: "name: ^kworker/".into(),
                missing: "io, fd".into()
            }
        ]
    );
    let again = c.collect(fixture_now());
    assert!(again.notices.is_empty(), "{:?}", again.notices);
}

// ---- selectors on the real /proc ----

#[test]
fn name_selector_matches_several_processes_and_follows_them() {
    let m = marker("name");
    let a = Sleeper::spawn(&m);
    let b = Sleeper::spawn(&m);
    let c = Sleeper::spawn(&m);
    for s in [&a, &b, &c] {
        wait_exec(s.pid(), &m);
    }
    let mut col = real_collector(vec![name(&format!("^{m} 30$"))]);
    let out = col.collect(SystemTime::now());
    let mut want = vec![a.pid() as i64, b.pid() as i64, c.pid() as i64];
    want.sort();
    assert_eq!(pids(&out.resource_metrics), want);
    for rm in &out.resource_metrics {
        assert_eq!(
            resource_str(rm, "process.executable.name").as_deref(),
            Some("sleep")
        );
        assert_eq!(
            resource_str(rm, "process.command").as_deref(),
            Some(m.as_str())
        );
        assert_eq!(
            resource_str(rm, "process.command_line"),
            Some(format!("{m} 30"))
        );
        assert_eq!(
            resource_attr(rm, "process.parent_pid"),
            Some(any_value::Value::IntValue(std::process::id().into()))
        );
    }
    assert!(out.notices.is_empty(), "{:?}", out.notices);

    // One exits: it is simply no longer matched. A new one is picked up.
    let gone = b.kill();
    let d = Sleeper::spawn(&m);
    wait_exec(d.pid(), &m);
    let out = col.collect(SystemTime::now());
    let mut want = vec![a.pid() as i64, c.pid() as i64, d.pid() as i64];
    want.sort();
    assert_eq!(pids(&out.resource_metrics), want);
    assert!(!pids(&out.resource_metrics).contains(&(gone as i64)));
    assert!(out.skipped.is_empty());
    drop((a, c, d));
}

#[test]
fn a_pid_that_exits_is_reported_once_and_a_pidfile_picks_up_its_successor() {
    let dir = tempfile_dir();
    let pidfile = dir.join("app.pid");
    let m = marker("pid");
    let first = Sleeper::spawn(&m);
    wait_exec(first.pid(), &m);
    std::fs::write(&pidfile, format!("{}\n", first.pid())).unwrap();
    let mut col = real_collector(vec![
        ProcessSelector::Pid(first.pid() as u32),
        ProcessSelector::Pidfile(pidfile.clone()),
    ]);
    let out = col.collect(SystemTime::now());
    assert_eq!(pids(&out.resource_metrics), vec![first.pid() as i64]);
    assert!(out.notices.is_empty(), "{:?}", out.notices);

    let old = first.kill();
    let out = col.collect(SystemTime::now());
    assert!(out.resource_metrics.is_empty());
    assert_eq!(
        out.skipped,
        BTreeMap::from([("gone", 1)]),
        "one pid, named twice"
    );
    assert_eq!(out.notices.len(), 1, "{:?}", out.notices);
    assert!(matches!(
        &out.notices[0],
        Notice::Skipped { subject, reason: "gone", quiet: false, .. } if *subject == format!("process {old}")
    ));
    // Reported once, counted again.
    let out = col.collect(SystemTime::now());
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    assert_eq!(out.skipped, BTreeMap::from([("gone", 1)]));

    // The service restarts and writes its new pid: picked up at the next collection.
    let second = Sleeper::spawn(&m);
    wait_exec(second.pid(), &m);
    std::fs::write(&pidfile, format!("{}\n", second.pid())).unwrap();
    let out = col.collect(SystemTime::now());
    assert_eq!(pids(&out.resource_metrics), vec![second.pid() as i64]);
    assert_eq!(
        out.skipped,
        BTreeMap::from([("gone", 1)]),
        "the old pid is still gone"
    );
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_or_bad_pidfile_is_reported_once_until_it_is_fixed() {
    let dir = tempfile_dir();
    let pidfile = dir.join("later.pid");
    let mut col = real_collector(vec![ProcessSelector::Pidfile(pidfile.clone())]);
    let out = col.collect(SystemTime::now());
    assert_eq!(out.skipped, BTreeMap::from([("pidfile_unreadable", 1)]));
    assert!(matches!(
        &out.notices[..],
        [Notice::Skipped { reason: "pidfile_unreadable", detail, .. }] if detail.contains("cannot read")
    ));
    assert!(col.collect(SystemTime::now()).notices.is_empty());

    std::fs::write(&pidfile, "not-a-pid\n").unwrap();
    let out = col.collect(SystemTime::now());
    assert!(matches!(
        &out.notices[..],
        [Notice::Skipped { detail, .. }] if detail.contains("not a process id")
    ));

    std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    let out = col.collect(SystemTime::now());
    assert_eq!(pids(&out.resource_metrics), vec![std::process::id() as i64]);
    assert!(out.skipped.is_empty());
    assert!(
        matches!(&out.notices[..], [Notice::Readable { subject, .. }] if subject.starts_with("pidfile "))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(marker("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn self_agrees_with_proc_self_status() {
    // Spend some CPU time, so that there is some to report.
    let spin = Instant::now();
    let mut x = 0u64;
    while spin.elapsed() < Duration::from_millis(100) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let cpu_ticks = || -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15; fields[0] is field 3 (state).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let tps = procfs::ticks_per_second() as f64;
    let mut col = real_collector(vec![ProcessSelector::Myself]);
    let before = cpu_ticks() as f64 / tps;
    let out = col.collect(SystemTime::now());
    let after = cpu_ticks() as f64 / tps;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let me = by_pid(&out.resource_metrics, std::process::id() as i32).unwrap();
    let rss = int_value(me, "process.memory.usage", &[]) as f64;
    let want = (field("VmRSS:") * 1024) as f64;
    assert!(
        (rss - want).abs() <= want * 0.2,
        "rss {rss} vs VmRSS {want}"
    );
    let threads = int_value(me, "process.thread.count", &[]);
    assert!((threads - field("Threads:") as i64).abs() <= 4);
    let cpu = value(me, "process.cpu.time", &[("cpu.mode", "user")])
        + value(me, "process.cpu.time", &[("cpu.mode", "system")]);
    assert!(
        // user and system are converted apart, so allow for one rounding step.
        before - 1e-9 <= cpu && cpu <= after + 1e-9 && cpu > 0.0,
        "cpu {cpu}s, /proc/self/stat {before}s before and {after}s after"
    );
    assert!(int_value(me, "process.unix.file_descriptor.count", &[]) >= 3);
}

// ---- the running receiver ----

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Running {
    capture: Arc<Capture>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_on(cfg: &RuntimeReceiverConfig, proc: Option<ProcFs>, self_pid: i32) -> Running {
    let capture = Capture::new();
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let ctx = ReceiverContext {
        id: ComponentId::parse(RECEIVER).unwrap(),
        next: capture.clone(),
        shutdown: shutdown.clone(),
        telemetry: telemetry.clone(),
    };
    let task = start_with(cfg, ctx, proc.unwrap_or_else(ProcFs::system), self_pid).unwrap();
    Running {
        capture,
        telemetry,
        shutdown,
        task,
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_receiver_collects_every_interval_counts_and_stops_promptly() {
    let cfg = config(
        vec![ProcessSelector::Pid(4242), ProcessSelector::Pid(9999)],
        true,
    );
    let r = start_on(&cfg, Some(fixtures()), 1);
    wait_for("three collections", || r.capture.batches.lock().len() >= 3).await;
    let batches = r.capture.take();
    for b in &batches {
        assert_eq!(b.context, Context::default());
        assert_eq!(b.resource_metrics.len(), 2, "host and 4242");
    }
    let points: usize = batches.iter().map(Batch::point_count).sum();
    let accepted = r.telemetry.value(
        "sluice_receiver_accepted_points_total",
        &[("receiver", RECEIVER)],
    );
    assert!(accepted >= points as f64, "{accepted} < {points}");
    let gone = r.telemetry.value(
        "sluice_receiver_skipped_processes_total",
        &[("receiver", RECEIVER), ("reason", "gone")],
    );
    assert!(
        gone >= 3.0,
        "pid 9999 is skipped at every collection: {gone}"
    );

    let stop = Instant::now();
    r.shutdown.cancel();
    within("receiver stop", r.task).await.unwrap();
    assert!(stop.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_refused_collection_is_counted_and_dropped() {
    let cfg = config(vec![ProcessSelector::Pid(4242)], false);
    let r = start_on(&cfg, Some(fixtures()), 1);
    r.capture.set_refusing(true);
    let refused = || {
        r.telemetry.value(
            "sluice_receiver_refused_points_total",
            &[("receiver", RECEIVER), ("reason", "queue_full")],
        )
    };
    wait_for("a refused collection", || refused() > 0.0).await;
    assert!(r.capture.take().is_empty());
    r.capture.set_refusing(false);
    wait_for("collections taken again", || {
        !r.capture.batches.lock().is_empty()
    })
    .await;
    r.shutdown.cancel();
    within("receiver stop", r.task).await.unwrap();
}

#[tokio::test]
async fn the_real_receiver_reports_itself_with_its_runtime() {
    let mut cfg = config(vec![ProcessSelector::Myself], true);
    cfg.collection_interval = sluice_core::config::types::Duration::from_secs(3600);
    let capture = Capture::new();
    let shutdown = CancellationToken::new();
    let task = within(
        "start",
        cfg.start(ReceiverContext {
            id: ComponentId::parse(RECEIVER).unwrap(),
            next: capture.clone(),
            shutdown: shutdown.clone(),
            telemetry: Arc::new(Telemetry::new()),
        }),
    )
    .await
    .unwrap();
    wait_for("the first collection", || {
        !capture.batches.lock().is_empty()
    })
    .await;
    let batch = capture.take().remove(0);
    let me = by_pid(&batch.resource_metrics, std::process::id() as i32).unwrap();
    assert_eq!(
        int_value(me, "sluice.runtime.workers", &[]),
        1,
        "a current-thread runtime"
    );
    assert!(
        int_value(me, "sluice.runtime.tasks.alive", &[]) >= 1,
        "the receiver's own task"
    );
    assert!(metric(host_of(&batch.resource_metrics), "system.cpu.time").is_some());
    // The next collection is an hour away: shutdown must not wait for it.
    shutdown.cancel();
    within("receiver stop", task).await.unwrap();
}

#[tokio::test]
async fn the_receiver_refuses_to_start_without_proc() {
    let proc = ProcFs {
        root: PathBuf::from("/nonexistent/proc"),
        ..fixtures()
    };
    let ctx = ReceiverContext {
        id: ComponentId::parse(RECEIVER).unwrap(),
        next: Capture::new(),
        shutdown: CancellationToken::new(),
        telemetry: Arc::new(Telemetry::new()),
    };
    let err = start_with(&config(vec![ProcessSelector::Myself], true), ctx, proc, 1).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/proc/stat")
            && err.to_string().contains("needs Linux's /proc"),
        "{err}"
    );
}
