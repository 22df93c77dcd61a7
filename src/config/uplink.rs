//! Cross-checks of `uplink`, `egress` and `publish`: egress and published
//! ports need an uplink; a host port (per protocol and host address) is
//! published once over all contexts; a published port needs an address of
//! its family in the context.

use std::collections::HashMap;
use std::net::IpAddr;

use super::parse::{CtxDecl, Settings};
use super::{Diag, Loc};
use crate::model::{Egress, Proto, Publish};

/// Whether two host addresses of published ports can be one: none given is
/// every address, `0.0.0.0`/`::` every address of that family.
fn overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4() => false,
        (Some(a), Some(b)) => a.is_unspecified() || b.is_unspecified() || a == b,
    }
}

/// A published port already taken: the entry, its context, where.
type Taken = (Publish, String, Loc);

/// Why `uplink` cannot be an uplink: loopback, or a link netctx makes (a
/// context's host side — `hosts` are every context's, by context — or a
/// CNI attachment's `nxc…`).
fn not_an_uplink(uplink: &str, decls: &[CtxDecl], hosts: &[Vec<Option<String>>]) -> Option<String> {
    if uplink == "lo" {
        return Some("lo is the host's loopback, not a link to a LAN".into());
    }
    for (c, names) in decls.iter().zip(hosts) {
        if names.iter().flatten().any(|h| h == uplink) {
            return Some(format!(
                "{uplink} is the host side of context {}'s link, which netctx makes",
                c.name
            ));
        }
    }
    let attachment = uplink.len() == 15
        && uplink
            .strip_prefix("nxc")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    attachment.then(|| format!("{uplink} is a CNI attachment's host link, which netctx makes"))
}

pub fn check(
    decls: &[CtxDecl],
    defaults: &Settings,
    hosts: &[Vec<Option<String>>],
    diags: &mut Vec<Diag>,
) {
    let mut err = |loc: &Loc, msg: String| {
        diags.push(Diag {
            loc: loc.clone(),
            msg,
        })
    };
    let mut taken: HashMap<(Proto, u16), Vec<Taken>> = HashMap::new();
    for c in decls {
        let s = &c.settings;
        let uplink = s.uplink.as_ref().or(defaults.uplink.as_ref());
        if let Some((u, loc)) = uplink {
            if let Some(why) = not_an_uplink(u, decls, hosts) {
                err(loc, format!("context {}: uplink {u}: {why}", c.name));
            }
        }
        let egress = s.egress.as_ref().or(defaults.egress.as_ref());
        if uplink.is_none() {
            if let Some((e, loc)) = egress.filter(|(e, _)| *e != Egress::None) {
                let name = if *e == Egress::Nat { "nat" } else { "routed" };
                let m = format!("context {}: egress = {name:?} needs an uplink", c.name);
                err(loc, m);
            }
            if let Some((p, loc)) = c.publish.first() {
                let m = format!("context {}: publish {p} needs an uplink", c.name);
                err(loc, m);
            }
        }
        let addrs: Vec<IpAddr> = c
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().map(|(a, _)| a.addr))
            .collect();
        for (p, loc) in &c.publish {
            let family_ok = match p.host_ip {
                None => !addrs.is_empty(),
                Some(h) => addrs.iter().any(|a| a.is_ipv4() == h.is_ipv4()),
            };
            if !family_ok {
                let fam = match p.host_ip {
                    Some(IpAddr::V4(_)) => "an IPv4 ",
                    Some(IpAddr::V6(_)) => "an IPv6 ",
                    None => "an ",
                };
                let m = format!(
                    "context {}: publish {p} needs {fam}address in the context",
                    c.name
                );
                err(loc, m);
            }
            let others = taken.entry((p.proto, p.host_port)).or_default();
            if let Some((q, owner, at)) = others
                .iter()
                .find(|(q, _, _)| overlap(q.host_ip, p.host_ip))
            {
                let m = format!(
                    "context {}: publish {p} takes a host port that publish {q} of context {owner} at {at} already takes",
                    c.name
                );
                err(loc, m);
                continue;
            }
            others.push((*p, c.name.clone(), loc.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_overlap_by_family_and_wildcard() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(overlap(None, ip("203.0.113.1")));
        assert!(overlap(ip("0.0.0.0"), ip("203.0.113.1")));
        assert!(!overlap(ip("::"), ip("203.0.113.1")));
        assert!(!overlap(ip("203.0.113.2"), ip("203.0.113.1")));
        assert!(overlap(ip("2001:db8::1"), ip("::")));
    }
}
