//! A small synchronous netlink client (route and sock_diag families): requests are sent in batches (many
//! messages in one `sendmsg`, then all acks collected) and dumps are read to
//! `NLMSG_DONE`. The socket belongs to the network namespace of the thread
//! that opened it; open one per namespace, on the thread that entered it.

use std::collections::HashMap;
use std::fmt;
use std::io;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::{NETLINK_ROUTE, NETLINK_SOCK_DIAG};
use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};

pub mod wire;

use self::wire::{Dumped, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
/// Messages sent in one `sendmsg`: keeps the acks well inside the receive
/// buffer.
const BATCH: usize = 128;

/// A kernel refusal: the errno and, when the kernel gave one, its extended
/// ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub extack: Option<String>,
}

impl From<io::Error> for NlError {
    fn from(e: io::Error) -> NlError {
        NlError::io(&e)
    }
}

impl NlError {
    fn io(e: &io::Error) -> NlError {
        NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            extack: None,
        }
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = nix::errno::Errno::from_raw(self.errno).desc();
        match &self.extack {
            Some(m) => write!(f, "{e} ({m})"),
            None => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NlError {}

/// A netlink socket of `proto` in the calling thread's namespace, bound,
/// with extended and capped acks.
pub fn socket(proto: isize) -> io::Result<Socket> {
    let mut sock = Socket::new(proto)?;
    sock.bind_auto()?;
    sock.set_ext_ack(true)?;
    sock.set_cap_ack(true)?;
    // Dumps of a busy host can exceed the default buffer.
    let _ = sock.set_rx_buf_sz(4 << 20);
    Ok(sock)
}

/// One request: the message and its creation flags (`NLM_F_CREATE` …);
/// `NLM_F_REQUEST | NLM_F_ACK` are added.
#[derive(Debug, Clone)]
pub struct Request<M = RouteNetlinkMessage> {
    pub msg: M,
    pub flags: u16,
}

/// A netlink socket speaking messages of type `M`.
pub struct Nl<M> {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    _msg: std::marker::PhantomData<M>,
}

/// rtnetlink: links, addresses, routes.
pub type Rtnl = Nl<RouteNetlinkMessage>;
/// NETLINK_SOCK_DIAG: sockets.
pub type Diag = Nl<SockDiagMessage>;

impl Rtnl {
    /// Open a route socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        Nl::open_proto(NETLINK_ROUTE)
    }
}

impl Rtnl {
    /// A socket subscribed to link notifications (RTNLGRP_LINK) of the
    /// calling thread's namespace.
    pub fn link_events() -> io::Result<Rtnl> {
        let nl = Rtnl::open()?;
        nl.sock.add_membership(libc::RTNLGRP_LINK)?;
        let _ = nl.sock.set_rx_buf_sz(16 << 20);
        Ok(nl)
    }

    /// Names of links deleted, as notified, until `done` says so or
    /// `timeout` passes. `Err` if notifications were lost (ENOBUFS).
    pub fn wait_deleted(
        &mut self,
        timeout: std::time::Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> io::Result<bool> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let tv = nix::sys::time::TimeVal::new(
                left.as_secs() as libc::time_t,
                left.subsec_micros().max(1) as libc::suseconds_t,
            );
            let _ = setsockopt(&self.sock, sockopt::ReceiveTimeout, &tv);
            let mut finished = false;
            match self.recv_each(|m| {
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = m.payload {
                    for a in &l.attributes {
                        if let netlink_packet_route::link::LinkAttribute::IfName(n) = a {
                            finished |= done(n);
                        }
                    }
                }
            }) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            if finished {
                return Ok(true);
            }
        }
    }
}

impl Diag {
    /// Open a sock_diag socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Diag> {
        Nl::open_proto(NETLINK_SOCK_DIAG)
    }
}

impl<M> Nl<M>
where
    M: NetlinkSerializable + NetlinkDeserializable + Clone + fmt::Debug,
{
    fn open_proto(proto: isize) -> io::Result<Nl<M>> {
        Ok(Nl {
            sock: socket(proto)?,
            seq: 1,
            buf: Vec::with_capacity(1 << 16),
            _msg: std::marker::PhantomData,
        })
    }

    fn encode(&mut self, msg: M, flags: u16, out: &mut Vec<u8>) -> u32 {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let start = out.len();
        out.resize(start + m.buffer_len(), 0);
        m.serialize(&mut out[start..]);
        self.seq
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let n = self.sock.send(bytes, 0)?;
        if n != bytes.len() {
            return Err(io::Error::other("short netlink send"));
        }
        Ok(())
    }

    /// Receive one datagram and hand each message in it to `f`.
    fn recv_each(&mut self, mut f: impl FnMut(NetlinkMessage<M>)) -> io::Result<()> {
        self.buf.clear();
        self.buf.reserve(1 << 16);
        self.sock.recv(&mut self.buf, 0)?;
        for frame in wire::frames(&self.buf) {
            match NetlinkMessage::<M>::deserialize(frame.bytes) {
                Ok(m) => f(m),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
        Ok(())
    }

    /// Send every request, then collect every ack. Results are in request
    /// order; the kernel processes the messages in order and goes on after a
    /// failed one, so later requests may fail because of an earlier one.
    pub fn exec(&mut self, reqs: Vec<Request<M>>) -> Vec<Result<(), NlError>> {
        let total = reqs.len();
        let mut results: Vec<Option<Result<(), NlError>>> = vec![None; total];
        let mut iter = reqs.into_iter().enumerate().peekable();
        while iter.peek().is_some() {
            let mut out = Vec::new();
            let mut pending: HashMap<u32, usize> = HashMap::new();
            for (i, r) in iter.by_ref().take(BATCH) {
                let seq = self.encode(r.msg, r.flags | NLM_F_ACK, &mut out);
                pending.insert(seq, i);
            }
            if let Err(e) = self.send(&out) {
                for i in pending.values() {
                    results[*i] = Some(Err(NlError::io(&e)));
                }
                continue;
            }
            while !pending.is_empty() {
                let mut acks = Vec::new();
                let r = self.recv_each(|m| {
                    if let NetlinkPayload::Error(e) = &m.payload {
                        acks.push((m.header.sequence_number, m.header.flags, e.clone()));
                    }
                });
                if let Err(e) = r {
                    for i in pending.drain().map(|(_, i)| i) {
                        results[i] = Some(Err(NlError::io(&e)));
                    }
                    break;
                }
                for (seq, flags, e) in acks {
                    if let Some(i) = pending.remove(&seq) {
                        results[i] = Some(match e.code {
                            None => Ok(()),
                            Some(code) => Err(NlError {
                                errno: -code.get(),
                                extack: wire::extack(flags, &e.header),
                            }),
                        });
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or(Err(NlError {
                    errno: libc::EIO,
                    extack: None,
                }))
            })
            .collect()
    }

    /// A dump request; every message of the answer.
    pub fn dump(&mut self, msg: M) -> Result<Vec<M>, NlError> {
        self.query(msg, NLM_F_DUMP)
    }

    /// A request whose answer is data (a dump, or a single `GET`).
    pub fn query(&mut self, msg: M, flags: u16) -> Result<Vec<M>, NlError> {
        wire::retry_interrupted(
            || self.query_once(msg.clone(), flags),
            || NlError {
                errno: libc::EAGAIN,
                extack: Some("dump kept being interrupted".into()),
            },
        )
    }

    /// A dump whose answers go to `f` as they came (what follows each
    /// netlink header), not parsed into `M`: for the dumps read on every
    /// run, where the full parse of every attribute cost more than the
    /// kernel's work.
    pub fn dump_raw<T>(
        &mut self,
        msg: M,
        mut f: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, NlError> {
        wire::retry_interrupted(
            || self.dump_raw_once(msg.clone(), &mut f),
            || NlError {
                errno: libc::EAGAIN,
                extack: Some("dump kept being interrupted".into()),
            },
        )
    }

    fn dump_raw_once<T>(
        &mut self,
        msg: M,
        f: &mut impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<Dumped<Vec<T>>, NlError> {
        let mut out = Vec::new();
        let seq = self.encode(msg, NLM_F_DUMP, &mut out);
        self.send(&out).map_err(|e| NlError::io(&e))?;
        let mut answers = Vec::new();
        let mut intr = false;
        loop {
            self.buf.clear();
            self.buf.reserve(1 << 16);
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|e| NlError::io(&e))?;
            for frame in wire::frames(&self.buf) {
                if frame.seq != seq {
                    continue;
                }
                intr |= frame.flags & NLM_F_DUMP_INTR != 0;
                match frame.ty {
                    wire::NLMSG_DONE | wire::NLMSG_ERROR => {
                        return match wire::error_code(frame.payload()) {
                            Some(errno) => Err(NlError {
                                errno,
                                extack: None,
                            }),
                            None => Ok(Dumped {
                                value: answers,
                                interrupted: intr,
                            }),
                        };
                    }
                    _ => answers.extend(f(frame.payload())),
                }
            }
        }
    }

    fn query_once(&mut self, msg: M, flags: u16) -> Result<Dumped<Vec<M>>, NlError> {
        let mut out = Vec::new();
        let seq = self.encode(msg, flags, &mut out);
        self.send(&out).map_err(|e| NlError::io(&e))?;
        let mut msgs = Vec::new();
        let (mut done, mut intr, mut err) = (false, false, None);
        while !done {
            self.recv_each(|m| {
                if m.header.sequence_number != seq {
                    return;
                }
                intr |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.payload {
                    NetlinkPayload::InnerMessage(i) => {
                        msgs.push(i);
                        // A non-dump GET answers with one message.
                        done |= flags & NLM_F_DUMP == 0;
                    }
                    NetlinkPayload::Done(d) => {
                        done = true;
                        // A dump the kernel cannot make (no diag handler for
                        // a protocol) ends with an error in DONE, not empty.
                        if d.code < 0 {
                            err = Some(NlError {
                                errno: -d.code,
                                extack: None,
                            });
                        }
                    }
                    NetlinkPayload::Error(e) => {
                        done = true;
                        if let Some(code) = e.code {
                            err = Some(NlError {
                                errno: -code.get(),
                                extack: wire::extack(m.header.flags, &e.header),
                            });
                        }
                    }
                    _ => {}
                }
            })
            .map_err(|e| NlError::io(&e))?;
        }
        match err {
            Some(e) => Err(e),
            None => Ok(Dumped {
                value: msgs,
                interrupted: intr,
            }),
        }
    }
}
