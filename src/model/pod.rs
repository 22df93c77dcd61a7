//! The Kubernetes pod an attachment serves, as `NAMESPACE/POD` (from the
//! runtime's `K8S_POD_NAMESPACE` and `K8S_POD_NAME`): checked against
//! Kubernetes' own rules before it goes into a link alias, and again when
//! read back, so no control character or `:` ever reaches an alias or a
//! terminal.

/// Longest namespace (a DNS-1123 label).
pub const NAMESPACE_MAX: usize = 63;
/// Longest pod name (a DNS-1123 subdomain).
pub const POD_MAX: usize = 253;
/// The mark of a pod name cut to fit an alias (no DNS name contains it).
pub const CUT: char = '~';

/// Lowercase alphanumerics and `-` (and `.` where `dots`), starting and
/// ending with an alphanumeric, 1..=`max` bytes.
fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= max
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter()
            .all(|c| alnum(c) || *c == b'-' || (dots && *c == b'.'))
}

/// `s` escaped, and cut after 64 characters (an overlong value is not
/// echoed whole).
fn show(s: &str) -> String {
    let head: String = s.chars().take(64).collect();
    let more = if head.len() < s.len() { "..." } else { "" };
    format!("{}{more}", super::escape(&head))
}

/// Why `namespace`/`pod` cannot name a pod, if they cannot.
pub fn check(namespace: &str, pod: &str) -> Result<(), String> {
    if !dns_name(namespace, NAMESPACE_MAX, false) {
        return Err(format!(
            "K8S_POD_NAMESPACE \"{}\" is not a Kubernetes namespace (lowercase letters, digits and -, at most {NAMESPACE_MAX})",
            show(namespace)
        ));
    }
    if !dns_name(pod, POD_MAX, true) {
        return Err(format!(
            "K8S_POD_NAME \"{}\" is not a Kubernetes pod name (lowercase letters, digits, - and ., at most {POD_MAX})",
            show(pod)
        ));
    }
    Ok(())
}

/// Whether `s` is `NAMESPACE/POD` as an alias holds it: valid, or its pod
/// name cut and ending in [`CUT`].
pub fn valid_label(s: &str) -> bool {
    let Some((ns, pod)) = s.split_once('/') else {
        return false;
    };
    let pod = match pod.strip_suffix(CUT) {
        // A cut name may end in anything its whole name has.
        Some(p) => return !p.is_empty() && check(ns, &format!("{p}0")).is_ok(),
        None => pod,
    };
    check(ns, pod).is_ok()
}

/// `label` cut to at most `room` bytes (ending in [`CUT`] if cut), or
/// `None` when not even the namespace and one character of the pod fit.
pub fn fit(label: &str, room: usize) -> Option<String> {
    if label.len() <= room {
        return Some(label.to_string());
    }
    let slash = label.find('/')?;
    if room < slash + 3 {
        return None;
    }
    // ASCII only (checked): any byte index is a character boundary.
    Some(format!("{}{CUT}", &label[..room - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_rules_and_hostile_names() {
        assert!(check("default", "web-0").is_ok());
        assert!(check("kube-system", "coredns-5d78c9869d-abc12.x").is_ok());
        assert!(check("default", &"a".repeat(253)).is_ok());
        assert!(check("default", &"a".repeat(254)).is_err());
        assert!(check(&"n".repeat(64), "web").is_err());
        assert!(check("a.b", "web").is_err());
        assert!(check("", "web").is_err());
        assert!(check("default", "").is_err());
        assert!(check("default", "Web").is_err());
        assert!(check("default", "web:0").is_err());
        assert!(check("default", "web/0").is_err());
        assert!(check("default", "-web").is_err());
        let e = check("default", "\x1b[2Jweb").unwrap_err();
        assert!(!e.contains('\x1b') && e.contains("\\x1b[2J"), "{e}");
        let e = check("default", &"x".repeat(10_000)).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(valid_label("default/web-0"));
        assert!(valid_label("default/web-~"));
        assert!(!valid_label("default/~"));
        assert!(!valid_label("default"));
        assert!(!valid_label("default/web\n"));
        assert!(!valid_label("default/web/0"));
    }

    #[test]
    fn labels_are_cut_to_fit() {
        assert_eq!(fit("ns/web", 10).as_deref(), Some("ns/web"));
        assert_eq!(fit("ns/web-0", 6).as_deref(), Some("ns/we~"));
        assert_eq!(fit("ns/web-0", 5).as_deref(), Some("ns/w~"));
        assert_eq!(fit("ns/web-0", 4), None);
        assert!(valid_label(&fit("ns/web-0", 6).unwrap()));
    }
}
