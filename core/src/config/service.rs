//! The `service` section: pipelines and Sluice's own telemetry.

use super::de::{Located, from_node};
use super::node::{Node, Pos, Value};
use super::types::{ByteSize, Duration, Endpoint};
use crate::component::ComponentId;
use serde::Deserialize;

#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    pub telemetry: TelemetryConfig,
    pub pipelines: Vec<PipelineConfig>,
    /// How long the staged shutdown may take in all (default 10s).
    pub shutdown_timeout: std::time::Duration,
    /// The process's hard memory limit in bytes (`service.memory_limit`; none by default).
    pub memory_limit: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// `metrics` or `metrics/name`.
    pub id: String,
    pub receivers: Vec<Located<ComponentId>>,
    pub processors: Vec<Located<ComponentId>>,
    pub exporters: Vec<Located<ComponentId>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Sluice's own metrics, `/healthz` and `/readyz`.
    #[serde(default)]
    pub metrics: MetricsTelemetryConfig,
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsTelemetryConfig {
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (default `127.0.0.1:8888`).
    #[serde(default = "default_telemetry_address")]
    pub address: Endpoint,
    /// `none` turns the endpoint off; any other level (`basic`, `normal`, `detailed`) serves it.
    #[serde(default)]
    pub level: TelemetryLevel,
}

impl Default for MetricsTelemetryConfig {
    fn default() -> Self {
        MetricsTelemetryConfig {
            address: default_telemetry_address(),
            level: TelemetryLevel::Normal,
        }
    }
}

fn default_telemetry_address() -> Endpoint {
    Endpoint("127.0.0.1:8888".into())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelemetryLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `error`, `warn`, `info` (default), `debug`, `trace`, or directives such as
    /// `info,sluice_exporters=debug`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level", deserialize_with = "log_filter")]
    pub level: String,
}

fn log_filter<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let s = String::deserialize(d)?;
    let ok = s.split(',').map(str::trim).all(|directive| {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    if ok {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "invalid log level {s:?}: use off, error, warn, info, debug or trace, or directives such as info,sluice_exporters=debug"
        )))
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    shutdown_timeout: Option<Duration>,
    #[serde(default)]
    memory_limit: Option<ByteSize>,
    #[serde(default)]
    pipelines: Option<Located<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineSection {
    receivers: Vec<Located<String>>,
    #[serde(default)]
    processors: Vec<Located<String>>,
    exporters: Vec<Located<String>>,
}

pub(super) fn parse(
    node: &Node,
    err: &mut dyn FnMut(Pos, Option<String>, String),
) -> ServiceConfig {
    let comp = Some("service".to_string());
    let mut out = ServiceConfig {
        shutdown_timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    match from_node::<ServiceSection>(node) {
        Ok(s) => {
            out.telemetry = s.telemetry;
            out.memory_limit = s.memory_limit.map(ByteSize::get);
            if let Some(t) = s.shutdown_timeout {
                out.shutdown_timeout = t.get();
            }
            if s.pipelines.is_none() {
                err(
                    node.pos,
                    comp.clone(),
                    "`pipelines` is missing: define at least one, such as `metrics`".into(),
                );
            }
        }
        Err(e) => err(e.pos, comp.clone(), e.message),
    }
    let Some(map) = node.as_map() else { return out };
    let Some((_, pipelines)) = map.iter().find(|(k, _)| k.key_text() == "pipelines") else {
        return out;
    };
    let entries = match &pipelines.value {
        Value::Map(e) => e.as_slice(),
        _ => {
            err(
                pipelines.pos,
                comp,
                "`pipelines` must be a map such as `metrics: {receivers: [...], exporters: [...]}`"
                    .into(),
            );
            return out;
        }
    };
    if entries.is_empty() {
        err(pipelines.pos, comp, "no pipelines are defined".into());
    }
    for (k, v) in entries {
        let id = k.key_text();
        let pcomp = Some(format!("service.pipelines.{id}"));
        let signal = id.split('/').next().unwrap_or("");
        if signal != "metrics" {
            err(
                k.pos,
                pcomp.clone(),
                format!(
                    "pipeline `{id}`: Sluice carries metrics only; name pipelines `metrics` or `metrics/<name>`"
                ),
            );
            continue;
        }
        let section = match from_node::<PipelineSection>(v) {
            Ok(s) => s,
            Err(e) => {
                err(e.pos, pcomp, e.message);
                continue;
            }
        };
        let mut ids = |list: Vec<Located<String>>, what: &str| -> Vec<Located<ComponentId>> {
            if list.is_empty() && what != "processors" {
                err(
                    v.pos,
                    pcomp.clone(),
                    format!("the pipeline must have at least one entry in `{what}`"),
                );
            }
            list.into_iter()
                .filter_map(|l| match ComponentId::parse(&l.value) {
                    Ok(id) => Some(Located {
                        value: id,
                        pos: l.pos,
                    }),
                    Err(m) => {
                        err(l.pos, pcomp.clone(), m);
                        None
                    }
                })
                .collect()
        };
        let receivers = ids(section.receivers, "receivers");
        let processors = ids(section.processors, "processors");
        let exporters = ids(section.exporters, "exporters");
        out.pipelines.push(PipelineConfig {
            id,
            receivers,
            processors,
            exporters,
        });
    }
    out
}
