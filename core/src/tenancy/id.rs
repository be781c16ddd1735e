//! What a tenant id may be: Mimir's (and Cortex's) rules, so that any id Sluice accepts is one the
//! backends accept as `X-Scope-OrgID`.

/// The longest tenant id, in bytes.
pub const MAX_TENANT_ID_BYTES: usize = 150;

/// Checks a tenant id: 1 to 150 bytes of ASCII letters, digits and `! - _ . * ' ( )`, and neither
/// `.` nor `..`. The error says what is wrong, quoting the id (ids are not secret).
pub fn check_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the tenant id is empty".into());
    }
    if id.len() > MAX_TENANT_ID_BYTES {
        return Err(format!(
            "tenant id {:?}... is {} bytes long, more than {MAX_TENANT_ID_BYTES}",
            &id[..id.floor_char_boundary(40)],
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant id {id:?} is not allowed"));
    }
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "tenant id {id:?} holds {c:?}; use letters, digits and ! - _ . * ' ( ) only"
        ));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
}
