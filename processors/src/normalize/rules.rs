//! The naming rules of NAMING.md, in order, as one pure function of (name, type, unit, domain), with
//! an optional trace of the rules that fired: the processor caches its results, `sluice explain`
//! prints the trace.

use super::config::{NormalizeConfig, OnFailure};
use super::names::{is_conforming, segments};
use super::units::{self, Scale};
use regex::Regex;
use sluice_core::prometheus::names::{NameKind, metric_name};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The type of a metric, as far as naming is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Gauge,
    /// A monotonic sum (either temporality): ends in `_total`.
    Counter,
    /// A non-monotonic sum.
    UpDownCounter,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub const ALL: [MetricKind; 6] = [
        MetricKind::Gauge,
        MetricKind::Counter,
        MetricKind::UpDownCounter,
        MetricKind::Histogram,
        MetricKind::ExponentialHistogram,
        MetricKind::Summary,
    ];

    /// The name used by `sluice explain --type` and in type-qualified names.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::UpDownCounter => "updowncounter",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }

    /// How the Prometheus exporters name this kind.
    pub fn name_kind(self) -> NameKind {
        match self {
            MetricKind::Gauge => NameKind::Gauge,
            MetricKind::Counter => NameKind::Counter,
            MetricKind::UpDownCounter => NameKind::UpDownCounter,
            MetricKind::Histogram | MetricKind::ExponentialHistogram => NameKind::Histogram,
            MetricKind::Summary => NameKind::Summary,
        }
    }
}

impl FromStr for MetricKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MetricKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = MetricKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown type `{s}`; expected one of {}", all.join(", "))
            })
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a name was rewritten: the `reason` label of `sluice_processor_normalize_rewrites_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Rename,
    Rewrite,
    SourceForm,
    Unit,
    BaseUnit,
    Total,
    Domain,
    Replace,
    Collision,
    LabelKey,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Rename,
        Reason::Rewrite,
        Reason::SourceForm,
        Reason::Unit,
        Reason::BaseUnit,
        Reason::Total,
        Reason::Domain,
        Reason::Replace,
        Reason::Collision,
        Reason::LabelKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rename => "rename",
            Reason::Rewrite => "rewrite",
            Reason::SourceForm => "source_form",
            Reason::Unit => "unit",
            Reason::BaseUnit => "base_unit",
            Reason::Total => "total",
            Reason::Domain => "domain",
            Reason::Replace => "replace",
            Reason::Collision => "collision",
            Reason::LabelKey => "label_key",
        }
    }
}

/// A set of [`Reason`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reasons(u16);

impl Reasons {
    pub fn add(&mut self, r: Reason) {
        self.0 |= 1 << r as u8;
    }
    pub fn contains(self, r: Reason) -> bool {
        self.0 & (1 << r as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

/// Drop reasons (the `reason` label of `sluice_processor_dropped_points_total`).
pub mod drop_reason {
    /// Rule 9: nothing valid remains of the name (or of a `rewrite` result).
    pub const INVALID_NAME: &str = "invalid_name";
    /// Rule 8: the name is taken, in the tenant, by a metric of another type or unit.
    pub const COLLISION: &str = "collision";
}

/// One rule that fired, for `sluice explain`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub rule: u8,
    pub title: &'static str,
    pub detail: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "rule {} ({}): {}", self.rule, self.title, self.detail)
    }
}

/// Where the steps go: nowhere on the processor's path, a list for `explain`.
#[derive(Default)]
pub struct Trace(Option<Vec<Step>>);

impl Trace {
    pub fn off() -> Self {
        Trace(None)
    }
    pub fn on() -> Self {
        Trace(Some(Vec::new()))
    }
    pub fn steps(self) -> Vec<Step> {
        self.0.unwrap_or_default()
    }
    fn note(&mut self, rule: u8, title: &'static str, detail: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.0 {
            steps.push(Step {
                rule,
                title,
                detail: detail(),
            });
        }
    }
}

/// What to name one input.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    pub kind: MetricKind,
    pub unit: &'a str,
    /// The domain prefix for rule 6, already cleaned (`payment`, `payment_team`); may be empty
    /// when the caller knows it cannot matter (see [`Rules::domain_matters`]).
    pub domain: &'a str,
}

/// The result of the rules for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Naming {
    /// The final name, or the drop reason.
    pub name: Result<String, &'static str>,
    /// The value factor of a base-unit conversion.
    pub scale: Scale,
    /// The OTLP unit to write; `None` leaves it as it is.
    pub unit: Option<String>,
    /// The unit word the name carries (`seconds`, `bytes_per_second`, empty for none): with the
    /// type, what two inputs must agree on to share a name (rule 8).
    pub unit_word: String,
    pub reasons: Reasons,
}

/// The compiled rules of one `normalize` processor.
#[derive(Debug)]
pub struct Rules {
    exclude: Vec<Regex>,
    rename: HashMap<String, String>,
    rewrite: Vec<(Regex, String)>,
    pub(super) base_units: bool,
    pub(super) require_domain: bool,
    known: Vec<Vec<String>>,
    pub(super) static_domain: Option<String>,
    pub(super) default_domain: String,
    pub(super) domain_attribute: Option<String>,
    pub(super) domain_pattern: Option<Regex>,
    replace: Option<Vec<String>>,
}

fn anchored(p: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{p})$")).map_err(|e| e.to_string())
}

impl Rules {
    /// Compiles a config (already validated: see [`NormalizeConfig::rules`]).
    pub(super) fn new(cfg: &NormalizeConfig) -> Result<Rules, String> {
        let split = |d: &str| d.split('_').map(str::to_string).collect::<Vec<_>>();
        Ok(Rules {
            exclude: cfg
                .exclude
                .iter()
                .map(|p| anchored(p))
                .collect::<Result<_, _>>()?,
            rename: cfg
                .rename
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            rewrite: cfg
                .rewrite
                .iter()
                .map(|r| Ok((anchored(&r.pattern)?, r.replacement.clone())))
                .collect::<Result<_, String>>()?,
            base_units: cfg.base_units,
            require_domain: cfg.require_domain,
            known: cfg
                .known_domains
                .iter()
                .chain(&cfg.extra_domains)
                .map(|d| split(d))
                .collect(),
            static_domain: cfg.domain.static_domain.as_ref().map(|s| s.value.clone()),
            default_domain: cfg.domain.default_domain().to_string(),
            domain_attribute: cfg.domain.from_attribute.clone(),
            domain_pattern: match &cfg.domain.pattern {
                Some(p) => Some(Regex::new(p).map_err(|e| e.to_string())?),
                None => None,
            },
            replace: match &cfg.on_failure {
                OnFailure::Drop => None,
                OnFailure::Replace(r) => Some(split(r)),
            },
        })
    }

    /// Whether the domain can change the result for `name`: under `require_domain`, or when the
    /// name could end up starting with a digit (a segment starts with one: `5xx.errors`, and
    /// `total.5xx` once rule 4 moves `total`), looking through `rename`, and always when there are
    /// `rewrite` rules. Callers leave the domain out of cache keys otherwise. A cheap,
    /// allocation-free over-approximation.
    pub fn domain_matters(&self, name: &str) -> bool {
        if self.require_domain || !self.rewrite.is_empty() {
            return true;
        }
        let name = match self.rename.is_empty() {
            true => name,
            false => self.rename.get(name).map_or(name, String::as_str),
        };
        if name.starts_with('/') {
            return false;
        }
        let b = name.as_bytes();
        (0..b.len()).any(|i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()))
    }

    /// The domain a name gets when nothing is known about its resource (`explain`).
    pub fn fixed_domain(&self) -> &str {
        self.static_domain
            .as_deref()
            .unwrap_or(&self.default_domain)
    }

    /// Whether `segs` start with a known domain, or with the resource's own domain.
    fn is_known(&self, segs: &[String], domain: &[String]) -> bool {
        self.known
            .iter()
            .map(Vec::as_slice)
            .chain([domain])
            .any(|d| !d.is_empty() && segs.starts_with(d))
    }

    /// Applies the rules to one input.
    pub fn name(&self, inp: Input<'_>, t: &mut Trace) -> Naming {
        let mut reasons = Reasons::default();

        // Rule 1: the user's rules.
        if let Some(p) = self.exclude.iter().find(|r| r.is_match(inp.name)) {
            t.note(1, "exclude", || {
                format!("`{}` matches `{}`: left as it is", inp.name, unanchor(p))
            });
            return Naming {
                name: Ok(inp.name.to_string()),
                scale: Scale::ONE,
                unit: None,
                unit_word: inp.unit.to_string(),
                reasons,
            };
        }
        // Renames and rewrites give the name the other rules start from: they win over the
        // source form, and the unit, `total` and domain rules still complete the result, so that
        // it follows the convention and normalizing it again changes nothing.
        let mut source = std::borrow::Cow::Borrowed(inp.name);
        if let Some(to) = self.rename.get(inp.name) {
            t.note(1, "rename", || format!("`{}` -> `{to}`", inp.name));
            reasons.add(Reason::Rename);
            source = to.as_str().into();
        } else if let Some((re, repl)) = self.rewrite.iter().find(|(re, _)| re.is_match(inp.name)) {
            let to = re.replace(inp.name, repl.as_str()).into_owned();
            t.note(1, "rewrite", || {
                format!("`{}` matches `{}`: -> `{to}`", inp.name, unanchor(re))
            });
            reasons.add(Reason::Rewrite);
            source = to.into();
        }
        let source = source.as_ref();

        // Rule 2: source forms.
        let (mut segs, go_unit) = match source.strip_prefix('/') {
            Some(path) => {
                let (path, unit) = match path.rsplit_once(':') {
                    Some((p, u)) => (p, Some(u)),
                    None => (path, None),
                };
                let mut segs = vec!["go".to_string()];
                segs.extend(segments(path));
                let unit = unit
                    .map(|u| segments(u).join("_"))
                    .filter(|u| !u.is_empty());
                t.note(2, "source form", || {
                    format!(
                        "Go runtime/metrics path: domain `go`, segments `{}`{}",
                        segs.join("_"),
                        unit.as_ref()
                            .map(|u| format!(", unit `{u}`"))
                            .unwrap_or_default()
                    )
                });
                (segs, unit)
            }
            None => {
                let segs = segments(source);
                let joined = segs.join("_");
                if joined != source && !segs.is_empty() {
                    t.note(2, "source form", || format!("`{source}` -> `{joined}`"));
                }
                (segs, None)
            }
        };
        if !segs.is_empty() && (source.starts_with('/') || segs.join("_") != source) {
            reasons.add(Reason::SourceForm);
        }
        if segs.is_empty() {
            match &self.replace {
                None => {
                    t.note(9, "failure", || {
                        format!("nothing valid remains of `{source}`: dropped")
                    });
                    return dropped(drop_reason::INVALID_NAME, reasons);
                }
                Some(r) => {
                    t.note(9, "failure", || {
                        format!(
                            "nothing valid remains of `{source}`: replaced by `{}`",
                            r.join("_")
                        )
                    });
                    reasons.add(Reason::Replace);
                    segs = r.clone();
                }
            }
        }
        self.suffixes_and_domain(inp, segs, go_unit, reasons, t)
    }

    /// Rules 3 to 6 on the segments of rule 2 (the domain of rule 6 first, see below).
    fn suffixes_and_domain(
        &self,
        inp: Input<'_>,
        mut segs: Vec<String>,
        go_unit: Option<String>,
        mut reasons: Reasons,
        t: &mut Trace,
    ) -> Naming {
        let base = segs.clone();
        // Rule 6, applied first so that rules 3 and 4 see the whole name (a gauge `total` in an
        // unknown domain is `app`, not `app_total`, which would not be idempotent).
        let domain_text = if inp.domain.is_empty() {
            self.fixed_domain()
        } else {
            inp.domain
        };
        let domain: Vec<String> = domain_text.split('_').map(str::to_string).collect();
        let digit = segs[0].as_bytes()[0].is_ascii_digit();
        if digit || (self.require_domain && !self.is_known(&base, &domain)) {
            let why = if digit {
                "starts with a digit"
            } else {
                "not a known domain"
            };
            t.note(6, "domain", || {
                format!("`{}` {why}: prefixed with `{domain_text}`", base[0])
            });
            segs.splice(0..0, domain.iter().cloned());
            reasons.add(Reason::Domain);
        }
        let info = segs.last().is_some_and(|s| s == "info");
        let unit_text = go_unit.as_deref().unwrap_or(inp.unit);
        let plan = units::plan(unit_text, inp.kind, self.base_units);
        let mut scale = Scale::ONE;
        let mut unit = go_unit.as_deref().map(units::go_unit);
        let mut unit_word = String::new();

        if info {
            // Rule 5.
            t.note(5, "info metric", || {
                "the last segment is `info`: no unit, no `total`".into()
            });
            unit = Some(String::new());
        } else {
            // Rule 3.
            if plan.withheld {
                t.note(3, "unit", || {
                    format!(
                        "base_units not applied to an exponential histogram (its buckets cannot \
                         be rescaled exactly): `{unit_text}` stays"
                    )
                });
            }
            if !plan.word.is_empty() {
                let word = &plan.word;
                unit_word = word.join("_");
                let core = segs.len() - usize::from(segs.last().is_some_and(|s| s == "total"));
                if segs[..core].ends_with(word) {
                    // Already there.
                } else if let Some(src) = plan.sources.iter().find(|s| segs[..core].ends_with(s)) {
                    t.note(3, "unit", || {
                        format!(
                            "trailing `{}` names the unit: replaced by `{}`",
                            src.join("_"),
                            word.join("_")
                        )
                    });
                    segs.splice(core - src.len()..core, word.iter().cloned());
                    reasons.add(Reason::Unit);
                } else {
                    t.note(3, "unit", || {
                        format!("`{unit_text}` appends `{}`", word.join("_"))
                    });
                    segs.extend(word.iter().cloned());
                    reasons.add(Reason::Unit);
                }
            }
            if let Some(u) = &plan.converted_unit {
                scale = plan.scale;
                unit = Some(u.clone());
                if !scale.is_one() {
                    reasons.add(Reason::BaseUnit);
                }
                t.note(3, "base_units", || {
                    format!(
                        "`{unit_text}` -> `{u}`, values x{}",
                        fmt_factor(scale.factor())
                    )
                });
            }
            // Rule 4.
            let before = segs.clone();
            if inp.kind == MetricKind::Counter {
                segs.retain(|s| s != "total");
                segs.push("total".into());
            } else {
                while segs.len() > 1 && segs.last().is_some_and(|s| s == "total") {
                    segs.pop();
                }
            }
            if segs != before {
                reasons.add(Reason::Total);
                t.note(4, "total", || {
                    if inp.kind == MetricKind::Counter {
                        format!("counter: `{}` -> `{}`", before.join("_"), segs.join("_"))
                    } else {
                        format!(
                            "{}: trailing `total` removed: `{}`",
                            inp.kind,
                            segs.join("_")
                        )
                    }
                });
            }
        }

        if segs[0].as_bytes()[0].is_ascii_digit() {
            // Rule 4 removed leading `total` segments (`total.5xx` counter).
            t.note(6, "domain", || {
                format!(
                    "`{}` would start with a digit: prefixed with `{domain_text}`",
                    segs.join("_")
                )
            });
            segs.splice(0..0, domain);
            reasons.add(Reason::Domain);
        }

        let name = segs.join("_");
        debug_assert!(is_conforming(&name), "{name:?} from {:?}", inp.name);
        if reasons.is_empty() && name == inp.name {
            t.note(7, "idempotence", || {
                "already follows the convention: unchanged".into()
            });
        }
        let unit = self.exporter_safe_unit(&name, inp, unit, t);
        Naming {
            name: Ok(name),
            scale,
            unit,
            unit_word,
            reasons,
        }
    }

    /// The OTLP unit to write so that the Prometheus exporters add nothing for it: the unit stays
    /// (or becomes its base unit) when its word is in the name already, and is cleared otherwise
    /// (info metrics; units whose exporter spelling differs, such as `{packets}/min`).
    fn exporter_safe_unit(
        &self,
        name: &str,
        inp: Input<'_>,
        unit: Option<String>,
        t: &mut Trace,
    ) -> Option<String> {
        let written = unit.as_deref().unwrap_or(inp.unit);
        if written.is_empty() {
            return unit;
        }
        let kind = inp.kind.name_kind();
        if metric_name(name, written, kind, true) == metric_name(name, "", kind, true) {
            return unit;
        }
        t.note(3, "unit", || {
            format!("OTLP unit `{written}` cleared: the exporters would add a suffix for it")
        });
        Some(String::new())
    }
}

fn dropped(reason: &'static str, reasons: Reasons) -> Naming {
    Naming {
        name: Err(reason),
        scale: Scale::ONE,
        unit: None,
        unit_word: String::new(),
        reasons,
    }
}

fn unanchor(r: &Regex) -> &str {
    let s = r.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

/// A factor as `0.001`, `1024`, `1e-9`.
pub fn fmt_factor(f: f64) -> String {
    let plain = format!("{f}");
    if plain.len() > 12 {
        format!("{f:e}")
    } else {
        plain
    }
}
