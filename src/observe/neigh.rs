//! Who on a LAN already answers for an address (docs/coexistence.md):
//! before netctx proxies a routed context's address on the uplink, one
//! datagram is sent to it out of the uplink, which makes the kernel ask
//! (ARP or NDP); an entry that resolves names the host that answered.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::rtnl;

/// The addresses `pick` chooses (given the uplink's own addresses) that a
/// host on the uplink's LAN answers for, each with its hardware address;
/// addresses netctx already answers for (a proxy entry of ours) are not
/// asked about.
pub fn taken_on(
    uplink: &str,
    pick: impl FnOnce(&[crate::model::Cidr]) -> Vec<IpAddr>,
    wait: Duration,
) -> Result<Vec<(IpAddr, String)>, NlError> {
    let mut nl = Rtnl::open()?;
    let Some(link) = super::links::read_links(&mut nl)?
        .into_iter()
        .find(|l| l.name == uplink)
    else {
        return Ok(Vec::new());
    };
    let proxied = super::routes::read_routed(&mut nl)?.proxies;
    let addrs: Vec<IpAddr> = pick(&link.addrs)
        .into_iter()
        .filter(|a| !proxied.contains(&(link.index, *a)))
        .collect();
    answered(uplink, link.index, &addrs, wait)
}

/// The addresses of `addrs` that a host on link `ifindex` (`dev`) answers
/// for, each with its hardware address, after a probe and `wait`.
fn answered(
    dev: &str,
    ifindex: u32,
    addrs: &[IpAddr],
    wait: Duration,
) -> Result<Vec<(IpAddr, String)>, NlError> {
    if addrs.is_empty() {
        return Ok(Vec::new());
    }
    for a in addrs {
        let any: IpAddr = if a.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        // The discard port: nothing is meant to listen; the kernel resolves
        // the neighbour to send it at all.
        if let Ok(u) = UdpSocket::bind(SocketAddr::new(any, 0)) {
            let _ = nix::sys::socket::setsockopt(
                &u,
                nix::sys::socket::sockopt::BindToDevice,
                &std::ffi::OsString::from(dev),
            );
            let _ = u.send_to(b"netctx: is this address taken?", SocketAddr::new(*a, 9));
        }
    }
    std::thread::sleep(wait);
    let mut nl = Rtnl::open()?;
    let mut out = Vec::new();
    for m in nl.dump(rtnl::dump_neighbours())? {
        let M::NewNeighbour(n) = m else { continue };
        if n.header.ifindex != ifindex {
            continue;
        }
        // Confirmed: an answer to the probe (or an address configured
        // by hand). A stale entry proves nothing about now.
        let resolved = matches!(
            n.header.state,
            NeighbourState::Reachable | NeighbourState::Permanent
        );
        let mut dst = None;
        let mut mac = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                    dst = Some(IpAddr::V4(*v))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                    dst = Some(IpAddr::V6(*v))
                }
                NeighbourAttribute::LinkLayerAddress(b) => {
                    mac = Some(
                        b.iter()
                            .map(|x| format!("{x:02x}"))
                            .collect::<Vec<_>>()
                            .join(":"),
                    )
                }
                _ => {}
            }
        }
        if let (true, Some(d), Some(m)) = (resolved, dst, mac) {
            if addrs.contains(&d) {
                out.push((d, m));
            }
        }
    }
    Ok(out)
}
