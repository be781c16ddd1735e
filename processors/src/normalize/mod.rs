//! Processor `normalize`: turns every metric name and point label key into Sluice's naming
//! convention (`docs/naming.md`, the contract in NAMING.md), in the order of its rules: the user's
//! `exclude` / `rename` / `rewrite`, source forms, units (and, with `base_units`, conversion to
//! seconds and bytes with the values scaled), `_total`, info metrics, the domain prefix,
//! collisions per tenant and failures.
//!
//! The rules run once per distinct (tenant, name, type, unit, domain) and their result is cached
//! (bounded by `cache_size`); label keys likewise. The OTLP unit is kept only where the name carries
//! its word, so that the Prometheus exporters' own suffixing leaves normalized names unchanged.
//! Resource and scope attributes are left alone: they are OpenTelemetry's (`service.name`) and
//! reach Prometheus through `job`, `instance` and `target_info`, sanitized by the exporters.

mod cache;
mod config;
mod labels;
mod metrics;
mod names;
mod rules;
mod units;
mod values;

pub use config::{
    CollisionPolicy, DEFAULT_DOMAIN, DEFAULT_KNOWN_DOMAINS, DomainConfig, NormalizeConfig,
    OnFailure, RewriteRule,
};
pub use names::{is_conforming, label_key};
pub use rules::{MetricKind, Naming, Reason, Step, drop_reason, fmt_factor};
pub use units::Scale;

use cache::{Bounded, NameCache, NameKey};
use labels::KeyCache;
use metrics::{Metrics, Tally};
use parking_lot::Mutex;
use rules::{Input, Rules, Trace};
use sluice_core::batch::{Batch, metric_points};
use sluice_core::component::{
    BoxError, Consumer, Processor, ProcessorConfig, ProcessorContext, Refusal,
};
use sluice_core::prometheus::names::metric_name;
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{Metric, metric::Data};
use sluice_core::proto::otlp::resource::v1::Resource;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// What `sluice explain` prints: each rule that fired, then the result.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub naming: Naming,
}

impl Explanation {
    /// The final name, with the value factor when a base-unit conversion applies, or why the
    /// metric would be dropped.
    pub fn result_line(&self) -> String {
        match &self.naming.name {
            Ok(n) if !self.naming.scale.is_one() => {
                format!(
                    "{n} (value factor {})",
                    fmt_factor(self.naming.scale.factor())
                )
            }
            Ok(n) => n.clone(),
            Err(reason) => format!("dropped ({reason})"),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        write!(f, "{}", self.result_line())
    }
}

/// Runs the rules of `cfg` on one name, recording each rule that fired. Collisions (rule 8) need
/// the data of a tenant and are not part of it; the domain is `domain.static`, else
/// `domain.default`.
pub fn explain(
    cfg: &NormalizeConfig,
    name: &str,
    kind: MetricKind,
    unit: &str,
) -> Result<Explanation, String> {
    let rules = cfg.rules().map_err(|errs| {
        errs.iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut trace = Trace::on();
    let naming = rules.name(
        Input {
            name,
            kind,
            unit,
            domain: "",
        },
        &mut trace,
    );
    Ok(Explanation {
        steps: trace.steps(),
        naming,
    })
}

impl ProcessorConfig for NormalizeConfig {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        Ok(Arc::new(NormalizeProcessor::new(self, ctx)?))
    }
}

/// Who first took an output name in a tenant (rule 8).
struct Owner {
    kind: MetricKind,
    unit_word: String,
    input: String,
}

struct State {
    names: NameCache,
    /// (tenant, output name) -> its first mapping; emptied together with `names`, whose entries
    /// were decided against it.
    owners: HashMap<(Arc<str>, String), Owner>,
    keys: KeyCache,
    scratch: Vec<labels::Key>,
    /// Raw domain value -> cleaned domain (`None`: unusable, the default applies).
    domains: Bounded<Box<str>, Option<Arc<str>>>,
    /// (tenant, output name) pairs whose collision was logged.
    logged: Bounded<(Arc<str>, String), ()>,
}

pub struct NormalizeProcessor {
    name: String,
    rules: Rules,
    collisions: CollisionPolicy,
    next: Arc<dyn Consumer>,
    metrics: Metrics,
    state: Mutex<State>,
    empty: Arc<str>,
    fixed_domain: Option<Arc<str>>,
    default_domain: Arc<str>,
}

/// How many collisions are remembered as logged before that memory starts over.
const LOGGED_COLLISIONS: usize = 10_000;

impl NormalizeProcessor {
    pub fn new(cfg: &NormalizeConfig, ctx: ProcessorContext) -> Result<Self, BoxError> {
        let rules = cfg.rules().map_err(|errs| {
            errs.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let name = ctx.id.to_string();
        let dynamic = rules.domain_attribute.is_some() || rules.domain_pattern.is_some();
        Ok(NormalizeProcessor {
            metrics: Metrics::new(&ctx.telemetry, &name, &ctx.pipeline),
            name,
            collisions: cfg.collisions,
            next: ctx.next,
            state: Mutex::new(State {
                names: NameCache::new(cfg.cache_size),
                owners: HashMap::new(),
                keys: Bounded::new(cfg.cache_size),
                scratch: Vec::new(),
                domains: Bounded::new(cfg.cache_size),
                logged: Bounded::new(LOGGED_COLLISIONS),
            }),
            empty: Arc::from(""),
            fixed_domain: (!dynamic).then(|| Arc::from(rules.fixed_domain())),
            default_domain: Arc::from(rules.fixed_domain()),
            rules,
        })
    }

    /// The domain of a resource (rule 6), computed when a name first needs it.
    fn domain(&self, res: Option<&Resource>, st: &mut State) -> Arc<str> {
        if let Some(d) = &self.fixed_domain {
            return d.clone();
        }
        let attrs = res.map_or(&[][..], |r| r.attributes.as_slice());
        let from_attr = self
            .rules
            .domain_attribute
            .as_deref()
            .and_then(|a| string_attribute(attrs, a));
        let from_pattern = || {
            let p = self.rules.domain_pattern.as_ref()?;
            let service = string_attribute(attrs, "service.name")?;
            Some(p.captures(service)?.get(1)?.as_str())
        };
        if let Some(d) = from_attr.and_then(|raw| clean_domain(raw, st)) {
            return d;
        }
        if let Some(d) = from_pattern().and_then(|raw| clean_domain(raw, st)) {
            return d;
        }
        self.default_domain.clone()
    }

    /// Normalizes one metric in place; returns false if it is to be dropped.
    fn metric(
        &self,
        m: &mut Metric,
        tenant: &Arc<str>,
        domain: &mut Option<Arc<str>>,
        res: Option<&Resource>,
        st: &mut State,
        tally: &mut Tally,
    ) -> bool {
        let Some(kind) = kind_of(m) else {
            return true;
        };
        let points = metric_points(m) as u64;
        let dom = if self.rules.domain_matters(&m.name) {
            domain.get_or_insert_with(|| self.domain(res, st)).clone()
        } else {
            self.empty.clone()
        };
        let key = NameKey {
            tenant,
            name: &m.name,
            kind,
            unit: &m.unit,
            domain: &dom,
        };
        let hash = st.names.hash(&key);
        let decision = match st.names.get(hash, &key) {
            Some(d) => {
                tally.hits += 1;
                d.clone()
            }
            None => {
                tally.misses += 1;
                if st.names.is_full() {
                    tally.evictions += st.names.clear() as u64;
                    st.owners.clear();
                }
                let d = Arc::new(self.decide(&key, tenant, st));
                st.names.insert(hash, &key, tenant, &dom, d.clone());
                d
            }
        };
        match &decision.name {
            Err(reason) => {
                tally.drop(reason, points);
                return false;
            }
            Ok(name) => {
                if *name != m.name {
                    m.name.clear();
                    m.name.push_str(name);
                }
                if let Some(u) = &decision.unit
                    && *u != m.unit
                {
                    m.unit.clear();
                    m.unit.push_str(u);
                }
                if !decision.scale.is_one()
                    && let Some(data) = &mut m.data
                {
                    values::scale_data(data, decision.scale);
                }
                for r in decision.reasons.iter() {
                    tally.rewrite(r, points);
                }
            }
        }
        let relabeled = self.label_keys(m, st, tally);
        if relabeled > 0 {
            tally.rewrite(Reason::LabelKey, relabeled);
        }
        true
    }

    /// Cleans the label keys of every point (and exemplar); returns how many points changed.
    fn label_keys(&self, m: &mut Metric, st: &mut State, tally: &mut Tally) -> u64 {
        let State { keys, scratch, .. } = st;
        let mut changed = 0u64;
        let mut clean = |attrs: &mut Vec<KeyValue>| labels::clean(attrs, keys, scratch, tally);
        macro_rules! points {
            ($points:expr) => {
                for p in $points {
                    let mut c = clean(&mut p.attributes);
                    for e in &mut p.exemplars {
                        c |= clean(&mut e.filtered_attributes);
                    }
                    changed += u64::from(c);
                }
            };
        }
        match &mut m.data {
            Some(Data::Gauge(g)) => points!(&mut g.data_points),
            Some(Data::Sum(s)) => points!(&mut s.data_points),
            Some(Data::Histogram(h)) => points!(&mut h.data_points),
            Some(Data::ExponentialHistogram(h)) => points!(&mut h.data_points),
            Some(Data::Summary(s)) => {
                for p in &mut s.data_points {
                    changed += u64::from(clean(&mut p.attributes));
                }
            }
            None => {}
        }
        changed
    }

    /// Runs the rules for a name not in the cache, then rule 8 against the tenant's names.
    fn decide(&self, key: &NameKey<'_>, tenant: &Arc<str>, st: &mut State) -> Naming {
        let input = Input {
            name: key.name,
            kind: key.kind,
            unit: key.unit,
            domain: key.domain,
        };
        let mut n = self.rules.name(input, &mut Trace::off());
        let out = match &n.name {
            Ok(out) => out.clone(),
            Err(reason) => {
                tracing::debug!(processor = %self.name, tenant = %tenant, name = key.name, reason = *reason, "metric name cannot be normalized; dropped");
                return n;
            }
        };
        let Some(owner) = st.owners.get(&(tenant.clone(), out.clone())) else {
            st.owners.insert(
                (tenant.clone(), out),
                Owner {
                    kind: key.kind,
                    unit_word: n.unit_word.clone(),
                    input: key.name.to_string(),
                },
            );
            return n;
        };
        if owner.kind == key.kind && owner.unit_word == n.unit_word {
            return n;
        }
        if st.logged.get(&(tenant.clone(), out.clone())).is_none() {
            tracing::warn!(
                processor = %self.name, tenant = %tenant, name = %out,
                first = %owner.input, first_type = %owner.kind, first_unit = %owner.unit_word,
                input = key.name, input_type = %key.kind, input_unit = %n.unit_word, policy = ?self.collisions,
                "two metrics map to one name with a different type or unit; the first keeps it"
            );
            st.logged.insert((tenant.clone(), out.clone()), ());
        }
        if self.collisions == CollisionPolicy::Drop {
            n.name = Err(drop_reason::COLLISION);
            return n;
        }
        let qualified = qualify(&out, key.kind);
        match st.owners.get(&(tenant.clone(), qualified.clone())) {
            Some(o) if o.kind != key.kind || o.unit_word != n.unit_word => {
                n.name = Err(drop_reason::COLLISION);
                return n;
            }
            Some(_) => {}
            None => {
                st.owners.insert(
                    (tenant.clone(), qualified.clone()),
                    Owner {
                        kind: key.kind,
                        unit_word: n.unit_word.clone(),
                        input: key.name.to_string(),
                    },
                );
            }
        }
        let written = n.unit.clone().unwrap_or_else(|| key.unit.to_string());
        let nk = key.kind.name_kind();
        if !written.is_empty()
            && metric_name(&qualified, &written, nk, true) != metric_name(&qualified, "", nk, true)
        {
            n.unit = Some(String::new());
        }
        n.reasons.add(Reason::Collision);
        n.name = Ok(qualified);
        n
    }
}

/// `queue_messages` -> `queue_messages_histogram`; `jobs_total` -> `jobs_counter_total`.
fn qualify(name: &str, kind: MetricKind) -> String {
    match name.strip_suffix("_total") {
        Some(stem) if kind == MetricKind::Counter => format!("{stem}_{kind}_total"),
        _ => format!("{name}_{kind}"),
    }
}

fn kind_of(m: &Metric) -> Option<MetricKind> {
    Some(match m.data.as_ref()? {
        Data::Gauge(_) => MetricKind::Gauge,
        Data::Sum(s) if s.is_monotonic => MetricKind::Counter,
        Data::Sum(_) => MetricKind::UpDownCounter,
        Data::Histogram(_) => MetricKind::Histogram,
        Data::ExponentialHistogram(_) => MetricKind::ExponentialHistogram,
        Data::Summary(_) => MetricKind::Summary,
    })
}

fn string_attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn clean_domain(raw: &str, st: &mut State) -> Option<Arc<str>> {
    if let Some(d) = st.domains.get(raw) {
        return d.clone();
    }
    let d = names::segments(raw).join("_");
    let d: Option<Arc<str>> = d
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_lowercase)
        .then(|| Arc::from(d.as_str()));
    st.domains.insert(raw.into(), d.clone());
    d
}

impl Consumer for NormalizeProcessor {
    fn consume(&self, mut batch: Batch) -> Result<(), Refusal> {
        let mut tally = Tally::default();
        let entries = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let tenant: Arc<str> = match &batch.context.tenant {
                Some(t) => t.clone(),
                None => self.empty.clone(),
            };
            let mut dropped = false;
            for rm in &mut batch.resource_metrics {
                let mut domain = None;
                let res = rm.resource.as_ref();
                for sm in &mut rm.scope_metrics {
                    let before = sm.metrics.len();
                    sm.metrics
                        .retain_mut(|m| self.metric(m, &tenant, &mut domain, res, st, &mut tally));
                    dropped |= sm.metrics.len() != before;
                }
                if dropped {
                    rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
                }
            }
            if dropped {
                batch
                    .resource_metrics
                    .retain(|rm| !rm.scope_metrics.is_empty());
            }
            st.names.len() + st.keys.len()
        };
        self.metrics.record(&tally, entries);
        if batch.resource_metrics.is_empty() {
            return Ok(());
        }
        self.next.consume(batch)
    }

    fn ready(&self, context: &sluice_core::batch::Context, points: usize) -> Result<(), Refusal> {
        self.next.ready(context, points)
    }
}

impl Processor for NormalizeProcessor {}

#[cfg(test)]
mod tests;
