//! Kernel notifications of one network namespace: rtnetlink (links,
//! addresses, routes of IPv4 and IPv6) and nf_tables (every table, chain,
//! rule and set change), on two sockets opened in the calling thread's
//! namespace. Parsing is pure and separate from the sockets. No policy:
//! which change is drift is the caller's question.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE};
use netlink_sys::Socket;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::kernel::netlink::wire::frames;
use crate::kernel::nft::wire::NFNL_SUBSYS_NFTABLES;

/// The rtnetlink groups: links, IPv4/IPv6 addresses, IPv4/IPv6 routes.
const RT_GROUPS: [u32; 5] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_ROUTE,
];
/// NFNLGRP_NFTABLES (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
/// NFT_MSG_NEWGEN, NFT_MSG_GETGEN and NFT_MSG_TRACE carry no object.
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_TRACE: u16 = 17;
/// The attribute naming the chain: NFTA_CHAIN_NAME in chain messages,
/// NFTA_RULE_CHAIN in rule messages.
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

/// One change the kernel reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Link {
        index: u32,
        name: Option<String>,
        alias: Option<String>,
        up: bool,
        deleted: bool,
    },
    Addr {
        index: u32,
        deleted: bool,
    },
    Route {
        deleted: bool,
        /// The output link of a host route that netctx's may be (protocol
        /// netctx or static, as netctx writes them): `None` for others.
        oif: Option<u32>,
    },
    /// An nf_tables object of `table` changed (a table, chain, rule, set or
    /// element; `chain` when the message names one).
    Nft {
        table: String,
        chain: Option<String>,
    },
    /// The kernel dropped notifications (ENOBUFS): anything may have changed.
    Lost,
}

fn link_event(l: &LinkMessage, deleted: bool) -> Event {
    let mut name = None;
    let mut alias = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::IfAlias(s) => alias = Some(s.clone()),
            _ => {}
        }
    }
    Event::Link {
        index: l.header.index,
        name,
        alias,
        up: l.header.flags.contains(LinkFlags::Up),
        deleted,
    }
}

fn route_event(r: &netlink_packet_route::route::RouteMessage, deleted: bool) -> Event {
    use netlink_packet_route::route::{RouteAttribute, RouteProtocol};
    let ours = [crate::kernel::rtnl::ANNOUNCE_PROTO, RouteProtocol::Static];
    let oif = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Oif(o) => Some(*o),
            _ => None,
        })
        .filter(|_| ours.contains(&r.header.protocol));
    Event::Route { deleted, oif }
}

/// The events in one datagram of rtnetlink notifications.
pub fn parse_rtnl(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    for f in frames(buf) {
        let Ok(m) = NetlinkMessage::<M>::deserialize(f.bytes) else {
            continue;
        };
        let NetlinkPayload::InnerMessage(m) = m.payload else {
            continue;
        };
        out.push(match m {
            M::NewLink(l) => link_event(&l, false),
            M::DelLink(l) => link_event(&l, true),
            M::NewAddress(a) => Event::Addr {
                index: a.header.index,
                deleted: false,
            },
            M::DelAddress(a) => Event::Addr {
                index: a.header.index,
                deleted: true,
            },
            M::NewRoute(r) => route_event(&r, false),
            M::DelRoute(r) => route_event(&r, true),
            _ => continue,
        });
    }
    out
}

fn attr_str(attrs: &[u8], ty: u16) -> Option<String> {
    crate::kernel::nft::wire::parse_attrs(attrs)
        .find(|(t, _)| *t == ty)
        .map(|(_, v)| {
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(v).into_owned()
        })
}

/// The events in one datagram of nf_tables notifications.
pub fn parse_nft(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    for f in frames(buf) {
        if f.ty >> 8 != NFNL_SUBSYS_NFTABLES {
            continue;
        }
        let ty = f.ty & 0xff;
        if ty == NFT_MSG_NEWGEN || ty == NFT_MSG_GETGEN || ty == NFT_MSG_TRACE {
            continue;
        }
        // nfgenmsg (4 bytes), then the object's attributes; the first
        // attribute of every object names its table.
        let Some(attrs) = f.payload().get(4..) else {
            continue;
        };
        let Some(table) = attr_str(attrs, 1) else {
            continue;
        };
        let chain = match ty {
            NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN => attr_str(attrs, 3),
            NFT_MSG_NEWRULE | NFT_MSG_DELRULE => attr_str(attrs, 2),
            // A set's name stands for the chain: `CTX_dns4` is CTX's.
            NFT_MSG_NEWSET | NFT_MSG_DELSET => attr_str(attrs, 2),
            NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM => {
                let set = attr_str(attrs, 2);
                // netctx's resolver's elements come and go: never drift.
                if set
                    .as_deref()
                    .is_some_and(|s| s.ends_with("_dns4") || s.ends_with("_dns6"))
                {
                    continue;
                }
                set
            }
            _ => None,
        };
        out.push(Event::Nft { table, chain });
    }
    out
}

/// Why notifications cannot be followed: which subscription, and the cause.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("subscribing to {what} notifications")]
    Subscribe {
        what: &'static str,
        source: io::Error,
    },
    #[error("reading {what} notifications")]
    Read {
        what: &'static str,
        source: io::Error,
    },
}

const RT: &str = "rtnetlink";
const NFT: &str = "nf_tables";

/// The two subscribed sockets of one namespace.
pub struct Subscriptions {
    rt: Socket,
    nft: Socket,
    buf: Vec<u8>,
}

fn subscribe(proto: isize, groups: &[u32]) -> io::Result<Socket> {
    let sock = crate::kernel::netlink::socket(proto)?;
    for g in groups {
        sock.add_membership(*g)?;
    }
    // A burst (a whole ruleset flushed) must fit; beyond, ENOBUFS says so.
    let _ = sock.set_rx_buf_sz(16 << 20);
    sock.set_non_blocking(true)?;
    Ok(sock)
}

impl Subscriptions {
    /// Subscribe in the calling thread's network namespace.
    pub fn open() -> Result<Subscriptions, EventsError> {
        let err = |what| move |source| EventsError::Subscribe { what, source };
        Ok(Subscriptions {
            rt: subscribe(NETLINK_ROUTE, &RT_GROUPS).map_err(err(RT))?,
            nft: subscribe(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES]).map_err(err(NFT))?,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Wait up to `timeout` for notifications; every event queued by then
    /// (empty after a quiet `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Event>, EventsError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [
            PollFd::new(self.rt.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.nft.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(EventsError::Read {
                    what: "rtnetlink and nf_tables",
                    source: e.into(),
                })
            }
        }
        let mut out = Vec::new();
        for (nft, sock) in [(false, &self.rt), (true, &self.nft)] {
            loop {
                self.buf.clear();
                self.buf.reserve(1 << 16);
                match sock.recv(&mut self.buf, 0) {
                    Ok(_) if nft => out.extend(parse_nft(&self.buf)),
                    Ok(_) => out.extend(parse_rtnl(&self.buf)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(Event::Lost),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        let what = if nft { NFT } else { RT };
                        return Err(EventsError::Read { what, source });
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::wire::encode_nfnl as encode_raw;
    use crate::kernel::nft::wire::{Attrs, NFPROTO_INET};
    use netlink_packet_core::NetlinkHeader;

    fn rtnl_datagram(msgs: Vec<M>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut nm = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
            nm.finalize();
            let start = out.len();
            out.resize(start + nm.buffer_len(), 0);
            nm.serialize(&mut out[start..]);
        }
        out
    }

    #[test]
    fn link_address_and_route_notifications_are_read() {
        let mut l = LinkMessage::default();
        l.header.index = 7;
        l.attributes.push(LinkAttribute::IfName("nx-web".into()));
        l.attributes
            .push(LinkAttribute::IfAlias("netctx:web".into()));
        let mut a = netlink_packet_route::address::AddressMessage::default();
        a.header.index = 7;
        let buf = rtnl_datagram(vec![
            M::DelLink(l),
            M::DelAddress(a),
            M::DelRoute(Default::default()),
        ]);
        assert_eq!(
            parse_rtnl(&buf),
            [
                Event::Link {
                    index: 7,
                    name: Some("nx-web".into()),
                    alias: Some("netctx:web".into()),
                    up: false,
                    deleted: true
                },
                Event::Addr {
                    index: 7,
                    deleted: true
                },
                Event::Route {
                    deleted: true,
                    oif: None
                },
            ]
        );
    }

    #[test]
    fn nf_tables_notifications_name_table_and_chain() {
        let mut out = Vec::new();
        let mut rule = Attrs::default();
        rule.str(1, "netctx").str(2, "web_nx-web");
        encode_raw((10 << 8) | 8, 0, 0, NFPROTO_INET, 0, &rule.0, &mut out);
        let mut table = Attrs::default();
        table.str(1, "netctx");
        encode_raw((10 << 8) | 2, 0, 0, NFPROTO_INET, 0, &table.0, &mut out);
        let mut gen = Attrs::default();
        gen.be32(1, 42);
        encode_raw((10 << 8) | 16, 0, 0, 0, 0, &gen.0, &mut out);
        assert_eq!(
            parse_nft(&out),
            [
                Event::Nft {
                    table: "netctx".into(),
                    chain: Some("web_nx-web".into())
                },
                Event::Nft {
                    table: "netctx".into(),
                    chain: None
                },
            ]
        );
    }
}
