//! Label sets translated in earlier batches, remembered by what they were translated from.
//!
//! The same series come back in every batch (every scrape, every remote_write request). Their
//! translation (sanitized keys, `job`/`instance`, suffixed names, `le` strings) gives the same
//! labels each time, so a translation with a cache builds a series' label set once and hands the
//! same shared set to every later batch. A key is the exact input of the translation of one
//! series: the scope's labels, the family name, the point's attributes in their order, and the
//! series' place in the point (`_sum`, a bucket's bound, a quantile). Keys are compared whole, so
//! a hash collision can never give a series another's labels.
//!
//! Memory is bounded: two generations of at most `capacity` sets each. A set found only in the
//! older generation moves to the newer one; when the newer one is full, the older one is forgotten.
//! A series not seen for two generations is forgotten.

use super::LabelSet;
use crate::proto::otlp::common::v1::{AnyValue, any_value::Value};
use hashbrown::HashMap;

type Entries = HashMap<Box<[u8]>, (LabelSet, u64)>;

/// See the module documentation. One cache serves one exporter (one set of translation options).
#[derive(Debug, Default)]
pub struct LabelCache {
    current: Entries,
    previous: Entries,
    capacity: usize,
}

impl LabelCache {
    /// Label sets per generation, by default: at most twice this many are kept.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// [`Self::DEFAULT_CAPACITY`], for configuration defaults.
    pub fn default_capacity() -> usize {
        Self::DEFAULT_CAPACITY
    }

    /// A cache of at most `2 * capacity` label sets; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        LabelCache {
            capacity,
            ..Default::default()
        }
    }

    /// Label sets remembered now.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The label set and its fingerprint for this key, if remembered.
    pub(super) fn get(&mut self, key: &[u8]) -> Option<(LabelSet, u64)> {
        if let Some(hit) = self.current.get(key) {
            return Some(hit.clone());
        }
        let (key, hit) = self.previous.remove_entry(key)?;
        self.remember(key, hit.clone());
        Some(hit)
    }

    pub(super) fn insert(&mut self, key: &[u8], labels: LabelSet, fingerprint: u64) {
        if self.enabled() {
            self.remember(key.into(), (labels, fingerprint));
        }
    }

    fn remember(&mut self, key: Box<[u8]>, entry: (LabelSet, u64)) {
        if self.current.len() >= self.capacity {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(key, entry);
    }
}

/// Appends a length-prefixed string to a key (prefixes keep concatenations unambiguous).
pub(super) fn put_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// Appends an attribute value to a key: its type and its exact content.
pub(super) fn put_value(key: &mut Vec<u8>, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        None => key.push(0),
        Some(Value::StringValue(s)) => {
            key.push(1);
            put_str(key, s);
        }
        Some(Value::BoolValue(b)) => key.extend_from_slice(&[2, *b as u8]),
        Some(Value::IntValue(i)) => {
            key.push(3);
            key.extend_from_slice(&i.to_le_bytes());
        }
        Some(Value::DoubleValue(d)) => {
            key.push(4);
            key.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Some(other @ (Value::BytesValue(_) | Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            // Rare in metrics: keyed by the label value they become.
            key.push(5);
            let value = AnyValue {
                value: Some(other.clone()),
            };
            put_str(key, &super::values::any_value_string(&value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn set(v: &str) -> LabelSet {
        Arc::from(vec![("__name__".to_string(), v.to_string())])
    }

    #[test]
    fn keeps_two_generations_and_promotes_what_it_finds() {
        let mut c = LabelCache::new(2);
        c.insert(b"a", set("a"), 1);
        c.insert(b"b", set("b"), 2);
        // Full: "a" and "b" become the older generation.
        c.insert(b"c", set("c"), 3);
        assert_eq!(c.len(), 3);
        // Found in the older generation: moves to the newer one.
        assert_eq!(c.get(b"a").map(|(_, f)| f), Some(1));
        // The newer generation ("c", "a") is full: "b" is forgotten.
        c.insert(b"d", set("d"), 4);
        assert!(c.get(b"b").is_none());
        assert_eq!(c.get(b"a").map(|(l, _)| l), Some(set("a")));
        assert_eq!(c.get(b"c").map(|(_, f)| f), Some(3));
        assert!(c.len() <= 4);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut c = LabelCache::new(0);
        c.insert(b"a", set("a"), 1);
        assert!(c.get(b"a").is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn keys_tell_values_of_different_types_apart() {
        let key = |v: Value| {
            let mut k = Vec::new();
            put_value(&mut k, Some(&AnyValue { value: Some(v) }));
            k
        };
        let keys = [
            key(Value::StringValue("1".into())),
            key(Value::IntValue(1)),
            key(Value::DoubleValue(1.0)),
            key(Value::BoolValue(true)),
            key(Value::BytesValue(vec![1])),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let (mut ab_c, mut a_bc) = (Vec::new(), Vec::new());
        put_str(&mut ab_c, "ab");
        put_str(&mut ab_c, "c");
        put_str(&mut a_bc, "a");
        put_str(&mut a_bc, "bc");
        assert_ne!(ab_c, a_bc);
    }
}
