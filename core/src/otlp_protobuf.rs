//! An OTLP metrics request (`ExportMetricsServiceRequest`) decoded from protobuf, the messages
//! every point goes through read by hand: the request, its resources' and scopes' metrics, the
//! gauges, sums and histograms, their number and histogram points, and the points' attributes
//! with string values. Each repeated field among them gets its room once, from a count of the
//! occurrences that follow one another (as encoders write them), where prost grows it from
//! empty; fixed-width fields and strings are read in place. Every other field (resources and
//! scopes, exemplars, exponential histograms, summaries, values that are not strings, unknown
//! fields) is handed to prost's own decoding of that field (`Message::merge_field`), so that
//! rare shapes need no code here.
//!
//! Accepts and refuses exactly what prost's decoding of the whole message does, into the same
//! message (the tests and the `otlp_protobuf` fuzz target compare the two), but for one bound:
//! prost refuses messages nested more than 100 deep, and the fields handed to it here start its
//! count afresh, so a value (an array or a map in an attribute) may nest up to eight levels deeper
//! than prost alone would take.

use crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use crate::proto::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric::Data, number_data_point,
};
use crate::protowire::{delimited, key, message, of_field, run, string};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

/// Decodes an OTLP metrics request; the error says where it is malformed.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    let mut req = ExportMetricsServiceRequest::default();
    let list = (1, "ExportMetricsServiceRequest.resource_metrics");
    with_list(
        body,
        &mut req,
        list,
        |r| &mut r.resource_metrics,
        resource_metrics,
    )?;
    Ok(req)
}

fn resource_metrics(buf: &[u8]) -> Result<ResourceMetrics, String> {
    let mut rm = ResourceMetrics::default();
    let list = (2, "ResourceMetrics.scope_metrics");
    with_list(
        buf,
        &mut rm,
        list,
        |rm| &mut rm.scope_metrics,
        scope_metrics,
    )?;
    Ok(rm)
}

fn scope_metrics(buf: &[u8]) -> Result<ScopeMetrics, String> {
    let mut sm = ScopeMetrics::default();
    with_list(
        buf,
        &mut sm,
        (2, "ScopeMetrics.metrics"),
        |sm| &mut sm.metrics,
        metric,
    )?;
    Ok(sm)
}

fn metric(mut buf: &[u8]) -> Result<Metric, String> {
    let mut m = Metric::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let ld = wire == WireType::LengthDelimited;
        match tag {
            1 if ld => m.name = owned(&mut buf, "Metric.name")?,
            2 if ld => m.description = owned(&mut buf, "Metric.description")?,
            3 if ld => m.unit = owned(&mut buf, "Metric.unit")?,
            // A oneof: a second field of the same kind merges into the first, of another kind
            // replaces it (as prost does).
            5 if ld => {
                let bytes = delimited(wire, &mut buf, "Metric.gauge")?;
                if !matches!(m.data, Some(Data::Gauge(_))) {
                    m.data = Some(Data::Gauge(Gauge::default()));
                }
                if let Some(Data::Gauge(g)) = &mut m.data {
                    gauge(bytes, g).map_err(within("Metric.gauge"))?;
                }
            }
            7 if ld => {
                let bytes = delimited(wire, &mut buf, "Metric.sum")?;
                if !matches!(m.data, Some(Data::Sum(_))) {
                    m.data = Some(Data::Sum(Sum::default()));
                }
                if let Some(Data::Sum(s)) = &mut m.data {
                    sum(bytes, s).map_err(within("Metric.sum"))?;
                }
            }
            9 if ld => {
                let bytes = delimited(wire, &mut buf, "Metric.histogram")?;
                if !matches!(m.data, Some(Data::Histogram(_))) {
                    m.data = Some(Data::Histogram(Histogram::default()));
                }
                if let Some(Data::Histogram(h)) = &mut m.data {
                    histogram(bytes, h).map_err(within("Metric.histogram"))?;
                }
            }
            _ => by_prost(&mut m, tag, wire, &mut buf)?,
        }
    }
    Ok(m)
}

fn gauge(buf: &[u8], g: &mut Gauge) -> Result<(), String> {
    with_list(
        buf,
        g,
        (1, "Gauge.data_points"),
        |g| &mut g.data_points,
        number_point,
    )
}

fn sum(buf: &[u8], s: &mut Sum) -> Result<(), String> {
    with_list(
        buf,
        s,
        (1, "Sum.data_points"),
        |s| &mut s.data_points,
        number_point,
    )
}

fn histogram(buf: &[u8], h: &mut Histogram) -> Result<(), String> {
    with_list(
        buf,
        h,
        (1, "Histogram.data_points"),
        |h| &mut h.data_points,
        histogram_point,
    )
}

fn number_point(mut buf: &[u8]) -> Result<NumberDataPoint, String> {
    let mut p = NumberDataPoint::default();
    // The run of attributes at hand, when valid UTF-8 as a whole (see `room_for_run`).
    let mut checked = "";
    while !buf.is_empty() {
        let (at, (tag, wire)) = (buf, key(&mut buf)?);
        let fixed = wire == WireType::SixtyFourBit && buf.len() >= 8;
        match tag {
            7 if wire == WireType::LengthDelimited => {
                checked = room_for_run(&mut p.attributes, at).unwrap_or(checked);
                let kv = attribute(&mut buf, "NumberDataPoint.attributes", checked)?;
                p.attributes.push(kv);
            }
            2 if fixed => p.start_time_unix_nano = fixed64(&mut buf),
            3 if fixed => p.time_unix_nano = fixed64(&mut buf),
            4 if fixed => {
                let v = f64::from_bits(fixed64(&mut buf));
                p.value = Some(number_data_point::Value::AsDouble(v));
            }
            6 if fixed => {
                let v = fixed64(&mut buf) as i64;
                p.value = Some(number_data_point::Value::AsInt(v));
            }
            _ => by_prost(&mut p, tag, wire, &mut buf)?,
        }
    }
    Ok(p)
}

fn histogram_point(mut buf: &[u8]) -> Result<HistogramDataPoint, String> {
    let mut p = HistogramDataPoint::default();
    // The run of attributes at hand, when valid UTF-8 as a whole (see `room_for_run`).
    let mut checked = "";
    while !buf.is_empty() {
        let (at, (tag, wire)) = (buf, key(&mut buf)?);
        let fixed = wire == WireType::SixtyFourBit && buf.len() >= 8;
        match tag {
            9 if wire == WireType::LengthDelimited => {
                checked = room_for_run(&mut p.attributes, at).unwrap_or(checked);
                let kv = attribute(&mut buf, "HistogramDataPoint.attributes", checked)?;
                p.attributes.push(kv);
            }
            2 if fixed => p.start_time_unix_nano = fixed64(&mut buf),
            3 if fixed => p.time_unix_nano = fixed64(&mut buf),
            4 if fixed => p.count = fixed64(&mut buf),
            5 if fixed => p.sum = Some(f64::from_bits(fixed64(&mut buf))),
            11 if fixed => p.min = Some(f64::from_bits(fixed64(&mut buf))),
            12 if fixed => p.max = Some(f64::from_bits(fixed64(&mut buf))),
            6 if wire == WireType::LengthDelimited => {
                let field = "HistogramDataPoint.bucket_counts";
                packed(
                    delimited(wire, &mut buf, field)?,
                    field,
                    &mut p.bucket_counts,
                    |b| b,
                )?;
            }
            7 if wire == WireType::LengthDelimited => {
                let field = "HistogramDataPoint.explicit_bounds";
                let bytes = delimited(wire, &mut buf, field)?;
                packed(bytes, field, &mut p.explicit_bounds, f64::from_bits)?;
            }
            _ => by_prost(&mut p, tag, wire, &mut buf)?,
        }
    }
    Ok(p)
}

/// A point's attribute (a `KeyValue` field); its strings are taken from `checked` when they lie
/// in it.
#[inline(always)]
fn attribute<'a>(
    buf: &mut &'a [u8],
    field: &'static str,
    checked: &'a str,
) -> Result<KeyValue, String> {
    let bytes = delimited(WireType::LengthDelimited, buf, field)?;
    key_value(bytes, checked).map_err(within(field))
}

fn key_value<'a>(mut buf: &'a [u8], checked: &'a str) -> Result<KeyValue, String> {
    let mut kv = KeyValue::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match (tag, wire) {
            (1, WireType::LengthDelimited) => {
                kv.key = string(wire, &mut buf, "KeyValue.key", checked)?.to_owned();
            }
            // A second value merges into the first, as for any message field.
            (2, WireType::LengthDelimited) => {
                let bytes = delimited(wire, &mut buf, "KeyValue.value")?;
                let value = kv.value.get_or_insert_with(AnyValue::default);
                any_value(bytes, value, checked).map_err(within("KeyValue.value"))?;
            }
            _ => by_prost(&mut kv, tag, wire, &mut buf)?,
        }
    }
    Ok(kv)
}

fn any_value<'a>(mut buf: &'a [u8], v: &mut AnyValue, checked: &'a str) -> Result<(), String> {
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match (tag, wire) {
            (1, WireType::LengthDelimited) => {
                let s = string(wire, &mut buf, "AnyValue.string_value", checked)?;
                v.value = Some(any_value::Value::StringValue(s.to_owned()));
            }
            _ => by_prost(v, tag, wire, &mut buf)?,
        }
    }
    Ok(())
}

/// Room in a point's attribute list for the run of attributes whose first field's key starts at
/// `at`, when the list is full ([`room`]); and then the run's bytes as one string when they are
/// valid UTF-8 together, as a run of string attributes is (keys and short lengths are ASCII):
/// each key and value is then taken from it rather than checked on its own.
#[inline(always)]
fn room_for_run<'a>(list: &mut Vec<KeyValue>, at: &'a [u8]) -> Option<&'a str> {
    room(list, at).map(|len| std::str::from_utf8(&at[..len]).unwrap_or_default())
}

/// Reads `buf`'s fields into `m`, whose one field read here is the list `field` (its number and
/// name), each item read by `read`; prost reads the others.
#[inline(always)]
fn with_list<M: Message, T>(
    mut buf: &[u8],
    m: &mut M,
    (tag_of_list, field): (u32, &'static str),
    list: fn(&mut M) -> &mut Vec<T>,
    read: fn(&[u8]) -> Result<T, String>,
) -> Result<(), String> {
    while !buf.is_empty() {
        let (at, (tag, wire)) = (buf, key(&mut buf)?);
        if tag == tag_of_list && wire == WireType::LengthDelimited {
            let bytes = delimited(wire, &mut buf, field)?;
            let item = read(bytes).map_err(within(field))?;
            push(list(m), at, item);
        } else {
            by_prost(m, tag, wire, &mut buf)?;
        }
    }
    Ok(())
}

/// Appends `item`, read from the field whose key starts at `at` ([`room`] first).
#[inline(always)]
fn push<T>(list: &mut Vec<T>, at: &[u8], item: T) {
    room(list, at);
    list.push(item);
}

/// When `list` is full, room in it for the run of fields that starts at `at` (the field at hand
/// and those of the same key right after it), and the run's length in bytes.
#[inline(always)]
fn room<T>(list: &mut Vec<T>, at: &[u8]) -> Option<usize> {
    if list.len() < list.capacity() {
        return None;
    }
    let (n, len) = run(at);
    list.reserve_exact(n.max(1));
    Some(len)
}

/// A string field's value.
#[inline(always)]
fn owned(buf: &mut &[u8], field: &str) -> Result<String, String> {
    string(WireType::LengthDelimited, buf, field, "").map(str::to_owned)
}

/// A fixed64 (or double) field's bits; `buf` holds at least 8 bytes.
#[inline(always)]
fn fixed64(buf: &mut &[u8]) -> u64 {
    let (bits, rest) = buf.split_at(8);
    *buf = rest;
    u64::from_le_bytes(bits.try_into().expect("8 bytes"))
}

/// A packed repeated fixed64 or double field, appended to `list`.
fn packed<T>(
    bytes: &[u8],
    field: &str,
    list: &mut Vec<T>,
    from_bits: impl Fn(u64) -> T,
) -> Result<(), String> {
    if !bytes.len().is_multiple_of(8) {
        // prost reads the last value past the field's end, and then finds it overlong.
        return Err(of_field(field, "delimited length exceeded"));
    }
    list.extend(
        bytes
            .chunks_exact(8)
            .map(|c| from_bits(u64::from_le_bytes(c.try_into().expect("8 bytes")))),
    );
    Ok(())
}

/// A field read by prost's decoding of `M`.
fn by_prost<M: Message>(
    m: &mut M,
    tag: u32,
    wire: WireType,
    buf: &mut &[u8],
) -> Result<(), String> {
    m.merge_field(tag, wire, buf, DecodeContext::default())
        .map_err(message)
}

/// Puts the field an error happened in before it.
fn within(field: &'static str) -> impl Fn(String) -> String {
    move |e| of_field(field, e)
}

#[cfg(test)]
mod tests;
