//! The capabilities a guest may keep (docs/guests.md): the default set,
//! which the guest's `capabilities` narrows.

/// The default set: what a root guest keeps at most.
pub const DEFAULT: [(&str, u32); 11] = [
    ("chown", 0),
    ("dac_override", 1),
    ("fowner", 3),
    ("fsetid", 4),
    ("kill", 5),
    ("setgid", 6),
    ("setuid", 7),
    ("setpcap", 8),
    ("net_bind_service", 10),
    ("sys_chroot", 18),
    ("audit_write", 29),
];

/// A capability of the default set by name (`net_bind_service`,
/// `CAP_NET_BIND_SERVICE`).
pub fn parse(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("cap_").unwrap_or(&n);
    DEFAULT.iter().find(|(s, _)| *s == n).map(|(_, c)| *c)
}

pub fn names() -> Vec<&'static str> {
    DEFAULT.iter().map(|(s, _)| *s).collect()
}

pub fn default_set() -> Vec<u32> {
    DEFAULT.iter().map(|(_, c)| *c).collect()
}
