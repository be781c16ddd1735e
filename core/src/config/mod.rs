//! Loading `pipeline.yaml`: YAML -> positioned tree -> `${env:...}` expansion -> typed component
//! configs (through the binary's registry) -> cross-checks of the pipelines. Every problem found is
//! reported, each with file, line, column and the component it belongs to.

mod de;
mod env;
mod error;
mod node;
mod service;
pub mod types;

pub use de::{DeError, Located, from_node};
pub use error::{ConfigError, ConfigErrors};
/// Parses a YAML document into a positioned tree (for files a config names, such as a tenants file).
pub use node::parse as parse_yaml;
pub use node::{Node, Pos, Value};
pub use service::{
    LogsConfig, MetricsTelemetryConfig, PipelineConfig, ServiceConfig, TelemetryConfig,
    TelemetryLevel,
};

use crate::component::{
    Class, ComponentId, ExporterConfig, ProcessorConfig, ReceiverConfig, Registry,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Facts a component config may need while it is parsed (no I/O happens during parsing).
#[derive(Clone, Debug)]
pub struct LoadContext {
    /// The folder of the config file: relative paths in the config are relative to it.
    pub base_dir: PathBuf,
}

impl LoadContext {
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// A loaded and validated config.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub receivers: BTreeMap<ComponentId, Arc<dyn ReceiverConfig>>,
    pub processors: BTreeMap<ComponentId, Arc<dyn ProcessorConfig>>,
    pub exporters: BTreeMap<ComponentId, Arc<dyn ExporterConfig>>,
    pub service: ServiceConfig,
}

/// Reads and validates a config file.
pub fn load_file(path: &Path, registry: &dyn Registry) -> Result<Config, ConfigErrors> {
    let file: Arc<str> = path.display().to_string().into();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            pos: Pos::default(),
            component: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, file, LoadContext { base_dir }, registry).map(|mut c| {
        c.source = path.to_path_buf();
        c
    })
}

/// Validates a config given as text; `file` names it in messages.
pub fn load_str(
    text: &str,
    file: Arc<str>,
    ctx: LoadContext,
    registry: &dyn Registry,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        file: file.clone(),
        list: Vec::new(),
        env_failed: BTreeSet::new(),
    };
    let mut root = node::parse(text).map_err(|(pos, msg)| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            pos,
            component: None,
            message: msg,
        }])
    })?;
    expand_env(&mut root, &mut errs);

    let mut sections: BTreeMap<&str, &Node> = BTreeMap::new();
    match &root.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                let key = k.key_text();
                match key.as_str() {
                    "receivers" | "processors" | "exporters" | "service" => {
                        sections.insert(
                            match key.as_str() {
                                "receivers" => "receivers",
                                "processors" => "processors",
                                "exporters" => "exporters",
                                _ => "service",
                            },
                            v,
                        );
                    }
                    "extensions" | "connectors" => errs.push(
                        k.pos,
                        None,
                        format!("`{key}` are not supported by Sluice; see docs/configuration.md"),
                    ),
                    _ => errs.push(
                        k.pos,
                        None,
                        format!(
                            "unknown top-level key `{key}`, expected one of `receivers`, `processors`, `exporters`, `service`"
                        ),
                    ),
                }
            }
        }
        Value::Null => errs.push(root.pos, None, "the config file is empty".to_string()),
        _ => errs.push(
            root.pos,
            None,
            "the config must be a map with `receivers`, `exporters` and `service`".to_string(),
        ),
    }

    let receivers = parse_components(
        Class::Receiver,
        sections.get("receivers").copied(),
        &ctx,
        &mut errs,
        |k| registry.receiver(k),
        registry,
    );
    let processors = parse_components(
        Class::Processor,
        sections.get("processors").copied(),
        &ctx,
        &mut errs,
        |k| registry.processor(k),
        registry,
    );
    let exporters = parse_components(
        Class::Exporter,
        sections.get("exporters").copied(),
        &ctx,
        &mut errs,
        |k| registry.exporter(k),
        registry,
    );

    if matches!(root.value, Value::Map(_)) {
        if receivers.declared.is_empty() && sections.contains_key("receivers")
            || !sections.contains_key("receivers")
        {
            errs.push(
                sections.get("receivers").map_or(root.pos, |n| n.pos),
                None,
                "no receivers are configured".into(),
            );
        }
        if exporters.declared.is_empty() && sections.contains_key("exporters")
            || !sections.contains_key("exporters")
        {
            errs.push(
                sections.get("exporters").map_or(root.pos, |n| n.pos),
                None,
                "no exporters are configured".into(),
            );
        }
    }

    let service = match sections.get("service") {
        Some(n) => service::parse(n, &mut |pos, comp, msg| errs.push(pos, comp, msg)),
        None => {
            if matches!(root.value, Value::Map(_)) {
                errs.push(
                    root.pos,
                    None,
                    "`service` is missing: it lists the pipelines".into(),
                );
            }
            ServiceConfig::default()
        }
    };

    for p in &service.pipelines {
        let comp = Some(format!("service.pipelines.{}", p.id));
        check_refs(
            &p.receivers,
            &receivers.declared,
            Class::Receiver,
            &comp,
            &mut errs,
        );
        check_refs(
            &p.processors,
            &processors.declared,
            Class::Processor,
            &comp,
            &mut errs,
        );
        check_refs(
            &p.exporters,
            &exporters.declared,
            Class::Exporter,
            &comp,
            &mut errs,
        );
        for r in &p.processors {
            let Some(proc) = processors.parsed.get(&r.value) else {
                continue;
            };
            for target in proc.routes_to() {
                if !p.exporters.iter().any(|e| e.value == target.value) {
                    errs.push(
                        target.pos,
                        Some(format!("processors.{}", r.value)),
                        format!(
                            "routes to exporter `{}`, which is not in the exporters of pipeline `{}`",
                            target.value, p.id
                        ),
                    );
                }
            }
        }
        let mut seen = BTreeSet::new();
        for r in &p.processors {
            if !seen.insert(&r.value) {
                errs.push(
                    r.pos,
                    comp.clone(),
                    format!("references processor `{}` more than once", r.value),
                );
            }
        }
    }

    if errs.list.is_empty() {
        Ok(Config {
            source: PathBuf::from(&*file),
            receivers: receivers.parsed,
            processors: processors.parsed,
            exporters: exporters.parsed,
            service,
        })
    } else {
        errs.list.sort_by_key(|e| e.pos);
        Err(ConfigErrors(errs.list))
    }
}

/// The settings node of one component, as written in a config text (after `${env:...}`
/// expansion), for tools that need one component's typed config back (`sluice explain`): parse it
/// with [`crate::component::parse_config`]. `None` when the text does not parse or has no such
/// component; load the file with [`load_file`] first to report its errors.
pub fn component_node(text: &str, class: Class, id: &ComponentId) -> Option<Node> {
    let mut root = node::parse(text).ok()?;
    let mut errs = Errors {
        file: Arc::from(""),
        list: Vec::new(),
        env_failed: BTreeSet::new(),
    };
    expand_env(&mut root, &mut errs);
    let Value::Map(sections) = root.value else {
        return None;
    };
    let (_, section) = sections
        .into_iter()
        .find(|(k, _)| k.key_text() == class.plural())?;
    let Value::Map(components) = section.value else {
        return None;
    };
    components
        .into_iter()
        .find(|(k, _)| ComponentId::parse(&k.key_text()).as_ref() == Ok(id))
        .map(|(_, v)| v)
}

struct Errors {
    file: Arc<str>,
    list: Vec<ConfigError>,
    /// Positions of string values whose `${env:...}` could not be expanded. Their error is reported
    /// once; later errors there would only be about the unexpanded text (`invalid endpoint "${env:X}"`).
    env_failed: BTreeSet<Pos>,
}

impl Errors {
    fn push(&mut self, pos: Pos, component: Option<String>, message: String) {
        if self.env_failed.contains(&pos) {
            return;
        }
        self.list.push(ConfigError {
            file: self.file.clone(),
            pos,
            component,
            message,
        });
    }
}

/// Expands `${env:...}` in every string value; a variable that cannot be expanded is reported with
/// the component the value belongs to.
fn expand_env(root: &mut Node, errs: &mut Errors) {
    let mut expand = |node: &mut Node, component: Option<String>| {
        node.visit_strings_mut(&mut |s, pos| match env::expand(s) {
            Ok(v) => *s = v,
            Err(msg) => {
                errs.push(pos, component.clone(), msg);
                errs.env_failed.insert(pos);
            }
        })
    };
    let Value::Map(sections) = &mut root.value else {
        return expand(root, None);
    };
    for (k, section) in sections {
        let name = k.key_text();
        match (name.as_str(), &mut section.value) {
            ("receivers" | "processors" | "exporters", Value::Map(components)) => {
                for (id, v) in components {
                    expand(v, Some(format!("{name}.{}", id.key_text())));
                }
            }
            ("service", Value::Map(entries)) => {
                for (key, v) in entries {
                    match (key.key_text().as_str(), &mut v.value) {
                        ("pipelines", Value::Map(pipelines)) => {
                            for (id, p) in pipelines {
                                expand(p, Some(format!("service.pipelines.{}", id.key_text())));
                            }
                        }
                        _ => expand(v, Some("service".into())),
                    }
                }
            }
            _ => expand(section, None),
        }
    }
}

struct Parsed<T: ?Sized> {
    /// Every id declared, parsed or not (so that pipelines referring to a broken component do not
    /// also report it as undefined).
    declared: BTreeSet<ComponentId>,
    parsed: BTreeMap<ComponentId, Arc<T>>,
}

fn parse_components<T: ?Sized>(
    class: Class,
    section: Option<&Node>,
    ctx: &LoadContext,
    errs: &mut Errors,
    lookup: impl Fn(&str) -> Option<crate::component::ParseFn<T>>,
    registry: &dyn Registry,
) -> Parsed<T> {
    let mut out = Parsed {
        declared: BTreeSet::new(),
        parsed: BTreeMap::new(),
    };
    let Some(section) = section else { return out };
    let entries = match &section.value {
        Value::Map(e) => e.as_slice(),
        Value::Null => &[],
        _ => {
            errs.push(
                section.pos,
                None,
                format!(
                    "`{}` must be a map of component ids to settings",
                    class.plural()
                ),
            );
            return out;
        }
    };
    for (k, v) in entries {
        let text = k.key_text();
        let id = match ComponentId::parse(&text) {
            Ok(id) => id,
            Err(msg) => {
                errs.push(k.pos, None, msg);
                continue;
            }
        };
        let comp = Some(format!("{}.{}", class.plural(), id));
        out.declared.insert(id.clone());
        let Some(parse) = lookup(&id.kind) else {
            errs.push(
                k.pos,
                comp,
                format!(
                    "unknown {} type `{}`; known types: {}",
                    class.singular(),
                    id.kind,
                    registry.kinds(class).join(", ")
                ),
            );
            continue;
        };
        match parse(v, ctx) {
            Ok(c) => {
                out.parsed.insert(id, Arc::from(c));
            }
            Err(list) => {
                for e in list {
                    let pos = if e.pos.is_known() { e.pos } else { v.pos };
                    errs.push(pos, comp.clone(), e.message);
                }
            }
        }
    }
    out
}

fn check_refs(
    refs: &[Located<ComponentId>],
    declared: &BTreeSet<ComponentId>,
    class: Class,
    comp: &Option<String>,
    errs: &mut Errors,
) {
    for r in refs {
        if !declared.contains(&r.value) {
            errs.push(
                r.pos,
                comp.clone(),
                format!(
                    "references {} `{}` which is not configured in `{}`",
                    class.singular(),
                    r.value,
                    class.plural()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
