//! OTLP/JSON pieces that the generated pbjson code cannot do: exemplar trace and span ids are hex in
//! OTLP/JSON (the proto3 JSON mapping would use base64). Everything else is generated.

use crate::proto::otlp::common::v1::KeyValue;
use crate::proto::otlp::metrics::v1::{Exemplar, exemplar};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

impl Serialize for Exemplar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Exemplar", 5)?;
        if !self.filtered_attributes.is_empty() {
            st.serialize_field("filteredAttributes", &self.filtered_attributes)?;
        }
        if self.time_unix_nano != 0 {
            st.serialize_field("timeUnixNano", &self.time_unix_nano.to_string())?;
        }
        match self.value {
            Some(exemplar::Value::AsDouble(v)) => st.serialize_field("asDouble", &JsonF64(v))?,
            Some(exemplar::Value::AsInt(v)) => st.serialize_field("asInt", &v.to_string())?,
            None => {}
        }
        if !self.span_id.is_empty() {
            st.serialize_field("spanId", &to_hex(&self.span_id))?;
        }
        if !self.trace_id.is_empty() {
            st.serialize_field("traceId", &to_hex(&self.trace_id))?;
        }
        st.end()
    }
}

/// A double as the proto3 JSON mapping writes it: a number, or "NaN", "Infinity", "-Infinity".
struct JsonF64(f64);

impl Serialize for JsonF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v == f64::INFINITY => s.serialize_str("Infinity"),
            v if v == f64::NEG_INFINITY => s.serialize_str("-Infinity"),
            v => s.serialize_f64(v),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExemplarJson {
    #[serde(default, alias = "filtered_attributes")]
    filtered_attributes: Option<Vec<KeyValue>>,
    #[serde(default, alias = "time_unix_nano")]
    time_unix_nano: Option<Number<u64>>,
    #[serde(default, alias = "as_double")]
    as_double: Option<Number<f64>>,
    #[serde(default, alias = "as_int")]
    as_int: Option<Number<i64>>,
    #[serde(default, alias = "span_id")]
    span_id: Option<Hex>,
    #[serde(default, alias = "trace_id")]
    trace_id: Option<Hex>,
}

impl<'de> Deserialize<'de> for Exemplar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = ExemplarJson::deserialize(d)?;
        let value = match (j.as_double, j.as_int) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom("exemplar has both asDouble and asInt"));
            }
            (Some(v), None) => Some(exemplar::Value::AsDouble(v.0)),
            (None, Some(v)) => Some(exemplar::Value::AsInt(v.0)),
            (None, None) => None,
        };
        Ok(Exemplar {
            filtered_attributes: j.filtered_attributes.unwrap_or_default(),
            time_unix_nano: j.time_unix_nano.map_or(0, |n| n.0),
            value,
            span_id: j.span_id.map(|h| h.0).unwrap_or_default(),
            trace_id: j.trace_id.map(|h| h.0).unwrap_or_default(),
        })
    }
}

/// A number written either as a JSON number or as a string (as OTLP/JSON allows for 64-bit
/// integers, and as proto3 JSON requires for NaN and the infinities).
struct Number<T>(T);

trait ParseNumber: Sized + Copy {
    fn from_f64(v: f64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_u64(v: u64) -> Option<Self>;
    fn parse(s: &str) -> Option<Self>;
}

impl ParseNumber for f64 {
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => s.parse().ok(),
        }
    }
}

macro_rules! parse_int {
    ($t:ty) => {
        impl ParseNumber for $t {
            fn from_f64(v: f64) -> Option<Self> {
                (v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64)
                    .then_some(v as $t)
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }
        }
    };
}
parse_int!(u64);
parse_int!(i64);

impl<'de, T: ParseNumber> Deserialize<'de> for Number<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: ParseNumber> Visitor<'_> for V<T> {
            type Value = Number<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string holding a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_f64(v)
                    .map(Number)
                    .ok_or_else(|| E::custom(format!("number {v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_i64(v)
                    .map(Number)
                    .ok_or_else(|| E::custom(format!("number {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::from_u64(v)
                    .map(Number)
                    .ok_or_else(|| E::custom(format!("number {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::parse(v)
                    .map(Number)
                    .ok_or_else(|| E::custom(format!("invalid number {v:?}")))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Bytes written as a hex string (OTLP/JSON trace and span ids).
struct Hex(Vec<u8>);

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_hex(&s)
            .map(Hex)
            .ok_or_else(|| de::Error::custom(format!("invalid hex id {s:?}")))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests;
