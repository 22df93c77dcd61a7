//! Routes an administrator or netctx added, and the host's side of routed
//! contexts and point-to-point links (proxy entries, host routes).

use std::net::IpAddr;

use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::rtnl;
use crate::model::Cidr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsRoute {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub protocol: RouteProtocol,
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

/// The host's side of routed contexts: proxy neighbour entries
/// `(ifindex, address)` and host routes `(address, oif)` of one address each
/// (`/32`, `/128`) in the main table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutedObs {
    pub proxies: std::collections::BTreeSet<(u32, IpAddr)>,
    pub routes: std::collections::BTreeSet<(IpAddr, u32)>,
    /// Those of `routes` of protocol netctx (announced addresses).
    pub announced: std::collections::BTreeSet<(IpAddr, u32)>,
}

/// Proxy neighbour entries and single-address routes of the socket's
/// namespace.
pub fn read_routed(nl: &mut Rtnl) -> Result<RoutedObs, NlError> {
    let mut out = RoutedObs::default();
    for m in nl.dump(rtnl::dump_proxies())? {
        if let M::NewNeighbour(n) = m {
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                _ => None,
            });
            if let Some(d) = dst {
                out.proxies.insert((n.header.ifindex, d));
            }
        }
    }
    for m in nl.dump(rtnl::dump_routes())? {
        let M::NewRoute(r) = m else { continue };
        let Some(r) = parse_route(&r) else { continue };
        if r.to.prefix == crate::model::max_prefix(r.to.addr) && r.via.is_none() {
            if let Some(oif) = r.oif {
                out.routes.insert((r.to.addr, oif));
                if r.protocol == rtnl::ANNOUNCE_PROTO {
                    out.announced.insert((r.to.addr, oif));
                }
            }
        }
    }
    Ok(out)
}
