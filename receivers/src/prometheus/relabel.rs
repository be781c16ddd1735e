//! Prometheus relabeling (`relabel_configs` on targets, `metric_relabel_configs` on samples):
//! `replace`, `keep`, `drop`, `keepequal`, `dropequal`, `hashmod`, `labelmap`, `labeldrop`,
//! `labelkeep`, `lowercase`, `uppercase`, with Prometheus' defaults (`separator: ";"`,
//! `regex: (.*)` anchored at both ends, `replacement: $1`, `action: replace`).

use regex::Regex;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// One relabel rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default)]
    pub regex: RelabelRegex,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_replacement() -> String {
    "$1".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// A regular expression anchored at both ends, as Prometheus anchors them.
#[derive(Clone, Debug)]
pub struct RelabelRegex {
    pub source: String,
    pub regex: Regex,
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<RelabelRegex, String> {
        Regex::new(&format!("^(?s:{source})$"))
            .map(|regex| RelabelRegex {
                source: source.to_string(),
                regex,
            })
            .map_err(|e| format!("invalid regex {source:?}: {e}"))
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        RelabelRegex::new("(.*)").expect("the default regex compiles")
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelabelRegex::new(&s).map_err(D::Error::custom)
    }
}

impl RelabelConfig {
    /// What is wrong with the rule, if anything.
    pub fn problem(&self) -> Option<String> {
        use Action::*;
        let needs_target = matches!(
            self.action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && self.target_label.as_deref().is_none_or(str::is_empty) {
            return Some(format!(
                "relabel action {:?} needs a target_label",
                self.action
            ));
        }
        if self.action == HashMod && self.modulus == 0 {
            return Some("relabel action hashmod needs a modulus above 0".into());
        }
        if matches!(self.action, LabelDrop | LabelKeep) && !self.source_labels.is_empty() {
            return Some("labeldrop and labelkeep take no source_labels".into());
        }
        None
    }
}

fn get<'l>(labels: &'l [(String, String)], name: &str) -> &'l str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    if value.is_empty() {
        labels.retain(|(k, _)| k != name);
        return;
    }
    match labels.iter_mut().find(|(k, _)| k == name) {
        Some(l) => l.1 = value,
        None => labels.push((name.to_string(), value)),
    }
}

/// Applies the rules in order; `false` when the series (or target) is dropped. An empty value
/// removes a label.
pub fn relabel(labels: &mut Vec<(String, String)>, rules: &[RelabelConfig]) -> bool {
    for r in rules {
        let value = r
            .source_labels
            .iter()
            .map(|s| get(labels, s))
            .collect::<Vec<_>>()
            .join(&r.separator);
        let target = r.target_label.as_deref().unwrap_or("");
        let re = &r.regex.regex;
        match r.action {
            Action::Replace => {
                let Some(caps) = re.captures(&value) else {
                    continue;
                };
                let mut name = String::new();
                caps.expand(target, &mut name);
                let mut out = String::new();
                caps.expand(&r.replacement, &mut out);
                if name.is_empty() {
                    continue;
                }
                set(labels, &name, out);
            }
            Action::Keep => {
                if !re.is_match(&value) {
                    return false;
                }
            }
            Action::Drop => {
                if re.is_match(&value) {
                    return false;
                }
            }
            Action::KeepEqual => {
                if value != get(labels, target) {
                    return false;
                }
            }
            Action::DropEqual => {
                if value == get(labels, target) {
                    return false;
                }
            }
            Action::HashMod => {
                let m = hash64(value.as_bytes()) % r.modulus.max(1);
                set(labels, target, m.to_string());
            }
            Action::Lowercase => set(labels, target, value.to_lowercase()),
            Action::Uppercase => set(labels, target, value.to_uppercase()),
            Action::LabelMap => {
                let mut added = Vec::new();
                for (k, v) in labels.iter() {
                    if let Some(caps) = re.captures(k) {
                        let mut name = String::new();
                        caps.expand(&r.replacement, &mut name);
                        added.push((name, v.clone()));
                    }
                }
                for (k, v) in added {
                    set(labels, &k, v);
                }
            }
            Action::LabelDrop => labels.retain(|(k, _)| !re.is_match(k)),
            Action::LabelKeep => labels.retain(|(k, _)| re.is_match(k)),
        }
    }
    true
}

/// Prometheus' hashmod hash: the last 8 bytes of the MD5 digest, big-endian.
pub fn hash64(data: &[u8]) -> u64 {
    let d = md5(data);
    u64::from_be_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]])
}

/// MD5 (RFC 1321), for `hashmod` only.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32);
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}
