//! Keys that receivers build from label sets to find a series, resource or metric again.
//!
//! - [`push_string`] writes each string after its length, so that no two sequences of strings give
//!   the same key: label values may hold any character, so a separator alone is not enough.
//!   [`take_string`] reads them back.
//! - [`Keys`] numbers a request's keys in order of first appearance. Every key is kept in one
//!   shared string, so a new key costs no allocation of its own.

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::ops::Range;

/// Appends `s` to `key` after its length.
pub fn push_string(key: &mut String, s: &str) {
    key.push_str(itoa::Buffer::new().format(s.len()));
    key.push(':');
    key.push_str(s);
}

/// Takes the string [`push_string`] wrote at the start of `rest`, and moves `rest` past it; `None`
/// when `rest` does not start with one.
pub fn take_string<'k>(rest: &mut &'k str) -> Option<&'k str> {
    let (len, after) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let s = after.get(..len)?;
    *rest = &after[len..];
    Some(s)
}

#[derive(Default)]
pub struct Keys {
    /// Every key, one after the other.
    text: String,
    /// Where key `i` lies in `text`.
    spans: Vec<Range<usize>>,
    /// Key hash -> key number. Seeded per process: keys come from clients.
    table: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

impl Keys {
    /// A table with room for `n` keys of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Keys {
        Keys {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    /// The number of `key` (0, 1, ... in order of first appearance), and whether it is new (then
    /// it is remembered under that number).
    pub fn number(&mut self, key: &str) -> (usize, bool) {
        let hash = self.hasher.hash_one(key);
        let (text, spans) = (&self.text, &self.spans);
        if let Some(&i) = self.table.find(hash, |&i| &text[spans[i].clone()] == key) {
            return (i, false);
        }
        let i = self.spans.len();
        let start = self.text.len();
        self.text.push_str(key);
        self.spans.push(start..self.text.len());
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table
            .insert_unique(hash, i, |&j| hasher.hash_one(&text[spans[j].clone()]));
        (i, true)
    }

    /// Key number `i`.
    pub fn get(&self, i: usize) -> &str {
        &self.text[self.spans[i].clone()]
    }

    /// The bytes of all keys together.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests;
