//! The port syntaxes of the configuration: `reach` entries
//! (`CTX[:PORT[/tcp|/udp]]`) and Docker's `publish`
//! (`[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]`, an IPv6 HOSTIP in brackets).

use std::net::IpAddr;

use super::check_context_name;
use crate::model::{Proto, Publish, Reach};

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

/// `CTX`, `CTX:PORT` or `CTX:PORT/tcp|udp` (tcp by default).
pub fn parse_reach(s: &str) -> Result<Reach, String> {
    let bad = || format!("reach entry {s:?} must be CONTEXT or CONTEXT:PORT[/tcp|/udp]");
    let (ctx, port) = match s.split_once(':') {
        None => (s, None),
        Some((c, rest)) => {
            let (p, proto) = proto(rest).ok_or_else(bad)?;
            let port: u16 = port(p).ok_or_else(bad)?;
            (c, Some((port, proto)))
        }
    };
    check_context_name(ctx).map_err(|_| bad())?;
    Ok(Reach {
        context: ctx.to_string(),
        port,
        links: Vec::new(),
    })
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
        let r = parse_reach("db:5432/udp").unwrap();
        assert_eq!(
            (r.context.as_str(), r.port),
            ("db", Some((5432, Proto::Udp)))
        );
        assert!(parse_reach("db:0").is_err());
        assert!(parse_reach("db:1/x").is_err());
    }
}
