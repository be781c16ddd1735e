use super::sources::{Rule, Source, TableKey};
use super::table::Table;
use crate::normalize::is_conforming;
use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::Duration;
use sluice_core::config::{DeError, LoadContext, Located, Node, Pos};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// `processors.labels`: writes tenant, domain and SLA-tier labels, static labels and promoted
/// resource attributes onto every data point; every option keeps its default in this file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// The tenant label (key `tenant`); its sources default to the batch's tenant first.
    #[serde(default)]
    pub tenant: Option<RuleConfig>,
    /// The domain label (key `domain`).
    #[serde(default)]
    pub domain: Option<RuleConfig>,
    /// The SLA-tier label (key `sla_tier`).
    #[serde(default)]
    pub sla: Option<RuleConfig>,
    /// Labels written as they are, key -> value (default none); a point's own label of the same
    /// key is kept.
    #[serde(default, rename = "static")]
    pub static_labels: BTreeMap<String, Located<String>>,
    /// Resource attributes promoted to labels, attribute -> label key (default none); a point's
    /// own label of the same key is kept.
    #[serde(default)]
    pub from_attributes: BTreeMap<String, Located<String>>,
    /// How often a `table_file` is checked for changes (default 5s).
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// One of `tenant`, `domain`, `sla`. Either the short form (at most one source of each kind, tried
/// in the fixed order context, header, from_attribute/pattern, table/table_file, default) or an
/// explicit `sources` list tried in its order.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The label key (default `tenant`, `domain`, `sla_tier`).
    #[serde(default)]
    pub key: Option<Located<String>>,
    /// Replace a point's own label of this key; when no source gives a value such a label is
    /// removed, so a client never chooses it (default true). When false, it is kept.
    #[serde(default = "yes")]
    pub overwrite: bool,
    /// The sources in the order they are tried; excludes the short-form fields below.
    #[serde(default)]
    pub sources: Option<Vec<SourceConfig>>,
    /// Short form: `tenant`, the batch's tenant (tenant label only), or `sla_tier`, the tier its
    /// tenant has in the receiver's tenants file (SLA label only); in the short form it is always
    /// tried first.
    #[serde(default)]
    pub context: Option<Located<String>>,
    /// Short form: a request header carried by the receiver.
    #[serde(default)]
    pub header: Option<Located<String>>,
    /// Short form: a resource attribute (with `pattern`: the attribute the regex searches).
    #[serde(default)]
    pub from_attribute: Option<Located<String>>,
    /// Short form: a regex with one capture group over `from_attribute` (default `service.name`).
    #[serde(default)]
    pub pattern: Option<Located<String>>,
    /// Short form: a lookup table.
    #[serde(default)]
    pub table: Option<BTreeMap<String, String>>,
    /// Short form: a lookup table in a YAML file, reloaded on change.
    #[serde(default)]
    pub table_file: Option<Located<String>>,
    /// Short form: the attribute the table is keyed by (default: the tenant).
    #[serde(default)]
    pub table_attribute: Option<String>,
    /// Short form: the value when no other source gives one.
    #[serde(default)]
    pub default: Option<Located<String>>,
}

impl RuleConfig {
    /// The short-form fields as one (not yet checked) source entry.
    fn short(&self) -> SourceConfig {
        SourceConfig {
            context: self.context.clone(),
            header: self.header.clone(),
            from_attribute: self.from_attribute.clone(),
            pattern: self.pattern.clone(),
            table: self.table.clone(),
            table_file: self.table_file.clone(),
            table_attribute: self.table_attribute.clone(),
            default: self.default.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One source; in a `sources` list exactly one of `context`, `header`, `from_attribute` (with an
/// optional `pattern`), `table`/`table_file` or `default`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `tenant`: the batch's tenant (as authenticated by the receiver), tenant label only;
    /// `sla_tier`: its tenant's tier from the receiver's tenants file, SLA label only.
    #[serde(default)]
    pub context: Option<Located<String>>,
    /// A request header carried by the receiver (its `metadata_keys`), matched case-insensitively.
    #[serde(default)]
    pub header: Option<Located<String>>,
    /// A resource attribute: its value, or with `pattern` the regex's capture over it.
    #[serde(default)]
    pub from_attribute: Option<Located<String>>,
    /// A regex with one capture group, searched in `from_attribute` (default `service.name`).
    #[serde(default)]
    pub pattern: Option<Located<String>>,
    /// A lookup table, key -> value, keyed by the tenant or by `table_attribute`.
    #[serde(default)]
    pub table: Option<BTreeMap<String, String>>,
    /// A YAML file holding such a table (a map), relative to the config file; reloaded when it
    /// changes.
    #[serde(default)]
    pub table_file: Option<Located<String>>,
    /// The resource attribute whose value is looked up in the table (default: the tenant, i.e.
    /// the tenant label's value, else the batch's tenant).
    #[serde(default)]
    pub table_attribute: Option<String>,
    /// The value when nothing before it gave one.
    #[serde(default)]
    pub default: Option<Located<String>>,
}

impl SourceConfig {
    fn is_empty(&self) -> bool {
        self.context.is_none()
            && self.header.is_none()
            && self.from_attribute.is_none()
            && self.pattern.is_none()
            && self.table.is_none()
            && self.table_file.is_none()
            && self.table_attribute.is_none()
            && self.default.is_none()
    }
}

/// Which of the three rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Tenant,
    Domain,
    Sla,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Tenant => "tenant",
            Which::Domain => "domain",
            Which::Sla => "sla",
        }
    }
    pub fn default_key(self) -> &'static str {
        match self {
            Which::Tenant => "tenant",
            Which::Domain => "domain",
            Which::Sla => "sla_tier",
        }
    }
}

/// Everything the processor runs on, checked.
#[derive(Debug)]
pub struct Compiled {
    pub rules: Vec<Rule>,
    pub static_labels: Vec<(Arc<str>, Arc<str>)>,
    /// (attribute, label key).
    pub from_attributes: Vec<(String, Arc<str>)>,
}

impl LabelsConfig {
    fn rule_configs(&self) -> impl Iterator<Item = (Which, &RuleConfig)> {
        [
            (Which::Tenant, &self.tenant),
            (Which::Domain, &self.domain),
            (Which::Sla, &self.sla),
        ]
        .into_iter()
        .filter_map(|(w, r)| r.as_ref().map(|r| (w, r)))
    }

    /// Checks the config and builds the rules; with `load`, table files are read (at build time),
    /// without, only their paths are taken.
    pub fn compile(&self, load: bool) -> Result<Compiled, Vec<DeError>> {
        let mut errs = Vec::new();
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        let mut key = |errs: &mut Vec<DeError>, what: String, k: &str, pos: Pos| {
            if !is_conforming(k) {
                errs.push(DeError::new(
                    pos,
                    format!(
                        "{what}: label key `{k}` does not follow the naming convention (lowercase \
                         letters, digits and single underscores, starting with a letter)"
                    ),
                ));
            }
            if let Some(first) = keys.insert(k.to_string(), what.clone()) {
                errs.push(DeError::new(
                    pos,
                    format!("{what}: label key `{k}` is already written by {first}"),
                ));
            }
        };
        let mut rules = Vec::new();
        for (which, rc) in self.rule_configs() {
            let k = rc.key.as_ref().map_or(which.default_key(), |k| &k.value);
            let pos = rc.key.as_ref().map_or(Pos::default(), |k| k.pos);
            key(&mut errs, which.name().to_string(), k, pos);
            let specs: Vec<SourceConfig> = match &rc.sources {
                Some(list) => {
                    if !rc.short().is_empty() {
                        errs.push(DeError::new(
                            pos,
                            format!(
                                "{}: `sources` excludes context, header, from_attribute, pattern, \
                                 table, table_file, table_attribute and default beside it",
                                which.name()
                            ),
                        ));
                    }
                    if list.is_empty() {
                        errs.push(DeError::new(
                            pos,
                            format!("{}: `sources` is empty", which.name()),
                        ));
                    }
                    for (i, s) in list.iter().enumerate() {
                        if kinds(s) != 1 {
                            errs.push(DeError::new(
                                first_pos(s).unwrap_or(pos),
                                format!(
                                    "{}.sources[{i}]: exactly one of context, header, \
                                     from_attribute (with an optional pattern), table or \
                                     table_file (with an optional table_attribute), default",
                                    which.name()
                                ),
                            ));
                        }
                    }
                    list.clone()
                }
                None => split_short(which, &rc.short()),
            };
            let mut sources = Vec::new();
            for s in &specs {
                if let Some(src) = self.source(which, s, load, &mut errs) {
                    sources.push(src);
                }
            }
            if sources.is_empty() && rc.sources.is_none() && which != Which::Tenant {
                errs.push(DeError::new(
                    pos,
                    format!("{}: no source: set from_attribute, pattern, header, table, table_file, default or sources", which.name()),
                ));
            }
            rules.push(Rule {
                which,
                key: Arc::from(k),
                overwrite: rc.overwrite,
                sources,
            });
        }
        let mut static_labels = Vec::new();
        for (k, v) in &self.static_labels {
            key(&mut errs, format!("static.{k}"), k, v.pos);
            if v.is_empty() {
                errs.push(DeError::new(v.pos, format!("static.{k}: empty value")));
            }
            static_labels.push((Arc::from(k.as_str()), Arc::from(v.as_str())));
        }
        let mut from_attributes = Vec::new();
        for (attr, k) in &self.from_attributes {
            key(&mut errs, format!("from_attributes.{attr}"), k, k.pos);
            from_attributes.push((attr.clone(), Arc::from(k.as_str())));
        }
        if self.reload_interval.get().is_zero() && self.has_table_file() {
            errs.push(DeError::new(
                Pos::default(),
                "reload_interval must be above 0",
            ));
        }
        if errs.is_empty() {
            Ok(Compiled {
                rules,
                static_labels,
                from_attributes,
            })
        } else {
            Err(errs)
        }
    }

    fn has_table_file(&self) -> bool {
        self.rule_configs().any(|(_, r)| {
            r.table_file.is_some() || r.sources.iter().flatten().any(|s| s.table_file.is_some())
        })
    }

    fn source(
        &self,
        which: Which,
        s: &SourceConfig,
        load: bool,
        errs: &mut Vec<DeError>,
    ) -> Option<Source> {
        let what = which.name();
        if let Some(c) = &s.context {
            let (want, source) = match which {
                Which::Tenant => ("tenant", Source::Context),
                Which::Sla => ("sla_tier", Source::Tier),
                Which::Domain => {
                    errs.push(DeError::new(
                        c.pos,
                        format!("{what}: `context` is a source of the tenant and SLA labels only"),
                    ));
                    return None;
                }
            };
            if c.value != want {
                errs.push(DeError::new(
                    c.pos,
                    format!("{what}: `context` must be `{want}`"),
                ));
            }
            return Some(source);
        }
        if let Some(h) = &s.header {
            if h.trim().is_empty() {
                errs.push(DeError::new(h.pos, format!("{what}: empty header name")));
            }
            return Some(Source::Header(h.value.clone()));
        }
        if let Some(p) = &s.pattern {
            let attr = s
                .from_attribute
                .as_ref()
                .map_or_else(|| "service.name".to_string(), |a| a.value.clone());
            return match regex::Regex::new(p) {
                Ok(r) if r.captures_len() == 2 => Some(Source::Capture(attr, r)),
                Ok(_) => {
                    errs.push(DeError::new(
                        p.pos,
                        format!("{what}.pattern must have exactly one capture group"),
                    ));
                    None
                }
                Err(e) => {
                    errs.push(DeError::new(
                        p.pos,
                        format!("{what}.pattern: invalid regex: {e}"),
                    ));
                    None
                }
            };
        }
        if let Some(a) = &s.from_attribute {
            return Some(Source::Attribute(a.value.clone()));
        }
        let by = match &s.table_attribute {
            Some(a) => TableKey::Attribute(a.clone()),
            None => TableKey::Tenant,
        };
        if let Some(t) = &s.table {
            if s.table_file.is_some() {
                errs.push(DeError::new(
                    Pos::default(),
                    format!("{what}: `table` excludes `table_file`"),
                ));
            }
            return Some(Source::Table(by, Arc::new(Table::inline(t))));
        }
        if let Some(f) = &s.table_file {
            let table = if load {
                match Table::file(PathBuf::from(&f.value), self.reload_interval.get()) {
                    Ok(t) => t,
                    Err(e) => {
                        errs.push(DeError::new(f.pos, format!("{what}.table_file: {e}")));
                        return None;
                    }
                }
            } else {
                Table::inline(&BTreeMap::new())
            };
            return Some(Source::Table(by, Arc::new(table)));
        }
        if let Some(a) = &s.table_attribute {
            errs.push(DeError::new(
                Pos::default(),
                format!("{what}: table_attribute `{a}` without table or table_file"),
            ));
            return None;
        }
        if let Some(d) = &s.default {
            if d.is_empty() {
                errs.push(DeError::new(d.pos, format!("{what}.default: empty value")));
            }
            return Some(Source::Default(Arc::from(d.as_str())));
        }
        None
    }
}

/// How many source kinds one list entry sets (`from_attribute` + `pattern` is one, and so is
/// `table`/`table_file` + `table_attribute`).
fn kinds(s: &SourceConfig) -> usize {
    [
        s.context.is_some(),
        s.header.is_some(),
        s.from_attribute.is_some() || s.pattern.is_some(),
        s.table.is_some() || s.table_file.is_some() || s.table_attribute.is_some(),
        s.default.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count()
}

fn first_pos(s: &SourceConfig) -> Option<Pos> {
    [
        &s.context,
        &s.header,
        &s.from_attribute,
        &s.pattern,
        &s.table_file,
        &s.default,
    ]
    .into_iter()
    .flatten()
    .map(|l| l.pos)
    .next()
}

/// The short form as a list in the fixed order: the batch's tenant (tenant label) or its tenant's
/// tier (SLA label), header, from_attribute/pattern, table/table_file, default.
fn split_short(which: Which, s: &SourceConfig) -> Vec<SourceConfig> {
    let mut out = Vec::new();
    let implied = match which {
        Which::Tenant => Some("tenant"),
        Which::Sla => Some("sla_tier"),
        Which::Domain => None,
    };
    if let (Some(c), None) = (implied, &s.context) {
        out.push(SourceConfig {
            context: Some(Located {
                value: c.into(),
                pos: Pos::default(),
            }),
            ..Default::default()
        });
    }
    if s.context.is_some() {
        out.push(SourceConfig {
            context: s.context.clone(),
            ..Default::default()
        });
    }
    if s.header.is_some() {
        out.push(SourceConfig {
            header: s.header.clone(),
            ..Default::default()
        });
    }
    if s.from_attribute.is_some() || s.pattern.is_some() {
        out.push(SourceConfig {
            from_attribute: s.from_attribute.clone(),
            pattern: s.pattern.clone(),
            ..Default::default()
        });
    }
    if s.table.is_some() || s.table_file.is_some() || s.table_attribute.is_some() {
        out.push(SourceConfig {
            table: s.table.clone(),
            table_file: s.table_file.clone(),
            table_attribute: s.table_attribute.clone(),
            ..Default::default()
        });
    }
    if s.default.is_some() {
        out.push(SourceConfig {
            default: s.default.clone(),
            ..Default::default()
        });
    }
    out
}

impl Validate for LabelsConfig {
    fn resolve_paths(&mut self, ctx: &LoadContext) {
        let fix = |f: &mut Located<String>| {
            f.value = ctx.resolve(&f.value).to_string_lossy().into_owned();
        };
        for r in [&mut self.tenant, &mut self.domain, &mut self.sla]
            .into_iter()
            .flatten()
        {
            if let Some(f) = &mut r.table_file {
                fix(f);
            }
            for s in r.sources.iter_mut().flatten() {
                if let Some(f) = &mut s.table_file {
                    fix(f);
                }
            }
        }
    }

    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        match self.compile(false) {
            Ok(_) => Vec::new(),
            Err(errs) => errs
                .into_iter()
                .map(|mut e| {
                    if !e.pos.is_known() {
                        e.pos = node.pos;
                    }
                    e
                })
                .collect(),
        }
    }
}
