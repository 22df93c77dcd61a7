//! nftables tracing as the kernel reports it (NFT_MSG_TRACE on the
//! NFNLGRP_NFTRACE group of a namespace): for a packet whose `nftrace` is
//! set, every base chain and rule that judged it, in order, with the
//! verdict. Read by `netctx explain`.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::Socket;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::firewall::Verdict;
use crate::kernel::netlink::wire::{cstr, frames, parse_attrs};
use crate::kernel::netlink::NlError;
use crate::kernel::nft::expr::{Dir, Match, IPPROTO_TCP, IPPROTO_UDP};
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::trace::explain_msgs;
pub use crate::kernel::nft::trace::EXPLAIN_TABLE;
use crate::kernel::nft::wire::NFNL_SUBSYS_NFTABLES;
use crate::model::{max_prefix, Cidr};

const NFNLGRP_NFTRACE: u32 = 9;
const NFT_MSG_TRACE: u16 = 17;

/// One step of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The kernel's id of the traced packet.
    pub id: u32,
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// The rule that gave the verdict (none for a policy or a return).
    pub handle: Option<u64>,
    /// What the step was: `rule`, `return` (end of a regular chain) or
    /// `policy` (end of a base chain).
    pub kind: &'static str,
    pub verdict: Option<Verdict>,
}

/// A subscription to the calling thread's namespace's traces.
pub struct Tracer {
    sock: Socket,
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// The steps in one datagram of trace messages.
pub fn parse(buf: &[u8]) -> Vec<Step> {
    let mut out = Vec::new();
    for f in frames(buf) {
        if f.ty != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE) {
            continue;
        }
        // nlmsghdr (16), nfgenmsg (4), attributes.
        let Some(body) = f.bytes.get(16..) else {
            continue;
        };
        let family = body.first().copied().unwrap_or(0);
        let mut s = Step {
            id: 0,
            family,
            table: String::new(),
            chain: String::new(),
            handle: None,
            kind: "rule",
            verdict: None,
        };
        for (t, v) in parse_attrs(body.get(4..).unwrap_or_default()) {
            match t {
                1 => s.table = cstr(v),
                2 => s.chain = cstr(v),
                3 => {
                    s.handle = v
                        .get(..8)
                        .and_then(|h| h.try_into().ok())
                        .map(u64::from_be_bytes)
                }
                4 => {
                    s.kind = match be32(v) {
                        Some(1) => "policy",
                        Some(2) => "return",
                        _ => "rule",
                    }
                }
                5 => s.verdict = super::firewall::verdict_of(v),
                6 => s.id = be32(v).unwrap_or(0),
                // NFTA_TRACE_POLICY: the policy's verdict.
                16 => {
                    s.verdict = be32(v).map(|p| {
                        if p == 0 {
                            Verdict::Drop
                        } else {
                            Verdict::Accept
                        }
                    })
                }
                _ => {}
            }
        }
        out.push(s);
    }
    out
}

impl Tracer {
    /// Subscribe in the calling thread's network namespace.
    pub fn open() -> io::Result<Tracer> {
        let sock = crate::kernel::netlink::socket(NETLINK_NETFILTER)?;
        sock.add_membership(NFNLGRP_NFTRACE)?;
        let _ = sock.set_rx_buf_sz(4 << 20);
        sock.set_non_blocking(true)?;
        Ok(Tracer { sock })
    }

    /// Every step reported until `quiet` passes without one (at most
    /// `max` in all).
    pub fn steps(&self, quiet: Duration, max: Duration) -> io::Result<Vec<Step>> {
        let end = Instant::now() + max;
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let wait = left.min(quiet);
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            loop {
                buf.clear();
                buf.reserve(1 << 16);
                match self.sock.recv(&mut buf, 0) {
                    Ok(_) => out.extend(parse(&buf)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }
}

/// What a probe's packets are, for the tracing rules: to `addr`, on
/// `port` of TCP or UDP, or (no port) an ICMP echo request; and, for a
/// probe from a foreign source, what its answer is (to that source: the
/// tracing table stops it, so that it never leaves the host).
#[derive(Debug, Clone)]
pub struct Probe {
    matches: Vec<Match>,
    answer: Option<Vec<Match>>,
}

fn one(dir: Dir, addr: IpAddr) -> Match {
    Match::Prefix {
        dir,
        cidr: Cidr {
            addr,
            prefix: max_prefix(addr),
        },
    }
}

impl Probe {
    pub fn new(addr: IpAddr, port: Option<u16>, udp: bool) -> Probe {
        let v6 = addr.is_ipv6();
        let mut matches = vec![one(Dir::Dst, addr)];
        matches.push(match port {
            Some(port) => Match::Dport {
                proto: if udp { IPPROTO_UDP } else { IPPROTO_TCP },
                port,
            },
            None => Match::Icmp {
                v6,
                ty: if v6 { 128 } else { 8 },
            },
        });
        Probe {
            matches,
            answer: None,
        }
    }

    /// The probe comes from `source`, not the host's, and is answered
    /// from `by`: those answers are traced and stopped before they leave
    /// the host (a TCP one with a reset to `by`).
    pub fn answered_to(mut self, source: IpAddr, by: IpAddr) -> Probe {
        self.answer = Some(vec![one(Dir::Src, by), one(Dir::Dst, source)]);
        self
    }
}

/// Whether `steps` (the host's) hold the tracing table's drop of an
/// answer: the probe was answered.
pub fn answer_stopped(steps: &[Step]) -> bool {
    steps
        .iter()
        .any(|s| s.table == EXPLAIN_TABLE && s.verdict == Some(Verdict::Drop))
}

/// The tracing table of the calling thread's namespace, held by the
/// netlink socket that made it: the kernel removes it when this goes.
pub struct Tracing {
    nft: Nft,
}

impl Tracing {
    pub fn start(p: &Probe) -> Result<Tracing, NlError> {
        let mut nft = Nft::open()?;
        let msgs = explain_msgs(&p.matches, p.answer.as_deref());
        nft.transaction(&msgs).map_err(|(i, e)| NlError {
            extack: Some(format!(
                "{} (message {i} of {}){}",
                e.errno,
                msgs.len(),
                e.extack
                    .clone()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            )),
            ..e
        })?;
        Ok(Tracing { nft })
    }

    /// Every table of the namespace (for the rules' text).
    pub fn tables(&mut self) -> Result<Vec<super::firewall::ForeignChain>, NlError> {
        super::firewall::read_tables(&mut self.nft, true)
    }
}
