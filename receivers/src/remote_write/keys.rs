//! Numbering of a request's keys (label sets, resources, metrics) in order of first appearance.
//! Every key is kept in one shared string, so a new key costs no allocation of its own: a request
//! of 2,000 series used to allocate a copy of each series' labels just to index them.

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::ops::Range;

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

    /// The number of `key`: `Ok` when it was seen before, `Err` with the next number (0, 1, ...)
    /// when it is new (it is remembered under that number).
    pub fn number(&mut self, key: &str) -> Result<usize, usize> {
        let hash = self.hasher.hash_one(key);
        let (text, spans) = (&self.text, &self.spans);
        if let Some(&i) = self.table.find(hash, |&i| &text[spans[i].clone()] == key) {
            return Ok(i);
        }
        let i = self.spans.len();
        let start = self.text.len();
        self.text.push_str(key);
        self.spans.push(start..self.text.len());
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table
            .insert_unique(hash, i, |&j| hasher.hash_one(&text[spans[j].clone()]));
        Err(i)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn numbers_keys_in_order_of_first_appearance() {
        let mut keys = Keys::with_capacity(1, 1);
        assert_eq!(keys.number("a\0b"), Err(0));
        assert_eq!(keys.number("a"), Err(1));
        assert_eq!(keys.number(""), Err(2));
        assert_eq!(keys.number("a\0b"), Ok(0));
        assert_eq!(keys.number("a"), Ok(1));
        assert_eq!(keys.number(""), Ok(2));
        // Past the first capacity, after the table and the text have grown.
        for n in 0..1000 {
            assert_eq!(keys.number(&format!("k{n}")), Err(3 + n));
        }
        for n in 0..1000 {
            assert_eq!(keys.number(&format!("k{n}")), Ok(3 + n));
        }
        assert_eq!(keys.number("a\0b"), Ok(0));
    }

    #[test]
    fn a_key_that_is_a_prefix_of_another_is_its_own() {
        let mut keys = Keys::default();
        assert_eq!(keys.number("ab"), Err(0));
        assert_eq!(keys.number("a"), Err(1));
        assert_eq!(keys.number("b"), Err(2));
        assert_eq!(keys.number("ab"), Ok(0));
    }
}
