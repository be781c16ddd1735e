//! The label cache's keys of a metric's points, hashed a run of points ahead of their
//! translation.
//!
//! A known point's lookup reads two places in memory that a batch rarely finds still in cache:
//! the table's slot of its key and the shared set it holds (whose reference count the lookup's
//! clone increments, a locked instruction that lets no later read pass it). One lookup after the
//! other, every translated point waited on both in turn. Hashed a run ahead, the run's lookups
//! are first read one after the other with nothing in between ([`LabelCache::warm`]), so that
//! their reads from memory overlap, and each point's own lookup then finds its memory in cache.

use super::label_cache::{KeyHash, KeyStart, LabelCache, put_str, put_value};
use crate::proto::otlp::common::v1::KeyValue;
use crate::proto::otlp::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
};

/// Points hashed ahead at a time: enough for their reads to overlap, few enough that what they
/// bring into cache (about two lines each) is still there when the points are translated.
const RUN: usize = 32;

/// A data point of any type, by its attributes.
pub(super) trait Attributed {
    fn attributes(&self) -> &[KeyValue];
}

macro_rules! attributed {
    ($($point:ty),*) => {
        $(impl Attributed for $point {
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
        })*
    };
}

attributed!(
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    SummaryDataPoint
);

/// The hashes of a run of one metric's points (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct KeysAhead {
    hashes: Vec<KeyHash>,
    /// The address of the metric's points, and the index of the run's first point among them.
    /// One translation's batch is not changed while it is read, so an address stands for one
    /// metric's points (an empty list is never asked about).
    points: usize,
    from: usize,
    /// A point's key after the scope's part and the family name (the same for every point of
    /// the metric, hashed once per run), built to be hashed.
    key: Vec<u8>,
}

impl KeysAhead {
    /// The hash of the key of point `i` of `points`, of the family `family_name` in a scope whose
    /// keys start with `prefix`. When point `i` is not in the run at hand, the run from `i` on is
    /// hashed and its lookups warmed.
    pub fn hash<P: Attributed>(
        &mut self,
        cache: &LabelCache,
        points: &[P],
        i: usize,
        prefix: &[u8],
        family_name: &str,
    ) -> KeyHash {
        let address = points.as_ptr() as usize;
        let ahead = i.checked_sub(self.from).filter(|&k| k < self.hashes.len());
        match ahead {
            Some(k) if self.points == address => self.hashes[k],
            _ => {
                (self.points, self.from) = (address, i);
                self.hashes.clear();
                let family_len = (family_name.len() as u32).to_le_bytes();
                let start = cache.key_start(&[prefix, &family_len, family_name.as_bytes()]);
                for p in points[i..].iter().take(RUN) {
                    self.hashes
                        .push(key_hash(start, &mut self.key, p.attributes()));
                }
                // A run of one has nothing to overlap with: its lookup reads the memory itself.
                if self.hashes.len() > 1 {
                    for &hash in &self.hashes {
                        cache.warm(hash);
                    }
                }
                self.hashes[0]
            }
        }
    }
}

/// A point's key (the exact input of its translation: the scope's part and the family name,
/// hashed in `start`, then the attributes in their order), hashed.
fn key_hash(start: KeyStart, key: &mut Vec<u8>, attrs: &[KeyValue]) -> KeyHash {
    key.clear();
    put_attributes(key, attrs);
    start.hash(key)
}

fn put_attributes(key: &mut Vec<u8>, attrs: &[KeyValue]) {
    for kv in attrs {
        put_str(key, &kv.key);
        put_value(key, kv.value.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::otlp::common::v1::{AnyValue, any_value::Value};

    fn point(route: &str) -> NumberDataPoint {
        NumberDataPoint {
            attributes: vec![KeyValue {
                key: "route".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(route.into())),
                }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn gives_each_point_the_hash_of_its_own_key_in_any_order() {
        let cache = LabelCache::new(16);
        let points: Vec<NumberDataPoint> =
            (0..RUN * 2 + 5).map(|i| point(&i.to_string())).collect();
        let other: Vec<NumberDataPoint> = (0..3).map(|i| point(&i.to_string())).collect();
        // The whole key, hashed at once.
        let own = |points: &[NumberDataPoint], i: usize, prefix: &[u8], family: &str| {
            let mut key = prefix.to_vec();
            put_str(&mut key, family);
            put_attributes(&mut key, points[i].attributes());
            cache.hash(&key)
        };
        // Scope parts of less and more than one word of the hash.
        for (prefix, family) in [(&b"s"[..], "a"), (b"a longer scope part: 26 B", "family")] {
            let mut ahead = KeysAhead::default();
            // In order, across runs; then back, skipping, and on another metric's points (whose
            // keys differ by family) at the same indices.
            let order = (0..points.len()).chain([3, RUN + 1, 0, points.len() - 1, 7]);
            for i in order {
                assert_eq!(
                    ahead.hash(&cache, &points, i, prefix, family),
                    own(&points, i, prefix, family)
                );
            }
            for i in [0, 2, 1] {
                assert_eq!(
                    ahead.hash(&cache, &other, i, prefix, "b"),
                    own(&other, i, prefix, "b")
                );
                assert_ne!(own(&other, i, prefix, "b"), own(&points, i, prefix, family));
            }
        }
    }
}
