//! OTLP/JSON pieces that the generated pbjson code cannot do:
//!
//! - exemplar trace and span ids are hex in OTLP/JSON (the proto3 JSON mapping would use base64);
//! - NaN and the infinities must be written as the strings "NaN", "Infinity" and "-Infinity", but
//!   the generated `Serialize` impls hand doubles to `serialize_f64`, which serde_json writes as
//!   `null` (read back as *no value*). [`to_json_vec`] and [`to_json_string`] serialize through a
//!   proxy serializer that fixes this at any depth; always encode OTLP/JSON with them.
//!
//! Everything else is generated. Reading the strings back already works (pbjson, and `Number` here).
//!
//! JSON carries NaN only as "NaN": the payload bits of a NaN (e.g. Prometheus' stale marker,
//! `0x7ff0000000000002`) do not survive OTLP/JSON and decode as the canonical `f64::NAN`.

use crate::proto::otlp::common::v1::KeyValue;
use crate::proto::otlp::metrics::v1::{Exemplar, exemplar};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{
    SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Serializes `value` as OTLP/JSON: like `serde_json::to_vec`, but NaN and the infinities (`f64`
/// or `f32`, at any depth) are written as "NaN", "Infinity" and "-Infinity" instead of `null`.
/// Finite numbers and everything else are written exactly as serde_json writes them.
///
/// # Panics
///
/// If `value`'s `Serialize` impl fails (serde_json refuses, e.g., non-string map keys). The
/// generated OTLP messages always serialize.
pub fn to_json_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    value
        .serialize(NonFinite(&mut serde_json::Serializer::new(&mut out)))
        .expect("OTLP/JSON serialization failed");
    out
}

/// [`to_json_vec`] as a `String`.
///
/// # Panics
///
/// As [`to_json_vec`].
pub fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(to_json_vec(value)).expect("serde_json writes UTF-8")
}

/// The proto3 JSON spelling of a non-finite double; `None` for finite ones.
fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("Infinity")
    } else if v == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// Serializes the wrapped value through [`NonFinite`].
struct Wrap<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(NonFinite(s))
    }
}

/// A serializer (or compound serializer) that forwards everything to the inner one, except that
/// non-finite floats become strings, and every nested value goes through [`Wrap`] again.
struct NonFinite<S>(S);

macro_rules! forward {
    ($($method:ident($t:ty)),* $(,)?) => {$(
        fn $method(self, v: $t) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<S: Serializer> Serializer for NonFinite<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = NonFinite<S::SerializeSeq>;
    type SerializeTuple = NonFinite<S::SerializeTuple>;
    type SerializeTupleStruct = NonFinite<S::SerializeTupleStruct>;
    type SerializeTupleVariant = NonFinite<S::SerializeTupleVariant>;
    type SerializeMap = NonFinite<S::SerializeMap>;
    type SerializeStruct = NonFinite<S::SerializeStruct>;
    type SerializeStructVariant = NonFinite<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        match non_finite(v.into()) {
            Some(s) => self.0.serialize_str(s),
            None => self.0.serialize_f32(v),
        }
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        match non_finite(v) {
            Some(s) => self.0.serialize_str(s),
            None => self.0.serialize_f64(v),
        }
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Wrap(v))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Wrap(v))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Wrap(v))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(NonFinite)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(NonFinite)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(NonFinite)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(NonFinite)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(NonFinite)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(NonFinite)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(NonFinite)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(v)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound serializers: each element, field, key and value is serialized as `Wrap(it)`.
macro_rules! elements {
    ($($tr:ident::$method:ident),*) => {$(
        impl<S: $tr> $tr for NonFinite<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
                self.0.$method(&Wrap(v))
            }
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    )*};
}
elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<S: SerializeMap> SerializeMap for NonFinite<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Wrap(k))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Wrap(v))
    }
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        k: &K,
        v: &V,
    ) -> Result<(), S::Error> {
        self.0.serialize_entry(&Wrap(k), &Wrap(v))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

macro_rules! fields {
    ($($tr:ident),*) => {$(
        impl<S: $tr> $tr for NonFinite<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Wrap(v))
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    )*};
}
fields!(SerializeStruct, SerializeStructVariant);

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
        match non_finite(self.0) {
            Some(name) => s.serialize_str(name),
            None => s.serialize_f64(self.0),
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
