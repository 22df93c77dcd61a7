//! The few rtnetlink requests the plugin needs beyond the engine's builders
//! in `msgs`: addresses without a prefix route, link-scope routes over one
//! device, and a link's hardware address. Pure data, tested without root.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::RouteScope;
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::{NlError, Request, Rtnl};
use crate::kernel::rtnl as msgs;
use crate::model::{max_prefix, Cidr};

/// An address that puts no subnet route in (the subnet is reached through
/// the gateway, as the ptp plugin does); IPv6 without duplicate detection.
pub fn add_address_no_route(index: u32, cidr: Cidr) -> Request {
    let mut r = msgs::add_address(index, cidr);
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
    let mut r = msgs::del_route(to, None, Some(oif), msgs::ROUTE_PROTO);
    if let M::DelRoute(mut m) = r.msg {
        m.header.scope = RouteScope::Link;
        m.header.kind = netlink_packet_route::route::RouteType::Unicast;
        r = Request {
            msg: M::NewRoute(m),
            flags: msgs::CREATE,
        };
    }
    r
}

/// The hardware address of link `name`, as `aa:bb:…`; `None` if no link.
pub fn mac(nl: &mut Rtnl, name: &str) -> Result<Option<String>, NlError> {
    let answers = match nl.query(msgs::get_link(name), 0) {
        Ok(a) => a,
        Err(e) if e.errno == libc::ENODEV => return Ok(None),
        Err(e) => return Err(e),
    };
    for m in answers {
        if let M::NewLink(l) = m {
            for a in l.attributes {
                if let LinkAttribute::Address(b) = a {
                    let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
                    return Ok(Some(hex.join(":")));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteAttribute;

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
        assert_eq!(r.flags, msgs::CREATE);
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
