//! The text exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0, and the choice
//! between them from the scraper's `Accept` header.
//!
//! Both are written from the [`Store`] in its order (families by name, points by labels, parts by
//! bound), without sample timestamps: the scraper stamps each sample with the scrape time, as
//! with any exporter. With explicit timestamps Prometheus would not mark vanished series stale,
//! and would refuse samples of late batches as out of order. No `_created` lines either:
//! Prometheus 2.x stores them as separate series, and the text format has none.

use super::store::{Family, Kind, Part, Store};
use sluice_core::prometheus::{Exemplar, MetricType};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// OpenMetrics' limit on the characters of an exemplar's label names and values together.
const MAX_EXEMPLAR_RUNES: usize = 128;

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The format for an `Accept` header: the acceptable media range with the highest `q` (the first
/// one on ties) among `application/openmetrics-text` (version 1.0.0, 0.0.1 or none; only when
/// `open_metrics`), `text/plain` (version 0.0.4 or none), `text/*` and `*/*`; text 0.0.4 when none
/// matches or there is no header.
pub fn negotiate(accept: Option<&str>, open_metrics: bool) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(f64, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let (mut q, mut version) = (1.0_f64, None);
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "version" => version = Some(v),
                _ => {}
            }
        }
        if q <= 0.0 || q.is_nan() {
            continue;
        }
        let format = if media.eq_ignore_ascii_case("application/openmetrics-text") {
            (open_metrics && matches!(version, None | Some("1.0.0" | "0.0.1")))
                .then_some(Format::OpenMetrics)
        } else if media.eq_ignore_ascii_case("text/plain") {
            matches!(version, None | Some("0.0.4")).then_some(Format::Text)
        } else if media == "*/*" || media.eq_ignore_ascii_case("text/*") {
            Some(Format::Text)
        } else {
            None
        };
        if let Some(f) = format
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, f));
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// Writes everything in `store` (already swept) in `format` to `out`.
pub fn encode(store: &Store, format: Format, out: &mut String) {
    for (name, family) in &store.families {
        match format {
            Format::Text => text_family(name, family, out),
            Format::OpenMetrics => openmetrics_family(store, name, family, out),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

fn text_family(name: &str, family: &Family, out: &mut String) {
    let md = &family.metadata;
    if !md.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(out, &md.help, false);
        out.push('\n');
    }
    let t = match md.metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        // 0.0.4 has no gauge histogram, info or state set.
        MetricType::Unknown
        | MetricType::GaugeHistogram
        | MetricType::Info
        | MetricType::StateSet => "untyped",
    };
    let _ = writeln!(out, "# TYPE {name} {t}");
    for (labels, point) in &family.points {
        for part in &point.parts {
            sample_line(out, part, labels);
            out.push('\n');
        }
    }
}

fn openmetrics_family(store: &Store, name: &str, family: &Family, out: &mut String) {
    let md = &family.metadata;
    // A counter family is named without `_total` and its sample with it. A counter whose name has
    // no `_total` (`add_metric_suffixes: false`), or whose name without it is taken by another
    // family, is exposed as `unknown`, so that its series keep their names in both formats.
    let (family_name, t) = match md.metric_type {
        MetricType::Counter => match name.strip_suffix("_total") {
            Some(base) if !base.is_empty() && !store.families.contains_key(base) => {
                (base, "counter")
            }
            _ => (name, "unknown"),
        },
        MetricType::Gauge => (name, "gauge"),
        MetricType::Histogram => (name, "histogram"),
        MetricType::Summary => (name, "summary"),
        // Never produced by the translation; their OpenMetrics sample names would differ.
        MetricType::Unknown
        | MetricType::GaugeHistogram
        | MetricType::Info
        | MetricType::StateSet => (name, "unknown"),
    };
    let _ = writeln!(out, "# TYPE {family_name} {t}");
    // OpenMetrics requires the unit to be a suffix of the family name.
    if !md.unit.is_empty()
        && family_name.len() > md.unit.len()
        && family_name.ends_with(md.unit.as_str())
        && family_name.as_bytes()[family_name.len() - md.unit.len() - 1] == b'_'
    {
        let _ = writeln!(out, "# UNIT {family_name} {}", md.unit);
    }
    if !md.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(family_name);
        out.push(' ');
        escape_help(out, &md.help, true);
        out.push('\n');
    }
    // Exemplars: on counter samples and histogram buckets (Prometheus refuses them elsewhere).
    let exemplars = |part: &Part| match (t, &part.kind) {
        ("counter", Kind::Plain) => part.name.ends_with("_total"),
        ("histogram", Kind::Bound(_)) => part.name.ends_with("_bucket"),
        _ => false,
    };
    for (labels, point) in &family.points {
        for part in &point.parts {
            sample_line(out, part, labels);
            if let Some(e) = part
                .exemplar
                .as_ref()
                .filter(|e| exemplars(part) && fits(e))
            {
                exemplar(out, e);
            }
            out.push('\n');
        }
    }
}

/// `name{labels,le="..."} value`, without the line break.
fn sample_line(out: &mut String, part: &Part, labels: &[(String, String)]) {
    out.push_str(&part.name);
    let bound = part.bound_label.as_ref().map(|(k, v)| (*k, v.as_str()));
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(bound);
    write_labels(out, all);
    out.push(' ');
    write_float(out, part.sample.value);
}

fn write_labels<'a>(out: &mut String, labels: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// ` # {labels} value timestamp` (seconds).
fn exemplar(out: &mut String, e: &Exemplar) {
    out.push_str(" # {");
    for (i, (k, v)) in e.labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    out.push_str("} ");
    write_float(out, e.value);
    if e.timestamp_ms > 0 {
        out.push(' ');
        write_seconds(out, e.timestamp_ms);
    }
}

fn fits(e: &Exemplar) -> bool {
    let runes: usize = e
        .labels
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    runes <= MAX_EXEMPLAR_RUNES
}

/// Milliseconds as decimal seconds, exactly (`1790000001.5`).
fn write_seconds(out: &mut String, ms: i64) {
    let (s, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let _ = write!(out, "{s}");
    if frac != 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// A sample value: `+Inf`, `-Inf`, `NaN`; otherwise the shortest digits that read back the same,
/// without an exponent between 1e-6 and 1e21 (so integers up to there are written as integers)
/// and with one outside (`1e-7`, `1.5e21`), which every Prometheus parser reads.
pub(crate) fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v == 0.0 || (1e-6..1e21).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// A label value: `\`, `"` and line feed escaped (both formats).
fn escape_label_value(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` and line feed escaped; in OpenMetrics also `"`.
fn escape_help(out: &mut String, v: &str, quotes: bool) {
    if !v
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\n') || (quotes && b == b'"'))
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}
