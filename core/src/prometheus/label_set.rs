//! A series' labels in one shared block: what the translation builds once per series and every
//! batch of that series then shares (see [`super::LabelCache`]).

use std::fmt;
use std::sync::Arc;

/// A series' labels: (name, value) pairs in the order given (the translation sorts them by name).
/// All names and values are in one block of text, shared by every clone.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet(Arc<Block>);

#[derive(Default, PartialEq, Eq, Hash)]
struct Block {
    /// Every name and value, one after the other.
    text: Box<str>,
    /// Where each name and each value ends in `text`.
    ends: Box<[usize]>,
    /// The bytes of the labels as remote_write 1.0 `Label` messages (see [`LabelSet::v1_len`]).
    v1_len: usize,
}

impl LabelSet {
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> LabelSet {
        let (mut len, mut count) = (0, 0);
        for (k, v) in pairs.clone() {
            len += k.len() + v.len();
            count += 2;
        }
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(count);
        let mut v1_len = 0;
        for (k, v) in pairs {
            text.push_str(k);
            ends.push(text.len());
            text.push_str(v);
            ends.push(text.len());
            v1_len += nested_len(string_len(k) + string_len(v));
        }
        LabelSet(Arc::new(Block {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            v1_len,
        }))
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            block: &self.0,
            next: 0,
            at: 0,
        }
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.0.ends.is_empty()
    }

    /// The value of the label with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The encoded length of the labels as the `labels` field of a remote_write 1.0 `TimeSeries`
    /// (each a `Label` message with its key and length; empty names and values left out, as
    /// proto3 does), kept so that an encoder needs one pass over the labels, not two.
    pub fn v1_len(&self) -> usize {
        self.0.v1_len
    }

    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Whether both are the same shared block (then they are equal; the converse need not hold).
    pub fn ptr_eq(a: &LabelSet, b: &LabelSet) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// A nested message or string of `len` bytes under a one-byte key (field numbers below 16).
fn nested_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// A string field under a one-byte key; proto3 leaves an empty string out.
fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { nested_len(s.len()) }
}

impl From<&[(String, String)]> for LabelSet {
    fn from(pairs: &[(String, String)]) -> LabelSet {
        LabelSet::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl From<Vec<(String, String)>> for LabelSet {
    fn from(pairs: Vec<(String, String)>) -> LabelSet {
        LabelSet::from(&pairs[..])
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The labels of a [`LabelSet`], as (name, value).
pub struct Iter<'a> {
    block: &'a Block,
    /// Index in `ends` of the next name's end.
    next: usize,
    /// Where the next name starts.
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (&name_end, &value_end) = (
            self.block.ends.get(self.next)?,
            self.block.ends.get(self.next + 1)?,
        );
        let text = &self.block.text;
        let pair = (&text[self.at..name_end], &text[name_end..value_end]);
        self.next += 2;
        self.at = value_end;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.block.ends.len() - self.next) / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::prometheus_v1::Label;

    #[test]
    fn keeps_pairs_in_order_including_empty_and_multibyte_ones() {
        let pairs = vec![
            ("__name__".to_string(), "up".to_string()),
            ("a".to_string(), String::new()),
            ("é".to_string(), "日本\u{0}x".to_string()),
        ];
        let set = LabelSet::from(pairs.clone());
        assert_eq!(set.len(), 3);
        assert_eq!(set.iter().len(), 3);
        assert_eq!(set.to_vec(), pairs);
        assert_eq!(set.get("é"), Some("日本\u{0}x"));
        assert_eq!(set.get("b"), None);
        let labels: Vec<Label> = pairs
            .iter()
            .map(|(k, v)| Label {
                name: k.clone(),
                value: v.clone(),
            })
            .collect();
        assert_eq!(
            set.v1_len(),
            prost::encoding::message::encoded_len_repeated(1, &labels)
        );
        let long = LabelSet::new([("k", "v".repeat(300).as_str())]);
        assert_eq!(long.v1_len(), 1 + 2 + (1 + 1 + 1) + (1 + 2 + 300));
        assert_eq!(
            format!("{set:?}"),
            r#"[("__name__", "up"), ("a", ""), ("é", "日本\0x")]"#
        );
    }

    #[test]
    fn equal_when_the_pairs_are_equal_not_when_only_the_text_is() {
        let set = |pairs: &[(&str, &str)]| LabelSet::new(pairs.iter().copied());
        assert_eq!(set(&[("a", "b")]), set(&[("a", "b")]));
        assert_ne!(set(&[("ab", "")]), set(&[("a", "b")]));
        assert_ne!(set(&[("a", "b")]), set(&[("a", "b"), ("", "")]));
        assert!(LabelSet::default().is_empty());
        let s = set(&[("a", "b")]);
        assert!(LabelSet::ptr_eq(&s, &s.clone()));
    }
}
