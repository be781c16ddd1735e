//! A YAML document as a tree of positioned nodes. The whole file is parsed once (syntax errors stop
//! there, with their location); each component's part is then deserialized on its own from its
//! subtree, so that errors in different components are all reported, each with its own position.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A line and column in the config file, both 1-based. `line == 0` means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn null(pos: Pos) -> Self {
        Node {
            value: Value::Null,
            pos,
        }
    }

    /// The scalar's text, for keys and messages.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Where the value of a map's `key` is, for errors about it; the map's own position when the
    /// key is absent (or the node is not a map).
    pub fn field_pos(&self, key: &str) -> Pos {
        self.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.key_text() == key))
            .map_or(self.pos, |(_, v)| v.pos)
    }

    /// A short description of the node's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The key text of a map key (scalars of any kind are accepted as keys).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Null => String::new(),
            Value::Seq(_) | Value::Map(_) => format!("<{}>", self.kind()),
        }
    }

    /// Calls `f` on every string scalar in the tree, in document order.
    pub fn visit_strings_mut(&mut self, f: &mut impl FnMut(&mut String, Pos)) {
        let pos = self.pos;
        match &mut self.value {
            Value::Str(s) => f(s, pos),
            Value::Seq(items) => items.iter_mut().for_each(|n| n.visit_strings_mut(f)),
            Value::Map(entries) => {
                for (_, v) in entries.iter_mut() {
                    v.visit_strings_mut(f);
                }
            }
            _ => {}
        }
    }
}

/// Parses a YAML document into a positioned tree.
pub fn parse(text: &str) -> Result<Node, (Pos, String)> {
    if text.trim().is_empty() {
        return Ok(Node::null(Pos { line: 1, column: 1 }));
    }
    // YAML 1.2 core schema booleans: `yes`, `no`, `on`, `off` stay strings (`X-Custom: yes`).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                line: l.line() as u32,
                column: l.column() as u32,
            })
            .unwrap_or_default();
        (pos, first_line(&e.to_string()))
    })
}

/// serde-saphyr renders a snippet below its message; our errors carry the position themselves.
fn first_line(msg: &str) -> String {
    let mut line = msg.lines().next().unwrap_or(msg).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    // Drop a leading "line X column Y: " or a trailing " at line X column Y" that would repeat the
    // position, and advice about parser options users cannot set.
    if line.starts_with("line ")
        && let Some(i) = line.find(": ")
    {
        line = &line[i + 2..];
    }
    if let Some(i) = line.find(" at line ") {
        line = &line[..i];
    }
    if let Some(i) = line.find(", set DuplicateKeyPolicy") {
        line = &line[..i];
    }
    line.to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(Node {
            value: spanned.value,
            pos: Pos {
                line: loc.line() as u32,
                column: loc.column() as u32,
            },
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

#[allow(dead_code)]
fn _assert_error_is_de_error<E: de::Error>() {}
