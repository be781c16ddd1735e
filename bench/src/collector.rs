//! A collector process under test: started pinned to one core with `taskset` (util-linux), measured
//! from `/proc` (CPU time user+sys from `stat`, peak RSS `VmHWM` from `status`), stopped with
//! SIGTERM. Its output goes to a log file in its own temporary folder, shown when something fails.

use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How to start one collector.
pub struct Spec {
    /// `sluice`, `vmagent`, `rotel`.
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The address it receives on; it is ready once this accepts connections.
    pub listen: SocketAddr,
    /// Its working folder (config, data, log); removed with the process.
    pub dir: tempfile::TempDir,
}

/// CPU time and memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system time of all its threads.
    pub cpu: Duration,
    /// Peak resident set (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// Bytes written to files and sockets (`wchar` of `/proc/<pid>/io`): shows what the collector
    /// really sends, compressed or not.
    pub written: u64,
}

/// A running collector; killed if dropped without [`Process::stop`].
pub struct Process {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Process {
    /// Starts `spec` (on CPU `core` when given) and waits until it accepts connections.
    pub async fn start(
        spec: Spec,
        core: Option<usize>,
        timeout: Duration,
    ) -> anyhow::Result<Process> {
        let log = spec.dir.path().join("collector.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = match core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(&spec.program);
                cmd
            }
            None => Command::new(&spec.program),
        };
        let child = cmd
            .args(&spec.args)
            // Sluice's log level comes from its config, not from the harness' environment.
            .env_remove("RUST_LOG")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let mut p = Process {
            name: spec.name,
            child,
            log,
            _dir: spec.dir,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its log:\n{}",
                    p.name,
                    p.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(spec.listen).await.is_ok() {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {} within {timeout:?}; its log:\n{}",
                    p.name,
                    spec.listen,
                    p.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            ),
            None => Ok(()),
        }
    }

    /// CPU time and peak RSS so far (read before stopping: `/proc` forgets them at exit).
    pub fn usage(&self) -> anyhow::Result<Usage> {
        usage(self.pid())
    }

    /// Waits (at most `max`) until the process uses less than 4% of a CPU over half a second:
    /// its start-up is over.
    pub async fn settle(&mut self, max: Duration) -> anyhow::Result<()> {
        const WINDOW: Duration = Duration::from_millis(500);
        let deadline = Instant::now() + max;
        let mut last = self.usage()?.cpu;
        while Instant::now() < deadline {
            tokio::time::sleep(WINDOW).await;
            self.check_alive()?;
            let now = self.usage()?.cpu;
            if now.saturating_sub(last) < WINDOW / 25 {
                break;
            }
            last = now;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit status; after `timeout`, SIGKILL and an error.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let pid = self.pid().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; killed",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last lines of the collector's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// CPU time (all threads, user + system), `VmHWM` and bytes written of process `pid`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces: the 14th and
    // 15th fields (utime, stime) are the 12th and 13th after it.
    let rest = stat
        .rsplit_once(')')
        .context("/proc/<pid>/stat without ')'")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    let cpu = Duration::from_secs_f64(total as f64 / clock_ticks() as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmHWM in /proc/<pid>/status")?
        .parse()?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let written = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .context("no wchar in /proc/<pid>/io")?
        .trim()
        .parse()?;
    Ok(Usage {
        cpu,
        hwm_kib,
        written,
    })
}

/// Time CPU `core` spent running processes so far (all of them), from `/proc/stat`: with the collector's own
/// CPU time, it tells how much other work shared the collector's CPU during a run.
pub fn core_busy(core: usize) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    // user nice system idle iowait irq softirq steal: busy is user + nice + system + steal. Interrupt
    // time is left out: much of it is the network work the collector's own traffic causes.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(ticks.len() == 8, "short {name} line in /proc/stat");
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[7];
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/<pid>/stat` times, asked of `getconf` once.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The first line `program args` prints (a version banner), or why there is none.
pub fn version(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .to_string();
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("not runnable: {e}"),
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `perf record` attached to a running process (sampling on CPU time, DWARF call graphs).
pub struct Profiler {
    child: Child,
    file: PathBuf,
}

impl Profiler {
    pub fn attach(pid: u32, file: &Path) -> anyhow::Result<Profiler> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,32768",
                "-o",
            ])
            .arg(file)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record (package linux-perf)")?;
        Ok(Profiler {
            child,
            file: file.to_path_buf(),
        })
    }

    /// Stops recording (SIGINT, as perf expects) and waits for the file to be written.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("perf record did not finish writing {}", self.file.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("profile written to {}", self.file.display());
        Ok(())
    }
}
