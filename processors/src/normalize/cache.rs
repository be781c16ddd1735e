//! The processor's bounded caches. Names repeat enormously, so the rules run once per distinct
//! (tenant, name, type, unit, domain); after that a metric costs one hash lookup with no
//! allocation. A cache that reaches its size is emptied and starts over (the evictions are
//! counted): simple, bounded, and under a flood of distinct names no worse than any LRU.

use super::rules::{MetricKind, Naming};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// What a name lookup is keyed by. `domain` is empty when it cannot change the result.
#[derive(Clone, Copy, Debug)]
pub struct NameKey<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub kind: MetricKind,
    pub unit: &'a str,
    pub domain: &'a str,
}

struct Entry {
    hash: u64,
    tenant: Arc<str>,
    name: Box<str>,
    kind: MetricKind,
    unit: Box<str>,
    domain: Arc<str>,
    value: Arc<Naming>,
}

impl Entry {
    fn is(&self, k: &NameKey<'_>) -> bool {
        self.kind == k.kind
            && *self.name == *k.name
            && *self.unit == *k.unit
            && *self.tenant == *k.tenant
            && *self.domain == *k.domain
    }
}

/// Input name -> the decision for it.
pub struct NameCache {
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
    cap: usize,
}

impl NameCache {
    pub fn new(cap: usize) -> Self {
        NameCache {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn hash(&self, k: &NameKey<'_>) -> u64 {
        self.hasher
            .hash_one((k.tenant, k.name, k.kind, k.unit, k.domain))
    }

    pub fn get(&self, hash: u64, k: &NameKey<'_>) -> Option<&Arc<Naming>> {
        self.table.find(hash, |e| e.is(k)).map(|e| &e.value)
    }

    /// Whether the next insert empties the cache first.
    pub fn is_full(&self) -> bool {
        self.table.len() >= self.cap
    }

    /// Empties the cache; returns how many entries it held.
    pub fn clear(&mut self) -> usize {
        let n = self.table.len();
        self.table.clear();
        n
    }

    /// Inserts (the caller has emptied a full cache first, see [`NameCache::is_full`]).
    pub fn insert(
        &mut self,
        hash: u64,
        k: &NameKey<'_>,
        tenant: &Arc<str>,
        domain: &Arc<str>,
        value: Arc<Naming>,
    ) {
        let entry = Entry {
            hash,
            tenant: tenant.clone(),
            name: k.name.into(),
            kind: k.kind,
            unit: k.unit.into(),
            domain: domain.clone(),
            value,
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
    }
}

/// A map that empties itself when it reaches `cap` entries (label keys, domains, log dedup).
pub struct Bounded<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        Q: Hash + hashbrown::Equivalent<K> + ?Sized,
    {
        self.map.get(k)
    }

    /// Inserts; returns how many entries were let go to make room.
    pub fn insert(&mut self, k: K, v: V) -> usize {
        let mut evicted = 0;
        if self.map.len() >= self.cap {
            evicted = self.map.len();
            self.map.clear();
        }
        self.map.insert(k, v);
        evicted
    }
}
