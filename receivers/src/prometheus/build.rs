//! One scrape's exposition -> OTLP, with the state a target keeps between scrapes (series seen,
//! for staleness markers and counter start times).
//!
//! Mapping (mirrors the `prometheus_remote_write` receiver, so that the remote_write exporter
//! sends back the names that came in):
//! - resource per (`job`, `instance`): `service.name` = job, `service.instance.id` = instance,
//!   `server.address` / `server.port` from the instance, `url.scheme`; the labels of `target_info`
//!   become resource attributes (and `target_info` is not a metric);
//! - a counter whose sample ends in `_total` -> monotonic cumulative Sum; its start time is its
//!   `_created` sample, else the first time Sluice saw the series (and a scrape time again after a
//!   reset, i.e. when the value went down);
//! - a histogram -> cumulative Histogram (buckets de-cumulated, the `+Inf` bound implied; a
//!   histogram without `_count` is left out); a summary -> Summary;
//! - everything else -> Gauge, with `prometheus.type` in the metric metadata when the Prometheus
//!   type is not gauge (`unknown`, `counter` without `_total`, `gaugehistogram`, `info`,
//!   `stateset`);
//! - every other label but `job` and `instance` is a point attribute; empty values are dropped;
//! - a series that disappears (or every series, when the scrape fails) gets a point with the
//!   "no recorded value" flag and the StaleNaN value. Series with explicit timestamps do not.

use super::parser::{Buffers, Entry, Format, Label, MetricType, Parser, Sample, Text};
use super::relabel::relabel;
use crate::keys::{Keys, push_string, take_string};
use sluice_core::prometheus::stale_nan;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    self as otlp, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    SummaryDataPoint, metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use std::borrow::Cow;
// Seeded per process (foldhash through hashbrown): the keys are the targets' label sets.
use hashbrown::HashMap;

/// The series every scrape reports about itself.
const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;
const CUMULATIVE: i32 = 2;

/// A scrape target: its address and the labels every series gets.
#[derive(Clone, Debug)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub scheme: String,
    pub url: String,
    /// `job`, `instance` and the static labels, sorted by name, values not empty.
    pub labels: Vec<(String, String)>,
}

impl Target {
    /// A target with `job`, `instance` (the address) and static labels.
    #[cfg(test)]
    pub fn new(
        job: &str,
        address: &str,
        scheme: &str,
        url: String,
        static_labels: &[(String, String)],
    ) -> Target {
        let mut labels: Vec<(String, String)> = vec![
            ("job".into(), job.into()),
            ("instance".into(), address.into()),
        ];
        for (k, v) in static_labels {
            match labels.iter_mut().find(|(n, _)| n == k) {
                Some(l) => l.1 = v.clone(),
                None => labels.push((k.clone(), v.clone())),
            }
        }
        Target::from_labels(labels, scheme, url)
    }

    /// A target with its final labels (after relabeling, without `__` labels).
    pub fn from_labels(mut labels: Vec<(String, String)>, scheme: &str, url: String) -> Target {
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        let get = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Target {
            job: get("job"),
            instance: get("instance"),
            scheme: scheme.into(),
            url,
            labels,
        }
    }
}

/// Per-job settings that shape a scrape's output.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// 0: no limit.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// `metric_relabel_configs`.
    pub metric_relabel: Vec<super::relabel::RelabelConfig>,
}

/// How a series is represented in OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

impl Kind {
    /// The kind's letter in a series key ([`series_key`]).
    fn tag(self) -> char {
        match self {
            Kind::Gauge => 'g',
            Kind::Counter => 'c',
            Kind::Histogram => 'h',
            Kind::Summary => 's',
        }
    }

    fn from_tag(tag: u8) -> Option<Kind> {
        [Kind::Gauge, Kind::Counter, Kind::Histogram, Kind::Summary]
            .into_iter()
            .find(|k| k.tag() == char::from(tag))
    }
}

/// A series seen by an earlier scrape. Its kind, name, job, instance and attributes are in its key
/// (see [`series_key`]), read back only for its staleness marker.
struct Tracked {
    prometheus_type: Option<&'static str>,
    /// The start time of a cumulative series (ns).
    start_ns: u64,
    /// The last value (a histogram's or summary's count), to see resets.
    last: f64,
    /// The scrape that saw it first and last.
    first_epoch: u64,
    epoch: u64,
    /// It carries its own timestamps: no staleness marker.
    explicit_ts: bool,
}

/// What one scrape gave.
#[derive(Debug, Default)]
pub struct Report {
    pub resource_metrics: Vec<ResourceMetrics>,
    /// `None` when the scrape succeeded.
    pub error: Option<String>,
    pub samples_scraped: u64,
    pub samples_post_relabel: u64,
    pub series_added: u64,
    pub stale_markers: u64,
}

/// What a target keeps between scrapes.
#[derive(Default)]
pub struct TargetState {
    series: HashMap<String, Tracked>,
    epoch: u64,
    buffers: Option<Buffers>,
    key: String,
    /// How many groups the last scrape had, and the bytes of their keys: the next one's list
    /// and keys are sized for as many.
    groups_hint: usize,
    group_keys_hint: usize,
    /// Read every line's labels afresh, never from the line before (tests compare both ways).
    afresh: bool,
}

/// Samples of one series of a counter, histogram or summary, put together at the end.
struct Group<'x> {
    kind: Kind,
    /// Its key in the scrape's group keys (numbered as the groups are) begins with its series
    /// key ([`series_key`]), this long; the family's number follows.
    series_len: usize,
    family: usize,
    job: Option<Cow<'x, str>>,
    instance: Option<Cow<'x, str>>,
    attributes: Vec<KeyValue>,
    value: Option<f64>,
    buckets: Vec<(f64, f64)>,
    quantiles: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    created: Option<f64>,
    timestamp_ms: Option<i64>,
    exemplars: Vec<otlp::Exemplar>,
}

/// A `# TYPE` / `# HELP` / `# UNIT` family.
#[derive(Default)]
struct Family {
    name: String,
    kind: MetricType,
    help: String,
    unit: String,
}

/// What a sample is within its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Number(Kind, Option<&'static str>),
    Counter,
    Bucket,
    Quantile,
    Sum,
    Count,
    Created,
    TargetInfo,
}

fn classify(family: Option<&Family>, name: &str) -> Role {
    if name == "target_info" {
        return Role::TargetInfo;
    }
    let Some(f) = family else {
        return Role::Number(Kind::Gauge, Some("unknown"));
    };
    let fam = f.name.as_str();
    let suffix = name.strip_prefix(fam);
    match f.kind {
        MetricType::Counter => {
            let base = fam.strip_suffix("_total").unwrap_or(fam);
            let rest = name.strip_prefix(base);
            match rest {
                Some("_total") => Role::Counter,
                Some("_created") => Role::Created,
                Some("") => Role::Number(Kind::Gauge, Some("counter")),
                _ => Role::Number(Kind::Gauge, Some("unknown")),
            }
        }
        MetricType::Gauge if suffix == Some("") => Role::Number(Kind::Gauge, None),
        MetricType::Histogram => match suffix {
            Some("_bucket") => Role::Bucket,
            Some("_sum") => Role::Sum,
            Some("_count") => Role::Count,
            Some("_created") => Role::Created,
            _ => Role::Number(Kind::Gauge, Some("unknown")),
        },
        MetricType::Summary => match suffix {
            Some("") => Role::Quantile,
            Some("_sum") => Role::Sum,
            Some("_count") => Role::Count,
            Some("_created") => Role::Created,
            _ => Role::Number(Kind::Gauge, Some("unknown")),
        },
        MetricType::GaugeHistogram => match suffix {
            Some("_bucket" | "_gsum" | "_gcount" | "_sum" | "_count") => {
                Role::Number(Kind::Gauge, Some("gaugehistogram"))
            }
            _ => Role::Number(Kind::Gauge, Some("unknown")),
        },
        MetricType::Info if matches!(suffix, Some("_info" | "")) => {
            Role::Number(Kind::Gauge, Some("info"))
        }
        MetricType::StateSet if suffix == Some("") => Role::Number(Kind::Gauge, Some("stateset")),
        _ => Role::Number(Kind::Gauge, Some("unknown")),
    }
}

/// The OTLP metrics of one scrape, by resource.
#[derive(Default)]
struct Out {
    resources: Vec<Res>,
    index: HashMap<(Option<String>, Option<String>), usize>,
    /// The resource found last: a scrape's samples nearly all have the same one.
    last: Option<usize>,
}

struct Res {
    job: Option<String>,
    instance: Option<String>,
    extra: Vec<KeyValue>,
    metrics: Vec<Metric>,
    index: HashMap<(String, Kind), usize>,
    /// The metric found last, and its kind: a family's samples come one after the other.
    last: Option<(usize, Kind)>,
}

impl Out {
    fn resource(&mut self, job: Option<&str>, instance: Option<&str>) -> usize {
        if let Some(i) = self.last {
            let r = &self.resources[i];
            if r.job.as_deref() == job && r.instance.as_deref() == instance {
                return i;
            }
        }
        let key = (job.map(str::to_string), instance.map(str::to_string));
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.resources.push(Res {
                    job: key.0.clone(),
                    instance: key.1.clone(),
                    extra: Vec::new(),
                    metrics: Vec::new(),
                    index: HashMap::new(),
                    last: None,
                });
                self.index.insert(key, self.resources.len() - 1);
                self.resources.len() - 1
            }
        };
        self.last = Some(i);
        i
    }

    fn metric(
        &mut self,
        res: usize,
        name: &str,
        kind: Kind,
        prometheus_type: Option<&'static str>,
        help: &str,
        unit: &str,
    ) -> &mut Metric {
        let r = &mut self.resources[res];
        if let Some((i, k)) = r.last
            && k == kind
            && r.metrics[i].name == name
        {
            return &mut r.metrics[i];
        }
        let key = (name.to_string(), kind);
        let i = match r.index.get(&key) {
            Some(&i) => i,
            None => {
                let data = match kind {
                    Kind::Gauge => Data::Gauge(otlp::Gauge::default()),
                    Kind::Counter => Data::Sum(otlp::Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: CUMULATIVE,
                        is_monotonic: true,
                    }),
                    Kind::Histogram => Data::Histogram(otlp::Histogram {
                        data_points: Vec::new(),
                        aggregation_temporality: CUMULATIVE,
                    }),
                    Kind::Summary => Data::Summary(otlp::Summary::default()),
                };
                r.metrics.push(Metric {
                    name: name.to_string(),
                    description: help.to_string(),
                    unit: unit_for(name, unit).to_string(),
                    data: Some(data),
                    metadata: prometheus_type
                        .map(|t| vec![string_kv("prometheus.type", t)])
                        .unwrap_or_default(),
                });
                r.index.insert(key, r.metrics.len() - 1);
                r.metrics.len() - 1
            }
        };
        r.last = Some((i, kind));
        &mut r.metrics[i]
    }

    fn number(&mut self, res: usize, m: MetricSpec<'_>, point: NumberDataPoint) {
        match &mut self
            .metric(res, m.name, m.kind, m.prometheus_type, m.help, m.unit)
            .data
        {
            Some(Data::Gauge(g)) => g.data_points.push(point),
            Some(Data::Sum(s)) => s.data_points.push(point),
            _ => {}
        }
    }

    fn finish(self, target: &Target) -> Vec<ResourceMetrics> {
        self.resources
            .into_iter()
            .filter(|r| !r.metrics.is_empty())
            .map(|r| ResourceMetrics {
                resource: Some(resource_of(
                    r.job.as_deref(),
                    r.instance.as_deref(),
                    &target.scheme,
                    r.extra,
                )),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(sluice_core::proto::otlp::common::v1::InstrumentationScope {
                        name: "sluice/prometheus".into(),
                        ..Default::default()
                    }),
                    metrics: r.metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }
}

#[derive(Clone, Copy)]
struct MetricSpec<'s> {
    name: &'s str,
    kind: Kind,
    prometheus_type: Option<&'static str>,
    help: &'s str,
    unit: &'s str,
}

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
    }
}

fn resource_of(
    job: Option<&str>,
    instance: Option<&str>,
    scheme: &str,
    extra: Vec<KeyValue>,
) -> Resource {
    let mut attributes = Vec::new();
    if let Some(job) = job {
        attributes.push(string_kv("service.name", job));
    }
    if let Some(instance) = instance {
        attributes.push(string_kv("service.instance.id", instance));
        if let Some((host, port)) = instance.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            attributes.push(string_kv("server.address", host));
            attributes.push(KeyValue {
                key: "server.port".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(port.into())),
                }),
            });
        }
    }
    attributes.push(string_kv("url.scheme", scheme));
    for kv in extra {
        if !attributes.iter().any(|a| a.key == kv.key) {
            attributes.push(kv);
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The unit is kept only when the name ends with it (as the remote_write receiver does).
fn unit_for<'u>(name: &str, unit: &'u str) -> &'u str {
    if unit.is_empty() {
        return "";
    }
    let base = name.strip_suffix("_total").unwrap_or(name);
    match base.strip_suffix(unit) {
        Some(rest) if rest.ends_with('_') => unit,
        _ => "",
    }
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn secs_to_ns(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1e9) as u64
    } else {
        0
    }
}

fn exemplar(
    labels: &[Label<'_>],
    value: f64,
    timestamp_ms: Option<i64>,
    now_ns: u64,
) -> otlp::Exemplar {
    let mut out = otlp::Exemplar {
        time_unix_nano: timestamp_ms.map_or(now_ns, ms_to_ns),
        value: Some(otlp::exemplar::Value::AsDouble(value)),
        ..Default::default()
    };
    for l in labels {
        let (k, v) = (l.name.get(), l.value.get());
        match (k.as_ref(), hex_id(&v)) {
            ("trace_id", Some(id)) if id.len() == 16 => out.trace_id = id,
            ("span_id", Some(id)) if id.len() == 8 => out.span_id = id,
            _ => out.filtered_attributes.push(string_kv(&k, &v)),
        }
    }
    out
}

fn hex_id(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A `le` or `quantile` value.
fn bound(v: &str) -> Option<f64> {
    super::parser::parse_float(v)
}

impl TargetState {
    /// A state whose scrapes read every line afresh: the long way, to compare with.
    #[cfg(test)]
    pub(crate) fn afresh() -> TargetState {
        TargetState {
            afresh: true,
            ..Default::default()
        }
    }

    /// Turns one scrape (its body, or why there is none) into OTLP, with `up`, the `scrape_*`
    /// series and staleness markers.
    pub fn scrape(
        &mut self,
        body: Result<(&[u8], Format), String>,
        duration_secs: f64,
        now_ns: u64,
        target: &Target,
        opts: &Options,
    ) -> Report {
        self.epoch += 1;
        let mut report = Report::default();
        let mut out = Out::default();
        let result = match body {
            Ok((bytes, format)) => {
                self.ingest(bytes, format, now_ns, target, opts, &mut out, &mut report)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            out = Out::default();
            report.error = Some(e);
            report.samples_post_relabel = 0;
            report.series_added = 0;
            // Series first seen by this failed scrape were never sent.
            let epoch = self.epoch;
            self.series.retain(|_, t| t.first_epoch != epoch);
            for t in self.series.values_mut() {
                t.epoch = 0;
            }
        }
        // Staleness: series of the last scrape that this one did not have.
        let epoch = self.epoch;
        let mut stale = 0;
        self.series.retain(|key, t| {
            if t.epoch == epoch {
                return true;
            }
            if !t.explicit_ts {
                stale += 1;
                mark_stale(&mut out, key, t.prometheus_type, now_ns);
            }
            false
        });
        report.stale_markers = stale;
        // up and the scrape series.
        let job = Some(target.job.as_str()).filter(|j| !j.is_empty());
        let instance = Some(target.instance.as_str()).filter(|i| !i.is_empty());
        let res = out.resource(job, instance);
        let up = if report.error.is_none() { 1.0 } else { 0.0 };
        let series: [(&str, &str, f64); 5] = [
            ("up", "1 if the last scrape succeeded, 0 if it failed.", up),
            (
                "scrape_duration_seconds",
                "How long the last scrape took.",
                duration_secs,
            ),
            (
                "scrape_samples_scraped",
                "Samples the last scrape read from the target.",
                report.samples_scraped as f64,
            ),
            (
                "scrape_samples_post_metric_relabeling",
                "Samples of the last scrape kept after metric relabeling.",
                report.samples_post_relabel as f64,
            ),
            (
                "scrape_series_added",
                "Series the last scrape saw for the first time.",
                report.series_added as f64,
            ),
        ];
        for (name, help, value) in series {
            let spec = MetricSpec {
                name,
                kind: Kind::Gauge,
                prometheus_type: None,
                help,
                unit: "",
            };
            out.number(
                res,
                spec,
                NumberDataPoint {
                    time_unix_nano: now_ns,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                },
            );
        }
        report.resource_metrics = out.finish(target);
        report
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &mut self,
        bytes: &[u8],
        format: Format,
        now_ns: u64,
        target: &Target,
        opts: &Options,
        out: &mut Out,
        report: &mut Report,
    ) -> Result<(), String> {
        let parser = Parser::with_buffers(bytes, format, self.buffers.take().unwrap_or_default());
        let mut parser = if self.afresh {
            parser.without_reuse()
        } else {
            parser
        };
        let mut families: Vec<Family> = Vec::new();
        let mut current: Option<usize> = None;
        let mut groups: Vec<Group> = Vec::with_capacity(self.groups_hint);
        let mut group_keys = Keys::with_capacity(self.groups_hint, self.group_keys_hint);
        let mut last_group: Option<usize> = None;
        let mut labels: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let mut key = std::mem::take(&mut self.key);
        // The last sample line's group when it was a bucket line (see `next_bound`).
        let mut last_bucket: Option<LastBucket> = None;
        let result = loop {
            let entry = match parser.next() {
                Ok(Some(e)) => e,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            };
            if let (Entry::Sample(s), Some(last)) = (&entry, last_bucket)
                && let Some(b) = next_bound(s, last, report, opts)
            {
                let g = &mut groups[last.group];
                add_sample(g, last.role, Some(b), s, opts.honor_timestamps, now_ns);
                report.samples_scraped += 1;
                report.samples_post_relabel += 1;
                continue;
            }
            last_bucket = None;
            match entry {
                Entry::Help { family, help } => {
                    let f = family_for(&mut families, &mut current, family);
                    families[f].help = help.get().into_owned();
                }
                Entry::Type { family, kind } => {
                    let f = family_for(&mut families, &mut current, family);
                    families[f].kind = kind;
                }
                Entry::Unit { family, unit } => {
                    let f = family_for(&mut families, &mut current, family);
                    families[f].unit = unit.get().into_owned();
                }
                Entry::Sample(s) => {
                    report.samples_scraped += 1;
                    let mut name = s.name.get();
                    // Labels: the sample's (empty values dropped), then the target's.
                    labels.clear();
                    for l in s.labels {
                        if !l.value.is_empty() {
                            labels.push((l.name.get(), l.value.get()));
                        }
                    }
                    if let Err(e) = merge_target_labels(&mut labels, target, opts.honor_labels) {
                        break Err(e);
                    }
                    if !opts.metric_relabel.is_empty() {
                        let mut owned: Vec<(String, String)> = labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                        owned.push(("__name__".into(), name.into_owned()));
                        if !relabel(&mut owned, &opts.metric_relabel) {
                            continue;
                        }
                        let Some(at) = owned.iter().position(|(k, _)| k == "__name__") else {
                            // Relabeling took the name away: the sample is dropped.
                            continue;
                        };
                        name = Cow::Owned(owned.swap_remove(at).1);
                        owned.sort();
                        labels.clear();
                        labels.extend(
                            owned
                                .into_iter()
                                .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))),
                        );
                    }
                    let (fam_index, role) = family_and_role(&families, current, &name);
                    if let Err(e) = check_limits(&name, &labels, opts) {
                        break Err(e);
                    }
                    report.samples_post_relabel += 1;
                    if opts.sample_limit > 0 && report.samples_post_relabel > opts.sample_limit {
                        break Err(format!(
                            "the target exposes more than sample_limit {} samples",
                            opts.sample_limit
                        ));
                    }
                    let timestamp_ms = if opts.honor_timestamps {
                        s.timestamp_ms
                    } else {
                        None
                    };
                    let time_ns = timestamp_ms.map_or(now_ns, ms_to_ns);
                    // A group keeps these as the exposition or the target holds them.
                    let (job_label, instance_label) =
                        (take_label(&labels, "job"), take_label(&labels, "instance"));
                    let job = job_label.map(|v| v.as_ref());
                    let instance = instance_label.map(|v| v.as_ref());
                    // Attributes: the labels but job, instance and (for grouped series) le or
                    // quantile.
                    let skip = bound_label(role).unwrap_or("");
                    let pairs = || {
                        labels
                            .iter()
                            .filter(|(k, _)| !matches!(k.as_ref(), "job" | "instance") && k != skip)
                            .map(|(k, v)| (k.as_ref(), v.as_ref()))
                    };
                    let attributes =
                        || -> Vec<KeyValue> { pairs().map(|(k, v)| string_kv(k, v)).collect() };
                    match role {
                        Role::TargetInfo => {
                            let res = out.resource(job, instance);
                            let extra = &mut out.resources[res].extra;
                            for kv in attributes() {
                                if !extra.iter().any(|e| e.key == kv.key) {
                                    extra.push(kv);
                                }
                            }
                        }
                        Role::Number(kind, prometheus_type) => {
                            let fam = fam_index.map(|i| &families[i]);
                            let (help, unit) =
                                fam.map_or(("", ""), |f| (f.help.as_str(), f.unit.as_str()));
                            let flags = 0;
                            let attributes = attributes();
                            series_key(&mut key, kind, &name, job, instance, pairs());
                            self.touch(
                                &key,
                                kind,
                                prometheus_type,
                                s.value,
                                None,
                                now_ns,
                                timestamp_ms.is_some(),
                                report,
                            );
                            let res = out.resource(job, instance);
                            out.number(
                                res,
                                MetricSpec {
                                    name: &name,
                                    kind,
                                    prometheus_type,
                                    help,
                                    unit,
                                },
                                NumberDataPoint {
                                    attributes,
                                    time_unix_nano: time_ns,
                                    value: Some(number_data_point::Value::AsDouble(s.value)),
                                    exemplars: s
                                        .exemplar
                                        .map(|e| {
                                            exemplar(e.labels, e.value, e.timestamp_ms, now_ns)
                                        })
                                        .into_iter()
                                        .collect(),
                                    flags,
                                    ..Default::default()
                                },
                            );
                        }
                        _ => {
                            let f = fam_index.unwrap_or(0);
                            let fam = &families[f];
                            let kind = match fam.kind {
                                MetricType::Counter => Kind::Counter,
                                MetricType::Histogram => Kind::Histogram,
                                _ => Kind::Summary,
                            };
                            // A group's attributes are built once, by its first sample
                            // (a histogram has a line per bucket). A group's lines nearly
                            // always follow one another: the last group is tried first,
                            // compared label by label, before a key is written and looked up.
                            // A group's key is its series key (kept for its start time) and
                            // its family's number.
                            let same_as_last = last_group.filter(|&g| {
                                let g = &groups[g];
                                g.family == f
                                    && g.kind == kind
                                    && g.job.as_deref() == job
                                    && g.instance.as_deref() == instance
                                    && pairs().eq(attribute_pairs(&g.attributes))
                            });
                            // The group, and its series key's length when it is new.
                            let found = same_as_last.map(|g| (g, None)).unwrap_or_else(|| {
                                let name = series_name(fam, kind);
                                series_key(&mut key, kind, &name, job, instance, pairs());
                                let series_len = key.len();
                                push_string(&mut key, itoa::Buffer::new().format(f));
                                let (g, new) = group_keys.number(&key);
                                (g, new.then_some(series_len))
                            });
                            let g = match found {
                                (g, None) => g,
                                (g, Some(series_len)) => {
                                    debug_assert_eq!(g, groups.len());
                                    let attributes = attributes();
                                    // The series of a histogram family have the same bounds
                                    // nearly always: the previous group's count sizes the list.
                                    let buckets = match (kind, last_group) {
                                        (Kind::Histogram, Some(g)) if groups[g].family == f => {
                                            Vec::with_capacity(groups[g].buckets.len())
                                        }
                                        _ => Vec::new(),
                                    };
                                    groups.push(Group {
                                        kind,
                                        series_len,
                                        family: f,
                                        job: job_label.cloned(),
                                        instance: instance_label.cloned(),
                                        attributes,
                                        value: None,
                                        buckets,
                                        quantiles: Vec::new(),
                                        sum: None,
                                        count: None,
                                        created: None,
                                        timestamp_ms: None,
                                        exemplars: Vec::new(),
                                    });
                                    g
                                }
                            };
                            last_group = Some(g);
                            let label = bound_label(role);
                            let b = label.map(|l| take_label(&labels, l).and_then(|v| bound(v)));
                            if let (Some(label), Some(None)) = (label, b) {
                                break Err(format!(
                                    "line {}: {name} needs a `{label}` label holding a number",
                                    parser.line()
                                ));
                            }
                            let b = b.flatten();
                            add_sample(&mut groups[g], role, b, &s, opts.honor_timestamps, now_ns);
                            // The group's next bucket may take the short way; not when
                            // relabeling or a target label could change what the bound is
                            // (with a target label `le`, the bucket lines' groups never get a
                            // count and no output shows either way, but the bound would be
                            // the target's).
                            if let Some(label) = label
                                && opts.metric_relabel.is_empty()
                                && !target.labels.iter().any(|(k, _)| k == label)
                            {
                                last_bucket = Some(LastBucket { group: g, role });
                            }
                        }
                    }
                }
            }
        };
        self.buffers = Some(parser.into_buffers());
        self.groups_hint = groups.len();
        self.group_keys_hint = group_keys.bytes();
        if result.is_ok() {
            for (i, g) in groups.into_iter().enumerate() {
                let series = &group_keys.get(i)[..g.series_len];
                self.finish_group(g, series, &families, now_ns, out, report);
            }
        }
        self.key = key;
        result
    }

    /// Tracks a grouped series (a counter, histogram or summary) by its key: its start time.
    fn touch_group(
        &mut self,
        g: &Group<'_>,
        key: &str,
        value: f64,
        created_ns: Option<u64>,
        now_ns: u64,
        report: &mut Report,
    ) -> u64 {
        self.touch(
            key,
            g.kind,
            None,
            value,
            created_ns,
            now_ns,
            g.timestamp_ms.is_some(),
            report,
        )
    }

    /// Adds a group's point; `key` is its series key.
    fn finish_group(
        &mut self,
        mut g: Group<'_>,
        key: &str,
        families: &[Family],
        now_ns: u64,
        out: &mut Out,
        report: &mut Report,
    ) {
        let fam = &families[g.family];
        let Some(name) = series_key_name(key) else {
            debug_assert!(false, "an unreadable series key {key:?}");
            return;
        };
        let time_ns = g.timestamp_ms.map_or(now_ns, ms_to_ns);
        let created_ns = g.created.map(secs_to_ns).filter(|t| *t > 0);
        let res = out.resource(g.job.as_deref(), g.instance.as_deref());
        let spec = MetricSpec {
            name,
            kind: g.kind,
            prometheus_type: None,
            help: &fam.help,
            unit: &fam.unit,
        };
        match g.kind {
            Kind::Counter => {
                let Some(value) = g.value else { return };
                let start = self.touch_group(&g, key, value, created_ns, now_ns, report);
                out.number(
                    res,
                    spec,
                    NumberDataPoint {
                        attributes: g.attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time_ns,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        exemplars: g.exemplars,
                        flags: 0,
                    },
                );
            }
            Kind::Histogram => {
                let Some(count) = g.count else { return };
                let mut buckets = std::mem::take(&mut g.buckets);
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut bounds = Vec::with_capacity(buckets.len());
                let mut counts = Vec::with_capacity(buckets.len() + 1);
                let mut previous = 0.0;
                for (le, cumulative) in &buckets {
                    if le.is_infinite() && *le > 0.0 {
                        break;
                    }
                    bounds.push(*le);
                    counts.push(to_count(cumulative - previous));
                    previous = previous.max(*cumulative);
                }
                counts.push(to_count(count - previous));
                let start = self.touch_group(&g, key, count, created_ns, now_ns, report);
                let m = out.metric(res, spec.name, spec.kind, None, spec.help, spec.unit);
                if let Some(Data::Histogram(h)) = &mut m.data {
                    h.data_points.push(HistogramDataPoint {
                        attributes: g.attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time_ns,
                        count: to_count(count),
                        sum: g.sum,
                        bucket_counts: counts,
                        explicit_bounds: bounds,
                        exemplars: g.exemplars,
                        flags: 0,
                        min: None,
                        max: None,
                    });
                }
            }
            Kind::Summary => {
                let Some(count) = g.count else { return };
                let start = self.touch_group(&g, key, count, created_ns, now_ns, report);
                let m = out.metric(res, spec.name, spec.kind, None, spec.help, spec.unit);
                if let Some(Data::Summary(s)) = &mut m.data {
                    s.data_points.push(SummaryDataPoint {
                        attributes: g.attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time_ns,
                        count: to_count(count),
                        sum: g.sum.unwrap_or(0.0),
                        quantile_values: g
                            .quantiles
                            .iter()
                            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
                            .collect(),
                        flags: 0,
                    });
                }
            }
            Kind::Gauge => {}
        }
    }

    /// Records that a series was seen; returns its start time (ns) for cumulative kinds.
    #[allow(clippy::too_many_arguments)]
    fn touch(
        &mut self,
        key: &str,
        kind: Kind,
        prometheus_type: Option<&'static str>,
        value: f64,
        created_ns: Option<u64>,
        now_ns: u64,
        explicit_ts: bool,
        report: &mut Report,
    ) -> u64 {
        let epoch = self.epoch;
        let cumulative = matches!(kind, Kind::Counter | Kind::Histogram | Kind::Summary);
        match self.series.get_mut(key) {
            Some(t) => {
                t.epoch = epoch;
                if cumulative {
                    if let Some(c) = created_ns {
                        t.start_ns = c;
                    } else if value < t.last {
                        // A reset: the series started again since the last scrape.
                        t.start_ns = now_ns.saturating_sub(1_000_000);
                    }
                }
                t.last = value;
                if cumulative { t.start_ns } else { 0 }
            }
            None => {
                report.series_added += 1;
                let start_ns = created_ns.unwrap_or(now_ns);
                self.series.insert(
                    key.to_string(),
                    Tracked {
                        prometheus_type,
                        start_ns,
                        last: value,
                        first_epoch: epoch,
                        epoch,
                        explicit_ts,
                    },
                );
                if cumulative { start_ns } else { 0 }
            }
        }
    }

    /// Staleness markers for every series (the target went away); forgets them.
    pub fn stale_all(&mut self, now_ns: u64, target: &Target) -> Vec<ResourceMetrics> {
        let mut out = Out::default();
        for (key, t) in self.series.drain() {
            if !t.explicit_ts {
                mark_stale(&mut out, &key, t.prometheus_type, now_ns);
            }
        }
        // `up` and the scrape series go stale with the target.
        let job = Some(target.job.as_str()).filter(|j| !j.is_empty());
        let instance = Some(target.instance.as_str()).filter(|i| !i.is_empty());
        let res = out.resource(job, instance);
        for name in SCRAPE_SERIES {
            let m = out.metric(res, name, Kind::Gauge, None, "", "");
            stale_point(m, Vec::new(), now_ns);
        }
        out.finish(target)
    }

    /// Series currently tracked (for tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.series.len()
    }
}

/// The label holding a bucket's or quantile's bound.
fn bound_label(role: Role) -> Option<&'static str> {
    match role {
        Role::Bucket => Some("le"),
        Role::Quantile => Some("quantile"),
        _ => None,
    }
}

/// The last sample line was a bucket (or quantile: the role) of this group. A line that differs
/// from it only in the bound is the group's next bucket.
#[derive(Clone, Copy)]
struct LastBucket {
    group: usize,
    role: Role,
}

/// The bound of a line that differs from the last one only in the bound (the parser says so in
/// [`Sample::changed`]): the same name, the same other labels, so the same family, role and
/// group as the long way would find, already checked against the limits. `None` sends the line
/// the long way, which also gives any error (an empty or bad bound, a limit).
fn next_bound(
    s: &Sample<'_, '_>,
    last: LastBucket,
    report: &Report,
    opts: &Options,
) -> Option<f64> {
    let l = s.labels.get(s.changed?)?;
    // The parser gives a changed value without escapes: its length is the long way's.
    let value = l.value.raw();
    let fits = (opts.label_value_length_limit == 0
        || value.len() as u64 <= opts.label_value_length_limit)
        && (opts.sample_limit == 0 || report.samples_post_relabel < opts.sample_limit);
    if !l.name.eq_str(bound_label(last.role)?) || !fits {
        return None;
    }
    // An empty or bad bound goes the long way, which fails the scrape.
    bound(&l.value.get())
}

/// Adds a sample line of a counter, histogram or summary to its group (`bound` for buckets and
/// quantiles).
fn add_sample(
    g: &mut Group<'_>,
    role: Role,
    bound: Option<f64>,
    s: &Sample<'_, '_>,
    honor_timestamps: bool,
    now_ns: u64,
) {
    let timestamp_ms = s.timestamp_ms.filter(|_| honor_timestamps);
    if role != Role::Created && timestamp_ms.is_some() {
        g.timestamp_ms = timestamp_ms;
    }
    g.exemplars.extend(
        s.exemplar
            .map(|e| exemplar(e.labels, e.value, e.timestamp_ms, now_ns)),
    );
    let value = Some(s.value);
    match (role, bound) {
        (Role::Counter, _) => g.value = value,
        (Role::Sum, _) => g.sum = value,
        (Role::Count, _) => g.count = value,
        (Role::Created, _) => g.created = value,
        (Role::Bucket, Some(b)) => g.buckets.push((b, s.value)),
        (Role::Quantile, Some(b)) => g.quantiles.push((b, s.value)),
        _ => {}
    }
}

/// The family a sample belongs to (a sample outside the current family ends it) and its role.
fn family_and_role(
    families: &[Family],
    current: Option<usize>,
    name: &str,
) -> (Option<usize>, Role) {
    let fam = current.map(|i| &families[i]).filter(|f| {
        name.starts_with(f.name.as_str())
            || f.kind == MetricType::Counter
                && name.starts_with(f.name.strip_suffix("_total").unwrap_or(&f.name))
    });
    (fam.and(current), classify(fam, name))
}

fn to_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// The name of a grouped series: a counter's ends in `_total`, a histogram's or summary's is its
/// family's.
fn series_name(fam: &Family, kind: Kind) -> Cow<'_, str> {
    match kind {
        Kind::Counter if !fam.name.ends_with("_total") => Cow::Owned(format!("{}_total", fam.name)),
        _ => Cow::Borrowed(&fam.name),
    }
}

/// The family a metadata line belongs to: the current one when the name matches, else a new one.
fn family_for(families: &mut Vec<Family>, current: &mut Option<usize>, name: Text<'_>) -> usize {
    if let Some(i) = *current
        && name.eq_str(&families[i].name)
    {
        return i;
    }
    families.push(Family {
        name: name.get().into_owned(),
        ..Default::default()
    });
    *current = Some(families.len() - 1);
    families.len() - 1
}

/// Adds the target's labels to a sample's. With `honor_labels`, the sample's own value wins;
/// without, the sample's label is renamed `exported_<name>` (`exported_exported_<name>`, ...).
/// The labels come out sorted by name. An exposition's labels are nearly always sorted already,
/// and the target's are: each target label is put in its place rather than the whole list
/// sorted again.
fn merge_target_labels<'x>(
    labels: &mut Vec<(Cow<'x, str>, Cow<'x, str>)>,
    target: &'x Target,
    honor_labels: bool,
) -> Result<(), String> {
    if !labels.is_sorted_by(|a, b| name_cmp(&a.0, &b.0).is_le()) {
        labels.sort_unstable_by(|a, b| name_cmp(&a.0, &b.0));
    }
    let place = |labels: &[(Cow<'_, str>, Cow<'_, str>)], name: &str| {
        labels.binary_search_by(|(k, _)| name_cmp(k, name))
    };
    for (tk, tv) in &target.labels {
        match place(labels, tk) {
            Ok(_) if honor_labels => continue,
            Ok(pos) => {
                let mut renamed = format!("exported_{tk}");
                while place(labels, &renamed).is_ok() {
                    renamed.insert_str(0, "exported_");
                }
                let (_, value) = labels.remove(pos);
                let at = place(labels, &renamed).unwrap_or_else(|at| at);
                labels.insert(at, (Cow::Owned(renamed), value));
                let at = place(labels, tk).unwrap_or_else(|at| at);
                labels.insert(at, (Cow::Borrowed(tk.as_str()), Cow::Borrowed(tv.as_str())));
            }
            Err(at) => {
                labels.insert(at, (Cow::Borrowed(tk.as_str()), Cow::Borrowed(tv.as_str())));
            }
        }
    }
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("label name {:?} is not unique", w[0].0));
    }
    Ok(())
}

/// `a.cmp(b)`, decided by the first bytes when they differ (label names nearly always do), which
/// spares a call to `memcmp`.
fn name_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

fn check_limits(
    name: &str,
    labels: &[(Cow<'_, str>, Cow<'_, str>)],
    opts: &Options,
) -> Result<(), String> {
    if opts.label_limit > 0 && labels.len() as u64 + 1 > opts.label_limit {
        return Err(format!(
            "series {name} has {} labels, more than label_limit {}",
            labels.len() + 1,
            opts.label_limit
        ));
    }
    for (k, v) in labels {
        if opts.label_name_length_limit > 0 && k.len() as u64 > opts.label_name_length_limit {
            return Err(format!(
                "series {name}: label name {k:?} is longer than label_name_length_limit {}",
                opts.label_name_length_limit
            ));
        }
        if opts.label_value_length_limit > 0 && v.len() as u64 > opts.label_value_length_limit {
            return Err(format!(
                "series {name}: the value of label {k:?} is longer than label_value_length_limit {}",
                opts.label_value_length_limit
            ));
        }
    }
    Ok(())
}

fn take_label<'l, 'x>(
    labels: &'l [(Cow<'x, str>, Cow<'x, str>)],
    name: &str,
) -> Option<&'l Cow<'x, str>> {
    labels.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn push_identity<'x>(
    key: &mut String,
    job: Option<&str>,
    instance: Option<&str>,
    attributes: impl Iterator<Item = (&'x str, &'x str)>,
) {
    for v in [job, instance] {
        match v {
            Some(v) => {
                key.push('+');
                push_string(key, v);
            }
            None => key.push('-'),
        }
    }
    for (k, v) in attributes {
        push_string(key, k);
        push_string(key, v);
    }
}

/// Attributes as (key, value) text, for keys. The receiver's attributes are all strings
/// (`string_kv`); staleness markers read them back from the key as strings.
fn attribute_pairs(attributes: &[KeyValue]) -> impl Iterator<Item = (&str, &str)> {
    attributes.iter().map(|kv| match &kv.value {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => (kv.key.as_str(), s.as_str()),
        other => {
            debug_assert!(false, "a non-string attribute {other:?}");
            (kv.key.as_str(), "")
        }
    })
}

/// The key a series is tracked by between scrapes: its kind, name, job, instance and attributes.
fn series_key<'x>(
    key: &mut String,
    kind: Kind,
    name: &str,
    job: Option<&str>,
    instance: Option<&str>,
    attributes: impl Iterator<Item = (&'x str, &'x str)>,
) {
    key.clear();
    key.push(kind.tag());
    push_string(key, name);
    push_identity(key, job, instance, attributes);
}

/// The name in a series key.
fn series_key_name(key: &str) -> Option<&str> {
    take_string(&mut key.get(1..)?)
}

/// A series as [`series_key`] wrote it, read back.
struct KeyedSeries<'k> {
    kind: Kind,
    name: &'k str,
    job: Option<&'k str>,
    instance: Option<&'k str>,
    attributes: Vec<KeyValue>,
}

fn read_series_key(key: &str) -> Option<KeyedSeries<'_>> {
    let kind = Kind::from_tag(*key.as_bytes().first()?)?;
    let mut rest = &key[1..];
    let name = take_string(&mut rest)?;
    let mut identity = [None, None];
    for part in &mut identity {
        let (mark, after) = rest.split_at_checked(1)?;
        rest = after;
        match mark {
            "+" => *part = Some(take_string(&mut rest)?),
            "-" => {}
            _ => return None,
        }
    }
    let mut attributes = Vec::new();
    while !rest.is_empty() {
        let k = take_string(&mut rest)?;
        let v = take_string(&mut rest)?;
        attributes.push(string_kv(k, v));
    }
    let [job, instance] = identity;
    Some(KeyedSeries {
        kind,
        name,
        job,
        instance,
        attributes,
    })
}

/// Adds the staleness marker of the series tracked under `key`.
fn mark_stale(out: &mut Out, key: &str, prometheus_type: Option<&'static str>, now_ns: u64) {
    let Some(s) = read_series_key(key) else {
        debug_assert!(false, "an unreadable series key {key:?}");
        return;
    };
    let res = out.resource(s.job, s.instance);
    let m = out.metric(res, s.name, s.kind, prometheus_type, "", "");
    stale_point(m, s.attributes, now_ns);
}

/// Adds a "no recorded value" point (StaleNaN for numbers) to a metric.
fn stale_point(m: &mut Metric, attributes: Vec<KeyValue>, now_ns: u64) {
    let number = |attributes| NumberDataPoint {
        attributes,
        time_unix_nano: now_ns,
        value: Some(number_data_point::Value::AsDouble(stale_nan())),
        flags: FLAG_NO_RECORDED_VALUE,
        ..Default::default()
    };
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.push(number(attributes)),
        Some(Data::Sum(s)) => s.data_points.push(number(attributes)),
        Some(Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
            attributes,
            time_unix_nano: now_ns,
            flags: FLAG_NO_RECORDED_VALUE,
            ..Default::default()
        }),
        Some(Data::Summary(s)) => s.data_points.push(SummaryDataPoint {
            attributes,
            time_unix_nano: now_ns,
            flags: FLAG_NO_RECORDED_VALUE,
            ..Default::default()
        }),
        _ => {}
    }
}
