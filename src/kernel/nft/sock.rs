//! A NETLINK_NETFILTER socket: one transaction (batch) at a time, and dumps
//! of nf_tables objects. Like every netlink socket it belongs to the network
//! namespace of the thread that opened it.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use super::wire::{
    batch, encode_raw, frames, parse_attrs, Msg, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::kernel::netlink::NlError;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP_INTR: u16 = 0x10;

pub struct Nft {
    sock: Socket,
    seq: u32,
    /// nf_tables messages sent in transactions (not counting dumps).
    pub changes: usize,
}

/// One message of a dump: its NFT_MSG type and attributes.
pub struct Answer {
    pub attrs: Vec<u8>,
}

impl Answer {
    pub fn get(&self, ty: u16) -> Option<&[u8]> {
        parse_attrs(&self.attrs)
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v)
    }
    pub fn get_str(&self, ty: u16) -> Option<String> {
        self.get(ty).map(|v| {
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(v).into_owned()
        })
    }
}

fn err_of(payload: &[u8]) -> Option<i32> {
    let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    (code != 0).then_some(-code)
}

fn extack(flags: u16, payload: &[u8]) -> Option<String> {
    // With NETLINK_CAP_ACK: errno, the request's header, then attributes.
    if flags & 0x200 == 0 || payload.len() < 20 {
        return None;
    }
    parse_attrs(&payload[20..])
        .find(|(t, _)| *t == 1)
        .map(|(_, v)| {
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(v).into_owned()
        })
}

impl Nft {
    pub fn open() -> io::Result<Nft> {
        Ok(Nft {
            sock: crate::kernel::netlink::socket(NETLINK_NETFILTER)?,
            seq: 1,
            changes: 0,
        })
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
        let n = self.sock.send(&bytes, 0).map_err(io_err)?;
        if n != bytes.len() {
            return Err((0, NlError::from(io::Error::other("short netlink send"))));
        }
        let mut pending: std::collections::HashSet<u32> = seqs.iter().copied().collect();
        let mut first: Option<(usize, NlError)> = None;
        self.recv_until(|ty, flags, seq, payload| {
            if ty == NLMSG_ERROR && pending.remove(&seq) {
                if let Some(errno) = err_of(payload) {
                    let i = seqs.iter().position(|s| *s == seq).unwrap_or(0);
                    let e = NlError {
                        errno,
                        extack: extack(flags, payload),
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
    /// empty answer.
    pub fn get(&mut self, ty: u16, attrs: &[u8], dump: bool) -> Result<Vec<Answer>, NlError> {
        for _ in 0..5 {
            self.seq += 1;
            let seq = self.seq;
            let mut out = Vec::new();
            let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
            encode_raw(
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                flags,
                seq,
                NFPROTO_INET,
                0,
                attrs,
                &mut out,
            );
            self.sock.send(&out, 0)?;
            let mut answers = Vec::new();
            let mut err = None;
            let mut intr = false;
            let mut acked = !dump;
            let mut got_one = false;
            self.recv_until(|mty, mflags, mseq, payload| {
                if mseq != seq {
                    return false;
                }
                intr |= mflags & NLM_F_DUMP_INTR != 0;
                match mty {
                    NLMSG_DONE => true,
                    NLMSG_ERROR => {
                        err = err_of(payload);
                        acked = true;
                        true
                    }
                    _ => {
                        answers.push(Answer {
                            attrs: payload.get(4..).unwrap_or_default().to_vec(),
                        });
                        got_one = true;
                        // A non-dump GET answers one object, then its ack.
                        false
                    }
                }
            })?;
            let _ = (acked, got_one);
            match err {
                Some(errno) => {
                    return Err(NlError {
                        errno,
                        extack: None,
                    })
                }
                None if intr => continue,
                None => return Ok(answers),
            }
        }
        Err(NlError {
            errno: libc::EAGAIN,
            extack: Some("nf_tables dump kept being interrupted".into()),
        })
    }
}
