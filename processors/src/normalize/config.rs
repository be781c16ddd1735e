use super::names::{is_conforming, segments};
use super::rules::Rules;
use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::{DeError, LoadContext, Located, Node, Pos};
use std::collections::BTreeMap;

/// `processors.normalize`: turns metric names and point label keys into Sluice's naming convention
/// (`docs/naming.md`); every option keeps its default in this file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Regexes, each matched against the whole name: a metric whose name matches one keeps its name
    /// and unit exactly as they are (default none).
    #[serde(default)]
    pub exclude: Vec<Located<String>>,
    /// Exact renames, input name -> the name the other rules start from (they still add the
    /// unit, `_total` and the domain, so the result follows the convention) (default none).
    #[serde(default)]
    pub rename: BTreeMap<String, Located<String>>,
    /// Regex rewrites, tried in order when no `rename` applies: the first whose `pattern` matches
    /// the whole name gives the name the other rules start from, `replacement` with `$1` or
    /// `${name}` for its groups (default none).
    #[serde(default)]
    pub rewrite: Vec<RewriteRule>,
    /// Convert time units to seconds and byte units to bytes, scaling values (default false).
    #[serde(default)]
    pub base_units: bool,
    /// Prefix names whose first segment is not a known domain with the domain (default false).
    #[serde(default)]
    pub require_domain: bool,
    /// Domains a name may start with under `require_domain` (default: the built-in list,
    /// [`DEFAULT_KNOWN_DOMAINS`]); setting it replaces the list, `extra_domains` adds to it.
    #[serde(default = "default_known_domains")]
    pub known_domains: Vec<String>,
    /// More known domains, added to `known_domains` (default none).
    #[serde(default)]
    pub extra_domains: Vec<String>,
    /// Where the prefix of rule 6 comes from (also used for names that would start with a digit).
    #[serde(default)]
    pub domain: DomainConfig,
    /// What happens to a later input that maps to a name already taken, in the same tenant, by a
    /// metric of another type or unit (default drop).
    #[serde(default)]
    pub collisions: CollisionPolicy,
    /// What happens to a name that cannot be made valid (default drop).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Entries in each of the name and label-key caches; a full cache is emptied and starts over
    /// (default 100000).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

/// One `rewrite` rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRule {
    /// A regex matched against the whole name.
    pub pattern: Located<String>,
    /// The new name; `$1` or `${name}` insert the pattern's groups.
    pub replacement: String,
}

/// `domain`: the prefix for names outside the known domains. Taken from `static` when set; else
/// from the resource attribute `from_attribute`, then from the first group of `pattern` over the
/// resource's `service.name`; else `default`. Values are cleaned like names (`Payments` ->
/// `payments`); one that cleans to nothing or starts with a digit falls back to `default`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// One domain for everything (default none).
    #[serde(default, rename = "static")]
    pub static_domain: Option<Located<String>>,
    /// A resource attribute holding the domain, e.g. `service.namespace` (default none).
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// A regex with one capture group, searched in `service.name`, e.g. `^([a-z]+)-` (default none).
    #[serde(default)]
    pub pattern: Option<Located<String>>,
    /// The domain when no other source gives one (default `app`).
    #[serde(default)]
    pub default: Option<Located<String>>,
}

impl DomainConfig {
    pub fn default_domain(&self) -> &str {
        self.default
            .as_deref()
            .map_or(DEFAULT_DOMAIN, String::as_str)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CollisionPolicy {
    /// Drop the later input's points, counted with reason `collision`.
    #[default]
    Drop,
    /// Keep them under a type-qualified name (`queue_messages_histogram`,
    /// `jobs_counter_total`); dropped if that name is taken too.
    Keep,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Drop the metric's points, counted with reason `invalid_name`.
    #[default]
    Drop,
    /// Use this name (which must follow the convention) in place of what could not be cleaned;
    /// the unit and type rules still apply to it.
    Replace(Located<String>),
}

pub const DEFAULT_DOMAIN: &str = "app";

/// The built-in `known_domains`: runtimes, platforms and protocols of the OpenTelemetry semantic
/// conventions and of common exporters, plus Prometheus' own series (`up`, `scrape_*`,
/// `target_info`).
pub const DEFAULT_KNOWN_DOMAINS: &[&str] = &[
    "go",
    "jvm",
    "dotnet",
    "aspnetcore",
    "kestrel",
    "signalr",
    "python",
    "cpython",
    "nodejs",
    "v8js",
    "ruby",
    "php",
    "erlang",
    "beam",
    "rust",
    "process",
    "system",
    "host",
    "hw",
    "container",
    "k8s",
    "node",
    "http",
    "rpc",
    "grpc",
    "db",
    "messaging",
    "faas",
    "dns",
    "gen_ai",
    "cicd",
    "vcs",
    "prometheus",
    "otel",
    "otelcol",
    "sluice",
    "up",
    "scrape",
    "target",
];

fn default_known_domains() -> Vec<String> {
    DEFAULT_KNOWN_DOMAINS
        .iter()
        .map(|d| d.to_string())
        .collect()
}

fn default_cache_size() -> usize {
    100_000
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            exclude: Vec::new(),
            rename: BTreeMap::new(),
            rewrite: Vec::new(),
            base_units: false,
            require_domain: false,
            known_domains: default_known_domains(),
            extra_domains: Vec::new(),
            domain: DomainConfig::default(),
            collisions: CollisionPolicy::default(),
            on_failure: OnFailure::default(),
            cache_size: default_cache_size(),
        }
    }
}

impl NormalizeConfig {
    /// The compiled rules, or every problem found (positions unknown where the config gives none).
    pub fn rules(&self) -> Result<Rules, Vec<DeError>> {
        let errs = self.check();
        if !errs.is_empty() {
            return Err(errs);
        }
        Rules::new(self).map_err(|m| vec![DeError::new(Pos::default(), m)])
    }

    fn check(&self) -> Vec<DeError> {
        let mut errs = Vec::new();
        let mut regex = |what: &str, p: &Located<String>, anchored: bool| {
            let text = if anchored {
                format!("^(?:{})$", p.value)
            } else {
                p.value.clone()
            };
            match regex::Regex::new(&text) {
                Ok(r) => Some(r),
                Err(e) => {
                    errs.push(DeError::new(p.pos, format!("{what}: invalid regex: {e}")));
                    None
                }
            }
        };
        for p in &self.exclude {
            regex("exclude", p, true);
        }
        for r in &self.rewrite {
            regex("rewrite.pattern", &r.pattern, true);
        }
        if let Some(p) = &self.domain.pattern
            && let Some(r) = regex("domain.pattern", p, false)
            && r.captures_len() != 2
        {
            errs.push(DeError::new(
                p.pos,
                "domain.pattern must have exactly one capture group",
            ));
        }
        for (from, to) in &self.rename {
            if segments(to).is_empty() {
                errs.push(DeError::new(
                    to.pos,
                    format!(
                        "rename: `{from}` -> `{}`: nothing of the new name remains after cleaning",
                        to.value
                    ),
                ));
            }
        }
        let mut conforming = |what: &str, v: &str, pos: Pos| {
            if !is_conforming(v) {
                errs.push(DeError::new(
                    pos,
                    format!(
                        "{what}: `{v}` does not follow the naming convention (lowercase letters, \
                         digits and single underscores, starting with a letter)"
                    ),
                ));
            }
        };
        for d in self.known_domains.iter().chain(&self.extra_domains) {
            conforming("known_domains / extra_domains", d, Pos::default());
        }
        if let Some(s) = &self.domain.static_domain {
            conforming("domain.static", s, s.pos);
        }
        if let Some(d) = &self.domain.default {
            conforming("domain.default", d, d.pos);
        }
        if let OnFailure::Replace(r) = &self.on_failure {
            conforming("on_failure.replace", r, r.pos);
        }
        if let Some(s) = &self.domain.static_domain
            && (self.domain.from_attribute.is_some() || self.domain.pattern.is_some())
        {
            errs.push(DeError::new(
                s.pos,
                "domain.static excludes domain.from_attribute and domain.pattern",
            ));
        }
        if self.cache_size == 0 {
            errs.push(DeError::new(Pos::default(), "cache_size must be above 0"));
        }
        errs
    }
}

impl Validate for NormalizeConfig {
    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        self.check()
            .into_iter()
            .map(|mut e| {
                if !e.pos.is_known() {
                    e.pos = node.pos;
                }
                e
            })
            .collect()
    }
}
