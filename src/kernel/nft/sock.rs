//! A NETLINK_NETFILTER socket: one transaction (batch) at a time, and dumps
//! of nf_tables objects. Like every netlink socket it belongs to the network
//! namespace of the thread that opened it.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::sys::socket::{setsockopt, sockopt};

use super::wire::{attr, batch, msg, Msg, NFNL_SUBSYS_NFTABLES, NFPROTO_INET};
use crate::kernel::netlink::wire::{
    self, cstr, encode_nfnl, error_code, frames, parse_attrs, Dumped, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use crate::kernel::netlink::NlError;

/// A buffer size for an int socket option: at most `c_int::MAX`.
fn as_int(want: usize) -> usize {
    want.min(libc::c_int::MAX as usize)
}

pub struct Nft {
    sock: Socket,
    seq: u32,
    /// The send buffer asked for so far (the kernel's default until then).
    sndbuf: usize,
    /// The receive buffer asked for so far.
    rcvbuf: usize,
    /// nf_tables messages sent in transactions (not counting dumps).
    pub changes: usize,
}

/// One message of a dump: its NFT_MSG type and attributes.
pub struct Answer {
    /// The object's family (NFPROTO_*).
    pub family: u8,
    pub attrs: Vec<u8>,
}

impl Answer {
    pub fn get(&self, ty: u16) -> Option<&[u8]> {
        parse_attrs(&self.attrs)
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v)
    }
    pub fn get_str(&self, ty: u16) -> Option<String> {
        self.get(ty).map(cstr)
    }
}

impl Nft {
    pub fn open() -> io::Result<Nft> {
        Ok(Nft {
            sock: crate::kernel::netlink::socket(NETLINK_NETFILTER)?,
            seq: 1,
            sndbuf: 128 << 10,
            rcvbuf: 128 << 10,
            changes: 0,
        })
    }

    /// Make the receive buffer hold an acknowledgement of each of `msgs`
    /// messages: the kernel acks a whole batch while it is sent, and an ack
    /// that does not fit is dropped, so the wait for it would never end
    /// (a thousand contexts' host chains are tens of thousands of messages).
    fn grow_rcvbuf(&mut self, msgs: usize) -> io::Result<()> {
        // An ack's socket buffer costs about a kilobyte of the budget.
        let want = msgs.saturating_mul(1 << 10).saturating_add(64 << 10);
        if want <= self.rcvbuf {
            return Ok(());
        }
        setsockopt(&self.sock, sockopt::RcvBufForce, &as_int(want))?;
        self.rcvbuf = want;
        Ok(())
    }

    /// Make the send buffer hold `len` bytes (and some).
    fn grow_sndbuf(&mut self, len: usize) -> io::Result<()> {
        let want = len.saturating_mul(2);
        setsockopt(&self.sock, sockopt::SndBufForce, &as_int(want))?;
        self.sndbuf = want;
        Ok(())
    }

    /// Read datagrams, handing each (type, flags, seq, payload) to `f` until
    /// it returns true.
    fn recv_until(&mut self, mut f: impl FnMut(u16, u16, u32, &[u8]) -> bool) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            buf.clear();
            self.sock.recv(&mut buf, 0)?;
            for m in frames(&buf) {
                if f(m.ty, m.flags, m.seq, m.payload()) {
                    return Ok(());
                }
            }
        }
    }

    /// Send the messages as one transaction. All or nothing: on failure the
    /// kernel aborts the whole batch and the first error is returned, with
    /// the index of the message that caused it.
    pub fn transaction(&mut self, msgs: &[Msg]) -> Result<(), (usize, NlError)> {
        if msgs.is_empty() {
            return Ok(());
        }
        let (bytes, seqs) = batch(msgs, self.seq).map_err(|(i, e)| {
            let err = NlError {
                errno: libc::EMSGSIZE,
                extack: Some(e.to_string()),
            };
            (i, err)
        })?;
        self.seq = self
            .seq
            .wrapping_add(u32::try_from(seqs.len() + 2).unwrap_or(u32::MAX));
        self.changes += msgs.len();
        let io_err = |e: io::Error| (0, NlError::from(e));
        // A batch is one datagram: the send buffer must hold it whole (as
        // nft does, force it past wmem_max with CAP_NET_ADMIN).
        if bytes.len() > self.sndbuf {
            self.grow_sndbuf(bytes.len()).map_err(io_err)?;
        }
        self.grow_rcvbuf(seqs.len()).map_err(io_err)?;
        let n = self.sock.send(&bytes, 0).map_err(io_err)?;
        if n != bytes.len() {
            return Err((0, NlError::from(io::Error::other("short netlink send"))));
        }
        let mut pending: std::collections::HashSet<u32> = seqs.iter().copied().collect();
        let mut first: Option<(usize, NlError)> = None;
        self.recv_until(|ty, flags, seq, payload| {
            if ty == NLMSG_ERROR && pending.remove(&seq) {
                if let Some(errno) = error_code(payload) {
                    let i = seqs.iter().position(|s| *s == seq).unwrap_or(0);
                    let e = NlError {
                        errno,
                        extack: wire::extack(flags, payload.get(4..).unwrap_or_default()),
                    };
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        first = Some((i, e));
                    }
                    // After an error the kernel aborts: later messages may
                    // never be acked.
                    return true;
                }
            }
            pending.is_empty()
        })
        .map_err(io_err)?;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A GET request (`dump` for many objects); the answers. ENOENT (no
    /// such table or set) is an error for the caller to read.
    pub fn get(&mut self, ty: u16, attrs: &[u8], dump: bool) -> Result<Vec<Answer>, NlError> {
        wire::retry_interrupted(
            || self.get_once(ty, NFPROTO_INET, attrs, dump),
            || NlError {
                errno: libc::EAGAIN,
                extack: Some("nf_tables dump kept being interrupted".into()),
            },
        )
    }

    /// The ruleset's generation in the calling thread's namespace: every
    /// committed transaction, whoever sent it, moves it.
    pub fn generation(&mut self) -> Result<u32, NlError> {
        let answers = self.get_once(msg::GETGEN, 0, &[], false)?.value;
        answers
            .iter()
            .find_map(|a| a.get(attr::GEN_ID)?.try_into().ok().map(u32::from_be_bytes))
            .ok_or_else(|| NlError {
                errno: libc::EPROTO,
                extack: Some("the kernel's answer carries no generation".into()),
            })
    }

    /// A dump of every object of a kind in every family (tables, chains,
    /// rules of whoever made them).
    pub fn get_all(&mut self, ty: u16) -> Result<Vec<Answer>, NlError> {
        self.dump_in(ty, 0, &[])
    }

    /// A dump of the objects of a kind in `family` (0: all) that `attrs`
    /// select (the kernel filters rules by `RULE_TABLE`, say).
    pub fn dump_in(&mut self, ty: u16, family: u8, attrs: &[u8]) -> Result<Vec<Answer>, NlError> {
        wire::retry_interrupted(
            || self.get_once(ty, family, attrs, true),
            || NlError {
                errno: libc::EAGAIN,
                extack: Some("nf_tables dump kept being interrupted".into()),
            },
        )
    }

    fn get_once(
        &mut self,
        ty: u16,
        family: u8,
        attrs: &[u8],
        dump: bool,
    ) -> Result<Dumped<Vec<Answer>>, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut out = Vec::new();
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | ty;
        encode_nfnl(ty, flags, seq, family, 0, attrs, &mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        let mut err = None;
        let mut intr = false;
        self.recv_until(|mty, mflags, mseq, payload| {
            if mseq != seq {
                return false;
            }
            intr |= mflags & NLM_F_DUMP_INTR != 0;
            match mty {
                NLMSG_DONE => true,
                NLMSG_ERROR => {
                    err = error_code(payload).map(|errno| NlError {
                        errno,
                        extack: wire::extack(mflags, payload.get(4..).unwrap_or_default()),
                    });
                    true
                }
                _ => {
                    answers.push(Answer {
                        family: payload.first().copied().unwrap_or(0),
                        attrs: payload.get(4..).unwrap_or_default().to_vec(),
                    });
                    // A non-dump GET answers one object, then its ack.
                    false
                }
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(Dumped {
                value: answers,
                interrupted: intr,
            }),
        }
    }
}
