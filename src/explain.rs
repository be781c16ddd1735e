//! `sluice explain NAME`: how the `normalize` processor names one metric. Prints each rule that
//! fired, one per line, and on the last line the final name (with the value factor when a
//! base-unit conversion applies). With `--config`, the settings of the file's `normalize`
//! processor apply (the first by id: `normalize` before `normalize/<name>`).

use crate::registry;
use anyhow::{Context, anyhow, bail};
use sluice_core::component::{Class, parse_config};
use sluice_core::config::{LoadContext, component_node, load_file};
use sluice_processors::normalize::{MetricKind, NormalizeConfig, explain};
use std::path::Path;
use std::process::ExitCode;

/// The values of `--type`.
pub const TYPES: [&str; 6] = [
    "gauge",
    "counter",
    "updowncounter",
    "histogram",
    "exponential_histogram",
    "summary",
];

pub fn run(
    name: &str,
    kind: &str,
    unit: &str,
    base_units: bool,
    config: Option<&Path>,
) -> ExitCode {
    match explain_text(name, kind, unit, base_units, config) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn explain_text(
    name: &str,
    kind: &str,
    unit: &str,
    base_units: bool,
    config: Option<&Path>,
) -> anyhow::Result<String> {
    let kind: MetricKind = kind.parse().map_err(|e: String| anyhow!(e))?;
    let mut cfg = match config {
        Some(path) => normalize_config(path)?,
        None => NormalizeConfig::default(),
    };
    cfg.base_units |= base_units;
    let explanation = explain(&cfg, name, kind, unit).map_err(|e| anyhow!(e))?;
    Ok(explanation.to_string())
}

/// The typed settings of the first `normalize` processor of a config file (validated with the
/// whole file first, so that its errors are reported as `sluice validate` reports them).
fn normalize_config(path: &Path) -> anyhow::Result<NormalizeConfig> {
    let config = load_file(path, &registry::Components).map_err(|errors| {
        anyhow!(
            "{errors}\n{} error(s) in {}",
            errors.0.len(),
            path.display()
        )
    })?;
    let Some(id) = config.processors.keys().find(|id| id.kind == "normalize") else {
        bail!("{} has no `normalize` processor", path.display());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let node = component_node(&text, Class::Processor, id)
        .ok_or_else(|| anyhow!("{}: processor `{id}` not found", path.display()))?;
    let ctx = LoadContext {
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    parse_config::<NormalizeConfig>(&node, &ctx).map_err(|errs| {
        let msgs: Vec<String> = errs.into_iter().map(|e| e.message).collect();
        anyhow!("{}: processor `{id}`: {}", path.display(), msgs.join("; "))
    })
}
