//! Metric names and label names for Prometheus, per the OpenTelemetry compatibility specification
//! (the default "underscore escaping with suffixes" strategy).
//!
//! The algorithm is the one of `prometheus/otlptranslator` (`metric_namer.go`, `unit_namer.go`,
//! `label_namer.go`, `strconv.go`), which both the Collector's remote-write exporter and
//! Prometheus' own OTLP endpoint use, with one deliberate difference: a unit that spans several
//! tokens (`per_second`, `gc_cycles`) counts as present when the name already contains that run of
//! tokens. otlptranslator only looks for single tokens, so it turns `requests_per_second` in `1/s`
//! into `requests_per_second_per_second`; Sluice keeps translation idempotent on names that are
//! already Prometheus-style.
//!
//! Nothing is cached here; callers that see the same names repeatedly cache the results.

/// The kind of metric a name is built for: decides the `_total` and `_ratio` suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A monotonic sum: gets `_total`.
    Counter,
    /// A gauge: gets `_ratio` when the unit is exactly `1`.
    Gauge,
    /// A non-monotonic sum (exported as a Prometheus gauge, but no `_ratio`: some OTel receivers
    /// use unit `1` for counts).
    UpDownCounter,
    /// An explicit-bucket or exponential histogram.
    Histogram,
    Summary,
}

/// OTel (UCUM) unit -> Prometheus unit word. `TiBy` maps to `tebibytes`, the correct binary
/// prefix and what the specification's table says; older otlptranslator versions wrote
/// `tibibytes` (kept there only behind a legacy option). `kBy` (the UCUM spelling) is accepted
/// next to the `KBy` of the otlptranslator map.
fn main_unit(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" | "kBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The unit after `/`, singular: `By/s` -> `bytes_per_second`.
fn per_unit(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// Splits on every character outside `[a-zA-Z0-9:]` (the underscore included), dropping empty
/// tokens: this replaces invalid characters, collapses runs and trims leading/trailing `_`.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
}

/// The main and per parts of a unit as name tokens; annotations (`{packets}`) and `1` give none.
fn unit_tokens(unit: &str) -> (Vec<&str>, Vec<&str>) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let usable = |s: &str| !s.is_empty() && !s.contains(['{', '}']);
    let main_tokens = if usable(main) {
        tokens(main_unit(main)).collect()
    } else {
        Vec::new()
    };
    let mut per_tokens = Vec::new();
    if let Some(per) = per.filter(|p| usable(p)) {
        per_tokens.extend(tokens(per_unit(per)));
        if !per_tokens.is_empty() {
            per_tokens.insert(0, "per");
        }
    }
    (main_tokens, per_tokens)
}

fn contains_run(haystack: &[&str], needle: &[&str]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The Prometheus unit word for metadata (`seconds`, `bytes_per_second`; empty for `1` and
/// annotations).
pub fn unit_word(unit: &str) -> String {
    let (main, per) = unit_tokens(unit);
    let mut all = main;
    all.extend(per);
    all.join("_")
}

/// The Prometheus metric name for an OTel metric, or `None` when nothing valid remains.
///
/// With `add_suffixes`: tokenize on `[^a-zA-Z0-9:]`; append the unit word unless its tokens are
/// already there, then `per_<unit>` likewise; for counters remove every `total` token and append
/// one; for gauges with unit `1` remove every `ratio` token and append one; join with `_`; prefix
/// `_` when the result starts with a digit. Without suffixes only the characters are escaped.
pub fn metric_name(
    otel_name: &str,
    unit: &str,
    kind: NameKind,
    add_suffixes: bool,
) -> Option<String> {
    let name = if add_suffixes {
        let mut toks: Vec<&str> = tokens(otel_name).collect();
        let (main, per) = unit_tokens(unit);
        if !contains_run(&toks, &main) {
            toks.extend(main);
        }
        if !contains_run(&toks, &per) {
            toks.extend(per);
        }
        if kind == NameKind::Counter {
            toks.retain(|t| *t != "total");
            toks.push("total");
        }
        if kind == NameKind::Gauge && unit == "1" {
            toks.retain(|t| *t != "ratio");
            toks.push("ratio");
        }
        toks.join("_")
    } else {
        // otlptranslator's "simple" path: underscores are valid and kept as they are.
        otel_name
            .split(|c: char| !(is_metric_char(c) || c == '_'))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("_")
    };
    if name.bytes().all(|b| b == b'_') {
        return None;
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Some(format!("_{name}"));
    }
    Some(name)
}

/// The Prometheus label name for an attribute key, or `None` when nothing valid remains.
///
/// Every character outside `[a-zA-Z0-9]` becomes `_` and runs collapse into one `_` (the spec's
/// MUST); a reserved `__x__` key keeps its double underscores around the sanitized middle; a
/// leading digit gets a `key_` prefix; a single leading `_` is kept (otlptranslator's default,
/// the old `key_` prefixing is a deprecated legacy option). A result of only underscores is
/// invalid.
pub fn label_name(key: &str) -> Option<String> {
    let reserved = key.len() >= 4 && key.starts_with("__") && key.ends_with("__");
    let inner = if reserved {
        &key[2..key.len() - 2]
    } else {
        key
    };
    let mut out = String::with_capacity(key.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut prev_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.bytes().all(|b| b == b'_') {
        return None;
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "key_");
    }
    Some(out)
}

/// Whether `name` is already a valid legacy Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
