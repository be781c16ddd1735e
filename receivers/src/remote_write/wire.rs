//! A remote_write 1.0 request (`prometheus.WriteRequest`) read in place: label names and values
//! are borrowed from the decompressed body, and every series' labels and samples go into two
//! shared arrays, so that a request costs a handful of allocations instead of two per label.
//! Exemplars, native histograms and metadata (rare) are decoded by prost. Accepts and refuses
//! exactly what prost's decoding of the same message does (the tests compare the two).

use prost::Message;
use prost::encoding::{self, DecodeContext};
use sluice_core::proto::prometheus_v1 as v1;
use sluice_core::protowire::{delimited, key, run, skip, string};
use std::ops::Range;

/// A decoded request; each series indexes into `labels` and `samples`.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub series: Vec<Series<'a>>,
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<v1::Sample>,
    pub metadata: Vec<v1::MetricMetadata>,
}

#[derive(Debug, Default)]
pub struct Series<'a> {
    pub labels: Range<usize>,
    /// The series' labels as the request holds them when those bytes can be their canonical
    /// encoding ([`sluice_core::prometheus::write_v1_labels`]): first in the series, each name
    /// and value not empty and every length one byte. Empty otherwise. They are that encoding
    /// only when the labels are also sorted by name, which the caller checks (and empties this
    /// when they are not).
    pub canonical: &'a [u8],
    pub samples: Range<usize>,
    pub exemplars: Vec<v1::Exemplar>,
    pub histograms: Vec<v1::Histogram>,
}

/// Decodes `body`; the error says where it is malformed.
pub fn decode(body: &[u8]) -> Result<Request<'_>, String> {
    // The arrays are sized once, from the run of series fields the request starts with (as
    // senders write it, metadata after them): a series mostly has up to `LABELS` labels and one
    // sample (more grow the arrays). Grown from empty instead, they would cost a copy and fresh
    // pages at every doubling. Never for more than the body can hold, though: a label or a
    // sample takes at least two bytes after the two of its series' key and length (a body of
    // empty series reserves nothing).
    const LABELS: usize = 8;
    let n_series = if body.first() == Some(&0x0a) {
        run(body).0
    } else {
        0
    };
    let room = body.len().saturating_sub(2 * n_series) / 2;
    let mut req = Request {
        series: Vec::with_capacity(n_series),
        labels: Vec::with_capacity((n_series * LABELS).min(room)),
        samples: Vec::with_capacity(n_series.min(room)),
        metadata: Vec::new(),
    };
    let mut buf = body;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                let bytes = delimited(wire, &mut buf, "WriteRequest.timeseries")?;
                let series = series(bytes, &mut req).map_err(|e| format!("TimeSeries: {e}"))?;
                req.series.push(series);
            }
            3 => {
                let bytes = delimited(wire, &mut buf, "WriteRequest.metadata")?;
                let m = v1::MetricMetadata::decode(bytes)
                    .map_err(|e| format!("WriteRequest.metadata: {e}"))?;
                req.metadata.push(m);
            }
            _ => skip(tag, wire, &mut buf)?,
        }
    }
    Ok(req)
}

fn series<'a>(mut buf: &'a [u8], req: &mut Request<'a>) -> Result<Series<'a>, String> {
    let whole = buf;
    let leading = leading_labels(buf);
    let checked = leading.text;
    let mut s = Series {
        labels: req.labels.len()..req.labels.len(),
        samples: req.samples.len()..req.samples.len(),
        ..Default::default()
    };
    // (`checked` is empty when the leading labels are not valid UTF-8 together.)
    if leading.canonical
        && !checked.is_empty()
        && canonical_pairs(checked, leading.labels, &mut req.labels)
    {
        buf = &buf[checked.len()..];
    }
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                let bytes = delimited(wire, &mut buf, "labels")?;
                req.labels
                    .push(label(bytes, checked).map_err(|e| format!("labels: {e}"))?);
            }
            2 => {
                let bytes = delimited(wire, &mut buf, "samples")?;
                req.samples
                    .push(sample(bytes).map_err(|e| format!("samples: {e}"))?);
            }
            3 => {
                let bytes = delimited(wire, &mut buf, "exemplars")?;
                let e = v1::Exemplar::decode(bytes).map_err(|e| format!("exemplars: {e}"))?;
                s.exemplars.push(e);
            }
            4 => {
                let bytes = delimited(wire, &mut buf, "histograms")?;
                let h = v1::Histogram::decode(bytes).map_err(|e| format!("histograms: {e}"))?;
                s.histograms.push(h);
            }
            _ => skip(tag, wire, &mut buf)?,
        }
    }
    s.labels.end = req.labels.len();
    s.samples.end = req.samples.len();
    // Every label of the series among its leading ones, each in canonical form.
    if leading.canonical && leading.labels == s.labels.len() && !checked.is_empty() {
        s.canonical = &whole[..checked.len()];
    }
    Ok(s)
}

/// Takes `count` labels in canonical form ([`is_canonical_label`]) from `text`, where their
/// layout says where each name and value lies, without reading their fields one by one: the same
/// pairs as [`label`] reads from them. `false` (and nothing taken) if a name or value does not
/// lie on `text`'s character boundaries, which the ASCII keys and lengths around them make
/// impossible in valid UTF-8; the labels are then read field by field.
fn canonical_pairs<'a>(text: &'a str, count: usize, out: &mut Vec<(&'a str, &'a str)>) -> bool {
    let (bytes, start) = (text.as_bytes(), out.len());
    let mut at = 0;
    for _ in 0..count {
        // [0x0a, len, 0x0a, n, name, 0x12, v, value]
        let (len, n) = (usize::from(bytes[at + 1]), usize::from(bytes[at + 3]));
        let name = text.get(at + 4..at + 4 + n);
        let value = text.get(at + 6 + n..at + 2 + len);
        let (Some(name), Some(value)) = (name, value) else {
            out.truncate(start);
            return false;
        };
        out.push((name, value));
        at += 2 + len;
    }
    true
}

/// Whether a `Label` message is the canonical encoding of its name and value
/// ([`sluice_core::prometheus::write_v1_labels`]): the name,
/// then the value, both not empty, every length one byte.
fn is_canonical_label(m: &[u8]) -> bool {
    let [0x0a, n, ..] = *m else { return false };
    let n = usize::from(n);
    n > 0
        && matches!(m.get(2 + n..4 + n), Some(&[0x12, v])
            if v > 0 && m.len() == 4 + n + usize::from(v))
}

/// A series' leading labels as one string, when they are valid UTF-8 together: each label name
/// and value among them is then taken from it rather than checked on its own (one check of a
/// series' labels instead of two per label). Empty when the series does not start with labels
/// of short (one-byte) lengths, or when they are not valid together; its labels are then
/// checked one by one.
fn leading_labels(buf: &[u8]) -> Leading<'_> {
    let (mut end, mut labels, mut canonical) = (0, 0, true);
    while let [0x0a, len, ..] = buf[end..]
        && len < 0x80
        && end + 2 + usize::from(len) <= buf.len()
    {
        canonical &= is_canonical_label(&buf[end + 2..end + 2 + usize::from(len)]);
        end += 2 + usize::from(len);
        labels += 1;
    }
    Leading {
        text: std::str::from_utf8(&buf[..end]).unwrap_or_default(),
        labels,
        canonical,
    }
}

/// A series' leading labels ([`leading_labels`]).
struct Leading<'a> {
    /// Their bytes, when valid UTF-8 together; else empty.
    text: &'a str,
    labels: usize,
    /// Whether each is a canonical `Label` message ([`is_canonical_label`]).
    canonical: bool,
}

/// A `Label` message; its strings are taken from `checked` when they lie in it.
fn label<'a>(mut buf: &'a [u8], checked: &'a str) -> Result<(&'a str, &'a str), String> {
    let (mut name, mut value) = ("", "");
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => name = string(wire, &mut buf, "Label.name", checked)?,
            2 => value = string(wire, &mut buf, "Label.value", checked)?,
            _ => skip(tag, wire, &mut buf)?,
        }
    }
    Ok((name, value))
}

fn sample(mut buf: &[u8]) -> Result<v1::Sample, String> {
    let mut s = v1::Sample::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let ctx = DecodeContext::default();
        match tag {
            1 => encoding_err(
                encoding::double::merge(wire, &mut s.value, &mut buf, ctx),
                "Sample.value",
            )?,
            2 => encoding_err(
                encoding::int64::merge(wire, &mut s.timestamp, &mut buf, ctx),
                "Sample.timestamp",
            )?,
            _ => skip(tag, wire, &mut buf)?,
        }
    }
    Ok(s)
}

fn encoding_err(r: Result<(), prost::DecodeError>, field: &str) -> Result<(), String> {
    r.map_err(|e| format!("{field}: {e}"))
}

#[cfg(test)]
mod tests;
