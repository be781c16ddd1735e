//! The host: CPU time by mode (`/proc/stat`), memory by state (`/proc/meminfo`), load averages
//! (`/proc/loadavg`) and uptime (`/proc/uptime`), named as the OpenTelemetry semantic conventions
//! and the collector's hostmetrics receiver name them.

use super::{MetricSet, ProcFs, ReadError, int};
use procfs::{CpuTime, KernelStats, LoadAverage, Meminfo};
use sluice_core::proto::otlp::metrics::v1::number_data_point::Value;

/// What one collection read about the host.
#[derive(Clone, Debug)]
pub(crate) struct HostSample {
    /// Clock ticks spent in each mode, all CPUs together: (`cpu.mode`, ticks).
    pub cpu_ticks: Vec<(&'static str, u64)>,
    pub memory: Memory,
    pub load: [f64; 3],
    pub uptime_seconds: Option<f64>,
}

/// Memory in bytes. `used + free + cached + buffers == total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memory {
    pub total: u64,
    pub free: u64,
    pub buffers: u64,
    /// The page cache and reclaimable slab (`Cached + SReclaimable`), as `free(1)` counts it.
    pub cached: u64,
    pub used: u64,
}

impl Memory {
    pub fn from_meminfo(m: &Meminfo) -> Memory {
        let cached = m.cached + m.s_reclaimable.unwrap_or(0);
        Memory {
            total: m.mem_total,
            free: m.mem_free,
            buffers: m.buffers,
            cached,
            used: m
                .mem_total
                .saturating_sub(m.mem_free)
                .saturating_sub(m.buffers)
                .saturating_sub(cached),
        }
    }
}

/// The modes of `/proc/stat`'s `cpu` line. Guest time is left out: the kernel already counts it in
/// `user` and `nice`.
pub(crate) fn cpu_modes(cpu: &CpuTime) -> Vec<(&'static str, u64)> {
    let mut modes = vec![
        ("user", cpu.user),
        ("nice", cpu.nice),
        ("system", cpu.system),
        ("idle", cpu.idle),
    ];
    let optional = [
        ("iowait", cpu.iowait),
        ("interrupt", cpu.irq),
        ("softirq", cpu.softirq),
        ("steal", cpu.steal),
    ];
    modes.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    modes
}

pub(crate) fn read(proc: &ProcFs, stat: &KernelStats) -> Result<HostSample, ReadError> {
    let meminfo: Meminfo = proc.parse("meminfo")?;
    let load: LoadAverage = proc.parse("loadavg")?;
    Ok(HostSample {
        cpu_ticks: cpu_modes(&stat.total),
        memory: Memory::from_meminfo(&meminfo),
        load: [load.one.into(), load.five.into(), load.fifteen.into()],
        uptime_seconds: None,
    })
}

/// Appends the host's metrics; counters start at boot.
pub(crate) fn append_metrics(
    m: &mut MetricSet,
    s: &HostSample,
    boot_unix_nanos: u64,
    ticks_per_second: u64,
) {
    m.counter(
        "system.cpu.time",
        "s",
        "Seconds each logical CPU spent on each mode, all CPUs together.",
        boot_unix_nanos,
        s.cpu_ticks
            .iter()
            .map(|(mode, ticks)| {
                (
                    vec![("cpu.mode", *mode)],
                    Value::AsDouble(*ticks as f64 / ticks_per_second as f64),
                )
            })
            .collect(),
    );
    let mem = &s.memory;
    m.updown(
        "system.memory.usage",
        "By",
        "Reports memory in use by state.",
        boot_unix_nanos,
        [
            ("used", mem.used),
            ("free", mem.free),
            ("cached", mem.cached),
            ("buffers", mem.buffers),
        ]
        .into_iter()
        .map(|(state, v)| (vec![("system.memory.state", state)], int(v)))
        .collect(),
    );
    m.updown(
        "system.memory.limit",
        "By",
        "Total memory available in the system.",
        boot_unix_nanos,
        vec![(vec![], int(mem.total))],
    );
    for (name, v) in [
        ("system.cpu.load_average.1m", s.load[0]),
        ("system.cpu.load_average.5m", s.load[1]),
        ("system.cpu.load_average.15m", s.load[2]),
    ] {
        m.gauge(
            name,
            "{thread}",
            "Average number of runnable and uninterruptible threads over the period.",
            vec![(vec![], Value::AsDouble(round_load(v)))],
        );
    }
    if let Some(up) = s.uptime_seconds {
        m.gauge(
            "system.uptime",
            "s",
            "The time the system has been running.",
            vec![(vec![], Value::AsDouble(up))],
        );
    }
}

/// `/proc/loadavg` has two decimals; procfs reads them as `f32`, so `1.58` would become
/// `1.5800000429153442` in an `f64`.
fn round_load(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
