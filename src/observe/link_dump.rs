//! Links read straight from the bytes of an RTM_GETLINK dump: the few
//! attributes netctx looks at (name, flags, alias, kind, hardware address
//! and the per-device switches of IFLA_AF_SPEC), without parsing every
//! attribute of every link into structures first. Tested against the full
//! parse (`links::tests`).

use super::links::ObsLink;
use crate::kernel::netlink::wire;

/// The attributes of a link message `raw_link` reads (linux/if_link.h).
mod ifla {
    pub const ADDRESS: u16 = 1;
    pub const IFNAME: u16 = 3;
    pub const QDISC: u16 = 6;
    pub const LINKINFO: u16 = 18;
    pub const INFO_KIND: u16 = 1;
    pub const IFALIAS: u16 = 20;
    pub const AF_SPEC: u16 = 26;
    /// Inside AF_INET and AF_INET6 (after IFLA_INET6_FLAGS).
    pub const INET_CONF: u16 = 1;
    pub const INET6_CONF: u16 = 2;
}

/// The per-device switches `link_conf` reports, by their place in the
/// kernel's arrays: IPv4's `IPV4_DEVCONF_*` less one, IPv6's `DEVCONF_*`.
const V4_CONF_AT: [(&str, usize); 6] = [
    ("forwarding", 0),
    ("proxy_arp", 2),
    ("accept_redirects", 3),
    ("rp_filter", 7),
    ("accept_source_route", 8),
    ("route_localnet", 25),
];
const V6_CONF_AT: [(&str, usize); 7] = [
    ("forwarding", 0),
    ("accept_ra", 3),
    ("accept_redirects", 4),
    ("autoconf", 5),
    ("proxy_ndp", 22),
    ("accept_source_route", 24),
    ("disable_ipv6", 26),
];

/// One link of a dump (an RTM_NEWLINK payload: `ifinfomsg`, attributes)
/// and its switches under their `/proc/sys` paths: what `parse_link` and
/// `link_conf` read.
pub(super) fn raw_link(m: &[u8]) -> Option<(ObsLink, Vec<(String, String)>)> {
    let word = |at: usize| {
        m.get(at..at + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
    };
    let mut l = ObsLink {
        index: word(4)?,
        name: String::new(),
        kind: None,
        up: word(8)? & libc::IFF_UP as u32 != 0,
        alias: None,
        addrs: Vec::new(),
        link_local: Vec::new(),
        mac: None,
        qdisc: None,
        tbf: None,
    };
    let text = |v: &[u8]| {
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    };
    let mut spec = None;
    let mut conf = Vec::new();
    for (ty, v) in wire::parse_attrs(m.get(16..)?) {
        match ty {
            ifla::IFNAME => l.name = text(v),
            ifla::ADDRESS => l.mac = v.try_into().ok(),
            ifla::IFALIAS => l.alias = Some(text(v)),
            ifla::QDISC => l.qdisc = Some(text(v)),
            ifla::LINKINFO => {
                l.kind = wire::parse_attrs(v)
                    .find(|(t, _)| *t == ifla::INFO_KIND)
                    .map(|(_, k)| text(k));
            }
            ifla::AF_SPEC => spec = Some(v),
            _ => {}
        }
    }
    for (family, v) in wire::parse_attrs(spec.unwrap_or_default()) {
        let (fam, attr, at): (&str, u16, &[(&str, usize)]) = match i32::from(family) {
            libc::AF_INET => ("ipv4", ifla::INET_CONF, &V4_CONF_AT),
            libc::AF_INET6 => ("ipv6", ifla::INET6_CONF, &V6_CONF_AT),
            _ => continue,
        };
        let Some((_, values)) = wire::parse_attrs(v).find(|(t, _)| *t == attr) else {
            continue;
        };
        for (key, i) in at {
            if let Some(b) = values.get(i * 4..i * 4 + 4) {
                let v = i32::from_ne_bytes(b.try_into().unwrap());
                conf.push((format!("net/{fam}/conf/{}/{key}", l.name), v.to_string()));
            }
        }
    }
    Some((l, conf))
}
