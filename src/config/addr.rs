//! Which addresses a context or a host side may be given: unicast only, with
//! a real prefix, not the network or broadcast address of its subnet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::Cidr;

/// Why `c` cannot be assigned to a link, if it cannot.
pub fn problem(c: &Cidr) -> Option<String> {
    if c.prefix == 0 {
        return Some(format!(
            "{c}: a /0 prefix would claim every address (a default route to this link)"
        ));
    }
    let what = match c.addr {
        IpAddr::V4(a) => v4_problem(a, c.prefix),
        IpAddr::V6(a) => v6_problem(a),
    }?;
    Some(format!("{c}: {what}, not a unicast address a link can own"))
}

fn v4_problem(a: Ipv4Addr, prefix: u8) -> Option<String> {
    let kind = if a.is_multicast() {
        "a multicast address"
    } else if a.is_broadcast() {
        "the limited broadcast address"
    } else if a.octets()[0] == 0 {
        "in 0.0.0.0/8 (this network)"
    } else if a.is_loopback() {
        "a loopback address"
    } else if a.is_link_local() {
        "a link-local address"
    } else if a.octets()[0] >= 240 {
        "reserved (240.0.0.0/4)"
    } else if prefix <= 30 {
        let c = Cidr {
            addr: IpAddr::V4(a),
            prefix,
        };
        let bits = 32 - u32::from(prefix);
        let host = u32::from(a) & ((1u32 << bits) - 1);
        if host == 0 {
            return Some(format!("the network address of {}", c.subnet()));
        }
        if host == (1u32 << bits) - 1 {
            return Some(format!("the broadcast address of {}", c.subnet()));
        }
        return None;
    } else {
        return None;
    };
    Some(kind.to_string())
}

fn v6_problem(a: Ipv6Addr) -> Option<String> {
    let s = a.segments();
    let kind = if a.is_unspecified() {
        "the unspecified address"
    } else if a.is_loopback() {
        "the loopback address"
    } else if a.is_multicast() {
        "a multicast address"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "a link-local address (the kernel makes each link's own)"
    } else if a.to_ipv4_mapped().is_some() {
        "an IPv4-mapped address (write the IPv4 address)"
    } else {
        return None;
    };
    Some(kind.to_string())
}

/// Whether two subnets share any address (the reference the subnet index
/// is tested against).
#[cfg(test)]
pub fn overlap(a: &Cidr, b: &Cidr) -> bool {
    a.overlaps(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        problem(&Cidr::parse(s).unwrap())
    }

    #[test]
    fn only_unicast_addresses_with_a_real_prefix_pass() {
        for ok in [
            "10.0.0.2/24",
            "10.0.0.1/31",
            "10.0.0.0/31",
            "10.0.0.7/32",
            "203.0.113.9/24",
            "fd00::1/64",
            "2001:db8::/64",
        ] {
            assert_eq!(p(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("fd00:50::1/0", "/0"),
            ("0.0.0.0/0", "/0"),
            ("224.0.0.5/24", "multicast"),
            ("255.255.255.255/32", "limited broadcast"),
            ("0.1.2.3/8", "0.0.0.0/8"),
            ("127.0.0.2/8", "loopback"),
            ("169.254.1.1/16", "link-local"),
            ("10.0.0.0/24", "network address of 10.0.0.0/24"),
            ("10.0.0.255/24", "broadcast address of 10.0.0.0/24"),
            ("10.0.0.3/30", "broadcast"),
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("ff02::1/64", "multicast"),
            ("fe80::1/64", "link-local"),
            ("::ffff:10.2.0.2/128", "IPv4-mapped"),
            ("240.0.0.1/8", "reserved"),
        ] {
            let m = p(bad).unwrap_or_default();
            assert!(m.contains(why), "{bad}: {m}");
        }
    }

    #[test]
    fn overlapping_subnets_are_found() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        assert!(overlap(&c("10.60.0.2/8"), &c("10.61.0.2/24")));
        assert!(overlap(&c("10.1.0.2/24"), &c("10.1.0.9/24")));
        assert!(overlap(&c("10.200.0.1/32"), &c("10.200.0.0/24")));
        assert!(!overlap(&c("10.1.0.2/24"), &c("10.2.0.2/24")));
        assert!(!overlap(&c("10.1.0.2/24"), &c("fd00::1/64")));
    }
}
