//! `netctx audit`'s verdicts: pure functions of socket lists (read by
//! `observe::diag`), process lists (`observe::procs`) and the configuration.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use crate::model::Cidr;

/// How a socket's local address relates to its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of the context's assigned addresses.
    Assigned,
    /// 0.0.0.0 or `::`: listed and marked, not a violation.
    Wildcard,
    Loopback,
    /// An IPv6 link-local address present on the context's link (the
    /// socket's device, when it is bound to one).
    LinkLocal,
    /// A multicast group (224.0.0.0/4, ff00::/8): receives the group's
    /// traffic on the context's links, sends from the context's addresses.
    Multicast,
    /// Not the context's: a violation.
    Foreign,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Assigned => "assigned",
            Verdict::Wildcard => "wildcard",
            Verdict::Loopback => "loopback",
            Verdict::LinkLocal => "link-local",
            Verdict::Multicast => "multicast",
            Verdict::Foreign => "VIOLATION",
        }
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a context owns: its declared addresses, and the IPv6 link-local
/// addresses present in its namespace with the index of their link.
#[derive(Debug, Clone, Copy)]
pub struct Own<'a> {
    pub assigned: &'a [IpAddr],
    pub link_local: &'a [(u32, Ipv6Addr)],
}

/// The verdict on a socket bound to `local` (and to device `ifindex`, 0
/// for none) in a context owning `own`.
pub fn judge(local: IpAddr, ifindex: u32, own: &Own) -> Verdict {
    let ip = canonical(local);
    if ip.is_unspecified() {
        Verdict::Wildcard
    } else if ip.is_loopback() {
        Verdict::Loopback
    } else if own.assigned.contains(&ip) {
        Verdict::Assigned
    } else if ip.is_multicast() {
        Verdict::Multicast
    } else if is_own_link_local(ip, ifindex, own.link_local) {
        Verdict::LinkLocal
    } else {
        Verdict::Foreign
    }
}

fn is_own_link_local(ip: IpAddr, ifindex: u32, present: &[(u32, Ipv6Addr)]) -> bool {
    let IpAddr::V6(v6) = ip else { return false };
    v6.is_unicast_link_local()
        && present
            .iter()
            .any(|(link, a)| *a == v6 && (ifindex == 0 || *link == ifindex))
}

/// Where a process stands: whose process it is, and how it is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing<'a> {
    /// The context it belongs to: that of its network namespace, else that
    /// of its cgroup.
    pub context: Option<&'a str>,
    /// In a context's namespace but not in its cgroup (`ip netns exec`):
    /// listed, not a violation.
    pub unconfined: Option<&'a str>,
    /// In this context's cgroup but not in its namespace: a violation.
    pub escaped: Option<&'a str>,
}

/// The context whose cgroup (`/netctx/CTX` or below) holds `path`.
pub fn cgroup_context(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/netctx/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The contexts audited, with the inode of their network namespace.
#[derive(Debug, Default)]
pub struct Known {
    by_inode: HashMap<u64, String>,
    by_name: HashMap<String, u64>,
}

impl Known {
    pub fn new(contexts: impl IntoIterator<Item = (String, u64)>) -> Known {
        let mut k = Known::default();
        for (name, ino) in contexts {
            k.by_inode.insert(ino, name.clone());
            k.by_name.insert(name, ino);
        }
        k
    }
}

/// The standing of a process in namespace `netns` and cgroup `cgroup`
/// among the `known` contexts.
pub fn standing<'a>(netns: Option<u64>, cgroup: Option<&str>, known: &'a Known) -> Standing<'a> {
    let by_ns = netns
        .and_then(|i| known.by_inode.get(&i))
        .map(String::as_str);
    let by_cg = cgroup
        .and_then(cgroup_context)
        .and_then(|c| known.by_name.get_key_value(c))
        .map(|(n, _)| n.as_str());
    Standing {
        context: by_ns.or(by_cg),
        unconfined: by_ns.filter(|n| by_cg != Some(*n)),
        escaped: by_cg.filter(|n| by_ns != Some(*n)),
    }
}

/// A socket of namespace `sock_ns` held by a process standing `st`: the
/// context that process belongs to when the socket is not of that
/// context's namespace (a violation of that context).
pub fn foreign_holder<'a>(sock_ns: u64, st: &Standing<'a>, known: &Known) -> Option<&'a str> {
    let ctx = st.context?;
    let ino = known.by_name.get(ctx)?;
    (*ino != sock_ns).then_some(ctx)
}

/// The verdict on a host socket: violations are binds to a context's
/// address (possible only with IP_FREEBIND or ip_nonlocal_bind).
pub fn judge_host(local: IpAddr, contexts: &[(String, Vec<IpAddr>)]) -> Option<&str> {
    let ip = canonical(local);
    contexts
        .iter()
        .find(|(_, addrs)| addrs.contains(&ip))
        .map(|(n, _)| n.as_str())
}

/// Addresses present on a context's links, `lo` included, that its
/// configuration does not declare. Loopback addresses are the kernel's own;
/// so are the IPv6 link-local addresses it made, which `present` leaves out.
pub fn undeclared(present: &[(String, Cidr)], declared: &[(String, Cidr)]) -> Vec<(String, Cidr)> {
    present
        .iter()
        .filter(|(link, c)| !c.addr.is_loopback() && !declared.contains(&(link.clone(), *c)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NONE: Own<'static> = Own {
        assigned: &[],
        link_local: &[],
    };

    #[test]
    fn verdicts_on_synthetic_sockets() {
        let assigned = [ip("10.100.0.2"), ip("fd00:100::2")];
        let own = Own {
            assigned: &assigned,
            ..NONE
        };
        let judge = |s: &str| judge(ip(s), 0, &own);
        assert_eq!(judge("10.100.0.2"), Verdict::Assigned);
        assert_eq!(judge("fd00:100::2"), Verdict::Assigned);
        assert_eq!(judge("0.0.0.0"), Verdict::Wildcard);
        assert_eq!(judge("::"), Verdict::Wildcard);
        assert_eq!(judge("127.0.0.53"), Verdict::Loopback);
        assert_eq!(judge("::1"), Verdict::Loopback);
        // Another context's address, bound with IP_FREEBIND.
        assert_eq!(judge("10.200.0.2"), Verdict::Foreign);
        // v4-mapped IPv6 is judged as the IPv4 address.
        assert_eq!(judge("::ffff:10.100.0.2"), Verdict::Assigned);
        assert_eq!(judge("::ffff:10.200.0.2"), Verdict::Foreign);
        assert_eq!(judge("::ffff:0.0.0.0"), Verdict::Wildcard);
    }

    #[test]
    fn multicast_groups_are_the_contexts_own() {
        let judge = |s: &str| judge(ip(s), 0, &NONE);
        assert_eq!(judge("224.0.0.251"), Verdict::Multicast);
        assert_eq!(judge("239.255.255.250"), Verdict::Multicast);
        assert_eq!(judge("::ffff:224.0.0.251"), Verdict::Multicast);
        assert_eq!(judge("ff02::fb"), Verdict::Multicast);
        assert_eq!(judge("ff05::1:3"), Verdict::Multicast);
        // Just outside 224.0.0.0/4 and ff00::/8.
        assert_eq!(judge("240.0.0.1"), Verdict::Foreign);
        assert_eq!(judge("fe00::1"), Verdict::Foreign);
    }

    #[test]
    fn only_link_local_addresses_present_on_the_link_are_own() {
        let ll: Ipv6Addr = "fe80::1c2d:3eff:fe4f:5a6b".parse().unwrap();
        let present = [(2, ll)];
        let own = Own {
            link_local: &present,
            ..NONE
        };
        let v = |s: &str, dev| judge(ip(s), dev, &own);
        assert_eq!(v("fe80::1c2d:3eff:fe4f:5a6b", 0), Verdict::LinkLocal);
        assert_eq!(v("fe80::1c2d:3eff:fe4f:5a6b", 2), Verdict::LinkLocal);
        // The same address scoped to another link, another link-local
        // address (the host side's, say), and no link-local at all.
        assert_eq!(v("fe80::1c2d:3eff:fe4f:5a6b", 3), Verdict::Foreign);
        assert_eq!(v("fe80::1", 2), Verdict::Foreign);
        assert_eq!(
            judge(ip("fe80::1c2d:3eff:fe4f:5a6b"), 0, &NONE),
            Verdict::Foreign
        );
        // fe80::/10 ends at febf:…
        assert_eq!(v("febf::1", 0), Verdict::Foreign);
    }

    fn ctxs() -> Known {
        Known::new([("a".to_string(), 100), ("b".to_string(), 200)])
    }

    #[test]
    fn processes_are_confined_unconfined_or_escaped() {
        let c = ctxs();
        // A guest: a's namespace and a's cgroup.
        let g = standing(Some(100), Some("/netctx/a"), &c);
        assert_eq!(
            g,
            Standing {
                context: Some("a"),
                ..Standing::default()
            }
        );
        assert_eq!(standing(Some(100), Some("/netctx/a/sub"), &c), g);
        // `ip netns exec a`: a's namespace, someone else's cgroup.
        let u = standing(Some(100), Some("/user.slice/x"), &c);
        assert_eq!(
            (u.context, u.unconfined, u.escaped),
            (Some("a"), Some("a"), None)
        );
        assert_eq!(
            standing(Some(100), Some("/netctx/ab"), &c).unconfined,
            Some("a")
        );
        assert_eq!(standing(Some(100), None, &c).unconfined, Some("a"));
        // a's cgroup, the host's namespace.
        let e = standing(Some(1), Some("/netctx/a"), &c);
        assert_eq!(
            (e.context, e.unconfined, e.escaped),
            (Some("a"), None, Some("a"))
        );
        // b's namespace, a's cgroup: unconfined in b, escaped from a.
        let x = standing(Some(200), Some("/netctx/a"), &c);
        assert_eq!(
            (x.context, x.unconfined, x.escaped),
            (Some("b"), Some("b"), Some("a"))
        );
        // A host process, and one in the cgroup of a context not audited.
        assert_eq!(standing(Some(1), Some("/"), &c), Standing::default());
        assert_eq!(
            standing(Some(1), Some("/netctx/zz"), &c),
            Standing::default()
        );
        assert_eq!(cgroup_context("/netctx/"), None);
        assert_eq!(cgroup_context("/netctxx/a"), None);
    }

    #[test]
    fn a_contexts_process_holding_another_namespaces_socket_is_flagged() {
        let c = ctxs();
        let guest = standing(Some(100), Some("/netctx/a"), &c);
        assert_eq!(foreign_holder(100, &guest, &c), None);
        assert_eq!(foreign_holder(1, &guest, &c), Some("a"));
        assert_eq!(foreign_holder(200, &guest, &c), Some("a"));
        // A host process holding a context's socket (a bench helper) is
        // not a context's process.
        let host = standing(Some(1), Some("/"), &c);
        assert_eq!(foreign_holder(100, &host, &c), None);
    }

    #[test]
    fn host_sockets_on_a_context_address_are_flagged() {
        let ctxs = vec![("web".to_string(), vec![ip("10.100.0.2")])];
        assert_eq!(judge_host(ip("10.100.0.2"), &ctxs), Some("web"));
        assert_eq!(judge_host(ip("::ffff:10.100.0.2"), &ctxs), Some("web"));
        assert_eq!(judge_host(ip("10.100.0.1"), &ctxs), None);
        assert_eq!(judge_host(ip("0.0.0.0"), &ctxs), None);
    }

    #[test]
    fn undeclared_addresses_are_found() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        let declared = vec![("eth0".to_string(), c("10.0.0.2/24"))];
        let present = vec![
            ("eth0".to_string(), c("10.0.0.2/24")),
            ("eth0".to_string(), c("10.0.0.99/24")),
            ("lo".to_string(), c("127.0.0.1/8")),
            ("lo".to_string(), c("::1/128")),
            // Another context's address on lo, an extra link-local address.
            ("lo".to_string(), c("10.0.1.2/32")),
            ("eth0".to_string(), c("fe80::1/64")),
        ];
        assert_eq!(
            undeclared(&present, &declared),
            [
                ("eth0".to_string(), c("10.0.0.99/24")),
                ("lo".to_string(), c("10.0.1.2/32")),
                ("eth0".to_string(), c("fe80::1/64")),
            ]
        );
    }
}
