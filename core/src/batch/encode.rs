//! A batch as the bytes of an `ExportMetricsServiceRequest`, each message's length measured once.
//!
//! prost writes a nested message after its length, and measures it for that: for each resource,
//! again for each of its scopes, again for each metric, and so on down to the attributes of the
//! data points, so a data point is measured once per level above it. Here one pass measures the
//! levels above the data points (resource, scope, metric, and the metric's data) and the data
//! points themselves, and keeps the lengths in the order they are written; the second pass writes
//! from them. Data points are written by prost, whose own nesting is shallow. The bytes are
//! prost's, field for field (tests compare the two on arbitrary requests).

use crate::proto::otlp::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data};
use prost::Message;
use prost::encoding::{
    WireType, bool as pb_bool, encode_key, encode_varint, encoded_len_varint, int32, key_len,
    message, string,
};
use std::cell::RefCell;

/// The request's bytes: one length-delimited field 1 per resource.
pub(super) fn encode_request(rms: &[ResourceMetrics]) -> Vec<u8> {
    LENGTHS.with_borrow_mut(|lens| {
        let total: usize = rms
            .iter()
            .map(|rm| field_len(1, measure_resource(rm, lens)))
            .sum();
        let mut out = Vec::with_capacity(total);
        let mut measured = lens.iter().copied();
        for rm in rms {
            write_resource(rm, &mut measured, &mut out);
        }
        debug_assert_eq!(out.len(), total);
        lens.clear();
        lens.shrink_to(KEPT_LENGTHS);
        out
    })
}

thread_local! {
    /// The measured lengths (about one per data point), kept between requests: growing a new
    /// list for each request left W3's peak RSS 12 MiB higher.
    static LENGTHS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Lengths a thread keeps room for after a request (a larger request's list is shrunk to it).
const KEPT_LENGTHS: usize = 1 << 16;

/// A length-delimited field of a body of `len` bytes, header included.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn string_len(tag: u32, s: &String) -> usize {
    if s.is_empty() {
        0
    } else {
        string::encoded_len(tag, s)
    }
}

fn put_string(tag: u32, s: &String, out: &mut Vec<u8>) {
    if !s.is_empty() {
        string::encode(tag, s, out);
    }
}

/// Writes a length-delimited field's header, its body's length being the next measured one.
fn put_header(tag: u32, lens: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    let len = lens.next().expect("every written message was measured");
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// Measures `body` into the slot it reserves before the lengths `body` pushes.
fn measured(lens: &mut Vec<usize>, body: impl FnOnce(&mut Vec<usize>) -> usize) -> usize {
    let at = lens.len();
    lens.push(0);
    let len = body(lens);
    lens[at] = len;
    len
}

fn measure_resource(rm: &ResourceMetrics, lens: &mut Vec<usize>) -> usize {
    measured(lens, |lens| {
        rm.resource
            .as_ref()
            .map_or(0, |r| message::encoded_len(1, r))
            + rm.scope_metrics
                .iter()
                .map(|sm| field_len(2, measure_scope(sm, lens)))
                .sum::<usize>()
            + string_len(3, &rm.schema_url)
    })
}

fn write_resource(rm: &ResourceMetrics, lens: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    put_header(1, lens, out);
    if let Some(r) = &rm.resource {
        message::encode(1, r, out);
    }
    for sm in &rm.scope_metrics {
        write_scope(sm, lens, out);
    }
    put_string(3, &rm.schema_url, out);
}

fn measure_scope(sm: &ScopeMetrics, lens: &mut Vec<usize>) -> usize {
    measured(lens, |lens| {
        sm.scope.as_ref().map_or(0, |s| message::encoded_len(1, s))
            + sm.metrics
                .iter()
                .map(|m| field_len(2, measure_metric(m, lens)))
                .sum::<usize>()
            + string_len(3, &sm.schema_url)
    })
}

fn write_scope(sm: &ScopeMetrics, lens: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    put_header(2, lens, out);
    if let Some(s) = &sm.scope {
        message::encode(1, s, out);
    }
    for m in &sm.metrics {
        write_metric(m, lens, out);
    }
    put_string(3, &sm.schema_url, out);
}

/// The tag of a metric's data in `Metric`.
fn data_tag(data: &Data) -> u32 {
    match data {
        Data::Gauge(_) => 5,
        Data::Sum(_) => 7,
        Data::Histogram(_) => 9,
        Data::ExponentialHistogram(_) => 10,
        Data::Summary(_) => 11,
    }
}

fn measure_metric(m: &Metric, lens: &mut Vec<usize>) -> usize {
    measured(lens, |lens| {
        string_len(1, &m.name)
            + string_len(2, &m.description)
            + string_len(3, &m.unit)
            + m.data
                .as_ref()
                .map_or(0, |d| field_len(data_tag(d), measure_data(d, lens)))
            + message::encoded_len_repeated(12, &m.metadata)
    })
}

fn write_metric(m: &Metric, lens: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    put_header(2, lens, out);
    put_string(1, &m.name, out);
    put_string(2, &m.description, out);
    put_string(3, &m.unit, out);
    if let Some(d) = &m.data {
        write_data(d, lens, out);
    }
    message::encode_repeated(12, &m.metadata, out);
}

/// The fields after the data points: temporality (2) and monotonicity (3), where set.
fn data_tail_len(temporality: i32, monotonic: bool) -> usize {
    let t = if temporality != 0 {
        int32::encoded_len(2, &temporality)
    } else {
        0
    };
    t + if monotonic {
        pb_bool::encoded_len(3, &monotonic)
    } else {
        0
    }
}

fn put_data_tail(temporality: i32, monotonic: bool, out: &mut Vec<u8>) {
    if temporality != 0 {
        int32::encode(2, &temporality, out);
    }
    if monotonic {
        pb_bool::encode(3, &monotonic, out);
    }
}

fn measure_data(d: &Data, lens: &mut Vec<usize>) -> usize {
    measured(lens, |lens| match d {
        Data::Gauge(g) => measure_points(&g.data_points, lens),
        Data::Sum(s) => {
            measure_points(&s.data_points, lens)
                + data_tail_len(s.aggregation_temporality, s.is_monotonic)
        }
        Data::Histogram(h) => {
            measure_points(&h.data_points, lens) + data_tail_len(h.aggregation_temporality, false)
        }
        Data::ExponentialHistogram(h) => {
            measure_points(&h.data_points, lens) + data_tail_len(h.aggregation_temporality, false)
        }
        Data::Summary(s) => measure_points(&s.data_points, lens),
    })
}

fn write_data(d: &Data, lens: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    put_header(data_tag(d), lens, out);
    match d {
        Data::Gauge(g) => write_points(&g.data_points, lens, out),
        Data::Sum(s) => {
            write_points(&s.data_points, lens, out);
            put_data_tail(s.aggregation_temporality, s.is_monotonic, out);
        }
        Data::Histogram(h) => {
            write_points(&h.data_points, lens, out);
            put_data_tail(h.aggregation_temporality, false, out);
        }
        Data::ExponentialHistogram(h) => {
            write_points(&h.data_points, lens, out);
            put_data_tail(h.aggregation_temporality, false, out);
        }
        Data::Summary(s) => write_points(&s.data_points, lens, out),
    }
}

/// Data points are field 1 of every kind of data.
fn measure_points<P: Message>(points: &[P], lens: &mut Vec<usize>) -> usize {
    points
        .iter()
        .map(|p| {
            let len = p.encoded_len();
            lens.push(len);
            field_len(1, len)
        })
        .sum()
}

fn write_points<P: Message>(
    points: &[P],
    lens: &mut impl Iterator<Item = usize>,
    out: &mut Vec<u8>,
) {
    for p in points {
        put_header(1, lens, out);
        p.encode_raw(out);
    }
}
