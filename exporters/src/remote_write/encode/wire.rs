//! remote_write v1 (`prometheus.WriteRequest`) written straight from series into the output
//! buffer: no intermediate request is built, so no label string is copied. The bytes are those
//! prost writes for the same request (fields at their default value left out), which the tests
//! check against [`super::to_v1`].

use super::histogram_v1;
use prost::encoding::{self, WireType, encode_key, encoded_len_varint};
use sluice_core::prometheus::{Sample, Series};
use sluice_core::proto::prometheus_v1 as v1;

/// Series whose labels are read ahead at a time (see
/// [`sluice_core::prometheus::SeriesLabels::warm`]): their labels (about five blocks of 64 bytes
/// each) stay in the first-level cache until written.
const RUN: usize = 16;

/// Appends the encoded request for `series` to `out`.
pub fn write_v1(series: &[Series], send_metadata: bool, out: &mut Vec<u8>) {
    let mut stamp = Stamp::default();
    for run in series.chunks(RUN) {
        for s in run {
            std::hint::black_box(s.labels.warm());
        }
        for s in run {
            write_series(s, &mut stamp, out);
        }
    }
    if send_metadata {
        for metadata in super::metadata_v1(series) {
            encoding::message::encode(3, &metadata, out);
        }
    }
}

/// Appends one `TimeSeries` field. `stamp` is the last timestamp written, kept encoded: a
/// request's samples mostly share a few (all the series of a histogram point share its one).
fn write_series(s: &Series, stamp: &mut Stamp, out: &mut Vec<u8>) {
    // Exemplars and native histograms are rare: they go through prost's messages.
    let exemplars: Vec<v1::Exemplar> = s.exemplars().iter().map(super::exemplar_v1).collect();
    let histograms: Vec<v1::Histogram> = s.histograms().iter().map(histogram_v1).collect();
    let len = s.labels.v1_len()
        + s.samples
            .iter()
            .map(|x| nested_len(sample_len(x)))
            .sum::<usize>()
        + encoding::message::encoded_len_repeated(3, &exemplars)
        + encoding::message::encoded_len_repeated(4, &histograms);
    encode_key(1, WireType::LengthDelimited, out);
    varint(len as u64, out);
    s.labels.write_v1(out);
    for x in &s.samples {
        encode_key(2, WireType::LengthDelimited, out);
        varint(sample_len(x) as u64, out);
        if x.value != 0.0 {
            encode_key(1, WireType::SixtyFourBit, out);
            out.extend_from_slice(&x.value.to_le_bytes());
        }
        if x.timestamp_ms != 0 {
            if stamp.ms != x.timestamp_ms {
                *stamp = Stamp::new(x.timestamp_ms);
            }
            encode_key(2, WireType::Varint, out);
            stamp.varint.write(out);
        }
    }
    for e in &exemplars {
        encoding::message::encode(3, e, out);
    }
    for h in &histograms {
        encoding::message::encode(4, h, out);
    }
}

fn sample_len(x: &Sample) -> usize {
    let value = if x.value != 0.0 { 1 + 8 } else { 0 };
    let timestamp = if x.timestamp_ms != 0 {
        1 + encoded_len_varint(x.timestamp_ms as u64)
    } else {
        0
    };
    value + timestamp
}

/// A timestamp and its varint.
#[derive(Default)]
struct Stamp {
    ms: i64,
    varint: Varint,
}

impl Stamp {
    fn new(ms: i64) -> Stamp {
        Stamp {
            ms,
            varint: Varint::of(ms as u64),
        }
    }
}

/// A varint's bytes.
#[derive(Default)]
struct Varint {
    bytes: [u8; 10],
    len: usize,
}

impl Varint {
    fn of(mut n: u64) -> Varint {
        let mut v = Varint::default();
        while n >= 0x80 {
            v.bytes[v.len] = n as u8 | 0x80;
            n >>= 7;
            v.len += 1;
        }
        v.bytes[v.len] = n as u8;
        v.len += 1;
        v
    }

    /// Appends the varint: all ten bytes at once, which the compiler copies without a call (a
    /// slice of a length not known would be a call to `memcpy`), and those past its length taken
    /// back.
    #[inline(always)]
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        out.truncate(out.len() - self.bytes.len() + self.len);
    }
}

/// Appends a varint whole (prost's `encode_varint` appends it a byte at a time, each through
/// `BufMut`'s checks); one byte in place.
#[inline(always)]
fn varint(n: u64, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        Varint::of(n).write(out);
    }
}

/// A nested message of `len` bytes with a one-byte key (field numbers below 16) and its length.
fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}
