//! NETLINK_SOCK_DIAG: every internet socket of the calling thread's
//! namespace — TCP, UDP, UDP-Lite, raw, and SCTP, DCCP and MPTCP where the
//! kernel has them, IPv4 and IPv6 — and the namespace's IPv6 link-local
//! addresses, which `audit` counts as the context's own (`observe::links`
//! leaves them out as the kernel's). Reads only; changes nothing.
//!
//! Which kinds this kernel can dump is found once a run, in the host
//! namespace (`Kinds::detect`): diag handlers are per kernel, and asking for
//! a missing one makes the kernel try to load a module every time.
//!
//! What sock_diag does not list (raw sockets on old kernels, ping sockets)
//! and the sockets in use by protocol are read from /proc (`diag_proc.rs`).

use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressProtocol};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_DCCP, IPPROTO_RAW, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::kernel::netlink::wire::{
    self, Dumped, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::kernel::netlink::{self, Diag, NlError, Rtnl};
use crate::kernel::rtnl;
use crate::observe::links::{read_links, ObsLink};

#[path = "diag_proc.rs"]
mod procfs;
use procfs::{in_use, parse_proc};

/// IPPROTO_MPTCP: over 255, so asked for with INET_DIAG_REQ_PROTOCOL.
const IPPROTO_MPTCP: u32 = 262;
/// enum inet_diag_req: the attribute carrying a 32-bit protocol.
const INET_DIAG_REQ_PROTOCOL: u16 = 3;

/// One socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub proto: &'static str,
    pub local: IpAddr,
    /// For raw sockets, the IP protocol (as `ss` shows it).
    pub port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
    pub state: &'static str,
    pub inode: u32,
    /// The device the socket is bound to (SO_BINDTODEVICE or an IPv6
    /// scope), 0 for none.
    pub ifindex: u32,
}

/// The states a probe asks for: TCP_NEW_SYN_RECV alone, which no UDP or
/// listening socket has, so that probing a busy host costs little.
const PROBE_STATES: u32 = 1 << 12;

/// A kind: its IP protocol, name, and names in
/// /proc/net/protocols for IPv4 and IPv6.
type Kind = (u32, &'static str, &'static str, &'static str);

/// TCP and UDP: the kinds every kernel must list.
const REQUIRED: [Kind; 2] = [
    (IPPROTO_TCP as u32, "tcp", "TCP", "TCPv6"),
    (IPPROTO_UDP as u32, "udp", "UDP", "UDPv6"),
];

const OPTIONAL: [Kind; 5] = [
    (IPPROTO_UDPLITE as u32, "udplite", "UDP-Lite", "UDPLITEv6"),
    (IPPROTO_RAW as u32, "raw", "RAW", "RAWv6"),
    (IPPROTO_SCTP as u32, "sctp", "SCTP", "SCTPv6"),
    (IPPROTO_DCCP as u32, "dccp", "DCCP", "DCCPv6"),
    (IPPROTO_MPTCP, "mptcp", "MPTCP", "MPTCPv6"),
];

/// The socket kinds this kernel lists, beyond TCP and UDP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kinds {
    /// Dumped through sock_diag.
    pub diag: Vec<Kind>,
    /// Raw sockets exist but the kernel has no raw_diag
    /// (CONFIG_INET_RAW_DIAG): read /proc/thread-self/net/raw{,6}.
    pub raw_from_proc: bool,
}

impl Kinds {
    /// Probe, in the calling thread's namespace, TCP and UDP (an error if
    /// the kernel cannot list them) and every optional kind whose protocol
    /// is registered (a protocol that is not cannot have sockets; asking
    /// would load its module). A dump refused with ENOENT or EOPNOTSUPP is
    /// a kind this kernel cannot list: skipped.
    pub fn detect() -> Result<Kinds, NlError> {
        for (proto, name, _, _) in REQUIRED {
            dump_raw(AF_INET, proto, PROBE_STATES).map_err(|e| with_what(e, name, AF_INET))?;
        }
        let registered = in_use();
        let mut kinds = Kinds::default();
        for kind @ (proto, name, v4, v6) in OPTIONAL {
            if !registered.contains_key(v4) && !registered.contains_key(v6) {
                continue;
            }
            match dump_raw(AF_INET, proto, PROBE_STATES) {
                Ok(_) => kinds.diag.push(kind),
                Err(e) if absent(&e) && name == "raw" => kinds.raw_from_proc = true,
                Err(e) if absent(&e) => {}
                Err(e) => return Err(with_what(e, name, AF_INET)),
            }
        }
        Ok(kinds)
    }
}

fn absent(e: &NlError) -> bool {
    e.errno == libc::ENOENT || e.errno == libc::EOPNOTSUPP
}

fn with_what(mut e: NlError, name: &str, family: u8) -> NlError {
    let fam = if family == AF_INET { "IPv4" } else { "IPv6" };
    let why = if e.errno == libc::ENOENT {
        " (this kernel has no socket diagnostics for it: modules inet_diag, tcp_diag, udp_diag)"
    } else {
        ""
    };
    e.extack = Some(format!("NETLINK_SOCK_DIAG dump of {name}/{fam}{why}"));
    e
}

fn state_name(proto: &str, state: u8) -> &'static str {
    match (proto, state) {
        ("udp" | "udplite" | "raw" | "ping", 7) => "UNCONN",
        (_, 1) => "ESTAB",
        (_, 2) => "SYN-SENT",
        (_, 3) => "SYN-RECV",
        (_, 4) => "FIN-WAIT-1",
        (_, 5) => "FIN-WAIT-2",
        (_, 6) => "TIME-WAIT",
        (_, 7) => "CLOSE",
        (_, 8) => "CLOSE-WAIT",
        (_, 9) => "LAST-ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        (_, 12) => "NEW-SYN-RECV",
        // TCP_BOUND_INACTIVE: bound, neither listening nor connected.
        (_, 13) => "BOUND",
        _ => "UNKNOWN",
    }
}

fn socket_of(name: &'static str, r: &InetResponse) -> Socket {
    let h = &r.header;
    Socket {
        proto: name,
        local: h.socket_id.source_address,
        port: h.socket_id.source_port,
        peer: h.socket_id.destination_address,
        peer_port: h.socket_id.destination_port,
        state: state_name(name, h.state),
        inode: h.inode,
        ifindex: h.socket_id.interface_id,
    }
}

/// Every state but TCP_BOUND_INACTIVE (bit 13): a TCP socket only bound,
/// neither listening nor connected, receives and sends nothing, and
/// listing those walks the kernel's whole bind table in every namespace
/// (it tripled the kernel time of an audit of 1,000 contexts).
fn all_states() -> StateFlags {
    StateFlags::from_bits_retain(!(1 << 13))
}

/// One dump of `proto` sockets of `family`.
fn dump_one(
    nl: &mut Diag,
    family: u8,
    proto: u32,
    states: StateFlags,
) -> Result<Vec<InetResponse>, NlError> {
    let Ok(protocol) = u8::try_from(proto) else {
        return dump_raw(family, proto, states.bits());
    };
    let id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let req = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id: id,
    });
    Ok(nl
        .dump(req)?
        .into_iter()
        .filter_map(|m| match m {
            SockDiagMessage::InetResponse(r) => Some(*r),
            _ => None,
        })
        .collect())
}

/// inet_diag_req_v2, a protocol over 255 (MPTCP) in INET_DIAG_REQ_PROTOCOL:
/// the typed request cannot carry attributes.
fn raw_request(family: u8, proto: u32, states: u32, seq: u32) -> Vec<u8> {
    let narrow = u8::try_from(proto).ok();
    let mut body = vec![family, narrow.unwrap_or(IPPROTO_TCP), 0, 0];
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&[0; 48]); // inet_diag_sockid: match all
    if narrow.is_none() {
        let mut attrs = wire::Attrs::default();
        attrs.bytes(INET_DIAG_REQ_PROTOCOL, &proto.to_ne_bytes());
        body.extend_from_slice(&attrs.0);
    }
    let len = u32::try_from(16 + body.len()).expect("a small request");
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&body);
    out
}

/// A dump on a socket of its own, reading the error the kernel may put in
/// NLMSG_DONE (a dump whose start failed: no handler for the protocol).
fn dump_raw(family: u8, proto: u32, states: u32) -> Result<Vec<InetResponse>, NlError> {
    let sock = netlink::socket(NETLINK_SOCK_DIAG)?;
    let mut seq = 0;
    wire::retry_interrupted(
        || {
            seq += 1;
            dump_raw_once(&sock, &raw_request(family, proto, states, seq), seq)
        },
        || NlError {
            errno: libc::EAGAIN,
            extack: Some("dump kept being interrupted".into()),
        },
    )
}

fn dump_raw_once(
    sock: &netlink_sys::Socket,
    req: &[u8],
    seq: u32,
) -> Result<Dumped<Vec<InetResponse>>, NlError> {
    sock.send(req, 0)?;
    let (mut out, mut interrupted) = (Vec::new(), false);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        sock.recv(&mut buf, 0)?;
        for f in wire::frames(&buf).filter(|f| f.seq == seq) {
            interrupted |= f.flags & wire::NLM_F_DUMP_INTR != 0;
            match f.ty {
                NLMSG_DONE | NLMSG_ERROR => {
                    let p = f.payload();
                    let Some(errno) = wire::error_code(p) else {
                        if f.ty == NLMSG_DONE {
                            return Ok(Dumped {
                                value: out,
                                interrupted,
                            });
                        }
                        continue;
                    };
                    // NLMSG_DONE carries no copy of the request to find TLVs after.
                    let extack = (f.ty == NLMSG_ERROR)
                        .then(|| wire::extack(f.flags, p.get(4..).unwrap_or_default()))
                        .flatten();
                    return Err(NlError { errno, extack });
                }
                _ => match NetlinkMessage::<SockDiagMessage>::deserialize(f.bytes) {
                    Ok(m) => {
                        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) =
                            m.payload
                        {
                            out.push(*r);
                        }
                    }
                    Err(_) => {
                        return Err(NlError {
                            errno: libc::EPROTO,
                            extack: Some("malformed sock_diag answer".into()),
                        })
                    }
                },
            }
        }
    }
}

/// Every socket of the namespace `nl` was opened in: of TCP, UDP and the
/// `kinds` found by `Kinds::detect`, each family the namespace has sockets
/// of in use. A dump walks a table of the whole kernel, so one of a
/// family without sockets would cost as much as one with; "in use" counts
/// every socket a process holds bound, listening or connected (TCP's
/// TIME-WAIT remnants, which no process holds, are not counted and are
/// listed only beside sockets in use). Must run on the thread that opened
/// `nl` (it reads that thread's /proc).
pub fn read_sockets(nl: &mut Diag, kinds: &Kinds) -> Result<Vec<Socket>, NlError> {
    let used = in_use();
    // Without /proc, everything is dumped.
    let has = |n: &str| used.is_empty() || used.get(n).is_some_and(|c| *c > 0);
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let kinds = REQUIRED
            .iter()
            .chain(&kinds.diag)
            .filter(|(_, _, v4, v6)| has(if family == AF_INET { v4 } else { v6 }))
            .map(|(proto, name, _, _)| (*proto, *name));
        for (proto, name) in kinds {
            let answer = dump_one(nl, family, proto, all_states())
                .map_err(|e| with_what(e, name, family))?;
            out.extend(answer.iter().map(|r| socket_of(name, r)));
        }
    }
    if kinds.raw_from_proc {
        for (file, v6, n) in [("raw", false, "RAW"), ("raw6", true, "RAWv6")] {
            if !has(n) {
                continue;
            }
            let path = format!("/proc/thread-self/net/{file}");
            if let Ok(text) = std::fs::read_to_string(path) {
                out.extend(parse_proc(&text, v6, "raw"));
            }
        }
    }
    // ICMP datagram sockets (ping without raw sockets): no sock_diag
    // dumps them; the namespace's /proc/net/icmp{,6} lists them (the
    // "port" is the echo identifier).
    for (file, v6, n) in [("icmp", false, "PING"), ("icmp6", true, "PINGv6")] {
        if !has(n) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            out.extend(parse_proc(&text, v6, "ping"));
        }
    }
    Ok(out)
}

/// An IPv6 link-local address present in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLocal {
    /// The index of its link.
    pub index: u32,
    pub addr: Ipv6Addr,
    pub prefix: u8,
    /// Made by the kernel (IFA_PROTO kernel_ll, Linux 6.1+; where the
    /// kernel marks no address, every link-local address counts as its
    /// own).
    pub kernel: bool,
}

/// The IPv6 link-local addresses of the namespace `nl` was opened in.
pub fn link_locals(nl: &mut Rtnl) -> Result<Vec<LinkLocal>, NlError> {
    let mut out = Vec::new();
    // A kernel that marks its addresses (6.1+) marks lo's, which netctx
    // always brings up: without any mark, no link-local can be told apart.
    let mut marked = false;
    for m in nl.dump(rtnl::dump_addresses())? {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let mut addr = None;
        let mut proto = None;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Address(IpAddr::V6(v6)) if v6.is_unicast_link_local() => {
                    addr = Some(*v6)
                }
                AddressAttribute::Protocol(p) => proto = Some(*p),
                _ => {}
            }
        }
        marked |= proto.is_some();
        if let Some(addr) = addr {
            out.push(LinkLocal {
                index: a.header.index,
                addr,
                prefix: a.header.prefix_len,
                kernel: proto == Some(AddressProtocol::LinkLocal),
            });
        }
    }
    if !marked {
        for ll in &mut out {
            ll.kernel = true;
        }
    }
    Ok(out)
}

/// The calling thread's namespace's TCP sockets that listen and UDP sockets
/// that are bound and not connected, on one of `ports`: what a published port would take.
pub fn services_on(ports: &[u16]) -> Result<Vec<Socket>, NlError> {
    let all = read_sockets(&mut Diag::open()?, &Kinds::default())?;
    Ok(all
        .into_iter()
        .filter(|s| ports.contains(&s.port))
        .filter(|s| {
            (s.proto == "tcp" && s.state == "LISTEN") || (s.proto == "udp" && s.state == "UNCONN")
        })
        .collect())
}

/// What `audit` reads of the calling thread's namespace: its sockets, its
/// links with their addresses, its IPv6 link-local addresses.
pub struct Here {
    pub sockets: Vec<Socket>,
    pub links: Vec<ObsLink>,
    pub link_locals: Vec<LinkLocal>,
}

/// Read [`Here`] on the calling thread (see [`read_sockets`]).
pub fn read_here(kinds: &Kinds) -> Result<Here, NlError> {
    let sockets = read_sockets(&mut Diag::open()?, kinds)?;
    let mut rtnl = Rtnl::open()?;
    let links = read_links(&mut rtnl)?;
    let link_locals = link_locals(&mut rtnl)?;
    Ok(Here {
        sockets,
        links,
        link_locals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_close_state_is_unconn() {
        assert_eq!(state_name("udp", 7), "UNCONN");
        assert_eq!(state_name("udplite", 7), "UNCONN");
        assert_eq!(state_name("raw", 7), "UNCONN");
        assert_eq!(state_name("tcp", 7), "CLOSE");
        assert_eq!(state_name("tcp", 10), "LISTEN");
        assert_eq!(state_name("tcp", 13), "BOUND");
    }

    #[test]
    fn wide_requests_carry_the_protocol_attribute() {
        let r = raw_request(AF_INET6, IPPROTO_MPTCP, u32::MAX, 9);
        assert_eq!(r.len(), 16 + 56 + 8);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 80);
        assert_eq!(r[16], AF_INET6);
        let attr = &r[72..];
        assert_eq!(
            u16::from_ne_bytes([attr[2], attr[3]]),
            INET_DIAG_REQ_PROTOCOL
        );
        assert_eq!(u32::from_ne_bytes(attr[4..8].try_into().unwrap()), 262);
        let r = raw_request(AF_INET, u32::from(IPPROTO_RAW), 0, 9);
        assert_eq!((r.len(), r[17]), (16 + 56, IPPROTO_RAW));
    }
}
