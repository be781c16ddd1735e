//! The sink's reader of remote_write 1.0 requests (`prometheus.WriteRequest`): it walks the
//! protobuf in place, so that counting a request costs little next to what the collector under
//! test spent on it. Building prost's messages (a string for every label name and value) made
//! the sink the slowest part of a run: the harness' core was busy throughout while the collector
//! waited on it. It checks the framing as prost does (wire types, lengths, varints) and the labels'
//! UTF-8, and is checked against prost's decoding by the tests. Exemplars, native histograms and
//! metadata are counted or passed over whole, not read inside: what the sink counts does not
//! depend on them.

use super::Tally;
use std::hash::{BuildHasher, Hasher};

/// Why a request does not decode.
#[derive(Clone, Copy, Debug)]
pub(super) enum Error {
    Varint,
    Underflow,
    WireType(u64),
    FieldZero,
    /// A field of the wrong wire type (its message and field names).
    Field(&'static str),
    Utf8,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Varint => write!(f, "invalid varint"),
            Error::Underflow => write!(f, "buffer underflow"),
            Error::WireType(t) => write!(f, "wire type {t} not supported"),
            Error::FieldZero => write!(f, "field number 0"),
            Error::Field(name) => write!(f, "{name}: invalid wire type"),
            Error::Utf8 => write!(f, "Label: invalid UTF-8"),
        }
    }
}

/// A field's value, by wire type.
enum Value<'a> {
    Varint,
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// A message's fields, read one after the other.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The next field (its number and value), or none at the end of the message.
    #[inline]
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, Error> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Error::Underflow)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            t => return Err(Error::WireType(t)),
        };
        match key >> 3 {
            0 => Err(Error::FieldZero),
            n => Ok(Some((n, value))),
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Error> {
        if let Some(&b) = self.0.first()
            && b < 0x80
        {
            self.0 = &self.0[1..];
            return Ok(u64::from(b));
        }
        let mut n = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(n);
            }
        }
        Err(Error::Varint)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(Error::Underflow);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }
}

/// A length-delimited field's bytes; any other wire type for it is an error.
#[inline]
fn bytes<'a>(field: &'static str, v: Value<'a>) -> Result<&'a [u8], Error> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(Error::Field(field)),
    }
}

/// Counts a request as [`super::count_v1`] counts prost's message of it; also returns (samples,
/// histograms), everything included. Series are told apart by a hash of their labels.
pub(super) fn count(raw: &[u8]) -> Result<(Tally, u64, u64), Error> {
    let mut tally = Tally::default();
    let (mut samples, mut histograms) = (0, 0);
    let mut values = Vec::new();
    let mut fields = Fields(raw);
    while let Some(field) = fields.next()? {
        match field {
            (1, v) => {
                let ts = bytes("WriteRequest.timeseries", v)?;
                let (n, h) = series(ts, &mut tally, &mut values)?;
                samples += n;
                histograms += h;
            }
            (3, v) => drop(bytes("WriteRequest.metadata", v)?),
            _ => {}
        }
    }
    Ok((tally, samples, histograms))
}

/// Reads one `TimeSeries` into `tally`; returns its samples and native histograms.
fn series(ts: &[u8], tally: &mut Tally, values: &mut Vec<f64>) -> Result<(u64, u64), Error> {
    let mut h = super::series_hasher().build_hasher();
    let (mut name, mut labelled, mut histograms): (&[u8], _, _) = (b"", false, 0);
    let bench = super::BENCH_LABEL;
    values.clear();
    let mut fields = Fields(ts);
    while let Some(field) = fields.next()? {
        match field {
            (1, v) => {
                let (n, value) = label(bytes("TimeSeries.labels", v)?)?;
                super::hash_label(&mut h, n, value);
                if n == b"__name__" {
                    name = value;
                }
                labelled |= (n, value) == (bench.0.as_bytes(), bench.1.as_bytes());
            }
            (2, v) => values.push(sample(bytes("TimeSeries.samples", v)?)?),
            (3, v) => drop(bytes("TimeSeries.exemplars", v)?),
            (4, v) => {
                bytes("TimeSeries.histograms", v)?;
                histograms += 1;
            }
            _ => {}
        }
    }
    let name = std::str::from_utf8(name).map_err(|_| Error::Utf8)?;
    tally.add(
        name,
        h.finish(),
        labelled,
        values.iter().copied(),
        histograms,
    );
    Ok((values.len() as u64, histograms as u64))
}

/// A label's name and value, checked as UTF-8 (at once when the whole label is ASCII).
#[inline]
fn label(l: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut fields = Fields(l);
    while let Some(field) = fields.next()? {
        match field {
            (1, v) => name = bytes("Label.name", v)?,
            (2, v) => value = bytes("Label.value", v)?,
            _ => {}
        }
    }
    if !l.is_ascii() && (std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err())
    {
        return Err(Error::Utf8);
    }
    Ok((name, value))
}

/// A sample's value (the last one given, 0 when none is).
#[inline]
fn sample(s: &[u8]) -> Result<f64, Error> {
    let mut value = 0.0;
    let mut fields = Fields(s);
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Fixed64(bits)) => value = f64::from_bits(bits),
            (1, _) => return Err(Error::Field("Sample.value")),
            (2, Value::Varint) => {}
            (2, _) => return Err(Error::Field("Sample.timestamp")),
            _ => {}
        }
    }
    Ok(value)
}
