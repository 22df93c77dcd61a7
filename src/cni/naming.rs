//! Names of an attachment's objects, derived from (container id, interface)
//! alone so DEL and GC find them without a state file: the context name
//! (`cni` + 8 hex digits), the host-side veth (`nxc` + 12 hex digits) and the
//! alias that marks netctx's links and says what DEL and GC need (written
//! here, read by `observe::attachments`, where `Alias` is).

use crate::model::ATTACHMENT_ALIAS_PREFIX;
pub use crate::observe::attachments::Alias;

/// Longest alias the kernel takes as netctx sends it (IFALIASZ - 2: the
/// attribute carries a NUL, and the kernel's policy counts it: 255 bytes
/// are refused with ERANGE, found by the pod-name tests).
const ALIAS_MAX: usize = 254;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// FNV-1a, 64 bits, over the parts joined by a NUL byte (which no
/// container id or interface name contains).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for (i, p) in parts.iter().enumerate() {
        let sep: &[u8] = if i > 0 { &[0] } else { &[] };
        for b in sep.iter().chain(p.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// The context name of an attachment: `cni` and 8 hex digits.
pub fn context_name(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(&[container_id.as_bytes(), ifname.as_bytes()]);
    // The two halves folded: the high half shifted down fits 32 bits, and
    // the low half is masked to them.
    let (hi, lo) = (h >> 32, h & 0xffff_ffff);
    format!("cni{:08x}", hi ^ lo)
}

/// The host-side veth of an attachment: `nxc` and 12 hex digits (15 bytes).
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(&[b"veth", container_id.as_bytes(), ifname.as_bytes()]);
    format!("nxc{:012x}", h >> 16)
}

/// Writing an alias, and what only the plugin's naming can tell of one;
/// `Alias::parse` is the observer's.
impl Alias {
    /// `netctx-cni:CTX:GROUP:NETWORK:IFNAME:CONTAINERID[:NAMESPACE/POD]`. No
    /// field contains `:` (the spec's network names and container ids
    /// cannot, Linux interface names cannot, pod names are checked). A very
    /// long container id is cut to fit the kernel's limit (the context name
    /// still identifies the attachment), and then there is no pod; a pod
    /// name that does not fit whole is cut and ends in `~`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{ATTACHMENT_ALIAS_PREFIX}{}:{}:{}:{}:{}",
            self.context, self.log_group, self.network, self.ifname, self.container_id
        );
        if s.len() >= ALIAS_MAX {
            s.truncate(ALIAS_MAX);
            return s;
        }
        let room = ALIAS_MAX - s.len() - 1;
        if let Some(pod) = self
            .pod
            .as_deref()
            .and_then(|p| crate::model::pod::fit(p, room))
        {
            s.push(':');
            s.push_str(&pod);
        }
        s
    }

    /// Whether the container id is whole (not cut to fit the alias).
    pub fn complete(&self) -> bool {
        context_name(&self.container_id, &self.ifname) == self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foo\0bar"]));
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let c = context_name("abc123", "eth0");
        assert_eq!(c, context_name("abc123", "eth0"));
        assert_eq!(c.len(), 11);
        assert!(c.starts_with("cni") && c[3..].chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_ne!(c, context_name("abc123", "eth1"));
        assert_ne!(c, context_name("abc12", "3eth0"));
        let h = host_veth("abc123", "eth0");
        assert_eq!(h.len(), 15);
        assert!(h.starts_with("nxc"));
        assert_ne!(h, host_veth("abc123", "eth1"));
    }

    #[test]
    fn alias_round_trip_and_truncation() {
        let a = Alias {
            context: context_name("abc", "eth0"),
            log_group: 100,
            network: "nx".into(),
            ifname: "eth0".into(),
            container_id: "abc".into(),
            pod: None,
        };
        assert_eq!(Alias::parse(&a.render()), Some(a.clone()));
        assert!(a.complete());
        assert_eq!(Alias::parse("netctx:web"), None);
        assert_eq!(Alias::parse("netctx-cni:short:1:nx:eth0:abc"), None);
        let c = context_name("abc", "eth0");
        assert_eq!(Alias::parse(&format!("netctx-cni:{c}:x:nx:eth0:abc")), None);
        let long = Alias {
            container_id: "x".repeat(300),
            ..a
        };
        let r = long.render();
        assert_eq!(r.len(), ALIAS_MAX);
        let back = Alias::parse(&r).unwrap();
        assert_eq!(back.network, "nx");
        assert!(!back.complete());
        assert_eq!(back.pod, None);
    }

    #[test]
    fn pod_names_in_the_alias() {
        let a = Alias {
            context: context_name("abc", "eth0"),
            log_group: 100,
            network: "nx".into(),
            ifname: "eth0".into(),
            container_id: "abc".into(),
            pod: Some("default/web-0".into()),
        };
        let r = a.render();
        assert!(r.ends_with(":abc:default/web-0"), "{r}");
        assert_eq!(Alias::parse(&r), Some(a.clone()));
        assert!(a.named("default/web-0") && a.named(&a.context) && !a.named("default/web"));
        // Aliases written before pods were recorded still parse.
        let old = format!("netctx-cni:{}:100:nx:eth0:abc", a.context);
        assert_eq!(Alias::parse(&old).unwrap().pod, None);
        // The longest pod name Kubernetes allows: cut, marked, within IFALIASZ.
        let long = Alias {
            context: context_name(&"f".repeat(64), "eth0"),
            container_id: "f".repeat(64),
            pod: Some(format!("{}/{}", "n".repeat(63), "p".repeat(253))),
            ..a.clone()
        };
        let r = long.render();
        assert_eq!(r.len(), ALIAS_MAX);
        let back = Alias::parse(&r).unwrap();
        assert_eq!(back.container_id, "f".repeat(64));
        assert!(back.complete());
        let p = back.pod.unwrap();
        assert!(p.starts_with(&format!("{}/ppp", "n".repeat(63))) && p.ends_with('~'));
        // A forged field (a control character, a second colon) is no pod.
        for bad in ["default/we\x1bb", "default/web:x", "Default/web", "web"] {
            let forged = format!("netctx-cni:{}:100:nx:eth0:abc:{bad}", a.context);
            assert_eq!(Alias::parse(&forged).unwrap().pod, None, "{bad}");
        }
    }
}
