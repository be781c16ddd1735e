use regex::Regex;
use serde::de::{Deserialize, Deserializer, Error as _};
use sluice_core::component::Validate;
use sluice_core::config::types::Duration;
use sluice_core::config::{DeError, LoadContext, Located, Node};
use std::fmt;
use std::path::PathBuf;

/// `receivers.runtime`: process and host runtime counters read from `/proc` every
/// `collection_interval`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeReceiverConfig {
    /// How often to read the counters (default 10s; at least 10ms).
    #[serde(default = "default_collection_interval")]
    pub collection_interval: Duration,
    /// The processes to report (default `[self]`): `self` (Sluice itself, with its tokio runtime's
    /// counters), `{ pid: N }`, `{ pidfile: PATH }` (read again at every collection; relative to
    /// the config file's folder) or `{ name: REGEX }` (every process whose executable name, short
    /// name or command line the regular expression matches, looked up again at every collection).
    #[serde(default = "default_processes")]
    pub processes: Vec<Located<ProcessSelector>>,
    /// Also report the host: CPU time by mode, memory by state, load averages, uptime (default
    /// true).
    #[serde(default = "default_host")]
    pub host: bool,
}

impl Default for RuntimeReceiverConfig {
    fn default() -> Self {
        RuntimeReceiverConfig {
            collection_interval: default_collection_interval(),
            processes: default_processes(),
            host: default_host(),
        }
    }
}

/// One entry of `processes`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub enum ProcessSelector {
    /// `self`: the Sluice process.
    #[serde(rename = "self")]
    Myself,
    /// `{ pid: N }`: one process by its id.
    #[serde(rename = "pid")]
    Pid(u32),
    /// `{ pidfile: PATH }`: the process whose id the file holds.
    #[serde(rename = "pidfile")]
    Pidfile(PathBuf),
    /// `{ name: REGEX }`: every process whose executable name, short name (`comm`) or command line
    /// matches.
    #[serde(rename = "name")]
    Name(NamePattern),
}

impl fmt::Display for ProcessSelector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ProcessSelector::Myself => f.write_str("self"),
            ProcessSelector::Pid(pid) => write!(f, "pid: {pid}"),
            ProcessSelector::Pidfile(p) => write!(f, "pidfile: {}", p.display()),
            ProcessSelector::Name(n) => write!(f, "name: {}", n.0.as_str()),
        }
    }
}

/// A regular expression (Rust `regex` syntax), compiled while the config is read so that a bad
/// one is reported at its own position. It matches anywhere in the text unless anchored (`^`,
/// `$`).
#[derive(Clone, Debug)]
pub struct NamePattern(pub Regex);

impl NamePattern {
    pub fn new(pattern: &str) -> Result<NamePattern, String> {
        if pattern.is_empty() {
            return Err("the name pattern is empty; write `.` to match every process".into());
        }
        Regex::new(pattern)
            .map(NamePattern)
            .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for NamePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NamePattern::new(&s).map_err(D::Error::custom)
    }
}

fn default_collection_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_processes() -> Vec<Located<ProcessSelector>> {
    vec![Located {
        value: ProcessSelector::Myself,
        pos: Default::default(),
    }]
}
fn default_host() -> bool {
    true
}

/// The shortest `collection_interval` accepted.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl Validate for RuntimeReceiverConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        for p in &mut self.processes {
            if let ProcessSelector::Pidfile(path) = &mut p.value {
                *path = ctx.base_dir.join(&*path);
            }
        }
    }

    fn validate(&self, node: &Node, _ctx: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        if self.collection_interval.get() < MIN_INTERVAL {
            errs.push(DeError::new(
                node.pos,
                format!(
                    "collection_interval {} is too short; write at least 10ms (the default is 10s)",
                    self.collection_interval
                ),
            ));
        }
        if self.processes.is_empty() && !self.host {
            errs.push(DeError::new(
                node.pos,
                "nothing to collect: `processes` is empty and `host` is false",
            ));
        }
        for p in &self.processes {
            let pos = if p.pos.is_known() { p.pos } else { node.pos };
            match &p.value {
                ProcessSelector::Pid(pid) if *pid == 0 || *pid > i32::MAX as u32 => {
                    errs.push(DeError::new(
                        pos,
                        format!("pid {pid} is not a process id (1 to {})", i32::MAX),
                    ));
                }
                ProcessSelector::Pidfile(path) if path.as_os_str().is_empty() => {
                    errs.push(DeError::new(pos, "pidfile is empty; write the file's path"));
                }
                _ => {}
            }
        }
        errs
    }
}
