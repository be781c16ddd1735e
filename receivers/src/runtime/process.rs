//! One process: finding those a `name` selector matches, reading one from `/proc/<pid>/`, and its
//! metrics (OpenTelemetry semantic conventions for processes).

use super::config::NamePattern;
use super::{MetricSet, ProcFs, ReadError, int, str_attr};
use procfs::process::{Io, LimitValue, Limits, Stat, Status};
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::number_data_point::Value;
use sluice_core::proto::otlp::resource::v1::Resource;

/// What one collection read about one process. Counters are as the kernel keeps them (CPU time in
/// clock ticks); `missing` names the files that could not be read (other users' processes hide
/// `io` and `fd`), whose figures are left out.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProcessSample {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's short name (`comm`, at most 15 bytes), as `ps` shows it.
    pub comm: String,
    /// The executable's path, when `/proc/<pid>/exe` can be read (not for kernel threads and,
    /// without privileges, other users' processes).
    pub exe: Option<String>,
    /// The arguments; empty for kernel threads and zombies.
    pub cmdline: Vec<String>,
    pub user_ticks: u64,
    pub system_ticks: u64,
    /// Clock ticks from boot to the process's start.
    pub start_ticks: u64,
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// Context switches of the main thread (as `/proc/<pid>/status` reports them).
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// Bytes read from and written to the storage layer.
    pub disk_read_bytes: Option<u64>,
    pub disk_written_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files; `None` when unlimited or unreadable.
    pub fd_limit: Option<u64>,
    pub missing: Vec<&'static str>,
}

impl ProcessSample {
    /// `process.executable.name`: the base name of the executable, else the short name.
    pub fn executable_name(&self) -> &str {
        match &self.exe {
            Some(path) => path.rsplit('/').next().unwrap_or(path),
            None => &self.comm,
        }
    }

    /// `process.command_line`: the arguments joined by spaces.
    pub fn command_line(&self) -> String {
        self.cmdline.join(" ")
    }
}

/// Reads `/proc/<pid>/`. `stat` and `status` must be readable; the rest is optional.
pub(crate) fn read(proc: &ProcFs, pid: i32) -> Result<ProcessSample, ReadError> {
    read_parts(proc, pid).map_err(|e| match e {
        // A file that was there may vanish with its process half-way through.
        ReadError::Unreadable(_) if !proc.path(&pid.to_string()).exists() => ReadError::Gone,
        e => e,
    })
}

fn read_parts(proc: &ProcFs, pid: i32) -> Result<ProcessSample, ReadError> {
    let dir = pid.to_string();
    let stat: Stat = proc.parse(&format!("{dir}/stat"))?;
    let status: Status = proc.parse(&format!("{dir}/status"))?;
    let mut missing = Vec::new();
    let cmdline = match proc.read_bytes(&format!("{dir}/cmdline")) {
        Ok(raw) => split_cmdline(&raw),
        Err(ReadError::Gone) => return Err(ReadError::Gone),
        Err(ReadError::Unreadable(_)) => {
            missing.push("cmdline");
            Vec::new()
        }
    };
    let exe = std::fs::read_link(proc.path(&format!("{dir}/exe")))
        .ok()
        .map(|p| {
            let p = p.to_string_lossy();
            p.strip_suffix(" (deleted)").unwrap_or(&p).to_string()
        });
    let m = &mut missing;
    let io: Option<Io> = optional(proc, pid, proc.parse(&format!("{dir}/io")), "io", m)?;
    let open_fds = optional(proc, pid, proc.count_entries(&format!("{dir}/fd")), "fd", m)?;
    let limits: Option<Limits> =
        optional(proc, pid, proc.parse(&format!("{dir}/limits")), "limits", m)?;
    let rss_bytes = match status.vmrss {
        Some(kib) => kib * 1024,
        None => stat.rss * proc.page_size,
    };
    Ok(ProcessSample {
        pid: stat.pid,
        ppid: stat.ppid,
        comm: stat.comm,
        exe,
        cmdline,
        user_ticks: stat.utime,
        system_ticks: stat.stime,
        start_ticks: stat.starttime,
        rss_bytes,
        virtual_bytes: stat.vsize,
        threads: status.threads,
        minor_faults: stat.minflt,
        major_faults: stat.majflt,
        voluntary_switches: status.voluntary_ctxt_switches,
        involuntary_switches: status.nonvoluntary_ctxt_switches,
        disk_read_bytes: io.as_ref().map(|io| io.read_bytes),
        disk_written_bytes: io.as_ref().map(|io| io.write_bytes),
        open_fds,
        fd_limit: limits.and_then(|l| match l.max_open_files.soft_limit {
            LimitValue::Value(v) => Some(v),
            LimitValue::Unlimited => None,
        }),
        missing,
    })
}

/// An optional part: `None` (and named in `missing`) when unreadable or absent (`io` needs a
/// kernel with task I/O accounting); a vanished process is still an error.
fn optional<T>(
    proc: &ProcFs,
    pid: i32,
    r: Result<T, ReadError>,
    what: &'static str,
    missing: &mut Vec<&'static str>,
) -> Result<Option<T>, ReadError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ReadError::Gone) if !proc.path(&pid.to_string()).exists() => Err(ReadError::Gone),
        Err(_) => {
            missing.push(what);
            Ok(None)
        }
    }
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The processes `patterns` match, by pid, each with the indexes of the patterns that match it.
/// A pattern matches the executable's base name, the short name (`comm`) or the command line.
/// Processes that vanish during the scan are left out.
pub(crate) fn scan(proc: &ProcFs, patterns: &[(usize, &NamePattern)]) -> Vec<(i32, Vec<usize>)> {
    let Ok(entries) = std::fs::read_dir(&proc.root) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| *pid > 0)
        .collect();
    pids.sort_unstable();
    let mut out = Vec::new();
    for pid in pids {
        let dir = pid.to_string();
        let Ok(comm) = proc.read_bytes(&format!("{dir}/comm")) else {
            continue;
        };
        let comm = String::from_utf8_lossy(&comm)
            .trim_end_matches('\n')
            .to_string();
        let cmdline = proc
            .read_bytes(&format!("{dir}/cmdline"))
            .map(|raw| split_cmdline(&raw).join(" "))
            .unwrap_or_default();
        let exe_name = std::fs::read_link(proc.path(&format!("{dir}/exe")))
            .ok()
            .and_then(|p| {
                let p = p.to_string_lossy();
                let p = p.strip_suffix(" (deleted)").unwrap_or(&p);
                p.rsplit('/').next().map(str::to_string)
            });
        let hits: Vec<usize> = patterns
            .iter()
            .filter(|(_, re)| {
                re.is_match(&comm)
                    || exe_name.as_deref().is_some_and(|n| re.is_match(n))
                    || (!cmdline.is_empty() && re.is_match(&cmdline))
            })
            .map(|(i, _)| *i)
            .collect();
        if !hits.is_empty() {
            out.push((pid, hits));
        }
    }
    out
}

/// The resource of a process: who it is and where it runs.
pub(crate) fn resource(s: &ProcessSample, host_name: &str) -> Resource {
    let int_attr = |k: &str, v: i32| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v.into())),
        }),
    };
    let mut attributes = vec![
        str_attr("host.name", host_name),
        int_attr("process.pid", s.pid),
        int_attr("process.parent_pid", s.ppid),
        str_attr("process.executable.name", s.executable_name()),
    ];
    if let Some(exe) = &s.exe {
        attributes.push(str_attr("process.executable.path", exe));
    }
    if let Some(arg0) = s.cmdline.first() {
        attributes.push(str_attr("process.command", arg0));
        attributes.push(str_attr("process.command_line", &s.command_line()));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Times the process metrics need: the process's start (for its counters' start time) and how
/// long the host has been up (for `process.uptime`).
pub(crate) struct Clock {
    pub boot_unix_nanos: u64,
    pub ticks_per_second: u64,
    pub host_uptime_seconds: Option<f64>,
}

impl Clock {
    /// When a process started, in nanoseconds since the epoch.
    pub fn start_unix_nanos(&self, start_ticks: u64) -> u64 {
        let since_boot =
            u128::from(start_ticks) * 1_000_000_000 / u128::from(self.ticks_per_second);
        self.boot_unix_nanos
            .saturating_add(u64::try_from(since_boot).unwrap_or(u64::MAX))
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second as f64
    }
}

/// Appends a process's metrics; counters start at the process's start.
pub(crate) fn append_metrics(m: &mut MetricSet, s: &ProcessSample, clock: &Clock) {
    let start = clock.start_unix_nanos(s.start_ticks);
    m.counter(
        "process.cpu.time",
        "s",
        "Total CPU seconds broken down by different CPU modes.",
        start,
        vec![
            (
                vec![("cpu.mode", "user")],
                Value::AsDouble(clock.seconds(s.user_ticks)),
            ),
            (
                vec![("cpu.mode", "system")],
                Value::AsDouble(clock.seconds(s.system_ticks)),
            ),
        ],
    );
    m.updown(
        "process.memory.usage",
        "By",
        "The amount of physical memory in use (resident set size).",
        start,
        vec![(vec![], int(s.rss_bytes))],
    );
    m.updown(
        "process.memory.virtual",
        "By",
        "The amount of committed virtual memory.",
        start,
        vec![(vec![], int(s.virtual_bytes))],
    );
    m.updown(
        "process.thread.count",
        "{thread}",
        "Process threads count.",
        start,
        vec![(vec![], int(s.threads))],
    );
    if let Some(n) = s.open_fds {
        m.updown(
            "process.unix.file_descriptor.count",
            "{file_descriptor}",
            "Number of unix file descriptors in use by the process.",
            start,
            vec![(vec![], int(n))],
        );
    }
    if let Some(n) = s.fd_limit {
        m.updown(
            "process.unix.file_descriptor.limit",
            "{file_descriptor}",
            "The most file descriptors the process may have open (its soft RLIMIT_NOFILE).",
            start,
            vec![(vec![], int(n))],
        );
    }
    if let (Some(v), Some(i)) = (s.voluntary_switches, s.involuntary_switches) {
        m.counter(
            "process.context_switches",
            "{context_switch}",
            "Number of times the process has been context switched (its main thread).",
            start,
            vec![
                (vec![("process.context_switch.type", "voluntary")], int(v)),
                (vec![("process.context_switch.type", "involuntary")], int(i)),
            ],
        );
    }
    if let (Some(r), Some(w)) = (s.disk_read_bytes, s.disk_written_bytes) {
        m.counter(
            "process.disk.io",
            "By",
            "Disk bytes transferred.",
            start,
            vec![
                (vec![("disk.io.direction", "read")], int(r)),
                (vec![("disk.io.direction", "write")], int(w)),
            ],
        );
    }
    m.counter(
        "process.paging.faults",
        "{fault}",
        "Number of page faults the process has made.",
        start,
        vec![
            (
                vec![("system.paging.fault.type", "major")],
                int(s.major_faults),
            ),
            (
                vec![("system.paging.fault.type", "minor")],
                int(s.minor_faults),
            ),
        ],
    );
    m.gauge(
        "process.start_time",
        "s",
        "When the process started, in seconds since the Unix epoch.",
        vec![(vec![], Value::AsDouble(start as f64 / 1e9))],
    );
    if let Some(up) = clock.host_uptime_seconds {
        let age = (up - clock.seconds(s.start_ticks)).max(0.0);
        m.gauge(
            "process.uptime",
            "s",
            "The time the process has been running.",
            vec![(vec![], Value::AsDouble(age))],
        );
    }
}
