//! Label sets translated in earlier batches, remembered by what they were translated from.
//!
//! The same series come back in every batch (every scrape, every remote_write request). Their
//! translation (sanitized keys, `job`/`instance`, suffixed names, `le` strings) gives the same
//! labels each time, so a translation with a cache builds a series' label set once and hands the
//! same shared set to every later batch. A key is the exact input of the translation of one
//! point: the scope's labels, the family name and the point's attributes in their order. Under
//! it are the point's series (`_sum`, each bucket by its bound, each quantile), in the order they
//! were asked for.
//!
//! The cache keeps a key's 128-bit hash, not the key: the key of a point is about as long as
//! its labels, and keeping both doubled what a series cost. The hash is SipHash-1-3 with 128
//! bits of output, keyed at random for each cache: a keyed hash made so that whoever does not
//! know the key cannot choose inputs that share a hash (fast non-cryptographic hashes, XXH3
//! among them, have pairs of inputs that collide under any seed far more often than chance).
//! Two points of different keys share a hash with a chance of about `n² / 2¹²⁹` among `n`
//! points: for a billion points, one in 10²¹.
//!
//! Memory is bounded: two generations of at most `capacity` label sets each. A new point goes
//! into the newer generation, or into the older one when the newer is full; a point found only
//! in the older generation moves to the newer one while it has room. When both are full, the
//! older one is forgotten and the newer one becomes the older. So up to twice `capacity` label
//! sets in use stay whole from one round of series to the next.

use super::LabelSet;
use super::label_set::{Chunks, Iter, Spliced};
use crate::proto::otlp::common::v1::{AnyValue, any_value::Value};
use hashbrown::HashMap;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Which of a point's series: its name's suffix and its extra label (`le`, `quantile`), by tag
/// and the bits of the bound or quantile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Variant {
    pub suffix: u8,
    pub extra: u8,
    pub bits: u64,
}

/// One series of a point, as remembered. In this order: a known point's lookup reads the first
/// two fields of each of its series, and the labels only when the request is written.
#[derive(Clone, Debug)]
#[repr(C)]
pub(super) struct Remembered {
    pub variant: Variant,
    pub fingerprint: u64,
    pub labels: Spliced,
}

impl Variant {
    /// A number's one series: no suffix, no extra label.
    pub const PLAIN: Variant = Variant {
        suffix: 0,
        extra: 0,
        bits: 0,
    };
}

/// The series of one point, in the order the translation asks for them. Most points are
/// numbers, of one series with a set of its own: such a point is kept in the table's slot, its
/// fingerprint beside its set, without a list of its own (which cost 96 bytes a series, and a
/// read of memory more for each lookup).
#[derive(Clone, Debug)]
pub(super) enum PointSeries {
    Number { fingerprint: u64, labels: LabelSet },
    Many(Arc<[Remembered]>),
}

impl PointSeries {
    /// The point's series, taken from `series` (left empty).
    pub fn take(series: &mut Vec<Remembered>) -> PointSeries {
        if let [one] = &series[..]
            && one.variant == Variant::PLAIN
            && let Some(labels) = one.labels.as_whole()
        {
            let point = PointSeries::Number {
                fingerprint: one.fingerprint,
                labels: labels.clone(),
            };
            series.clear();
            return point;
        }
        PointSeries::Many(series.drain(..).collect())
    }

    pub fn len(&self) -> usize {
        match self {
            PointSeries::Number { .. } => 1,
            PointSeries::Many(list) => list.len(),
        }
    }

    /// The fingerprint of series `i`, if it is the series of this variant.
    pub fn fingerprint(&self, i: usize, variant: Variant) -> Option<u64> {
        match self {
            PointSeries::Number { fingerprint, .. } => {
                (i == 0 && variant == Variant::PLAIN).then_some(*fingerprint)
            }
            PointSeries::Many(list) => list
                .get(i)
                .filter(|r| r.variant == variant)
                .map(|r| r.fingerprint),
        }
    }

    /// Which series is of this variant.
    pub fn position(&self, variant: Variant) -> Option<usize> {
        match self {
            PointSeries::Number { .. } => (variant == Variant::PLAIN).then_some(0),
            PointSeries::Many(list) => list.iter().position(|r| r.variant == variant),
        }
    }

    /// How many hold the point's set or list: a read of the count a clone increments.
    fn references(&self) -> usize {
        match self {
            PointSeries::Number { labels, .. } => labels.references(),
            PointSeries::Many(list) => Arc::strong_count(list),
        }
    }

    /// Series `i` (which must be one of the point's) as remembered.
    pub fn remembered(&self, i: usize) -> Remembered {
        match self {
            PointSeries::Number {
                fingerprint,
                labels,
            } => {
                debug_assert_eq!(i, 0, "a number has one series");
                Remembered {
                    variant: Variant::PLAIN,
                    fingerprint: *fingerprint,
                    labels: Spliced::whole(labels.clone()),
                }
            }
            PointSeries::Many(list) => list[i].clone(),
        }
    }
}

/// A series' labels as a translation hands them on: a label set of its own, or one of the
/// series remembered for a point. The latter holds the point's shared list, not the set: a
/// clone touches the list's reference count, which the lookup that found the point has just
/// touched, rather than the set's own, in memory rarely still in cache by the next batch (that
/// first touch, a locked increment waiting on memory, was the largest single cost of
/// translating a known point). The set itself is first read when the request is written.
/// A remembered series of a point of several series is kept [`Spliced`]: the point's labels
/// once, the series' name and `le` or `quantile` beside them.
#[derive(Clone)]
pub struct SeriesLabels(Held);

#[derive(Clone)]
enum Held {
    Own(LabelSet),
    Remembered(Arc<[Remembered]>, u32),
    /// The parts of a remembered series, handed on by the batch that first built them.
    Spliced(Box<Spliced>),
}

impl SeriesLabels {
    /// The labels of series `i` of a remembered point. A point of one series hands its set on:
    /// a number has no list, and holding another point's list of one would only add a step to
    /// every later read of it.
    pub(super) fn remembered(point: &PointSeries, i: usize) -> SeriesLabels {
        match point {
            PointSeries::Number { labels, .. } => {
                debug_assert_eq!(i, 0, "a number has one series");
                labels.clone().into()
            }
            PointSeries::Many(list) => match (&list[..], u32::try_from(i)) {
                ([_, _, ..], Ok(at)) => SeriesLabels(Held::Remembered(list.clone(), at)),
                _ => (&list[i].labels).into(),
            },
        }
    }

    /// The labels' v1 bytes (see [`LabelSet::v1_bytes`]) in blocks to be written in turn.
    pub fn chunks(&self) -> Chunks<'_> {
        match &self.0 {
            Held::Own(labels) => [labels.v1_bytes(), &[], &[], &[], &[]],
            Held::Remembered(point, i) => point[*i as usize].labels.chunks(),
            Held::Spliced(labels) => labels.chunks(),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter::new(self.chunks())
    }

    /// The length of the labels' v1 bytes, known without reading them.
    pub fn v1_len(&self) -> usize {
        match &self.0 {
            Held::Own(labels) => labels.v1_len(),
            Held::Remembered(point, i) => point[*i as usize].labels.v1_len(),
            Held::Spliced(labels) => labels.v1_len(),
        }
    }

    /// Reads a byte of each block of 64 of the labels' v1 bytes, so that a writer that reads a
    /// run of series' labels first and then writes them finds them in cache: the reads of a
    /// run overlap, where each copy would otherwise wait on memory in turn. What it returns
    /// (the bytes folded) is to go to [`std::hint::black_box`].
    pub fn warm(&self) -> u8 {
        self.chunks()
            .iter()
            .flat_map(|chunk| chunk.iter().step_by(64))
            .fold(0, |acc, b| acc ^ b)
    }

    /// Appends the labels' v1 bytes to `out`.
    pub fn write_v1(&self, out: &mut Vec<u8>) {
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.v1_len() == 0
    }

    /// The value of the label with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Whether both stand for the same shared set (then they are equal; the converse need not
    /// hold).
    pub fn same(a: &SeriesLabels, b: &SeriesLabels) -> bool {
        match (&a.0, &b.0) {
            (Held::Own(a), Held::Own(b)) => LabelSet::ptr_eq(a, b),
            (Held::Remembered(a, i), Held::Remembered(b, j)) => Arc::ptr_eq(a, b) && i == j,
            _ => false,
        }
    }
}

impl From<LabelSet> for SeriesLabels {
    fn from(labels: LabelSet) -> SeriesLabels {
        SeriesLabels(Held::Own(labels))
    }
}

/// A set of its own when whole, its parts otherwise.
impl From<Spliced> for SeriesLabels {
    fn from(labels: Spliced) -> SeriesLabels {
        match labels.as_whole() {
            Some(set) => set.clone().into(),
            None => SeriesLabels(Held::Spliced(Box::new(labels))),
        }
    }
}

/// The same, cloning only what is kept (a remembered set is handed on with one touch of its
/// reference count, not three).
impl From<&Spliced> for SeriesLabels {
    fn from(labels: &Spliced) -> SeriesLabels {
        match labels.as_whole() {
            Some(set) => set.clone().into(),
            None => labels.clone().into(),
        }
    }
}

impl Default for SeriesLabels {
    fn default() -> SeriesLabels {
        LabelSet::default().into()
    }
}

/// Equal when the labels are, whatever their form.
impl PartialEq for SeriesLabels {
    fn eq(&self, other: &SeriesLabels) -> bool {
        self.v1_len() == other.v1_len() && self.iter().eq(other.iter())
    }
}

impl Eq for SeriesLabels {}

/// Hashes the labels, whatever their form.
impl std::hash::Hash for SeriesLabels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for (k, v) in self {
            k.hash(state);
            v.hash(state);
        }
    }
}

impl std::fmt::Debug for SeriesLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a SeriesLabels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A key's 128-bit hash: what the cache keeps of it.
pub(super) type KeyHash = u128;

/// A key's hashing after its start (see [`LabelCache::key_start`]).
#[derive(Clone, Copy)]
pub(super) struct KeyStart(SipHasher13);

impl KeyStart {
    /// The hash of the key made of the start and `rest`: the same as the whole key's hashed at
    /// once.
    pub(super) fn hash(mut self, rest: &[u8]) -> KeyHash {
        self.0.write(rest);
        self.0.finish128().as_u128()
    }
}

/// Hashes a [`KeyHash`] for the table by taking its low 64 bits (it is a hash already).
#[derive(Clone, Copy, Debug, Default)]
struct Low64(u64);

impl Hasher for Low64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    /// Not used by [`KeyHash`]; folds bytes in for any other key.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// A generation: points by their key's hash, and how many label sets they hold.
#[derive(Debug, Default)]
struct Generation {
    points: HashMap<KeyHash, PointSeries, BuildHasherDefault<Low64>>,
    sets: usize,
}

impl Generation {
    fn insert(&mut self, key: KeyHash, series: PointSeries) {
        self.sets += series.len();
        if let Some(old) = self.points.insert(key, series) {
            self.sets -= old.len();
        }
    }

    /// Takes the point out, with the sets it held.
    fn remove(&mut self, key: &KeyHash) -> Option<(KeyHash, PointSeries)> {
        let (key, series) = self.points.remove_entry(key)?;
        self.sets -= series.len();
        Some((key, series))
    }

    fn clear(&mut self) {
        self.points.clear();
        self.sets = 0;
    }

    /// Whether `sets` more label sets fit under `capacity` (an empty generation takes any point).
    fn has_room(&self, sets: usize, capacity: usize) -> bool {
        self.sets + sets <= capacity || self.points.is_empty()
    }

    fn is_full(&self, capacity: usize) -> bool {
        self.sets >= capacity
    }
}

/// See the module documentation. One cache serves one exporter (one set of translation options).
#[derive(Default)]
pub struct LabelCache {
    current: Generation,
    previous: Generation,
    capacity: usize,
    /// The keys' hash, keyed at random.
    hasher: SipHasher13,
    /// Lookups that found their point, and that did not, since the last turn of generations.
    hits: usize,
    misses: usize,
}

/// Sizes and counts only: not the points, nor the hash's key, which must stay unknown.
impl std::fmt::Debug for LabelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelCache")
            .field("capacity", &self.capacity)
            .field("sets", &self.len())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

impl LabelCache {
    /// Label sets per generation, by default: at most twice this many are kept.
    pub const DEFAULT_CAPACITY: usize = 262_144;

    /// [`Self::DEFAULT_CAPACITY`], for configuration defaults.
    pub fn default_capacity() -> usize {
        Self::DEFAULT_CAPACITY
    }

    /// A cache of at most about `2 * capacity` label sets; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        LabelCache {
            capacity,
            hasher: {
                let random = std::hash::RandomState::new();
                SipHasher13::new_with_keys(random.hash_one(0u8), random.hash_one(1u8))
            },
            ..Default::default()
        }
    }

    /// Label sets remembered now.
    pub fn len(&self) -> usize {
        self.current.sets + self.previous.sets
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The label sets per generation it was made with.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the points in use seem not to fit: both generations are full and, since the
    /// last turn, more lookups missed than hit.
    pub fn too_small(&self) -> bool {
        self.enabled()
            && self.current.is_full(self.capacity)
            && self.previous.is_full(self.capacity)
            && self.misses > self.hits
    }

    /// What the cache keeps of a point's key: hashed once per point, for [`Self::find`] and,
    /// on a miss, [`Self::remember_point`]. Translation hashes keys in two steps
    /// ([`Self::key_start`]), to the same hash.
    #[cfg(test)]
    pub(super) fn hash(&self, key: &[u8]) -> KeyHash {
        self.hasher.hash(key).as_u128()
    }

    /// The hashing of keys that start with `start`, taken once for many keys: a key's hash is
    /// then [`KeyStart::hash`] of the rest of it.
    pub(super) fn key_start(&self, start: &[&[u8]]) -> KeyStart {
        let mut hasher = self.hasher;
        for part in start {
            hasher.write(part);
        }
        KeyStart(hasher)
    }

    /// The series remembered for the point with this key.
    #[cfg(test)]
    fn get(&mut self, key: &[u8]) -> Option<PointSeries> {
        self.find(self.hash(key))
    }

    /// Remembers a point's series (replacing what was remembered for the key).
    #[cfg(test)]
    fn insert(&mut self, key: &[u8], series: PointSeries) {
        self.remember_point(self.hash(key), series)
    }

    /// The series remembered for the point whose key has this hash.
    pub(super) fn find(&mut self, key: KeyHash) -> Option<PointSeries> {
        if let Some(hit) = self.current.points.get(&key) {
            self.hits += 1;
            return Some(hit.clone());
        }
        let Some(hit) = self.previous.points.get(&key).cloned() else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        if self.current.has_room(hit.len(), self.capacity)
            && let Some((key, hit)) = self.previous.remove(&key)
        {
            self.current.insert(key, hit);
        }
        Some(hit)
    }

    /// Reads what [`Self::find`] of this hash will touch (the table's slot, the reference count
    /// of the set or list it holds) without changing anything, so that a run of points' reads
    /// from memory overlap rather than come one after the other (see `keys_ahead`).
    pub(super) fn warm(&self, key: KeyHash) {
        let found = self.current.points.get(&key);
        if let Some(point) = found.or_else(|| self.previous.points.get(&key)) {
            std::hint::black_box(point.references());
        }
    }

    /// Remembers a point's series under its key's hash (replacing what was remembered there).
    pub(super) fn remember_point(&mut self, key: KeyHash, series: PointSeries) {
        if self.enabled() && self.may_take(series.len()) {
            self.remember(key, series);
        }
    }

    /// Whether `sets` more label sets may be remembered: a generation has room, or turning the
    /// generations is worth it. It is not while more lookups miss than hit: the points in use
    /// do not fit, and turning would only forget the ones that do, so the cache keeps what it
    /// has (and the hits it gives) until `4 * capacity` misses, then turns to follow points
    /// that come and go.
    fn may_take(&self, sets: usize) -> bool {
        let room = self.current.has_room(sets, self.capacity)
            || self.previous.has_room(sets, self.capacity);
        let thrashing = self.misses > self.hits && self.misses < 4 * self.capacity;
        room || !thrashing
    }

    /// Puts a point where its key already is (so that no older series of it stays in front),
    /// else in the newer generation, else in the older one, else turns the generations: the
    /// older is forgotten, the newer becomes the older, and the point begins a new one.
    fn remember(&mut self, key: KeyHash, series: PointSeries) {
        if self.current.points.contains_key(&key) {
            self.current.insert(key, series);
            return;
        }
        self.previous.remove(&key);
        let sets = series.len();
        if self.current.has_room(sets, self.capacity) {
            self.current.insert(key, series);
        } else if self.previous.has_room(sets, self.capacity) {
            self.previous.insert(key, series);
        } else {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            (self.hits, self.misses) = (0, 0);
            self.current.insert(key, series);
        }
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

    fn point(names: &[&str]) -> PointSeries {
        let variant = |bits: usize| Variant {
            suffix: 0,
            extra: 0,
            bits: bits as u64,
        };
        PointSeries::take(
            &mut names
                .iter()
                .enumerate()
                .map(|(i, n)| Remembered {
                    variant: variant(i),
                    labels: Spliced::whole(LabelSet::new([("__name__", *n)])),
                    fingerprint: n.len() as u64,
                })
                .collect(),
        )
    }

    /// A histogram point's series as the translation remembers them: `base` with each name
    /// (and `le`) put in.
    fn spliced(base: &[(&str, &str)], series: &[(&str, Option<&str>)]) -> PointSeries {
        let base = LabelSet::new(base.iter().copied());
        let mut series = series
            .iter()
            .map(|(name, le)| Remembered {
                variant: Variant {
                    suffix: 0,
                    extra: 0,
                    bits: 0,
                },
                labels: Spliced::new(
                    base.clone(),
                    LabelSet::new([("__name__", *name)]),
                    le.map(|le| LabelSet::new([("le", le)])),
                )
                .expect("no label of those names in the base"),
                fingerprint: 0,
            })
            .collect();
        PointSeries::take(&mut series)
    }

    fn names(c: &mut LabelCache, key: &[u8]) -> Option<Vec<String>> {
        let series = c.get(key)?;
        Some(
            (0..series.len())
                .map(|i| {
                    series
                        .remembered(i)
                        .labels
                        .iter()
                        .next()
                        .unwrap_or_default()
                        .1
                        .to_string()
                })
                .collect(),
        )
    }

    #[test]
    fn says_when_the_points_in_use_do_not_fit() {
        let mut c = LabelCache::new(4);
        let round = |c: &mut LabelCache, n: u8| {
            for k in 0..n {
                if c.get(&[k]).is_none() {
                    c.insert(&[k], point(&["m"]));
                }
            }
        };
        // Four points fit, however often they come back.
        for _ in 0..5 {
            round(&mut c, 4);
        }
        assert!(!c.too_small());
        // Twenty points in turn do not (ten, over the two generations' eight, still hit more
        // than they miss).
        for _ in 0..5 {
            round(&mut c, 20);
        }
        assert!(c.too_small());
        assert!(!LabelCache::new(0).too_small());
    }

    #[test]
    fn keeps_two_generations_of_label_sets_and_promotes_what_it_finds() {
        let mut c = LabelCache::new(3);
        c.insert(b"a", point(&["a"]));
        c.insert(b"b", point(&["b_sum", "b_count"]));
        assert_eq!(c.len(), 3);
        // The newer generation is full: "c" and "d" go into the older one, and a point found
        // there stays while the newer one has no room.
        c.insert(b"c", point(&["c"]));
        assert_eq!(names(&mut c, b"c"), Some(vec!["c".to_string()]));
        c.insert(b"d", point(&["d_sum", "d_count"]));
        assert_eq!(c.len(), 6);
        for key in [b"a", b"b", b"c", b"d"] {
            assert!(
                names(&mut c, key).is_some(),
                "all four kept while both have room"
            );
        }
        // Both full: the older generation ("c", "d") is forgotten, the newer ("a", "b") becomes
        // the older, and "e" begins the newer.
        c.insert(b"e", point(&["e"]));
        assert_eq!(names(&mut c, b"c"), None);
        assert_eq!(names(&mut c, b"d"), None);
        assert_eq!(c.len(), 4);
        // Found in the older generation: moves to the newer one while it has room ("a"), stays
        // where it is when not ("b", two sets, into a newer generation of "e" and "a").
        assert_eq!(names(&mut c, b"a"), Some(vec!["a".to_string()]));
        assert_eq!(names(&mut c, b"b").map(|n| n.len()), Some(2));
        assert_eq!(c.current.sets, 2);
        assert_eq!(c.previous.sets, 2);
        // Replacing a point's series counts its label sets once, in the generation it was in,
        // so no older series of it is found instead.
        c.insert(b"f", point(&["f"]));
        assert_eq!(c.current.sets, 3, "the newer generation is full");
        c.insert(b"a", point(&["a2"]));
        assert_eq!(names(&mut c, b"a"), Some(vec!["a2".to_string()]));
        c.insert(b"b", point(&["b2"]));
        assert_eq!(names(&mut c, b"b"), Some(vec!["b2".to_string()]));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn keeps_what_it_has_while_points_in_use_do_not_fit() {
        let mut c = LabelCache::new(2);
        c.insert(b"a", point(&["a"]));
        c.insert(b"b", point(&["b"]));
        assert!(c.get(b"a").is_some());
        // Far more points than fit: each misses once and is offered. The older generation
        // takes the first two, then the cache holds on to what it has.
        for i in 0..6u8 {
            let key = [b'x', i];
            assert!(c.get(&key).is_none());
            c.insert(&key, point(&["x"]));
        }
        assert!(c.get(&[b'x', 0]).is_some(), "taken while there was room");
        assert!(c.get(&[b'x', 5]).is_none(), "not taken while thrashing");
        assert!(c.too_small());
        // After 4 * capacity misses since the last turn, it turns again.
        assert!(c.get(&[b'y', 0]).is_none());
        c.insert(&[b'y', 0], point(&["y"]));
        assert!(c.get(&[b'y', 0]).is_some());
        assert!(
            c.get(b"a").is_some(),
            "the newer generation became the older"
        );
        assert!(c.get(&[b'x', 0]).is_none(), "the older was forgotten");
        assert!(c.len() <= 4);
    }

    #[test]
    fn series_labels_read_as_the_set_they_stand_for() {
        use std::hash::BuildHasher;
        let hash = |l: &SeriesLabels| foldhash::fast::FixedState::default().hash_one(l);
        let base = [("A", "1"), ("job", "j"), ("zone", "z")];
        let p = spliced(&base, &[("h_bucket", Some("0.5")), ("h_sum", None)]);
        let own = |pairs: &[(&str, &str)]| SeriesLabels::from(LabelSet::new(pairs.iter().copied()));
        let bucket = own(&[
            ("A", "1"),
            ("__name__", "h_bucket"),
            ("job", "j"),
            ("le", "0.5"),
            ("zone", "z"),
        ]);
        let sum = own(&[
            ("A", "1"),
            ("__name__", "h_sum"),
            ("job", "j"),
            ("zone", "z"),
        ]);
        for (i, want) in [(0, &bucket), (1, &sum)] {
            let held = SeriesLabels::remembered(&p, i);
            assert!(matches!(held.0, Held::Remembered(_, at) if at as usize == i));
            assert!(SeriesLabels::same(&held, &SeriesLabels::remembered(&p, i)));
            assert!(!SeriesLabels::same(&held, want));
            assert_eq!(&held, want);
            assert_eq!(hash(&held), hash(want));
            assert_eq!(format!("{held:?}"), format!("{want:?}"));
            assert_eq!(held.to_vec(), want.to_vec());
            assert_eq!((held.len(), held.v1_len()), (want.len(), want.v1_len()));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            held.write_v1(&mut a);
            want.write_v1(&mut b);
            assert_eq!(a, b, "the same v1 bytes");
            assert_eq!(held.get("job"), Some("j"));
            assert_eq!(&SeriesLabels::from(p.remembered(i).labels.to_set()), want);
        }
        assert_ne!(SeriesLabels::remembered(&p, 0), sum);
        // A point of one series hands on its own set.
        let one = point(&["n"]);
        let single = SeriesLabels::remembered(&one, 0);
        assert!(
            matches!(&single.0, Held::Own(l) if LabelSet::ptr_eq(l, &one.remembered(0).labels.to_set()))
        );
    }

    #[test]
    fn a_number_is_kept_in_the_tables_slot_and_reads_as_its_one_series() {
        let number = point(&["n"]);
        let PointSeries::Number { fingerprint, .. } = number else {
            panic!("one plain series with a set of its own: {number:?}");
        };
        assert_eq!(fingerprint, 1);
        assert_eq!(number.len(), 1);
        assert_eq!(number.fingerprint(0, Variant::PLAIN), Some(1));
        assert_eq!(number.fingerprint(1, Variant::PLAIN), None);
        let le = Variant {
            extra: 1,
            ..Variant::PLAIN
        };
        assert_eq!(number.fingerprint(0, le), None);
        assert_eq!(
            (number.position(Variant::PLAIN), number.position(le)),
            (Some(0), None)
        );
        let r = number.remembered(0);
        assert_eq!((r.variant, r.fingerprint), (Variant::PLAIN, 1));
        assert_eq!(r.labels.to_set(), LabelSet::new([("__name__", "n")]));
        // A slot holds its key's hash and a point in 48 bytes (on 64-bit targets).
        assert!(std::mem::size_of::<(KeyHash, PointSeries)>() <= 48);
        // Not a number: one series of another variant, or of spliced labels; several series.
        let summed = spliced(&[("a", "1")], &[("h_sum", None)]);
        let bucket = PointSeries::take(&mut vec![Remembered {
            variant: le,
            ..number.remembered(0)
        }]);
        let several = point(&["a", "b"]);
        for p in [&summed, &bucket, &several] {
            assert!(matches!(p, PointSeries::Many(_)), "{p:?}");
        }
        assert_eq!(bucket.fingerprint(0, Variant::PLAIN), None);
        assert_eq!(bucket.fingerprint(0, le), Some(1));
        assert_eq!(several.position(several.remembered(1).variant), Some(1));
        assert_eq!(
            several.fingerprint(1, several.remembered(1).variant),
            Some(1)
        );
    }

    #[test]
    fn a_spliced_set_puts_its_labels_in_their_place_or_refuses() {
        let set = |pairs: &[(&str, &str)]| LabelSet::new(pairs.iter().copied());
        let name = || set(&[("__name__", "m")]);
        let le = || Some(set(&[("le", "1")]));
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Pairs, Vec<(&str, &str)>); 4] = [
            (&[], vec![("__name__", "m"), ("le", "1")]),
            (
                &[("a", "x")],
                vec![("__name__", "m"), ("a", "x"), ("le", "1")],
            ),
            (
                &[("Z", "x"), ("m", "y")],
                vec![("Z", "x"), ("__name__", "m"), ("le", "1"), ("m", "y")],
            ),
            (
                &[("a", "x"), ("lf", "y")],
                vec![("__name__", "m"), ("a", "x"), ("le", "1"), ("lf", "y")],
            ),
        ];
        for (base, want) in cases {
            // The order the inserts are given in does not matter.
            for s in [
                Spliced::new(set(base), name(), le()),
                Spliced::new(set(base), le().unwrap(), Some(name())),
            ] {
                let s = s.expect("spliced");
                assert_eq!(s.iter().collect::<Vec<_>>(), want);
                assert_eq!(s.to_set(), set(&want));
                assert_eq!(s.v1_len(), set(&want).v1_len());
            }
        }
        // A base with a label of an insert's name, or two inserts of one name: not spliced.
        assert!(Spliced::new(set(&[("le", "2")]), name(), le()).is_none());
        assert!(Spliced::new(set(&[("__name__", "n")]), name(), None).is_none());
        assert!(Spliced::new(set(&[]), name(), Some(name())).is_none());
        assert_eq!(
            Spliced::whole(set(&[("a", "b")])).to_set(),
            set(&[("a", "b")])
        );
    }

    #[test]
    fn keeps_hashes_of_keys_keyed_for_each_cache() {
        let (a, b) = (LabelCache::new(1), LabelCache::new(1));
        assert_eq!(a.hash(b"job\0api"), a.hash(b"job\0api"));
        assert_ne!(a.hash(b"job\0api"), a.hash(b"job\0apj"));
        assert_ne!(a.hash(b"job\0api"), b.hash(b"job\0api"), "another key");
        let shown = format!("{a:?}");
        assert!(
            shown.contains("capacity: 1") && !shown.contains("k0"),
            "{shown}"
        );
        // Keys that differ anywhere are told apart, the last byte of a long one too.
        let mut c = LabelCache::new(8);
        let long = |last: u8| [&[7u8; 300][..], &[last]].concat();
        c.insert(&long(1), point(&["one"]));
        c.insert(&long(2), point(&["two"]));
        assert_eq!(names(&mut c, &long(1)), Some(vec!["one".to_string()]));
        assert_eq!(names(&mut c, &long(2)), Some(vec!["two".to_string()]));
        assert_eq!(names(&mut c, &long(3)), None);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut c = LabelCache::new(0);
        c.insert(b"a", point(&["a"]));
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
