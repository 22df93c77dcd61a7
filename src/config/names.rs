//! The shapes of names: contexts, interfaces, hostnames.

/// Context names: 1-11 chars of `[a-z0-9-]`, starting with a letter, so that
/// `nx-NAME` plus a digit still fits an interface name.
pub fn check_context_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let starts = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if crate::model::is_attachment_name(name) {
        Err(format!(
            "context name {name:?} is reserved: `cni` and 8 hex digits name CNI attachments"
        ))
    } else if (1..=11).contains(&name.len()) && ok_chars && starts {
        Ok(())
    } else {
        Err(format!(
            "context name {name:?} must be 1-11 characters of a-z, 0-9 and '-', starting with a letter"
        ))
    }
}

/// Interface names as the kernel accepts them (`dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name must not be empty".into());
    }
    if name.len() > 15 {
        return Err(format!("interface name {name:?} is longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name {name:?} must not contain '/', ':' or whitespace"
        ));
    }
    Ok(())
}

pub fn check_hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "hostname {h:?} must be at most 64 characters of dot-separated labels of letters, digits and '-'"
        ))
    }
}
