//! A parser for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//!
//! It reads a whole scraped body (`&[u8]`) and yields one [`Entry`] at a time, borrowing names,
//! label values and help text from the body: nothing is allocated per sample (labels go into a
//! vector the parser keeps and reuses; escaped strings stay escaped until the caller asks for them
//! with [`Text::get`] or [`Text::unescape_into`]). A sample line that differs from the previous
//! one only inside one label value (a histogram's buckets) takes the previous line's labels with
//! that value replaced, without reading them again ([`Sample::changed`]).
//!
//! Both formats accept Prometheus 3's quoted UTF-8 names (`{"my.metric",a="b"} 1`,
//! `# TYPE "my.metric" gauge`). A malformed body yields a [`ParseError`] with the line number and
//! what was expected; the parser never panics.

mod text;

pub(crate) use text::parse_value as parse_float;
pub use text::{Buffers, Parser};

use std::borrow::Cow;
use std::fmt;

/// The exposition format, from the response's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything not OpenMetrics).
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media == "application/openmetrics-text" {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A Prometheus metric type, as in `# TYPE` lines.
pub use sluice_core::prometheus::MetricType;

/// A string as written in the exposition: a slice of the body, maybe with escapes left in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text<'a> {
    raw: &'a str,
    /// Whether `raw` holds backslash escapes.
    escaped: bool,
    /// Whether `"` may be escaped (label values, quoted names, OpenMetrics help); in text-format
    /// help only `\\` and `\n` are escapes.
    quotes: bool,
}

impl<'a> Text<'a> {
    pub(crate) fn new(raw: &'a str, escaped: bool, quotes: bool) -> Text<'a> {
        Text {
            raw,
            escaped,
            quotes,
        }
    }

    /// A string without escapes.
    pub fn plain(raw: &'a str) -> Text<'a> {
        Text::new(raw, false, true)
    }

    /// The same kind of text (escaped or not) at another place.
    pub(crate) fn with_raw(self, raw: &'a str) -> Text<'a> {
        Text { raw, ..self }
    }

    /// The text as written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The unescaped text; borrowed unless it held escapes.
    pub fn get(&self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        let mut s = String::with_capacity(self.raw.len());
        self.unescape_into(&mut s);
        Cow::Owned(s)
    }

    /// Appends the unescaped text to `out`: `\\` -> `\`, `\n` -> newline, `\"` -> `"` (where
    /// quotes are escapes); any other backslash is kept as written, as Prometheus does.
    pub fn unescape_into(&self, out: &mut String) {
        if !self.escaped {
            out.push_str(self.raw);
            return;
        }
        let mut rest = self.raw;
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            match after.as_bytes().first() {
                Some(b'\\') => {
                    out.push('\\');
                    rest = &after[1..];
                }
                Some(b'n') => {
                    out.push('\n');
                    rest = &after[1..];
                }
                Some(b'"') if self.quotes => {
                    out.push('"');
                    rest = &after[1..];
                }
                _ => {
                    out.push('\\');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
    }

    /// Whether the unescaped text equals `s` (without allocating when there are no escapes).
    pub fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            self.get() == s
        } else {
            self.raw == s
        }
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.get())
    }
}

/// One `name="value"` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: Text<'a>,
    pub value: Text<'a>,
}

/// An OpenMetrics exemplar: `# {trace_id="..."} 1.0 1234.5`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar<'e, 'a> {
    pub labels: &'e [Label<'a>],
    pub value: f64,
    /// Milliseconds since the epoch, when given.
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'e, 'a> {
    /// The metric name (never empty).
    pub name: Text<'a>,
    /// The labels in the order written (the metric name excluded).
    pub labels: &'e [Label<'a>],
    /// `Some(k)` when the previous sample line had the same name and the same labels but for
    /// the value of `labels[k]` (as a histogram's bucket lines do, but for `le`): its labels were
    /// then not read again. `None` tells nothing.
    pub changed: Option<usize>,
    pub value: f64,
    /// Milliseconds since the epoch, when given (the text format writes milliseconds,
    /// OpenMetrics seconds).
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar<'e, 'a>>,
}

/// What one line holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'e, 'a> {
    Help { family: Text<'a>, help: Text<'a> },
    Type { family: Text<'a>, kind: MetricType },
    Unit { family: Text<'a>, unit: Text<'a> },
    Sample(Sample<'e, 'a>),
}

/// Why an exposition could not be read: the line (from 1) and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Whether `s` is a legacy metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(s: &str) -> bool {
    !s.is_empty() && name_len(s.as_bytes(), METRIC_FIRST, METRIC_MORE) == s.len()
}

/// Whether `s` is a legacy label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(s: &str) -> bool {
    !s.is_empty() && name_len(s.as_bytes(), LABEL_FIRST, LABEL_MORE) == s.len()
}

/// Which bytes may start or continue a metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` and
/// `[a-zA-Z_][a-zA-Z0-9_]*`, as bit flags per byte.
pub(crate) const METRIC_FIRST: u8 = 1;
pub(crate) const METRIC_MORE: u8 = 2;
pub(crate) const LABEL_FIRST: u8 = 4;
pub(crate) const LABEL_MORE: u8 = 8;
const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let colon = c == b':';
        let mut f = 0;
        if alpha || colon {
            f |= METRIC_FIRST | METRIC_MORE;
        }
        if digit {
            f |= METRIC_MORE | LABEL_MORE;
        }
        if alpha {
            f |= LABEL_FIRST | LABEL_MORE;
        }
        t[b] = f;
        b += 1;
    }
    t
};

/// How many bytes at the start of `b` make a name: the first of class `first`, the rest of class
/// `more` (0 when the first byte is not of class `first`).
pub(crate) fn name_len(b: &[u8], first: u8, more: u8) -> usize {
    match b.first() {
        Some(&c) if NAME_CLASS[usize::from(c)] & first != 0 => {
            1 + b[1..]
                .iter()
                .take_while(|&&c| NAME_CLASS[usize::from(c)] & more != 0)
                .count()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
