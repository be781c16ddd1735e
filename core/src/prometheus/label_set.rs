//! A series' labels in one shared block: what the translation builds once per series and every
//! batch of that series then shares (see [`super::LabelCache`]).

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use std::fmt;
use std::sync::Arc;

/// A series' labels: (name, value) pairs in the order given (the translation sorts them by name).
/// They are kept as the `labels` field of a remote_write 1.0 `TimeSeries` (each pair a `Label`
/// message under its key and length; proto3 leaves empty names and values out), in one block
/// shared by every clone: the v1 writer copies the block whole, and the encoding is also the
/// most compact form of the pairs (one allocation, a byte or two of framing per string).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet(Arc<[u8]>);

/// The key of field 1 (`Label` in `TimeSeries`, `name` in `Label`), length-delimited.
const FIELD_1: u8 = 0x0a;
/// The key of field 2 (`value` in `Label`), length-delimited.
const FIELD_2: u8 = 0x12;

impl LabelSet {
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> LabelSet {
        let len = pairs
            .clone()
            .into_iter()
            .map(|(k, v)| nested_len(string_len(k) + string_len(v)))
            .sum();
        let mut out = Vec::with_capacity(len);
        write_v1_labels(pairs, &mut out);
        LabelSet(out.into())
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter::new([&self.0, &[], &[], &[], &[]])
    }

    /// How many hold this set (see `LabelCache::warm`).
    pub(super) fn references(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        let mut rest = &self.0[..];
        let mut n = 0;
        while next_field(&mut rest).is_some() {
            n += 1;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the label with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The labels as the `labels` field of a remote_write 1.0 `TimeSeries`, the bytes prost
    /// writes for them.
    pub fn v1_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length of [`LabelSet::v1_bytes`].
    pub fn v1_len(&self) -> usize {
        self.0.len()
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

/// Appends `pairs` as the `labels` field of a remote_write 1.0 `TimeSeries`, the bytes a
/// [`LabelSet`] of them holds: each a `Label` message under its key and length, empty names and
/// values left out (as proto3 writes them).
pub fn write_v1_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    for (k, v) in pairs {
        out.push(FIELD_1);
        encode_varint((string_len(k) + string_len(v)) as u64, out);
        string(FIELD_1, k, out);
        string(FIELD_2, v, out);
    }
}

/// A nested message or string of `len` bytes under a one-byte key (field numbers below 16).
fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A string field under a one-byte key; proto3 leaves an empty string out.
fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { nested_len(s.len()) }
}

fn string(key: u8, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        out.push(key);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Takes the next length-delimited field off `rest`: its key and its bytes. `None` at the end
/// (the block is written only by [`LabelSet::new`], so it is never malformed).
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&key, mut after) = rest.split_first()?;
    let len = usize::try_from(decode_varint(&mut after).ok()?).ok()?;
    let (field, tail) = after.split_at_checked(len)?;
    *rest = tail;
    Some((key, field))
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

/// The labels of a [`LabelSet`] or a [`Spliced`] set, as (name, value): the labels of each of
/// its blocks in turn.
#[derive(Clone)]
pub struct Iter<'a> {
    chunks: Chunks<'a>,
    at: usize,
}

/// A set's v1 bytes in up to five blocks, each of whole labels, to be read one after the other.
pub type Chunks<'a> = [&'a [u8]; 5];

impl<'a> Iter<'a> {
    pub fn new(chunks: Chunks<'a>) -> Iter<'a> {
        Iter { chunks, at: 0 }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A label takes two bytes at least.
        let bytes: usize = self.chunks[self.at..].iter().map(|c| c.len()).sum();
        (0, Some(bytes / 2))
    }

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (_, mut label) = loop {
            if let Some(field) = next_field(&mut self.chunks[self.at]) {
                break field;
            }
            if self.at + 1 == self.chunks.len() {
                return None;
            }
            self.at += 1;
        };
        let (mut name, mut value) = ("", "");
        while let Some((key, bytes)) = next_field(&mut label) {
            // Written from `&str`s, so always UTF-8.
            let text = std::str::from_utf8(bytes).unwrap_or_default();
            match key {
                FIELD_1 => name = text,
                _ => value = text,
            }
        }
        Some((name, value))
    }
}

/// A series' labels as shared parts: a point's labels (`base`) with one or two labels of the
/// series' own (its `__name__`, its `le` or `quantile`) put in at their place in the order. The
/// 14 series of a histogram point then keep the point's labels once rather than 14 times, and
/// the inserted labels are shared too, by the same series of the points of a family.
/// The v1 bytes are the blocks in order: `base` up to the first insert, the first, `base` up to
/// the second, the second, the rest of `base`. Without inserts it is just `base`.
#[derive(Clone, Debug, Default)]
pub struct Spliced {
    base: LabelSet,
    first: Option<LabelSet>,
    second: Option<LabelSet>,
    /// Where in `base`'s bytes the first and the second insert go.
    first_at: u32,
    second_at: u32,
}

impl Spliced {
    /// A set that is `base` alone.
    pub fn whole(base: LabelSet) -> Spliced {
        Spliced {
            base,
            ..Default::default()
        }
    }

    /// `base` with the labels of `a` and `b` (a label each) put in at their place. `None` when
    /// `base` holds a label of one of their names, or when they have the same name.
    pub fn new(base: LabelSet, a: LabelSet, b: Option<LabelSet>) -> Option<Spliced> {
        fn key(set: &LabelSet) -> &[u8] {
            let mut bytes = set.v1_bytes();
            next_field(&mut bytes).map_or(&[], |(_, label)| name_bytes(label))
        }
        let (first, second) = match b {
            Some(b) if key(&b) < key(&a) => (b, Some(a)),
            Some(b) if key(&b) == key(&a) => return None,
            b => (a, b),
        };
        let first_at = place(&base, key(&first))?;
        let second_at = match &second {
            Some(s) => place(&base, key(s))?,
            None => 0,
        };
        Some(Spliced {
            base,
            first: Some(first),
            second,
            first_at,
            second_at,
        })
    }

    /// `base`, when nothing is put in it.
    pub fn as_whole(&self) -> Option<&LabelSet> {
        self.first.is_none().then_some(&self.base)
    }

    /// The set whole: `base` itself when nothing is put in, a new block otherwise. The
    /// translation hands the parts on; the tests compare the whole.
    #[cfg(test)]
    pub fn to_set(&self) -> LabelSet {
        match self.first {
            None => self.base.clone(),
            Some(_) => LabelSet::new(self.iter()),
        }
    }

    pub fn chunks(&self) -> Chunks<'_> {
        let base = self.base.v1_bytes();
        fn bytes(set: &Option<LabelSet>) -> &[u8] {
            set.as_ref().map_or(&[], |s| s.v1_bytes())
        }
        let (a, b) = (self.first_at as usize, self.second_at as usize);
        match self.second {
            None => [&base[..a], bytes(&self.first), &base[a..], &[], &[]],
            Some(_) => [
                &base[..a],
                bytes(&self.first),
                &base[a..b],
                bytes(&self.second),
                &base[b..],
            ],
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter::new(self.chunks())
    }

    /// The length of the set's v1 bytes.
    pub fn v1_len(&self) -> usize {
        let len = |set: &Option<LabelSet>| set.as_ref().map_or(0, |s| s.v1_len());
        self.base.v1_len() + len(&self.first) + len(&self.second)
    }
}

/// Where a label named `key` goes in `base`: the offset of its first label of a greater name.
/// `None` when `base` has a label of that name. Names are compared as bytes, which orders them
/// as strings.
fn place(base: &LabelSet, key: &[u8]) -> Option<u32> {
    let (mut rest, mut at) = (base.v1_bytes(), 0);
    loop {
        let before = rest.len();
        let Some((_, label)) = next_field(&mut rest) else {
            break;
        };
        match name_bytes(label).cmp(key) {
            std::cmp::Ordering::Less => at += before - rest.len(),
            std::cmp::Ordering::Equal => return None,
            std::cmp::Ordering::Greater => break,
        }
    }
    u32::try_from(at).ok()
}

/// The name of a `Label` message, as bytes: its first field when that is the name (the name
/// is written first, and left out when empty).
fn name_bytes(mut label: &[u8]) -> &[u8] {
    match next_field(&mut label) {
        Some((FIELD_1, name)) => name,
        _ => &[],
    }
}

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
        assert_eq!(set.iter().count(), 3);
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
        assert_eq!(
            set.v1_bytes(),
            &prost::Message::encode_to_vec(&crate::proto::prometheus_v1::TimeSeries {
                labels: labels.clone(),
                ..Default::default()
            })[..]
        );
        let value = "v".repeat(300);
        let long = LabelSet::new([("k", value.as_str())]);
        assert_eq!(long.v1_len(), 1 + 2 + (1 + 1 + 1) + (1 + 2 + 300));
        assert_eq!(long.get("k"), Some(value.as_str()));
        let empties = [("", "v"), ("k", ""), ("", "")];
        let with_empties = LabelSet::new(empties);
        assert_eq!(with_empties.iter().collect::<Vec<_>>(), empties);
        assert_eq!(with_empties.len(), 3);
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
