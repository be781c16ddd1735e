//! `${env:NAME}` and `${env:NAME:-default}` expansion in string values, as in the OpenTelemetry
//! Collector. `$$` stands for a literal `$`. Other `${...}` forms (such as an exporter's `${tenant}`
//! template) are left as they are. A variable that is not set and has no default is an error.

/// Expands one string; returns the name of the first unset variable on error.
pub fn expand(input: &str) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${env:") {
            let Some(end) = body.find('}') else {
                return Err(format!("unclosed `${{env:` in {input:?}"));
            };
            let spec = &body[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if !valid_name(name) {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (std::env::var(name), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    return Err(format!(
                        "environment variable {name} is not set (give a default with ${{env:{name}:-value}})"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
