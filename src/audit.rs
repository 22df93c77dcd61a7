//! `netctx audit`'s verdicts: pure functions of socket lists (read by
//! `kernel::diag`), process lists (`observe::procs`) and the configuration.

use std::net::IpAddr;

use crate::model::Cidr;

/// How a socket's local address relates to its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of the context's assigned addresses.
    Assigned,
    /// 0.0.0.0 or `::`: listed and marked, not a violation.
    Wildcard,
    Loopback,
    /// Not the context's: a violation.
    Foreign,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Assigned => "assigned",
            Verdict::Wildcard => "wildcard",
            Verdict::Loopback => "loopback",
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

/// The verdict on a socket bound to `local` in a context with `assigned`.
pub fn judge(local: IpAddr, assigned: &[IpAddr]) -> Verdict {
    let ip = canonical(local);
    if ip.is_unspecified() {
        Verdict::Wildcard
    } else if ip.is_loopback() {
        Verdict::Loopback
    } else if assigned.contains(&ip) {
        Verdict::Assigned
    } else {
        Verdict::Foreign
    }
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

/// Addresses present on a context's links that its configuration does not
/// declare; lo's own (127.0.0.1/8, ::1/128) are the kernel's.
pub fn undeclared(present: &[(String, Cidr)], declared: &[(String, Cidr)]) -> Vec<(String, Cidr)> {
    let lo_own = |c: &Cidr| {
        (c.addr == IpAddr::from([127, 0, 0, 1]) && c.prefix == 8)
            || (c.addr == IpAddr::from(std::net::Ipv6Addr::LOCALHOST) && c.prefix == 128)
    };
    present
        .iter()
        .filter(|(link, c)| {
            let kernels = link == "lo" && lo_own(c);
            !kernels && !declared.contains(&(link.clone(), *c))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn verdicts_on_synthetic_sockets() {
        let assigned = [ip("10.100.0.2"), ip("fd00:100::2")];
        assert_eq!(judge(ip("10.100.0.2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("fd00:100::2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("0.0.0.0"), &assigned), Verdict::Wildcard);
        assert_eq!(judge(ip("::"), &assigned), Verdict::Wildcard);
        assert_eq!(judge(ip("127.0.0.53"), &assigned), Verdict::Loopback);
        assert_eq!(judge(ip("::1"), &assigned), Verdict::Loopback);
        // Another context's address, bound with IP_FREEBIND.
        assert_eq!(judge(ip("10.200.0.2"), &assigned), Verdict::Foreign);
        // v4-mapped IPv6 is judged as the IPv4 address.
        assert_eq!(judge(ip("::ffff:10.100.0.2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("::ffff:10.200.0.2"), &assigned), Verdict::Foreign);
        assert_eq!(judge(ip("::ffff:0.0.0.0"), &assigned), Verdict::Wildcard);
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
            // Another context's address on lo is not lo's own.
            ("lo".to_string(), c("10.0.0.7/32")),
        ];
        assert_eq!(
            undeclared(&present, &declared),
            [
                ("eth0".to_string(), c("10.0.0.99/24")),
                ("lo".to_string(), c("10.0.0.7/32"))
            ]
        );
    }
}
