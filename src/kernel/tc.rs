//! Traffic control as netctx uses it: a token bucket (`tbf`) as the root
//! qdisc of each end of a context's veths, which caps what the link sends
//! (docs/fences.md). Builders of its rtnetlink messages and a reader of a
//! qdisc dump's bytes: pure, `apply` and `observe` send and read them.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::wire;
use crate::kernel::netlink::Request;
use crate::model::limits::burst;
pub use crate::model::Tbf;

/// The qdisc kind.
pub const KIND: &str = "tbf";
/// The handle of netctx's qdisc (`4e78:`), by which it knows its own.
pub const HANDLE: u32 = 0x4e78_0000;
/// TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST (linux/pkt_sched.h).
const TBF_PARMS: u16 = 1;
const TBF_RATE64: u16 = 4;
const TBF_BURST: u16 = 6;
/// TC_LINKLAYER_ETHERNET: no rate table needed.
const LINKLAYER_ETHERNET: u8 = 1;
/// TCA_KIND, TCA_OPTIONS, TCA_STATS2 and inside it TCA_STATS_QUEUE.
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_STATS2: u16 = 7;
const TCA_STATS_QUEUE: u16 = 3;
/// The root of a link's qdiscs (TC_H_ROOT).
const ROOT: u32 = u32::MAX;

fn handle(h: u32) -> TcHandle {
    TcHandle {
        major: u16::try_from(h >> 16).unwrap_or(u16::MAX),
        minor: u16::try_from(h & 0xffff).unwrap_or(u16::MAX),
    }
}

fn root_msg(index: u32) -> TcMessage {
    let mut m = TcMessage::with_index(index as i32);
    m.header.parent = handle(ROOT);
    m.header.handle = handle(HANDLE);
    m
}

/// `tc qdisc replace dev INDEX root handle 4e78: tbf rate … burst …
/// limit …`: made, or changed in place when it is there.
pub fn replace(index: u32, t: Tbf) -> Request {
    // struct tc_tbf_qopt: rate and peak rate (struct tc_ratespec, 12
    // bytes each), limit, buffer, mtu.
    let mut qopt = vec![0u8; 36];
    qopt[1] = LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(t.rate).unwrap_or(u32::MAX);
    qopt[8..12].copy_from_slice(&rate32.to_ne_bytes());
    qopt[24..28].copy_from_slice(&t.limit.to_ne_bytes());
    let nla = |k, v: Vec<u8>| TcOption::Other(netlink_packet_core::DefaultNla::new(k, v));
    let mut opts = vec![nla(TBF_PARMS, qopt)];
    if t.rate >= 1 << 32 {
        opts.push(nla(TBF_RATE64, t.rate.to_ne_bytes().to_vec()));
    }
    opts.push(nla(TBF_BURST, burst(t.rate).to_ne_bytes().to_vec()));
    let mut m = root_msg(index);
    m.attributes.push(TcAttribute::Kind(KIND.into()));
    m.attributes.push(TcAttribute::Options(opts));
    Request {
        msg: M::NewQueueDiscipline(m),
        flags: NLM_F_CREATE | NLM_F_REPLACE,
    }
}

/// Remove netctx's root qdisc of the link (back to the link's default).
pub fn delete(index: u32) -> Request {
    Request {
        msg: M::DelQueueDiscipline(root_msg(index)),
        flags: 0,
    }
}

/// A dump of the namespace's qdiscs.
pub fn dump() -> M {
    M::GetQueueDiscipline(TcMessage::default())
}

/// One root qdisc of netctx's, as a dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ours {
    pub index: u32,
    pub tbf: Tbf,
    /// Packets it dropped (its queue was full).
    pub drops: u64,
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A qdisc of a dump (what follows the netlink header: `tcmsg`, then
/// attributes), when it is netctx's root token bucket.
pub fn raw_ours(m: &[u8]) -> Option<Ours> {
    let (index, h, parent) = (word(m, 4)?, word(m, 8)?, word(m, 12)?);
    if h != HANDLE || parent != ROOT {
        return None;
    }
    let (mut kind, mut tbf, mut drops, mut rate64) = (false, None, 0, None);
    for (ty, v) in wire::parse_attrs(m.get(20..)?) {
        match ty {
            TCA_KIND => kind = v.split(|b| *b == 0).next() == Some(KIND.as_bytes()),
            TCA_OPTIONS => {
                for (t, o) in wire::parse_attrs(v) {
                    match t {
                        TBF_PARMS => {
                            tbf = Some(Tbf {
                                rate: u64::from(word(o, 8)?),
                                limit: word(o, 24)?,
                            })
                        }
                        TBF_RATE64 => rate64 = o.try_into().ok().map(u64::from_ne_bytes),
                        _ => {}
                    }
                }
            }
            TCA_STATS2 => {
                if let Some((_, q)) = wire::parse_attrs(v).find(|(t, _)| *t == TCA_STATS_QUEUE) {
                    // struct gnet_stats_queue: qlen, backlog, drops, …
                    drops = u64::from(word(q, 8).unwrap_or(0));
                }
            }
            _ => {}
        }
    }
    let mut tbf = tbf.filter(|_| kind)?;
    if let Some(r) = rate64 {
        tbf.rate = r;
    }
    Some(Ours { index, tbf, drops })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};

    /// The bytes after the netlink header of a message.
    fn body(m: M) -> Vec<u8> {
        let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        buf[16..].to_vec()
    }

    #[test]
    fn a_replaced_bucket_reads_back_as_itself() {
        for bits in [20_000_000, 100_000_000, 40_000_000_000] {
            let t = Tbf::for_bits(bits);
            let b = body(replace(7, t).msg);
            let o = raw_ours(&b).expect("netctx's root tbf");
            assert_eq!((o.index, o.tbf, o.drops), (7, t, 0));
        }
        // 20 mbit: 2.5 MB/s, a 64 KiB bucket, 125 kB of queue beyond it.
        assert_eq!(
            Tbf::for_bits(20_000_000),
            Tbf {
                rate: 2_500_000,
                limit: 125_000 + 65_536
            }
        );
        assert_eq!(burst(1_250_000_000), 12_500_000);
        // Another root qdisc, or not the root: not netctx's.
        let mut other = root_msg(7);
        other.header.handle = handle(0x8001_0000);
        assert_eq!(raw_ours(&body(M::NewQueueDiscipline(other))), None);
    }
}
