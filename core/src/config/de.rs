//! A serde `Deserializer` over a positioned [`Node`] tree. Every error carries the position of the
//! innermost node it concerns: an unknown or misspelt key points at the key, a bad value at the value,
//! a missing field at the map that lacks it.
//!
//! Scalars are typed on demand: a string such as `"4317"` (for instance, the result of `${env:PORT}`)
//! is accepted where a number is expected.

use super::node::{Node, Pos, Value};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;

/// A deserialization error with the position it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Pos,
    pub message: String,
}

impl DeError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        DeError {
            pos,
            message: message.into(),
        }
    }

    fn or_pos(mut self, pos: Pos) -> Self {
        if !self.pos.is_known() {
            self.pos = pos;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: Pos::default(),
            message: msg.to_string(),
        }
    }
}

/// Deserializes `T` from a node.
pub fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.or_pos(node.pos))
}

/// A value together with the position of the YAML node it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

const LOCATED: &str = "$sluice::Located";

thread_local! {
    static LAST_POS: Cell<Pos> = const { Cell::new(Pos { line: 0, column: 0 }) };
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                let pos = LAST_POS.with(|p| p.replace(Pos::default()));
                Ok(Located {
                    value: T::deserialize(d)?,
                    pos,
                })
            }
        }
        d.deserialize_newtype_struct(LOCATED, V(std::marker::PhantomData))
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl NodeDe<'_> {
    fn invalid(&self, expected: &str) -> DeError {
        let found = match &self.0.value {
            Value::Str(s) => format!("{s:?}"),
            _ => self.0.kind().to_string(),
        };
        DeError::new(self.0.pos, format!("expected {expected}, found {found}"))
    }

    fn text(&self) -> Option<String> {
        match &self.0.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $t:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let n: Option<$t> = match &self.0.value {
                Value::Int(i) => <$t>::try_from(*i).ok(),
                Value::UInt(u) => <$t>::try_from(*u).ok(),
                Value::Str(s) => s.trim().replace('_', "").parse().ok(),
                _ => None,
            };
            match n {
                Some(n) => v.$visit::<DeError>(n).map_err(|e| e.or_pos(self.0.pos)),
                None => Err(self.invalid($what)),
            }
        }
    };
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let pos = self.0.pos;
        let r = match &self.0.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::UInt(u) => v.visit_u64(*u),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_str(s),
            Value::Seq(items) => v.visit_seq(Seq {
                items: items.iter(),
            }),
            Value::Map(entries) => v.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.or_pos(pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let b = match &self.0.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.trim() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match b {
            Some(b) => v.visit_bool::<DeError>(b).map_err(|e| e.or_pos(self.0.pos)),
            None => Err(self.invalid("true or false")),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8, "an integer");
    int_method!(deserialize_i16, visit_i16, i16, "an integer");
    int_method!(deserialize_i32, visit_i32, i32, "an integer");
    int_method!(deserialize_i64, visit_i64, i64, "an integer");
    int_method!(
        deserialize_u8,
        visit_u8,
        u8,
        "a non-negative integer (at most 255)"
    );
    int_method!(
        deserialize_u16,
        visit_u16,
        u16,
        "a non-negative integer (at most 65535)"
    );
    int_method!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    int_method!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let f = match &self.0.value {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match f {
            Some(f) => v.visit_f64::<DeError>(f).map_err(|e| e.or_pos(self.0.pos)),
            None => Err(self.invalid("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some(s) => v
                .visit_string::<DeError>(s)
                .map_err(|e| e.or_pos(self.0.pos)),
            None => Err(self.invalid("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
        .map_err(|e| e.or_pos(self.0.pos))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => v.visit_unit(),
            _ => Err(self.invalid("nothing (null)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == LOCATED {
            LAST_POS.with(|p| p.set(self.0.pos));
        }
        v.visit_newtype_struct(self)
            .map_err(|e| e.or_pos(self.0.pos))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(items) => v.visit_seq(Seq {
                items: items.iter(),
            }),
            _ => Err(self.invalid("a list")),
        }
        .map_err(|e| e.or_pos(self.0.pos))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(entries) => v.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
            // An empty value (`grpc:`) reads as an empty map, as in the collector's configs.
            Value::Null => v.visit_map(Map {
                entries: [].iter(),
                value: None,
            }),
            _ => Err(self.invalid("a map")),
        }
        .map_err(|e| e.or_pos(self.0.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(_) | Value::Bool(_) | Value::Int(_) | Value::UInt(_) => {
                let text = self.text().unwrap_or_default();
                v.visit_enum(Enum {
                    tag: text,
                    tag_pos: self.0.pos,
                    content: None,
                })
            }
            Value::Map(entries) if entries.len() == 1 => {
                let (k, c) = &entries[0];
                v.visit_enum(Enum {
                    tag: k.key_text(),
                    tag_pos: k.pos,
                    content: Some(c),
                })
            }
            _ => Err(self.invalid("one of the allowed names")),
        }
        .map_err(|e| e.or_pos(self.0.pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(n) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e| e.or_pos(n.pos)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| e.or_pos(k.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let v = self
            .value
            .take()
            .expect("next_value_seed called before next_key_seed");
        seed.deserialize(NodeDe(v)).map_err(|e| e.or_pos(v.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'a> {
    tag: String,
    tag_pos: Pos,
    content: Option<&'a Node>,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = DeError;
    type Variant = Variant<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Variant<'de>), DeError> {
        let tag: de::value::StringDeserializer<DeError> = self.tag.into_deserializer();
        let value = seed.deserialize(tag).map_err(|e| e.or_pos(self.tag_pos))?;
        Ok((
            value,
            Variant {
                content: self.content,
                pos: self.tag_pos,
            },
        ))
    }
}

struct Variant<'a> {
    content: Option<&'a Node>,
    pos: Pos,
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(n) if n.value == Value::Null => Ok(()),
            Some(n) => Err(DeError::new(n.pos, "this name takes no settings")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.content {
            Some(n) => seed.deserialize(NodeDe(n)).map_err(|e| e.or_pos(n.pos)),
            None => Err(DeError::new(self.pos, "this name needs a value")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        match self.content {
            Some(n) => NodeDe(n).deserialize_seq(v),
            None => Err(DeError::new(self.pos, "this name needs a list")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.content {
            Some(n) => NodeDe(n).deserialize_map(v),
            None => Err(DeError::new(self.pos, "this name needs settings")),
        }
    }
}
