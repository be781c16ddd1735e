//! The line parser shared by both formats. Differences:
//!
//! - text 0.0.4: blank lines and free `#` comments are allowed, spaces and tabs separate tokens
//!   (also at the start of a line), timestamps are integer milliseconds, `# HELP` escapes only
//!   `\\` and `\n`, types are `counter gauge histogram summary untyped`, no exemplars;
//! - OpenMetrics 1.0: every `#` line is `# HELP`, `# TYPE`, `# UNIT` or `# EOF`; `# EOF` must end
//!   the exposition with nothing after it; no blank lines; timestamps are seconds (with a
//!   fraction); `# UNIT` must be a suffix of the family name; exemplars follow ` # `.

use super::{
    Entry, Exemplar, Format, LABEL_FIRST, LABEL_MORE, Label, METRIC_FIRST, METRIC_MORE, MetricType,
    ParseError, Sample, Text, name_len,
};
use memchr::{memchr, memchr2};

/// The longest exemplar label set, in characters of names and values (OpenMetrics).
const MAX_EXEMPLAR_RUNES: usize = 128;

/// Reads an exposition one entry at a time; see the module documentation.
pub struct Parser<'a> {
    body: &'a str,
    /// The start of the next line.
    pos: usize,
    /// The number of the line last read (from 1).
    line: usize,
    format: Format,
    labels: Vec<Label<'a>>,
    exemplar_labels: Vec<Label<'a>>,
    saw_eof: bool,
    done: bool,
    /// An error found before the first line (invalid UTF-8).
    pending: Option<ParseError>,
    /// The last sample line, whose labels `labels` holds (kept while `reuse` is on).
    previous: Option<Previous<'a>>,
    /// Whether a line's labels may be taken from the previous line (see `reuse_labels`).
    reuse: bool,
}

/// A sample line whose labels are in the parser's label vector (their texts borrow from it).
#[derive(Clone, Copy)]
struct Previous<'a> {
    line: &'a str,
    name: Text<'a>,
    /// Where the label block ends (after its `}`).
    labels_end: usize,
}

/// Label vectors kept between scrapes, so that a scrape allocates none.
#[derive(Default)]
pub struct Buffers {
    pub(crate) labels: Vec<Label<'static>>,
    pub(crate) exemplar_labels: Vec<Label<'static>>,
}

/// Empties a vector and gives it another lifetime, keeping its allocation (the in-place
/// `collect` reuses the buffer: the element types have the same layout).
#[allow(clippy::unnecessary_filter_map)] // `filter` cannot change the element type
fn relifetime<'b>(v: Vec<Label<'_>>) -> Vec<Label<'b>> {
    v.into_iter().filter_map(|_| None).collect()
}

/// What one line held, before labels are lent out.
enum Line<'a> {
    Skip,
    Help(Text<'a>, Text<'a>),
    Type(Text<'a>, MetricType),
    Unit(Text<'a>, Text<'a>),
    Sample {
        name: Text<'a>,
        value: f64,
        timestamp_ms: Option<i64>,
        /// (value, timestamp) of the exemplar, whose labels are in `exemplar_labels`.
        exemplar: Option<(f64, Option<i64>)>,
        changed: Option<usize>,
    },
}

impl<'a> Parser<'a> {
    pub fn new(body: &'a [u8], format: Format) -> Parser<'a> {
        Parser::with_buffers(body, format, Buffers::default())
    }

    /// A parser that reuses the vectors of an earlier one (see [`Parser::into_buffers`]).
    pub fn with_buffers(body: &'a [u8], format: Format, buffers: Buffers) -> Parser<'a> {
        let (body, pending) = match std::str::from_utf8(body) {
            Ok(s) => (s, None),
            Err(e) => {
                let line = 1 + memchr::memchr_iter(b'\n', &body[..e.valid_up_to()]).count();
                (
                    "",
                    Some(ParseError {
                        line,
                        message: "invalid UTF-8".into(),
                    }),
                )
            }
        };
        Parser {
            body,
            pos: 0,
            line: 0,
            format,
            labels: relifetime(buffers.labels),
            exemplar_labels: relifetime(buffers.exemplar_labels),
            saw_eof: false,
            done: false,
            pending,
            previous: None,
            reuse: true,
        }
    }

    /// Reads every sample line's labels from scratch, never from the previous line (see
    /// [`Sample::changed`]); for tests that compare both ways.
    pub fn without_reuse(mut self) -> Parser<'a> {
        self.reuse = false;
        self
    }

    /// Gives the label vectors back for the next scrape.
    pub fn into_buffers(self) -> Buffers {
        Buffers {
            labels: relifetime(self.labels),
            exemplar_labels: relifetime(self.exemplar_labels),
        }
    }

    /// The number of the line last read (from 1).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The next entry; `None` at the end. After an error, the parser yields nothing more.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_, 'a>>, ParseError> {
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Err(e);
        }
        let parsed = loop {
            if self.done {
                return Ok(None);
            }
            if self.pos >= self.body.len() {
                self.done = true;
                if self.format == Format::OpenMetrics && !self.saw_eof {
                    return Err(ParseError {
                        line: self.line.max(1),
                        message: "expected `# EOF` as the last line of an OpenMetrics exposition"
                            .into(),
                    });
                }
                return Ok(None);
            }
            let rest = &self.body[self.pos..];
            let (line, next) = match memchr(b'\n', rest.as_bytes()) {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, self.body.len()),
            };
            self.pos = next;
            self.line += 1;
            if self.saw_eof {
                return Err(self.fail("nothing may follow `# EOF`".into()));
            }
            match self.parse_line(line) {
                Ok(Line::Skip) => continue,
                Ok(l) => break l,
                Err(message) => return Err(self.fail(message)),
            }
        };
        Ok(Some(match parsed {
            Line::Skip => unreachable_skip(),
            Line::Help(family, help) => Entry::Help { family, help },
            Line::Type(family, kind) => Entry::Type { family, kind },
            Line::Unit(family, unit) => Entry::Unit { family, unit },
            Line::Sample {
                name,
                value,
                timestamp_ms,
                exemplar,
                changed,
            } => Entry::Sample(Sample {
                name,
                labels: &self.labels,
                changed,
                value,
                timestamp_ms,
                exemplar: exemplar.map(|(value, timestamp_ms)| Exemplar {
                    labels: &self.exemplar_labels,
                    value,
                    timestamp_ms,
                }),
            }),
        }))
    }

    fn fail(&mut self, message: String) -> ParseError {
        self.done = true;
        ParseError {
            line: self.line,
            message,
        }
    }

    fn om(&self) -> bool {
        self.format == Format::OpenMetrics
    }

    fn parse_line(&mut self, line: &'a str) -> Result<Line<'a>, String> {
        let om = self.om();
        // A `\r` before the newline is a separator in the text format.
        let line = if om {
            line
        } else {
            line.strip_suffix('\r').unwrap_or(line)
        };
        let mut c = Cursor { s: line, i: 0 };
        if !om {
            c.skip_ws();
        }
        match c.peek() {
            None if om => Err("expected a sample or a `#` line, found an empty line (OpenMetrics has no blank lines)".into()),
            None => Ok(Line::Skip),
            Some(b'#') => self.parse_comment(c),
            Some(_) => self.parse_sample(c),
        }
    }

    fn parse_comment(&mut self, mut c: Cursor<'a>) -> Result<Line<'a>, String> {
        let om = self.om();
        c.i += 1; // '#'
        if om {
            let rest = c.rest();
            if rest == " EOF" {
                self.saw_eof = true;
                return Ok(Line::Skip);
            }
            if !c.eat(b' ') {
                return Err(c.expected("a space after `#`"));
            }
        } else if c.skip_ws() == 0 {
            return Ok(Line::Skip);
        }
        let word = c.word();
        let keyword = match word {
            "HELP" | "TYPE" => word,
            "UNIT" if om => word,
            _ if om => {
                return Err(format!(
                    "expected HELP, TYPE, UNIT or EOF after `# `, found {word:?} (OpenMetrics has no free comments)"
                ));
            }
            _ => return Ok(Line::Skip),
        };
        if c.skip_ws() == 0 {
            return Err(c.expected(&format!("a metric family name after {keyword}")));
        }
        let family = if c.peek() == Some(b'"') {
            let t = c.quoted()?;
            if t.is_empty() {
                return Err("empty metric family name".into());
            }
            t
        } else {
            let name = c.metric_name();
            if name.is_empty() {
                return Err(c.expected(&format!("a metric family name after {keyword}")));
            }
            Text::plain(name)
        };
        let had_space = c.skip_ws() > 0;
        if !c.at_end() && !had_space {
            return Err(c.expected("a space after the metric family name"));
        }
        match keyword {
            "HELP" => {
                let help = c.rest();
                let escaped = memchr(b'\\', help.as_bytes()).is_some();
                Ok(Line::Help(family, Text::new(help, escaped, om)))
            }
            "TYPE" => {
                let t = c.word();
                let kind = match (t, om) {
                    ("counter", _) => MetricType::Counter,
                    ("gauge", _) => MetricType::Gauge,
                    ("histogram", _) => MetricType::Histogram,
                    ("summary", _) => MetricType::Summary,
                    ("untyped", false) | ("unknown", true) => MetricType::Unknown,
                    ("gaugehistogram", true) => MetricType::GaugeHistogram,
                    ("info", true) => MetricType::Info,
                    ("stateset", true) => MetricType::StateSet,
                    _ => {
                        let allowed = if om {
                            "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                        } else {
                            "counter, gauge, histogram, summary or untyped"
                        };
                        return Err(format!("expected a metric type ({allowed}), found {t:?}"));
                    }
                };
                c.end_of_line(om)?;
                Ok(Line::Type(family, kind))
            }
            _ => {
                let unit = c.word();
                c.end_of_line(om)?;
                if !unit.is_empty() {
                    let f = family.get();
                    let ok = f.strip_suffix(unit).is_some_and(|rest| rest.ends_with('_'));
                    if !ok {
                        return Err(format!(
                            "unit {unit:?} is not a suffix of the metric family name {f:?} (expected a name ending in _{unit})"
                        ));
                    }
                }
                Ok(Line::Unit(family, Text::plain(unit)))
            }
        }
    }

    fn parse_sample(&mut self, mut c: Cursor<'a>) -> Result<Line<'a>, String> {
        self.exemplar_labels.clear();
        let reused = match self.previous.take() {
            Some(p) if self.reuse => self.reuse_labels(p, &mut c),
            _ => None,
        };
        let (name, changed) = match reused {
            Some((name, k)) => (name, Some(k)),
            None => (self.name_and_labels(&mut c)?, None),
        };
        if !self.labels.is_empty() {
            self.previous = Some(Previous {
                line: c.s,
                name,
                labels_end: c.i,
            });
        }
        self.value_and_rest(c, name, changed)
    }

    /// The previous sample line's labels for this line, when the two lines differ only inside
    /// one label value: (the name, that label's index); the cursor is then after the labels.
    ///
    /// The bytes before the first difference are the same, so a fresh parse would read them
    /// the same way, up to inside that value; the new value ends at its first `"` (no escapes
    /// in it); the rest of the label block is byte for byte the previous one's. So the labels
    /// are the previous ones with that value replaced, and nothing else needs reading.
    fn reuse_labels(&mut self, p: Previous<'a>, c: &mut Cursor<'a>) -> Option<(Text<'a>, usize)> {
        let (old, new) = (p.line.as_bytes(), c.s.as_bytes());
        let block = old.get(..p.labels_end)?;
        // The first byte that differs; none in the label block (the same series again, which
        // is rare) is read afresh.
        let d = common_prefix(block, new);
        if d == block.len() {
            return None;
        }
        let start =
            |t: &Text<'a>| (t.raw().as_ptr() as usize).wrapping_sub(p.line.as_ptr() as usize);
        // The label whose value holds the difference: it starts at `a`, its `"` is at `b`.
        let (k, a, b) = self.labels.iter().enumerate().find_map(|(k, l)| {
            let a = start(&l.value);
            let b = a + l.value.raw().len();
            (a <= d && d <= b).then_some((k, a, b))
        })?;
        let e = a + memchr2(b'"', b'\\', new.get(a..)?)?;
        let tail = block.get(b..)?;
        if new[e] != b'"' || new.get(e..e + tail.len())? != tail {
            return None;
        }
        // Every other text moves to the same bytes in this line: by the change in length
        // when after the new value.
        let moved = |t: Text<'a>| -> Option<Text<'a>> {
            let at = start(&t);
            let at = if at > b { at - b + e } else { at };
            Some(t.with_raw(c.s.get(at..at + t.raw().len())?))
        };
        // Returning `None` half-way leaves labels half moved: harmless, since the fresh read
        // that follows starts by clearing them.
        let name = moved(p.name)?;
        for (j, l) in self.labels.iter_mut().enumerate() {
            l.name = moved(l.name)?;
            l.value = if j == k {
                Text::new(c.s.get(a..e)?, false, true)
            } else {
                moved(l.value)?
            };
        }
        c.i = e + tail.len();
        Some((name, k))
    }

    /// Reads the metric name and the labels (into `labels`).
    fn name_and_labels(&mut self, c: &mut Cursor<'a>) -> Result<Text<'a>, String> {
        let om = self.om();
        self.labels.clear();
        let mut name = None;
        let legacy = c.metric_name();
        if !legacy.is_empty() {
            name = Some(Text::plain(legacy));
            // The text format allows blanks between the name and its labels.
            if !om {
                let at = c.i;
                c.skip_ws();
                if c.peek() != Some(b'{') {
                    c.i = at;
                }
            }
        } else if c.peek() != Some(b'{') {
            return Err(c.expected("a metric name"));
        }
        if c.peek() == Some(b'{') {
            let quoted = parse_labels(c, &mut self.labels, true, om)?;
            match (name, quoted) {
                (Some(_), Some(_)) => {
                    return Err("metric name given twice (before and inside the braces)".into());
                }
                (None, Some(q)) => name = Some(q),
                _ => {}
            }
        }
        name.ok_or_else(|| "expected a metric name (a sample needs one, before or as the first item inside the braces)".into())
    }

    /// Reads the value, timestamp and exemplar after the name and labels.
    fn value_and_rest(
        &mut self,
        mut c: Cursor<'a>,
        name: Text<'a>,
        changed: Option<usize>,
    ) -> Result<Line<'a>, String> {
        let om = self.om();
        if c.skip_ws() == 0 {
            return Err(c.expected("a space and the sample value"));
        }
        let value = parse_value(c.word()).ok_or_else(|| c.bad_token("a sample value"))?;
        let mut timestamp_ms = None;
        let mut exemplar = None;
        let had_space = c.skip_ws() > 0;
        if !c.at_end() && !had_space {
            return Err(c.expected("a space after the value"));
        }
        if !c.at_end() && c.peek() != Some(b'#') {
            let t = c.word();
            timestamp_ms = Some(parse_timestamp(t, om).ok_or_else(|| {
                c.bad_token(if om {
                    "a timestamp in seconds"
                } else {
                    "a timestamp in integer milliseconds"
                })
            })?);
            c.skip_ws();
        }
        if c.peek() == Some(b'#') {
            if !om {
                return Err(
                    c.expected("the end of the line (exemplars are only allowed in OpenMetrics)")
                );
            }
            c.i += 1;
            if c.skip_ws() == 0 || c.peek() != Some(b'{') {
                return Err(c.expected("`{` starting the exemplar's labels after ` # `"));
            }
            parse_labels(&mut c, &mut self.exemplar_labels, false, om)?;
            let runes: usize = self
                .exemplar_labels
                .iter()
                .map(|l| l.name.get().chars().count() + l.value.get().chars().count())
                .sum();
            if runes > MAX_EXEMPLAR_RUNES {
                return Err(format!(
                    "exemplar labels are {runes} characters long; at most {MAX_EXEMPLAR_RUNES} are allowed"
                ));
            }
            if c.skip_ws() == 0 {
                return Err(c.expected("a space and the exemplar value"));
            }
            let ev = parse_value(c.word()).ok_or_else(|| c.bad_token("an exemplar value"))?;
            let mut ets = None;
            if c.skip_ws() > 0 && !c.at_end() {
                let t = c.word();
                ets = Some(
                    parse_timestamp(t, true)
                        .ok_or_else(|| c.bad_token("an exemplar timestamp in seconds"))?,
                );
            }
            exemplar = Some((ev, ets));
        }
        c.end_of_line(om)?;
        Ok(Line::Sample {
            name,
            value,
            timestamp_ms,
            exemplar,
            changed,
        })
    }
}

/// How many bytes `a` and `b` have in common at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
    let mut i = 0;
    for (x, y) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Never called: `Line::Skip` does not leave the loop.
fn unreachable_skip<'e, 'a>() -> Entry<'e, 'a> {
    Entry::Unit {
        family: Text::plain(""),
        unit: Text::plain(""),
    }
}

/// Parses `{...}` into `out`; returns the metric name when it is written quoted as the first
/// item (`{"my.metric", a="b"}`) and `allow_name` is set.
fn parse_labels<'a>(
    c: &mut Cursor<'a>,
    out: &mut Vec<Label<'a>>,
    allow_name: bool,
    _om: bool,
) -> Result<Option<Text<'a>>, String> {
    c.i += 1; // '{'
    let mut name = None;
    let mut first = true;
    loop {
        c.skip_ws();
        match c.peek() {
            Some(b'}') => {
                c.i += 1;
                return Ok(name);
            }
            None => return Err(c.expected("a label name or `}`")),
            _ => {}
        }
        let (label, quoted) = if c.peek() == Some(b'"') {
            (c.quoted()?, true)
        } else {
            let n = c.label_name();
            if n.is_empty() {
                return Err(c.expected("a label name or `}`"));
            }
            (Text::plain(n), false)
        };
        c.skip_ws();
        if quoted && matches!(c.peek(), Some(b',') | Some(b'}')) {
            if !(first && allow_name) {
                return Err(c.expected("`=` after the label name (only the first item inside the braces may be a quoted metric name)"));
            }
            if label.is_empty() {
                return Err("empty metric name".into());
            }
            name = Some(label);
        } else {
            if quoted && label.is_empty() {
                return Err("empty label name".into());
            }
            if !c.eat(b'=') {
                return Err(c.expected("`=` after the label name"));
            }
            c.skip_ws();
            if c.peek() != Some(b'"') {
                return Err(c.expected("a quoted label value"));
            }
            let value = c.quoted()?;
            if out.iter().any(|l| l.name == label) {
                return Err(format!(
                    "label name {:?} appears more than once",
                    label.get()
                ));
            }
            out.push(Label { name: label, value });
        }
        first = false;
        c.skip_ws();
        match c.peek() {
            Some(b',') => c.i += 1,
            Some(b'}') => {
                c.i += 1;
                return Ok(name);
            }
            _ => return Err(c.expected("`,` or `}` after a label")),
        }
    }
}

/// A float as Prometheus writes them: decimal, exponent, `+Inf`, `-Inf`, `NaN` (any case).
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    if let Some(v) = short_decimal(b) {
        return Some(v);
    }
    // Rust also takes "infinity"; Go takes it too. Hex floats are refused (as OpenMetrics does).
    if b.contains(&b'_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Most sample values are counts (buckets, counters, `_count`) and most bounds short decimals
/// (`0.005`): digits with at most one `.`, an optional `-`, and at most 15 digits in all. The
/// digits as an integer are then below 2^53 and a power of ten up to 10^15 is exact, so one
/// division gives the correctly rounded value, the one the general parser gives (Clinger's fast
/// path). Anything else (exponents, more digits, `+`, `Inf`) is left to the general parser.
pub(super) fn short_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut n, mut point) = (0u64, None);
    for (i, &c) in digits.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            n = n * 10 + u64::from(d);
        } else if c == b'.' && point.is_none() && i > 0 && i + 1 < digits.len() {
            point = Some(digits.len() - i - 1);
        } else {
            return None;
        }
    }
    // Every byte but the point is a digit.
    if digits.len() - usize::from(point.is_some()) > 15 {
        return None;
    }
    let v = match point {
        Some(decimals) => n as f64 / POW10[decimals],
        None => n as f64,
    };
    Some(if negative { -v } else { v })
}

/// A timestamp in milliseconds: text writes integer milliseconds, OpenMetrics (fractional)
/// seconds.
fn parse_timestamp(s: &str, om: bool) -> Option<i64> {
    if om {
        let secs = parse_value(s)?;
        if !secs.is_finite() {
            return None;
        }
        let ms = (secs * 1000.0).round();
        if ms.abs() >= 9.2e18 {
            return None;
        }
        Some(ms as i64)
    } else {
        s.parse::<i64>().ok()
    }
}

/// A position in one line.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Skips spaces and tabs; how many.
    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i.min(self.s.len())..]
    }

    /// Everything up to the next space or tab.
    fn word(&mut self) -> &'a str {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' {
                break;
            }
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// The longest name at the cursor whose first byte is of class `first` and the rest of
    /// class `more` (see [`name_len`]).
    fn take_while(&mut self, first: u8, more: u8) -> &'a str {
        let start = self.i.min(self.s.len());
        // Only ASCII bytes are in a class, so the end is a character boundary.
        self.i = start + name_len(&self.s.as_bytes()[start..], first, more);
        &self.s[start..self.i]
    }

    fn metric_name(&mut self) -> &'a str {
        self.take_while(METRIC_FIRST, METRIC_MORE)
    }

    fn label_name(&mut self) -> &'a str {
        self.take_while(LABEL_FIRST, LABEL_MORE)
    }

    /// A `"..."` string at the cursor, escapes left in.
    fn quoted(&mut self) -> Result<Text<'a>, String> {
        let bytes = self.s.as_bytes();
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            let Some(k) = bytes.get(j..).and_then(|r| memchr2(b'"', b'\\', r)) else {
                self.i = self.s.len();
                return Err(format!(
                    "unterminated quoted string starting at column {} (expected a closing `\"` before the end of the line)",
                    start
                ));
            };
            let at = j + k;
            if bytes[at] == b'\\' {
                escaped = true;
                // Skip the escaped character (ASCII for every valid escape; any other one is
                // kept as written, and a multi-byte character's continuation bytes are never
                // `"` or `\`).
                j = at + 2;
                continue;
            }
            self.i = at + 1;
            return Ok(Text::new(&self.s[start..at], escaped, true));
        }
    }

    /// Trailing spaces are allowed in the text format; then the line must end.
    fn end_of_line(&mut self, om: bool) -> Result<(), String> {
        if !om {
            self.skip_ws();
        }
        if self.at_end() {
            Ok(())
        } else {
            Err(self.expected("the end of the line"))
        }
    }

    fn found(&self) -> String {
        match self.s[self.i.min(self.s.len())..].chars().next() {
            None => "the end of the line".into(),
            Some(ch) => format!("{ch:?}"),
        }
    }

    fn expected(&self, what: &str) -> String {
        format!(
            "expected {what} at column {}, found {}",
            self.i + 1,
            self.found()
        )
    }

    /// A word that did not parse; the cursor is after it.
    fn bad_token(&self, what: &str) -> String {
        let end = self.i.min(self.s.len());
        let start = self.s[..end].rfind([' ', '\t']).map_or(0, |k| k + 1);
        let token = &self.s[start..end];
        let shown: String = token.chars().take(40).collect();
        format!("expected {what} at column {}, found {shown:?}", start + 1)
    }
}
