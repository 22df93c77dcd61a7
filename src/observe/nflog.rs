//! NFLOG: subscribe to a log group in the calling thread's namespace and
//! read the packets the logging rules send: their prefix, devices and the
//! headers of their payload (`parse_headers`). `netctx logs` turns them
//! into lines (`cli/logs/line.rs`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::kernel::netlink::wire::{
    cstr, encode_nfnl, frames, parse_attrs, Attrs, NLM_F_ACK, NLM_F_REQUEST,
};
use crate::kernel::netlink::Rtnl;

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// Bytes of each packet copied to us: enough for the IP and L4 headers.
const COPY_RANGE: u32 = 128;
/// Batching: the kernel sends when this many packets are queued…
pub const QUEUE_THRESHOLD: u32 = 64;
/// …or after this long (in 1/100 s), whichever comes first.
pub const FLUSH_TIMEOUT: u32 = 2;

/// A socket subscribed to one NFLOG group.
pub struct Subscription {
    sock: Socket,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub prefix: String,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    pub payload: Vec<u8>,
}

fn config(sock: &Socket, group: u16, attrs: &Attrs) -> io::Result<()> {
    let mut out = Vec::new();
    encode_nfnl(
        (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        0,
        group,
        &attrs.0,
        &mut out,
    );
    sock.send(&out, 0)?;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    sock.recv(&mut buf, 0)?;
    if buf.len() >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
        let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}

impl Subscription {
    /// Bind `group` in the calling thread's namespace. A group has one
    /// reader a namespace: a second bind fails with EPERM.
    pub fn bind(group: u16) -> io::Result<Subscription> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        let _ = sock.set_rx_buf_sz(8 << 20);
        let mut a = Attrs::default();
        a.bytes(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        config(&sock, group, &a)?;
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        let mut a = Attrs::default();
        a.bytes(NFULA_CFG_MODE, &mode)
            .be32(NFULA_CFG_QTHRESH, QUEUE_THRESHOLD)
            .be32(NFULA_CFG_TIMEOUT, FLUSH_TIMEOUT);
        config(&sock, group, &a)?;
        Ok(Subscription { sock })
    }

    /// Wait for the next batch of packets.
    pub fn recv(&self) -> io::Result<Vec<Packet>> {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        self.sock.recv(&mut buf, 0)?;
        Ok(parse_datagram(&buf))
    }
}

/// The packets in one datagram from the kernel.
pub fn parse_datagram(buf: &[u8]) -> Vec<Packet> {
    let mut out = Vec::new();
    for m in frames(buf) {
        if m.ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET || m.bytes.len() < 20 {
            continue;
        }
        let mut p = Packet {
            prefix: String::new(),
            indev: None,
            outdev: None,
            payload: Vec::new(),
        };
        // After the header: nfgenmsg (4 bytes), then attributes.
        for (t, v) in parse_attrs(&m.bytes[20..]) {
            let be32 = || {
                v.get(..4)
                    .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            };
            match t {
                NFULA_PREFIX => {
                    p.prefix = cstr(v);
                }
                NFULA_IFINDEX_INDEV => p.indev = be32(),
                NFULA_IFINDEX_OUTDEV => p.outdev = be32(),
                NFULA_PAYLOAD => p.payload = v.to_vec(),
                _ => {}
            }
        }
        out.push(p);
    }
    out
}

/// What the log line says about a packet's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub len: u32,
    pub proto: String,
    /// IPv4 identification.
    pub ip_id: Option<u16>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp: Option<(u8, u8)>,
    /// ICMP echo identifier and sequence.
    pub echo: Option<(u16, u16)>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn parse_headers(p: &[u8]) -> Headers {
    let mut h = Headers::default();
    let (proto, l4) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            h.len = u32::from(be16(p, 2).unwrap_or(0));
            h.ip_id = be16(p, 4);
            h.src = Some(IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])));
            h.dst = Some(IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])));
            (p[9], p.get(ihl..).unwrap_or_default())
        }
        Some(6) if p.len() >= 40 => {
            h.len = u32::from(be16(p, 4).unwrap_or(0)) + 40;
            let a = |at: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&p[at..at + 16]).unwrap(),
                ))
            };
            h.src = Some(a(8));
            h.dst = Some(a(24));
            // Skip hop-by-hop, routing and destination options headers.
            let (mut next, mut at) = (p[6], 40);
            while matches!(next, 0 | 43 | 60) && at + 2 <= p.len() {
                next = p[at];
                at += (usize::from(p[at + 1]) + 1) * 8;
            }
            (next, p.get(at..).unwrap_or_default())
        }
        _ => {
            h.proto = "UNKNOWN".into();
            return h;
        }
    };
    match proto {
        6 | 17 => {
            h.proto = if proto == 6 { "TCP" } else { "UDP" }.into();
            h.sport = be16(l4, 0);
            h.dport = be16(l4, 2);
        }
        1 | 58 => {
            h.proto = if proto == 1 { "ICMP" } else { "ICMPv6" }.into();
            if l4.len() >= 2 {
                h.icmp = Some((l4[0], l4[1]));
                let echo = matches!((proto, l4[0]), (1, 0 | 8) | (58, 128 | 129));
                if echo {
                    h.echo = be16(l4, 4).zip(be16(l4, 6));
                }
            }
        }
        n => h.proto = n.to_string(),
    }
    h
}

/// Interface names of the calling thread's namespace by index, to name a
/// packet's devices, with the context owning each (host side: from the
/// link's alias). Empty when they cannot be read.
pub fn link_names() -> HashMap<u32, (String, Option<String>)> {
    let Ok(mut nl) = Rtnl::open() else {
        return HashMap::new();
    };
    super::links::read_links(&mut nl)
        .unwrap_or_default()
        .into_iter()
        .map(|l| {
            let owner = l.owner().map(str::to_string);
            (l.index, (l.name.clone(), owner))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ICMP echo request from 10.100.0.1 to 10.100.0.2 (also the logs
    /// line tests').
    pub(crate) fn icmp_echo() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 100, 0, 1, 10, 100, 0, 2,
        ];
        p.extend_from_slice(&[8, 0, 0, 0, 0x16, 0x21, 0, 1]);
        p
    }

    #[test]
    fn packets_are_parsed_from_a_datagram() {
        let mut attrs = Attrs::default();
        attrs
            .str(NFULA_PREFIX, "CTX:FORWARD:")
            .be32(NFULA_IFINDEX_INDEV, 2)
            .be32(NFULA_IFINDEX_OUTDEV, 3);
        attrs.bytes(NFULA_PAYLOAD, &icmp_echo());
        let mut dgram = Vec::new();
        encode_nfnl(NFNL_SUBSYS_ULOG << 8, 0, 0, 2, 100, &attrs.0, &mut dgram);
        encode_nfnl(NFNL_SUBSYS_ULOG << 8, 0, 0, 2, 100, &attrs.0, &mut dgram);
        let ps = parse_datagram(&dgram);
        assert_eq!(ps.len(), 2);
        assert_eq!((ps[0].indev, ps[0].outdev), (Some(2), Some(3)));
        assert_eq!(ps[0].prefix, "CTX:FORWARD:");
        assert_eq!(ps[0].payload, icmp_echo());
        let h = parse_headers(&ps[0].payload);
        assert_eq!((h.proto.as_str(), h.len), ("ICMP", 84));
        assert_eq!(
            (h.icmp, h.echo, h.ip_id),
            (Some((8, 0)), Some((5665, 1)), Some(0x1234))
        );
    }
}
