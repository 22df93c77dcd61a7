//! The port syntaxes of the configuration: the policy's entries (`reach`,
//! `accept_from`, `deny`: `PEER[:PORTS[/tcp|/udp]]`) and Docker's `publish`
//! (`[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]`, an IPv6 HOSTIP in brackets).

use std::net::IpAddr;

use super::check_context_name;
use crate::model::{Cidr, Peer, Ports, Proto, Publish, Reach};

/// `PORT` (1..=65535).
fn port(s: &str) -> Option<u16> {
    s.parse().ok().filter(|p| *p != 0)
}

/// Split off `/tcp` or `/udp` (tcp by default); `None` for another suffix.
fn proto(s: &str) -> Option<(&str, Proto)> {
    match s.split_once('/') {
        None => Some((s, Proto::Tcp)),
        Some((p, "tcp")) => Some((p, Proto::Tcp)),
        Some((p, "udp")) => Some((p, Proto::Udp)),
        Some(_) => None,
    }
}

/// `PORT` or `LO-HI`, then `/tcp|/udp` (tcp by default).
fn ports(s: &str) -> Result<Ports, String> {
    let (p, proto) = proto(s).ok_or("has a protocol other than tcp or udp")?;
    let (lo, hi) = match p.split_once('-') {
        None => (p, p),
        Some(r) => r,
    };
    let (Some(lo), Some(hi)) = (port(lo), port(hi)) else {
        return Err("has a port outside 1..=65535".into());
    };
    if lo > hi {
        return Err(format!("has a port range upside down ({lo}-{hi})"));
    }
    Ok(Ports { lo, hi, proto })
}

/// `:PORTS[/PROTO]` or nothing.
fn opt_ports(rest: &str) -> Result<Option<Ports>, String> {
    match rest {
        "" => Ok(None),
        r => match r.strip_prefix(':') {
            Some(p) => ports(p).map(Some),
            None => Err("is malformed".into()),
        },
    }
}

/// An address range: `CIDR`, `ADDR`, `CIDR:PORTS[/PROTO]`,
/// `ADDR:PORTS[/PROTO]` (IPv4), `[CIDR]:PORTS[/PROTO]` or
/// `[ADDR]:PORTS[/PROTO]`; `None` when `s` does not start with an address.
fn net(s: &str) -> Option<Result<(Cidr, Option<Ports>), String>> {
    let cidr = |a: &str, p: Option<&str>| -> Result<Cidr, String> {
        let addr: IpAddr = a.parse().map_err(|_| format!("has no address {a:?}"))?;
        let max = crate::model::max_prefix(addr);
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("has a prefix length {p:?} outside 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix }.subnet())
    };
    if let Some(r) = s.strip_prefix('[') {
        let Some((inner, rest)) = r.split_once(']') else {
            return Some(Err("has an unclosed bracket".into()));
        };
        let (a, p) = match inner.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (inner, None),
        };
        if !a.contains(':') {
            return Some(Err("has brackets around an address that is not IPv6".into()));
        }
        return Some(cidr(a, p).and_then(|c| Ok((c, opt_ports(rest)?))));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(cidr(&a.to_string(), None).map(|c| (c, None)));
    }
    if let Some((a, rest)) = s.split_once('/') {
        if a.parse::<IpAddr>().is_ok() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (p, rest) = rest.split_at(digits);
            return Some(cidr(a, Some(p)).and_then(|c| Ok((c, opt_ports(rest)?))));
        }
    }
    // IPv4 with ports: `10.0.0.1:80`.
    let (a, rest) = s.split_at(s.find(':')?);
    let a: std::net::Ipv4Addr = a.parse().ok()?;
    Some(cidr(&a.to_string(), None).and_then(|c| Ok((c, opt_ports(rest)?))))
}

/// A domain name (letters, digits, `-`; labels of 1-63; at most 253;
/// two labels at least; `*.` in front for its subdomains), lowercased.
fn domain(s: &str) -> Option<String> {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && !labels.last()?.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.to_ascii_lowercase())
}

/// Which entries a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `reach`: contexts, `host`, address ranges, domain names.
    Reach,
    /// `accept_from`: contexts, address ranges.
    AcceptFrom,
    /// `deny`: address ranges.
    Deny,
}

impl EntryKind {
    fn key(self) -> &'static str {
        match self {
            EntryKind::Reach => "reach",
            EntryKind::AcceptFrom => "accept_from",
            EntryKind::Deny => "deny",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            EntryKind::Reach => "CONTEXT, host, CIDR or DOMAIN, each with optional :PORT[-PORT][/tcp|/udp]; an IPv6 range with a port in brackets: [2001:db8::/32]:443",
            EntryKind::AcceptFrom => "CONTEXT or CIDR, each with optional :PORT[-PORT][/tcp|/udp]; an IPv6 range with a port in brackets",
            EntryKind::Deny => "CIDR with optional :PORT[-PORT][/tcp|/udp]; an IPv6 range with a port in brackets",
        }
    }
}

/// One entry of `reach`, `accept_from` or `deny` (docs/policy.md).
pub fn parse_entry(s: &str, kind: EntryKind) -> Result<Reach, String> {
    let bad = |why: &str| {
        let expected = if why == "is malformed" || why.starts_with("names no context") {
            format!(" (expected {})", kind.expected())
        } else {
            String::new()
        };
        format!("{} entry {s:?} {why}{expected}", kind.key())
    };
    if let Some(n) = net(s) {
        let (c, ports) = n.map_err(|e| bad(&e))?;
        return Ok(Reach::new(Peer::Net(c), ports));
    }
    if kind == EntryKind::Deny {
        return Err(bad("is not an address range"));
    }
    let (name, rest) = s.split_at(s.find(':').unwrap_or(s.len()));
    let ports = opt_ports(rest).map_err(|e| bad(&e))?;
    let to = if name == "host" {
        if kind != EntryKind::Reach {
            return Err(bad("names the host, which is always admitted"));
        }
        Peer::Host
    } else if name.contains('.') {
        if kind != EntryKind::Reach {
            return Err(bad("names a domain, which only reach may"));
        }
        Peer::Domain(domain(name).ok_or_else(|| bad("is not a domain name"))?)
    } else {
        check_context_name(name).map_err(|_| bad("names no context"))?;
        Peer::Context(name.to_string())
    };
    Ok(Reach::new(to, ports))
}

/// A `reach` entry.
#[cfg(test)]
fn parse_reach(s: &str) -> Result<Reach, String> {
    parse_entry(s, EntryKind::Reach)
}

/// `[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]`; an IPv6 HOSTIP in brackets.
pub fn parse_publish(s: &str) -> Result<Publish, String> {
    let bad = |why: &str| {
        format!("publish entry {s:?} {why} (expected [HOSTIP:]HOSTPORT:PORT[/tcp|/udp])")
    };
    let (rest, proto) = proto(s).ok_or_else(|| bad("has a protocol other than tcp or udp"))?;
    let (host, ports) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, ports) = r
            .split_once("]:")
            .ok_or_else(|| bad("has an unclosed bracket"))?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| bad("has a bracketed host address that is not IPv6"))?;
        (Some(IpAddr::V6(ip)), ports)
    } else {
        match rest.matches(':').count() {
            1 => (None, rest),
            2 => {
                let (ip, ports) = rest.split_once(':').expect("two colons");
                let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| {
                    bad("has a host address that is not IPv4 (IPv6 goes in brackets)")
                })?;
                (Some(IpAddr::V4(ip)), ports)
            }
            _ => return Err(bad("is malformed")),
        }
    };
    let (hp, p) = ports.split_once(':').ok_or_else(|| bad("is malformed"))?;
    let (Some(host_port), Some(port)) = (port(hp), port(p)) else {
        return Err(bad("has a port outside 1..=65535"));
    };
    if host.is_some_and(|h| {
        h.is_loopback() || h.is_multicast() || matches!(h, IpAddr::V4(a) if a.is_broadcast())
    }) {
        return Err(bad("has a loopback, multicast or broadcast host address"));
    }
    Ok(Publish {
        host_ip: host,
        host_port,
        port,
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_in_dockers_syntax() {
        let p = |s: &str| parse_publish(s).map(|p| p.to_string());
        assert_eq!(p("8080:80").unwrap(), "8080:80/tcp");
        assert_eq!(
            p("203.0.113.1:8443:443/tcp").unwrap(),
            "203.0.113.1:8443:443/tcp"
        );
        assert_eq!(p("[::]:5353:53/udp").unwrap(), "[::]:5353:53/udp");
        assert_eq!(
            p("[2001:db8::1]:80:8080").unwrap(),
            "[2001:db8::1]:80:8080/tcp"
        );
        assert_eq!(p("0.0.0.0:1:2/udp").unwrap(), "0.0.0.0:1:2/udp");
        for bad in [
            "80",
            "0:80",
            "80:65536",
            "80:80/sctp",
            "2001:db8::1:80:80",
            "[10.0.0.1]:80:80",
            "[::1:80:80",
            "127.0.0.1:80:80",
            "host:80:80",
            "1:2:3:4",
            "",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reach_entries() {
        let r = |s: &str| parse_reach(s).map(|r| r.to_string());
        for (i, o) in [
            ("db:5432/udp", "db:5432/udp"),
            ("db", "db"),
            ("cache:8000-8100/udp", "cache:8000-8100/udp"),
            ("cache:8000-8100", "cache:8000-8100/tcp"),
            ("host:53/udp", "host:53/udp"),
            ("host", "host"),
            ("10.20.0.0/16:443/tcp", "10.20.0.0/16:443/tcp"),
            ("10.20.1.1/16", "10.20.0.0/16"),
            ("10.20.0.1:80", "10.20.0.1/32:80/tcp"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("[2001:db8::/32]:443", "[2001:db8::/32]:443/tcp"),
            ("2001:db8::/32:443/udp", "[2001:db8::/32]:443/udp"),
            ("[2001:db8::1]:1-2/udp", "[2001:db8::1/128]:1-2/udp"),
            ("api.example.com:443/tcp", "api.example.com:443/tcp"),
            ("*.Example.COM", "*.example.com"),
        ] {
            assert_eq!(r(i).as_deref(), Ok(o), "{i}");
        }
        for bad in [
            "db:0",
            "db:1/x",
            "cache:8100-8000",
            "DB",
            "db:",
            "db:1-",
            "10.0.0.0/33",
            "[10.0.0.1]:80",
            "[2001:db8::/32:80",
            "2001:db8::/32:",
            "-a.example.com",
            "example.123",
            "a..b",
            "*.com.",
            "",
        ] {
            assert!(parse_reach(bad).is_err(), "{bad}");
        }
        let e = parse_reach("cache:8100-8000/udp").unwrap_err();
        assert!(e.contains("upside down"), "{e}");
        assert!(parse_entry("host:22", EntryKind::AcceptFrom).is_err());
        assert!(parse_entry("a.example.com", EntryKind::AcceptFrom).is_err());
        assert!(parse_entry("web:22", EntryKind::AcceptFrom).is_ok());
        assert!(parse_entry("web", EntryKind::Deny).is_err());
        assert!(parse_entry("169.254.0.0/16", EntryKind::Deny).is_ok());
        assert!(parse_entry("[fd00:ec2::254/128]:80", EntryKind::Deny).is_ok());
    }
}

#[cfg(test)]
mod policy_tests {
    use crate::model::{Admit, Peer, Ports, Proto};
    use std::path::PathBuf;

    const CFG: &str = r#"
[defaults]
deny = ["10.0.0.0/8:22"]
[context.a]
reach = ["c:80-90", "host:53/udp", "c:5000/udp"]
[[context.a.link]]
kind = "veth"
name = "eth0"
addresses = ["10.61.0.2/24"]
[context.b]
reach = ["c"]
[[context.b.link]]
kind = "veth"
name = "eth0"
addresses = ["10.62.0.2/24"]
[context.c]
accept_from = ["b:85-100", "a:88/tcp", "10.61.0.0/24:89"]
[[context.c.link]]
kind = "veth"
name = "eth0"
addresses = ["10.63.0.2/24"]
[context.d]
[[context.d.link]]
kind = "veth"
name = "eth0"
addresses = ["10.64.0.2/24"]
"#;

    #[test]
    fn the_receivers_accept_from_is_resolved_into_the_senders_reach() {
        let cfg = crate::config::load_sources(&[(PathBuf::from("t.toml"), CFG.into())]).unwrap();
        let get = |n: &str| cfg.contexts.iter().find(|c| c.name == n).unwrap();
        let tcp = |lo, hi| {
            Some(Ports {
                lo,
                hi,
                proto: Proto::Tcp,
            })
        };
        let a = get("a");
        let to_c = a.reach.iter().find(|r| r.ports == tcp(80, 90)).unwrap();
        assert_eq!(to_c.links, ["nx-c"]);
        // c admits a on 88 (by name) and on 89 (by its range); not b's
        // entry.
        assert_eq!(
            to_c.admit,
            [
                Admit {
                    from: None,
                    ports: tcp(88, 88)
                },
                Admit {
                    from: Some(crate::model::Cidr::parse("10.61.0.0/24").unwrap()),
                    ports: tcp(89, 89)
                },
            ]
        );
        // UDP 5000: nothing c admits.
        let udp = a
            .reach
            .iter()
            .find(|r| r.ports.is_some_and(|p| p.proto == Proto::Udp) && r.context().is_some())
            .unwrap();
        assert!(udp.admit.is_empty());
        assert!(a.reach.iter().any(|r| r.to == Peer::Host));
        // b: any port of c, narrowed to what c admits of b.
        let b = get("b");
        assert_eq!(b.reach[0].admit.len(), 1);
        assert_eq!(b.reach[0].admit[0].ports, tcp(85, 100));
        // The floor, as given, for every context.
        assert_eq!(get("d").deny.len(), 1);
        assert_eq!(get("d").deny[0].to_string(), "10.0.0.0/8:22/tcp");
    }

    #[test]
    fn the_default_floor_is_cloud_metadata() {
        let cfg = crate::config::load_sources(&[(
            PathBuf::from("t.toml"),
            "[context.d]\n[[context.d.link]]\nkind = \"veth\"\nname = \"eth0\"\naddresses = [\"10.64.0.2/24\"]\n".into(),
        )])
        .unwrap();
        let deny: Vec<String> = cfg.contexts[0].deny.iter().map(|d| d.to_string()).collect();
        assert_eq!(deny, ["169.254.0.0/16", "fd00:ec2::254/128"]);
    }
}
