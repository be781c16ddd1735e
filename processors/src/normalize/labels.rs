//! Label keys (point and exemplar attributes): cleaned by the character rules, leading underscores
//! removed; keys that collide after cleaning keep every value, joined with `;` in the bytewise order
//! of their original keys. Values are never rewritten otherwise. A key of which nothing valid
//! remains (`___`, `日本`) is removed with its value.

use super::cache::Bounded;
use super::metrics::Tally;
use super::names::{is_conforming, label_key};
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use std::sync::Arc;

/// Cleaned key per raw key; `None`: nothing valid remains.
pub type KeyCache = Bounded<Box<str>, Option<Arc<str>>>;

#[derive(Clone)]
pub enum Key {
    Same,
    New(Arc<str>),
    Gone,
}

/// Cleans the keys of one attribute list; returns whether anything changed. `scratch` is reused
/// across calls so that a clean list costs no allocation.
pub fn clean(
    attrs: &mut Vec<KeyValue>,
    cache: &mut KeyCache,
    scratch: &mut Vec<Key>,
    tally: &mut Tally,
) -> bool {
    if attrs.iter().all(|kv| is_conforming(&kv.key)) {
        return false;
    }
    scratch.clear();
    for kv in attrs.iter() {
        if is_conforming(&kv.key) {
            scratch.push(Key::Same);
            continue;
        }
        let cleaned = match cache.get(kv.key.as_str()) {
            Some(c) => {
                tally.hits += 1;
                c.clone()
            }
            None => {
                tally.misses += 1;
                let c: Option<Arc<str>> = label_key(&kv.key).map(Arc::from);
                tally.evictions += cache.insert(kv.key.as_str().into(), c.clone()) as u64;
                c
            }
        };
        scratch.push(cleaned.map_or(Key::Gone, Key::New));
    }
    let key = |i: usize| -> Option<&str> {
        match &scratch[i] {
            Key::Same => Some(attrs[i].key.as_str()),
            Key::New(k) => Some(k),
            Key::Gone => None,
        }
    };
    let n = attrs.len();
    let duplicates = (0..n).any(|i| key(i).is_some_and(|k| (i + 1..n).any(|j| key(j) == Some(k))));
    if !duplicates {
        let mut i = 0;
        attrs.retain_mut(|kv| {
            let keep = match &scratch[i] {
                Key::Same => true,
                Key::New(k) => {
                    kv.key.clear();
                    kv.key.push_str(k);
                    true
                }
                Key::Gone => false,
            };
            i += 1;
            keep
        });
        return true;
    }
    let merged = merge(attrs, &key);
    *attrs = merged;
    true
}

/// Groups attributes by cleaned key (in the order of each key's first occurrence) and joins the
/// values of a group with `;`, ordered by original key bytewise.
fn merge<'a>(attrs: &[KeyValue], key: &impl Fn(usize) -> Option<&'a str>) -> Vec<KeyValue> {
    let n = attrs.len();
    let mut used = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(k) = key(i).filter(|_| !used[i]) else {
            continue;
        };
        let mut members: Vec<usize> = (i..n).filter(|&j| key(j) == Some(k)).collect();
        members.iter().for_each(|&j| used[j] = true);
        if members.len() == 1 {
            out.push(KeyValue {
                key: k.to_string(),
                value: attrs[i].value.clone(),
            });
            continue;
        }
        members.sort_by(|&a, &b| attrs[a].key.as_bytes().cmp(attrs[b].key.as_bytes()));
        let joined: Vec<String> = members
            .iter()
            .map(|&j| attrs[j].value.as_ref().map(text).unwrap_or_default())
            .collect();
        out.push(KeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(joined.join(";"))),
            }),
        });
    }
    out
}

/// An attribute value as label text (for joined values only; single values keep their type).
pub fn text(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}:{}",
                        kv.key,
                        kv.value.as_ref().map(text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}
