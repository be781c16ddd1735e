//! The character rules shared by metric names and label keys (NAMING.md rule 2): source forms
//! become lowercase segments, joined by single underscores.

/// Whether `s` already follows the convention: `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`.
pub fn is_conforming(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if first.is_ascii_lowercase() && *last != b'_' => {}
        _ => return false,
    }
    let mut prev_underscore = false;
    for &c in b {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => prev_underscore = false,
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return false,
        }
    }
    true
}

/// Splits a name (or a label key, or a unit) into lowercase segments.
///
/// Non-ASCII characters are removed (they separate nothing: `café` -> `caf`); every other character
/// outside `[A-Za-z0-9]` separates; camelCase and PascalCase split where a word starts: an
/// uppercase letter after a lowercase one (`httpRequests`), the last capital of a run followed by a
/// lowercase letter (`HTTPServer` -> `http`, `server`), and after digits the same way
/// (`HTTP2Server` -> `http2`, `server`; `ipv4Packets` -> `ipv4`, `packets`). Digits themselves never
/// start a segment (`k8s`, `K8S` stay one).
pub fn segments(s: &str) -> Vec<String> {
    let chars: Vec<u8> = s.bytes().filter(u8::is_ascii).collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !cur.is_empty() && word_starts(&chars, i) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase() as char);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether the uppercase letter at `i` (not the first of its word) starts a new word.
fn word_starts(chars: &[u8], i: usize) -> bool {
    let prev = chars[i - 1];
    let next_lower = chars.get(i + 1).is_some_and(u8::is_ascii_lowercase);
    if prev.is_ascii_lowercase() {
        return true;
    }
    if prev.is_ascii_uppercase() {
        return next_lower;
    }
    // After digits: decided by the letter before them (`ipv4Packets`, `IPv4TCP` split; `K8S`
    // does not, `HTTP2Server` does because `Server` is a capitalized word).
    let letter = chars[..i]
        .iter()
        .rev()
        .find(|c| !c.is_ascii_digit())
        .filter(|c| c.is_ascii_alphabetic());
    match letter {
        Some(l) if l.is_ascii_lowercase() => true,
        _ => next_lower,
    }
}

/// A label key under the convention, or `None` when nothing valid remains (`___`, `日本`).
/// Leading underscores go with the separators (the `__` prefix is reserved); a key that would
/// start with a digit gets the prefix `key_`, as the Prometheus exporters do.
pub fn label_key(key: &str) -> Option<String> {
    let segs = segments(key);
    if segs.is_empty() {
        return None;
    }
    let joined = segs.join("_");
    if joined.as_bytes()[0].is_ascii_digit() {
        return Some(format!("key_{joined}"));
    }
    Some(joined)
}
