//! Builders of rtnetlink messages: pure data, made before anything is sent,
//! testable without root. `apply` and `observe` send what these build.

use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};

use crate::kernel::netlink::Request;
use crate::model::{max_prefix, Cidr};

pub const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// `rtm_protocol` netctx puts on its routes (RTPROT_STATIC, as `ip route` does
/// for administrator routes).
pub const ROUTE_PROTO: RouteProtocol = RouteProtocol::Static;
const MAIN_TABLE: u8 = 254;
/// `rtm_protocol` of the host routes of announced addresses (`announce =
/// true`, docs/cluster.md), named `netctx` in
/// `/etc/iproute2/rt_protos.d/netctx.conf`: a number no registered protocol
/// uses — not the kernel's RTPROT_* (0–4, 8–18, 42, 99, 186–189, 192), not
/// FRR's own (186–198), not Calico's 80 or OVN's 84 — so that a routing
/// daemon exporting this protocol exports netctx's routes and nothing else.
pub const ANNOUNCE_PROTO_NUMBER: u8 = 110;
pub const ANNOUNCE_PROTO: RouteProtocol = RouteProtocol::Other(ANNOUNCE_PROTO_NUMBER);

fn link_named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

/// A veth pair: `host` in the socket's namespace, `peer` created directly in
/// the namespace `peer_ns` under its final name.
pub fn new_veth(host: &str, peer: &str, peer_ns: RawFd) -> Request {
    let mut peer_msg = link_named(peer);
    peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_ns));
    let mut m = link_named(host);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
    ]));
    Request {
        msg: M::NewLink(m),
        flags: CREATE,
    }
}

pub fn new_dummy(name: &str) -> Request {
    let mut m = link_named(name);
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Dummy,
        )]));
    Request {
        msg: M::NewLink(m),
        flags: CREATE,
    }
}

/// Set the alias (`IFLA_IFALIAS`) of an existing link found by name.
pub fn set_alias(name: &str, alias: &str) -> Request {
    let mut m = link_named(name);
    m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
    Request {
        msg: M::SetLink(m),
        flags: 0,
    }
}

pub fn del_link(name: &str) -> Request {
    Request {
        msg: M::DelLink(link_named(name)),
        flags: 0,
    }
}

pub fn set_link_up(name: &str, up: bool) -> Request {
    let mut m = link_named(name);
    m.header.change_mask = LinkFlags::Up;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    Request {
        msg: M::SetLink(m),
        flags: 0,
    }
}

pub fn get_link(name: &str) -> M {
    M::GetLink(link_named(name))
}

/// A dump of links without their statistics (smaller, faster to parse).
pub fn dump_links() -> M {
    let mut m = LinkMessage::default();
    m.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    M::GetLink(m)
}

pub fn dump_addresses() -> M {
    M::GetAddress(AddressMessage::default())
}

pub fn dump_routes() -> M {
    M::GetRoute(RouteMessage::default())
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn address(index: u32, cidr: Cidr) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(cidr.addr);
    m.header.prefix_len = cidr.prefix;
    m.header.index = index;
    if cidr.is_v4() {
        m.attributes.push(AddressAttribute::Local(cidr.addr));
    }
    m.attributes.push(AddressAttribute::Address(cidr.addr));
    m
}

/// Add an address. IPv6 addresses skip duplicate address detection so they
/// can be bound at once (the peers are netctx's own links).
pub fn add_address(index: u32, cidr: Cidr) -> Request {
    let mut m = address(index, cidr);
    if !cidr.is_v4() {
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    Request {
        msg: M::NewAddress(m),
        flags: CREATE,
    }
}

pub fn del_address(index: u32, cidr: Cidr) -> Request {
    Request {
        msg: M::DelAddress(address(index, cidr)),
        flags: 0,
    }
}

fn route(to: Cidr, via: Option<IpAddr>, oif: Option<u32>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(to.addr);
    m.header.destination_prefix_length = to.prefix;
    m.header.table = MAIN_TABLE;
    m.header.protocol = ROUTE_PROTO;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    if to.prefix > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(to.addr)));
    }
    if let Some(gw) = via {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = oif {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    m
}

pub fn add_route(to: Cidr, via: IpAddr) -> Request {
    Request {
        msg: M::NewRoute(route(to, Some(via), None)),
        flags: CREATE,
    }
}

pub fn del_route(
    to: Cidr,
    via: Option<IpAddr>,
    oif: Option<u32>,
    protocol: RouteProtocol,
) -> Request {
    let mut m = route(to, via, oif);
    m.header.protocol = protocol;
    m.header.scope = RouteScope::NoWhere;
    m.header.kind = RouteType::Unspec;
    Request {
        msg: M::DelRoute(m),
        flags: 0,
    }
}

/// A proxy neighbour entry (`ip neigh add proxy IP dev IF`): the host
/// answers ARP/NDP for `ip` on the link `index`.
fn proxy_neigh(index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::Proxy;
    m.header.state = NeighbourState::Permanent;
    m.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    m
}

/// Every neighbour entry (the ARP and NDP caches).
pub fn dump_neighbours() -> M {
    M::GetNeighbour(NeighbourMessage::default())
}

/// A dump of the proxy neighbour entries (`ip neigh show proxy`), every
/// family.
pub fn dump_proxies() -> M {
    let mut m = NeighbourMessage::default();
    m.header.flags = NeighbourFlags::Proxy;
    M::GetNeighbour(m)
}

pub fn add_proxy(index: u32, ip: IpAddr) -> Request {
    Request {
        msg: M::NewNeighbour(proxy_neigh(index, ip)),
        flags: NLM_F_CREATE | NLM_F_REPLACE,
    }
}

pub fn del_proxy(index: u32, ip: IpAddr) -> Request {
    Request {
        msg: M::DelNeighbour(proxy_neigh(index, ip)),
        flags: 0,
    }
}

/// `ip route replace IP/32 dev OIF proto PROTOCOL` (or /128).
pub fn replace_host_route(ip: IpAddr, oif: u32, protocol: RouteProtocol) -> Request {
    let to = Cidr {
        addr: ip,
        prefix: crate::model::max_prefix(ip),
    };
    let mut m = route(to, None, Some(oif));
    m.header.scope = RouteScope::Link;
    m.header.protocol = protocol;
    Request {
        msg: M::NewRoute(m),
        flags: NLM_F_CREATE | NLM_F_REPLACE,
    }
}

/// The host route `IP/32 dev OIF` of `protocol` (`Unspec`: of any).
pub fn del_host_route(ip: IpAddr, oif: u32, protocol: RouteProtocol) -> Request {
    let to = Cidr {
        addr: ip,
        prefix: crate::model::max_prefix(ip),
    };
    del_route(to, None, Some(oif), protocol)
}

/// `ip route replace IP/32 dev OIF scope link proto netctx` (or /128): an
/// announced address.
pub fn add_announced_route(ip: IpAddr, oif: u32) -> Request {
    let mut r = add_link_route(ip, oif);
    if let M::NewRoute(m) = &mut r.msg {
        m.header.protocol = ANNOUNCE_PROTO;
    }
    // The route to the context's own address over its own veth is
    // netctx's: one an earlier run left as `egress = "routed"`'s (proto
    // static) becomes the announce's.
    r.flags = NLM_F_CREATE | NLM_F_REPLACE;
    r
}

/// An address that puts no subnet route in (the subnet is reached through
/// the gateway, as the ptp plugin does); IPv6 without duplicate detection.
pub fn add_address_no_route(index: u32, cidr: Cidr) -> Request {
    let mut r = add_address(index, cidr);
    if let M::NewAddress(m) = &mut r.msg {
        let mut flags = AddressFlags::Noprefixroute;
        m.attributes.retain(|a| match a {
            AddressAttribute::Flags(f) => {
                flags |= *f;
                false
            }
            _ => true,
        });
        m.attributes.push(AddressAttribute::Flags(flags));
    }
    r
}

/// `DST dev OIF scope link`: a host route to a neighbour on the link.
pub fn add_link_route(dst: IpAddr, oif: u32) -> Request {
    let to = Cidr {
        addr: dst,
        prefix: max_prefix(dst),
    };
    let mut r = del_route(to, None, Some(oif), ROUTE_PROTO);
    if let M::DelRoute(mut m) = r.msg {
        m.header.scope = RouteScope::Link;
        m.header.kind = netlink_packet_route::route::RouteType::Unicast;
        r = Request {
            msg: M::NewRoute(m),
            flags: CREATE,
        };
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn bytes(m: &M) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn veth_request_carries_peer_name_and_namespace() {
        let r = new_veth("nx-web", "eth0", 7);
        assert_eq!(r.flags, CREATE);
        let b = bytes(&r.msg);
        let find = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"nx-web\0"));
        assert!(find(b"eth0\0"));
        assert!(find(b"veth\0"));
        // IFLA_NET_NS_FD (28) with value 7 inside the peer.
        assert!(find(&[8, 0, 28, 0, 7, 0, 0, 0]));
    }

    #[test]
    fn ipv4_address_has_local_and_address_v6_has_nodad() {
        let c = Cidr::parse("10.0.0.2/24").unwrap();
        let M::NewAddress(m) = add_address(3, c).msg else {
            panic!()
        };
        assert_eq!((m.header.index, m.header.prefix_len), (3, 24));
        assert_eq!(m.attributes.len(), 2);
        let c6 = Cidr::parse("fd00::2/64").unwrap();
        let M::NewAddress(m) = add_address(3, c6).msg else {
            panic!()
        };
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let d = Cidr::parse("0.0.0.0/0").unwrap();
        let M::NewRoute(m) = add_route(d, "10.0.0.1".parse().unwrap()).msg else {
            panic!()
        };
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert!(m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_))));
        assert_eq!(m.header.table, MAIN_TABLE);
    }

    #[test]
    fn link_up_sets_flag_and_mask_down_only_mask() {
        let M::SetLink(up) = set_link_up("eth0", true).msg else {
            panic!()
        };
        assert_eq!(
            (up.header.flags, up.header.change_mask),
            (LinkFlags::Up, LinkFlags::Up)
        );
        let M::SetLink(down) = set_link_up("eth0", false).msg else {
            panic!()
        };
        assert!(down.header.flags.is_empty());
    }

    #[test]
    fn address_without_prefix_route_keeps_nodad_for_v6() {
        let M::NewAddress(m) = add_address_no_route(4, Cidr::parse("10.89.0.2/24").unwrap()).msg
        else {
            panic!()
        };
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Noprefixroute)));
        let M::NewAddress(m) = add_address_no_route(4, Cidr::parse("2001:db8::2/64").unwrap()).msg
        else {
            panic!()
        };
        let flags: Vec<_> = m
            .attributes
            .iter()
            .filter(|a| matches!(a, AddressAttribute::Flags(_)))
            .collect();
        assert_eq!(
            flags,
            vec![&AddressAttribute::Flags(
                AddressFlags::Noprefixroute | AddressFlags::Nodad
            )]
        );
    }

    #[test]
    fn link_route_is_a_host_route_on_the_device() {
        let r = add_link_route("10.89.0.1".parse().unwrap(), 9);
        assert_eq!(r.flags, CREATE);
        let M::NewRoute(m) = r.msg else { panic!() };
        assert_eq!(m.header.scope, RouteScope::Link);
        assert_eq!(m.header.destination_prefix_length, 32);
        assert!(m.attributes.contains(&RouteAttribute::Oif(9)));
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_))));
    }
}
