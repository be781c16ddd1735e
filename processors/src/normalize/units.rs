//! Units (NAMING.md rule 3): the word a unit adds to a name, the trailing segments that already name
//! it, and, with `base_units`, the conversion to seconds and bytes.

use super::names::segments;
use super::rules::MetricKind;

/// A value factor kept as an exact ratio of two integers, so that `ms -> s` divides by 1000 (one
/// correctly rounded operation) rather than multiplying by an inexact 0.001.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub num: f64,
    pub den: f64,
}

impl Scale {
    pub const ONE: Scale = Scale { num: 1.0, den: 1.0 };

    pub fn is_one(self) -> bool {
        self.num == self.den
    }

    /// The factor as one number, for display.
    pub fn factor(self) -> f64 {
        self.num / self.den
    }

    pub fn apply(self, v: f64) -> f64 {
        if self.den == 1.0 {
            v * self.num
        } else if self.num == 1.0 {
            v / self.den
        } else {
            v * self.num / self.den
        }
    }

    fn per(self, per: Scale) -> Scale {
        Scale {
            num: self.num * per.den,
            den: self.den * per.num,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Seconds,
    Bytes,
}

impl Base {
    fn symbol(self) -> &'static str {
        match self {
            Base::Seconds => "s",
            Base::Bytes => "By",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Base::Seconds => "seconds",
            Base::Bytes => "bytes",
        }
    }
    fn singular(self) -> &'static str {
        match self {
            Base::Seconds => "second",
            Base::Bytes => "byte",
        }
    }
}

/// One known unit: its UCUM symbol, its word in names, the singular after `per`, its base unit with
/// the factor to it, and other trailing segments that name it in metric names (`latency_ms`).
struct Def {
    symbol: &'static str,
    word: &'static str,
    singular: &'static str,
    base: Option<(Base, Scale)>,
    aliases: &'static [&'static str],
}

const fn def(
    symbol: &'static str,
    word: &'static str,
    singular: &'static str,
    base: Option<(Base, f64, f64)>,
    aliases: &'static [&'static str],
) -> Def {
    Def {
        symbol,
        word,
        singular,
        base: match base {
            Some((b, num, den)) => Some((b, Scale { num, den })),
            None => None,
        },
        aliases,
    }
}

use Base::{Bytes, Seconds};

const DEFS: &[Def] = &[
    def("s", "seconds", "second", Some((Seconds, 1.0, 1.0)), &[]),
    def(
        "ms",
        "milliseconds",
        "millisecond",
        Some((Seconds, 1.0, 1e3)),
        &["ms"],
    ),
    def(
        "us",
        "microseconds",
        "microsecond",
        Some((Seconds, 1.0, 1e6)),
        &["us"],
    ),
    def(
        "ns",
        "nanoseconds",
        "nanosecond",
        Some((Seconds, 1.0, 1e9)),
        &["ns"],
    ),
    def(
        "min",
        "minutes",
        "minute",
        Some((Seconds, 60.0, 1.0)),
        &["min"],
    ),
    def("h", "hours", "hour", Some((Seconds, 3600.0, 1.0)), &[]),
    def("d", "days", "day", Some((Seconds, 86400.0, 1.0)), &[]),
    def("By", "bytes", "byte", Some((Bytes, 1.0, 1.0)), &[]),
    def(
        "KiBy",
        "kibibytes",
        "kibibyte",
        Some((Bytes, 1024.0, 1.0)),
        &["kib"],
    ),
    def(
        "MiBy",
        "mebibytes",
        "mebibyte",
        Some((Bytes, 1048576.0, 1.0)),
        &["mib"],
    ),
    def(
        "GiBy",
        "gibibytes",
        "gibibyte",
        Some((Bytes, 1073741824.0, 1.0)),
        &["gib"],
    ),
    def(
        "TiBy",
        "tebibytes",
        "tebibyte",
        Some((Bytes, 1099511627776.0, 1.0)),
        &["tib"],
    ),
    def(
        "kBy",
        "kilobytes",
        "kilobyte",
        Some((Bytes, 1e3, 1.0)),
        &["kb"],
    ),
    def(
        "KBy",
        "kilobytes",
        "kilobyte",
        Some((Bytes, 1e3, 1.0)),
        &["kb"],
    ),
    def(
        "MBy",
        "megabytes",
        "megabyte",
        Some((Bytes, 1e6, 1.0)),
        &["mb"],
    ),
    def(
        "GBy",
        "gigabytes",
        "gigabyte",
        Some((Bytes, 1e9, 1.0)),
        &["gb"],
    ),
    def(
        "TBy",
        "terabytes",
        "terabyte",
        Some((Bytes, 1e12, 1.0)),
        &["tb"],
    ),
    def("%", "percent", "percent", None, &[]),
    def("Cel", "celsius", "celsius", None, &[]),
    def("Hz", "hertz", "hertz", None, &[]),
    def("m", "meters", "meter", None, &[]),
    def("V", "volts", "volt", None, &[]),
    def("A", "amperes", "ampere", None, &[]),
    def("J", "joules", "joule", None, &[]),
    def("W", "watts", "watt", None, &[]),
    def("g", "grams", "gram", None, &[]),
    // After `/` only, as the exporters read them: `{requests}/w` -> `per_week`.
    def("w", "weeks", "week", None, &[]),
    def("mo", "months", "month", None, &[]),
    def("y", "years", "year", None, &[]),
];

/// A unit by its UCUM symbol (`ms`), or by its word (`milliseconds`, `bytes`, as Go writes them).
fn lookup(unit: &str) -> Option<&'static Def> {
    let unit = unit.trim();
    DEFS.iter()
        .find(|d| d.symbol == unit)
        .or_else(|| DEFS.iter().find(|d| d.word == unit))
}

impl Def {
    fn converts(&self) -> bool {
        self.base.is_some_and(|(_, s)| !s.is_one())
    }
}

/// What a unit does to a name.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitPlan {
    /// The unit word, as segments (`bytes`, `per`, `second`); empty when the unit adds nothing.
    pub word: Vec<String>,
    /// Trailing segment runs that name the unit already and are replaced by `word` rather than
    /// appended to (`ms` -> `milliseconds`; with `base_units`, `milliseconds` -> `seconds`).
    pub sources: Vec<Vec<String>>,
    /// The value factor of a base-unit conversion.
    pub scale: Scale,
    /// The OTLP unit after a base-unit conversion (`s`, `By/s`); `None` when unchanged.
    pub converted_unit: Option<String>,
    /// A conversion `base_units` asked for but that was not applied (exponential histograms).
    pub withheld: bool,
}

fn split_word(word: &str) -> Vec<String> {
    word.split('_')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Removes UCUM annotations (`{packets}`): they add nothing to a name.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The plan for `unit` on a metric of `kind`.
pub fn plan(unit: &str, kind: MetricKind, base_units: bool) -> UnitPlan {
    let unit = unit.trim();
    let (main_raw, per_raw) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit, None),
    };
    let main = strip_annotations(main_raw);
    let per = per_raw
        .map(strip_annotations)
        .filter(|p| !p.is_empty() && !per_raw.unwrap_or("").contains(['{', '}']));
    let main_def = lookup(&main);
    let per_def = per.as_deref().and_then(lookup);
    let wanted =
        base_units && (main_def.is_some_and(Def::converts) || per_def.is_some_and(Def::converts));
    let convert = wanted && kind != MetricKind::ExponentialHistogram;

    let (main_word, main_src, main_scale, main_out): (String, String, Scale, String) =
        match main_def {
            Some(d) => match d.base {
                Some((b, s)) if convert => (b.word().into(), d.word.into(), s, b.symbol().into()),
                _ => (d.word.into(), d.word.into(), Scale::ONE, main_raw.into()),
            },
            None if main == "1" => {
                let ratio = per.is_none() && kind == MetricKind::Gauge;
                let w = if ratio { "ratio" } else { "" };
                (w.into(), w.into(), Scale::ONE, main_raw.into())
            }
            None => {
                let w = segments(&main).join("_");
                (w.clone(), w, Scale::ONE, main_raw.into())
            }
        };
    let mut scale = main_scale;
    let mut word = main_word.clone();
    let mut src = main_src;
    let mut out = main_out;
    if let Some(per) = &per {
        let (per_word, per_src, per_scale, per_out) = match per_def {
            Some(d) => match d.base {
                Some((b, s)) if convert => (b.singular().into(), d.singular.into(), s, b.symbol()),
                _ => (d.singular.into(), d.singular.into(), Scale::ONE, d.symbol),
            },
            None => {
                let w = segments(per).join("_");
                (w.clone(), w, Scale::ONE, per.as_str())
            }
        };
        if !per_word.is_empty() {
            scale = scale.per(per_scale);
            word = join_per(&word, &per_word);
            src = join_per(&src, &per_src);
            out = format!("{out}/{per_out}");
        }
    }

    let word_segs = split_word(&word);
    let mut sources: Vec<Vec<String>> = Vec::new();
    if !word_segs.is_empty() {
        let mut add = |s: &str| {
            let s = split_word(s);
            if !s.is_empty() && s != word_segs && !sources.contains(&s) {
                sources.push(s);
            }
        };
        add(&src);
        if per.is_none() {
            for a in main_def.map_or(&[][..], |d| d.aliases) {
                add(a);
            }
        }
    }
    UnitPlan {
        word: word_segs,
        sources,
        scale,
        converted_unit: convert.then_some(out),
        withheld: wanted && !convert,
    }
}

fn join_per(main: &str, per: &str) -> String {
    if main.is_empty() {
        format!("per_{per}")
    } else {
        format!("{main}_per_{per}")
    }
}

/// The OTLP unit for a unit taken from a Go runtime/metrics name: the UCUM symbol when Go's word is
/// a known unit (`bytes` -> `By`, `seconds` -> `s`, `percent` -> `%`), else an annotation
/// (`{objects}`), which adds nothing downstream since the word is in the name already.
pub fn go_unit(word: &str) -> String {
    match DEFS.iter().find(|d| d.word == word) {
        Some(d) => d.symbol.to_string(),
        None => format!("{{{word}}}"),
    }
}
