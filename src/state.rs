//! What the kernel has: links, addresses, routes and forwarding switches of a
//! namespace, and netctx's host-side links. Read with one dump per object kind
//! per namespace; turned into plain data that `plan` compares with the model.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::model::Cidr;
use crate::msgs;
use crate::nft::observe::Live;
use crate::nl::{NlError, Rtnl};

/// Prefix of the alias netctx puts on the host-side links it makes.
pub const ALIAS_PREFIX: &str = "netctx:";

pub fn alias_for(ctx: &str) -> String {
    format!("{ALIAS_PREFIX}{ctx}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsLink {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub up: bool,
    pub alias: Option<String>,
    /// Addresses netctx manages (IPv6 link-local ones are the kernel's).
    pub addrs: Vec<Cidr>,
}

impl ObsLink {
    /// The context whose alias this link carries, if any.
    pub fn owner(&self) -> Option<&str> {
        self.alias
            .as_deref()
            .and_then(|a| a.strip_prefix(ALIAS_PREFIX))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsRoute {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub protocol: RouteProtocol,
}

/// The inside of a context's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsState {
    pub links: Vec<ObsLink>,
    pub routes: Vec<ObsRoute>,
    /// Switches netctx manages, by path under /proc/sys.
    pub sysctls: BTreeMap<String, bool>,
    /// The table `inet netctx`.
    pub nft: Live,
}

impl NsState {
    pub fn link(&self, name: &str) -> Option<&ObsLink> {
        self.links.iter().find(|l| l.name == name)
    }
}

fn parse_link(m: &LinkMessage) -> ObsLink {
    let mut l = ObsLink {
        index: m.header.index,
        name: String::new(),
        kind: None,
        up: m.header.flags.contains(LinkFlags::Up),
        alias: None,
        addrs: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(kind_name(k));
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Dummy => "dummy".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn parse_address(m: &AddressMessage) -> Option<(u32, Cidr)> {
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => addr = Some(*ip),
            AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
            _ => {}
        }
    }
    let addr = addr?;
    if let IpAddr::V6(v6) = addr {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
    }
    Some((
        m.header.index,
        Cidr {
            addr,
            prefix: m.header.prefix_len,
        },
    ))
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Routes an administrator (or netctx) added to the main table; the
/// kernel's own (connected, link-local, multicast) are left out.
pub fn parse_route(m: &RouteMessage) -> Option<ObsRoute> {
    let h = &m.header;
    let mut table = u32::from(h.table);
    let (mut dst, mut via, mut oif) = (None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => via = route_ip(g),
            RouteAttribute::Oif(o) => oif = Some(*o),
            _ => {}
        }
    }
    let own = !matches!(
        h.protocol,
        RouteProtocol::Kernel | RouteProtocol::Ra | RouteProtocol::IcmpRedirect
    );
    if table != 254 || !own || h.kind != RouteType::Unicast {
        return None;
    }
    let unspecified = match h.address_family {
        netlink_packet_route::AddressFamily::Inet => IpAddr::from([0u8; 4]),
        netlink_packet_route::AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
        _ => return None,
    };
    Some(ObsRoute {
        to: Cidr {
            addr: dst.unwrap_or(unspecified),
            prefix: h.destination_prefix_length,
        },
        via,
        oif,
        protocol: h.protocol,
    })
}

/// Every link of the socket's namespace, without addresses.
pub fn read_links_only(nl: &mut Rtnl) -> Result<Vec<ObsLink>, NlError> {
    Ok(nl
        .dump(msgs::dump_links())?
        .iter()
        .filter_map(|m| match m {
            M::NewLink(l) => Some(parse_link(l)),
            _ => None,
        })
        .collect())
}

/// Every link of the socket's namespace with its addresses.
pub fn read_links(nl: &mut Rtnl) -> Result<Vec<ObsLink>, NlError> {
    let mut links = read_links_only(nl)?;
    let by_index: HashMap<u32, usize> = links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.index, i))
        .collect();
    for m in nl.dump(msgs::dump_addresses())? {
        if let M::NewAddress(a) = m {
            if let Some((index, cidr)) = parse_address(&a) {
                if let Some(i) = by_index.get(&index) {
                    links[*i].addrs.push(cidr);
                }
            }
        }
    }
    for l in &mut links {
        l.addrs.sort();
    }
    Ok(links)
}

/// One link by name, without its addresses; `None` when there is none.
pub fn read_link(nl: &mut Rtnl, name: &str) -> Result<Option<ObsLink>, NlError> {
    match nl.query(msgs::get_link(name), 0) {
        Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
            M::NewLink(l) => Some(parse_link(l)),
            _ => None,
        })),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

pub const FORWARD_V4: &str = "net/ipv4/ip_forward";
pub const FORWARD_V6: &str = "net/ipv6/conf/all/forwarding";

pub fn accept_ra(link: &str) -> String {
    format!("net/ipv6/conf/{link}/accept_ra")
}

/// Read a switch under /proc/sys; `None` if it does not exist (IPv6 off).
pub fn read_sysctl(path: &str) -> Option<bool> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.trim() != "0")
}

pub fn write_sysctl(path: &str, on: bool) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), if on { "1" } else { "0" })
}

/// Everything inside the calling thread's namespace. `/proc/sys/net` shows
/// the namespace of the reading thread, so this is right on a setns'd thread.
pub fn read_ns(nl: &mut Rtnl, nft: &mut crate::nft::sock::Nft) -> Result<NsState, NlError> {
    let links = read_links(nl)?;
    let mut routes: Vec<ObsRoute> = nl
        .dump(msgs::dump_routes())?
        .iter()
        .filter_map(|m| match m {
            M::NewRoute(r) => parse_route(r),
            _ => None,
        })
        .collect();
    routes.sort_by_key(|r| (r.to, r.via));
    let mut sysctls = BTreeMap::new();
    let mut paths = vec![FORWARD_V4.to_string(), FORWARD_V6.to_string()];
    paths.extend(
        links
            .iter()
            .filter(|l| l.name != "lo")
            .map(|l| accept_ra(&l.name)),
    );
    for p in paths {
        if let Some(v) = read_sysctl(&p) {
            sysctls.insert(p, v);
        }
    }
    let nft = crate::nft::observe::read(nft, &crate::nft::ruleset::SET_NAMES)?;
    Ok(NsState {
        links,
        routes,
        sysctls,
        nft,
    })
}
