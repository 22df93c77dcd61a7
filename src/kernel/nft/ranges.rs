//! Interval sets of address ranges, with or without protocol and ports
//! (`type ipv4_addr . inet_proto . inet_service; flags interval`): the
//! policy's `deny`, `reach` and `accept_from` ranges in the host's table.
//! The rules look them up by name, so that when only the addresses change
//! their elements change in place (one transaction of element deletions and
//! additions) and the chains, rules and counters stay as they are.

use std::net::IpAddr;

use super::table::{del_set, TimedSet, TABLE};
use super::wire::{attr, msg, parse_attrs, Attrs, Msg, NLM_F_CREATE};
use crate::model::{Cidr, Ports, Proto};

const SET_INTERVAL: u32 = 0x4;
const SET_CONCAT: u32 = 0x80;
const SET_DESC: u16 = 9;
const SET_DESC_CONCAT: u16 = 2;
const SET_FIELD_LEN: u16 = 1;
const SET_ELEM_FLAGS: u16 = 3;
const SET_ELEM_KEY_END: u16 = 10;
const ELEM_INTERVAL_END: u32 = 1;
/// nft's datatypes; a concatenation's is each shifted by 6 bits.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// One range of keys, both ends included, as the kernel holds the key (an
/// address; with ports, address . protocol . port, each padded to 4 bytes).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Elem {
    pub lo: Vec<u8>,
    pub hi: Vec<u8>,
}

/// A named interval set of one family, of addresses or (`ports`) of
/// address, protocol and destination port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub name: String,
    pub v6: bool,
    pub ports: bool,
    pub elems: Vec<Elem>,
    /// Its id within a transaction (the rules and elements look it up by
    /// name first: the id serves the transaction that makes it).
    pub id: u32,
}

/// The first and last address of a prefix, as numbers.
fn span(c: &Cidr) -> (u128, u128) {
    let (bits, a) = match c.addr {
        IpAddr::V4(a) => (32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    let host = bits - u32::from(c.prefix);
    let mask = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (a & !mask, a | mask)
}

/// Ranges sorted, overlapping and adjacent ones merged.
fn merge(mut r: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    r.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn addr_bytes(v6: bool, a: u128) -> Vec<u8> {
    if v6 {
        a.to_be_bytes().to_vec()
    } else {
        u32::try_from(a).unwrap_or(u32::MAX).to_be_bytes().to_vec()
    }
}

fn proto_num(p: Proto) -> u8 {
    match p {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
    }
}

fn ported_key(v6: bool, a: u128, proto: u8, port: u16) -> Vec<u8> {
    let mut k = addr_bytes(v6, a);
    k.extend([proto, 0, 0, 0]);
    k.extend(port.to_be_bytes());
    k.extend([0, 0]);
    k
}

/// Addresses as numbers, first and last.
type Span = (u128, u128);
/// Ports, first and last.
type PortSpan = (u16, u16);

/// Disjoint boxes covering the union of (address range, ports) entries of
/// one protocol: the ports are cut where any entry's begin or end, and in
/// each piece the address ranges of the entries covering it are merged
/// (the kernel refuses overlapping elements).
fn boxes(entries: &[(Span, PortSpan)]) -> Vec<(PortSpan, Vec<Span>)> {
    let mut cuts: Vec<u32> = entries
        .iter()
        .flat_map(|(_, (lo, hi))| [u32::from(*lo), u32::from(*hi) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(PortSpan, Vec<Span>)> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let addrs = merge(
            entries
                .iter()
                .filter(|(_, (l, h))| u32::from(*l) <= lo && hi <= u32::from(*h))
                .map(|(a, _)| *a)
                .collect(),
        );
        let (Ok(lo), Ok(hi)) = (u16::try_from(lo), u16::try_from(hi)) else {
            continue;
        };
        if addrs.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((p, a)) if *a == addrs && u32::from(p.1) + 1 == u32::from(lo) => p.1 = hi,
            _ => out.push(((lo, hi), addrs)),
        }
    }
    out
}

impl RangeSet {
    /// The set of these entries of one family: address ranges alone, or
    /// (`ports`) those with ports.
    pub fn new(name: String, v6: bool, ports: bool, entries: &[(Cidr, Option<Ports>)]) -> RangeSet {
        let mine = entries
            .iter()
            .filter(|(c, p)| c.is_v4() != v6 && p.is_some() == ports);
        let elems = if ports {
            let mut elems = Vec::new();
            for proto in [Proto::Tcp, Proto::Udp] {
                let e: Vec<_> = mine
                    .clone()
                    .filter_map(|(c, p)| {
                        p.filter(|p| p.proto == proto)
                            .map(|p| (span(c), (p.lo, p.hi)))
                    })
                    .collect();
                let n = proto_num(proto);
                for ((plo, phi), addrs) in boxes(&e) {
                    elems.extend(addrs.into_iter().map(|(lo, hi)| Elem {
                        lo: ported_key(v6, lo, n, plo),
                        hi: ported_key(v6, hi, n, phi),
                    }));
                }
            }
            elems
        } else {
            merge(mine.map(|(c, _)| span(c)).collect())
                .into_iter()
                .map(|(lo, hi)| Elem {
                    lo: addr_bytes(v6, lo),
                    hi: addr_bytes(v6, hi),
                })
                .collect()
        };
        RangeSet {
            name,
            v6,
            ports,
            elems,
            id: 0,
        }
    }

    /// Its id within a transaction.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn addr_len(&self) -> u32 {
        if self.v6 {
            16
        } else {
            4
        }
    }

    /// The messages that create it with its elements, as nft sends them.
    pub fn create_msgs(&self, out: &mut Vec<Msg>) {
        let addr_type = if self.v6 { TYPE_IP6ADDR } else { TYPE_IPADDR };
        let mut a = Attrs::default();
        a.str(attr::SET_TABLE, TABLE)
            .str(attr::SET_NAME, &self.name);
        if self.ports {
            let ty = (addr_type << 12) | (TYPE_INET_PROTO << 6) | TYPE_INET_SERVICE;
            a.be32(attr::SET_FLAGS, SET_INTERVAL | SET_CONCAT)
                .be32(attr::SET_KEY_TYPE, ty)
                .be32(attr::SET_KEY_LEN, self.addr_len() + 8)
                .be32(attr::SET_ID, self.id())
                .nested(SET_DESC, |d| {
                    d.nested(SET_DESC_CONCAT, |c| {
                        for len in [self.addr_len(), 1, 2] {
                            c.nested(attr::LIST_ELEM, |f| {
                                f.be32(SET_FIELD_LEN, len);
                            });
                        }
                    });
                });
        } else {
            a.be32(attr::SET_FLAGS, SET_INTERVAL)
                .be32(attr::SET_KEY_TYPE, addr_type)
                .be32(attr::SET_KEY_LEN, self.addr_len())
                .be32(attr::SET_ID, self.id());
        }
        out.push(Msg::new(msg::NEWSET, NLM_F_CREATE, a));
        // As nft does for a new interval set: an interval end at 0 first.
        let zero = !self.ports
            && self
                .elems
                .first()
                .is_some_and(|e| e.lo.iter().any(|b| *b != 0));
        let mut keys = Vec::new();
        if zero {
            keys.push(Key::End(vec![0; self.addr_len() as usize]));
        }
        keys.extend(self.keys(&self.elems));
        if !keys.is_empty() {
            out.push(self.elems_msg(msg::NEWSETELEM, &keys));
        }
    }

    /// The kernel's elements of `elems`: one with an end key each (ports),
    /// or a start and, unless it runs to the last address, an interval end
    /// one past it.
    fn keys(&self, elems: &[Elem]) -> Vec<Key> {
        let mut out = Vec::new();
        for e in elems {
            if self.ports {
                out.push(Key::Range(e.lo.clone(), e.hi.clone()));
                continue;
            }
            out.push(Key::Start(e.lo.clone()));
            if let Some(next) = successor(&e.hi) {
                out.push(Key::End(next));
            }
        }
        out
    }

    fn elems_msg(&self, ty: u16, keys: &[Key]) -> Msg {
        let mut a = Attrs::default();
        a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
            .str(attr::SET_ELEM_LIST_SET, &self.name);
        if ty == msg::NEWSETELEM {
            a.be32(attr::SET_ELEM_LIST_SET_ID, self.id());
        }
        a.nested(attr::SET_ELEM_LIST_ELEMENTS, |l| {
            for (i, k) in keys.iter().enumerate() {
                let index = u16::try_from(i + 1).unwrap_or(u16::MAX);
                l.nested(index, |el| match k {
                    Key::Start(k) => {
                        el.nested(attr::SET_ELEM_KEY, |kk| {
                            kk.bytes(attr::DATA_VALUE, k);
                        });
                    }
                    Key::End(k) => {
                        el.be32(SET_ELEM_FLAGS, ELEM_INTERVAL_END).nested(
                            attr::SET_ELEM_KEY,
                            |kk| {
                                kk.bytes(attr::DATA_VALUE, k);
                            },
                        );
                    }
                    Key::Range(lo, hi) => {
                        el.nested(attr::SET_ELEM_KEY, |kk| {
                            kk.bytes(attr::DATA_VALUE, lo);
                        })
                        .nested(SET_ELEM_KEY_END, |kk| {
                            kk.bytes(attr::DATA_VALUE, hi);
                        });
                    }
                });
            }
        });
        let flags = if ty == msg::NEWSETELEM {
            NLM_F_CREATE
        } else {
            0
        };
        Msg::new(ty, flags, a)
    }

    /// The elements that go (`del`) and come (`add`), in one transaction's
    /// messages: the deletions first.
    pub fn change_msgs(&self, del: &[Elem], add: &[Elem], out: &mut Vec<Msg>) {
        for (ty, elems) in [(msg::DELSETELEM, del), (msg::NEWSETELEM, add)] {
            // Chunks keep each message well under the kernel's limit.
            for part in elems.chunks(256) {
                out.push(self.elems_msg(ty, &self.keys(part)));
            }
        }
    }
}

/// One element of the kernel's.
enum Key {
    Start(Vec<u8>),
    End(Vec<u8>),
    Range(Vec<u8>, Vec<u8>),
}

fn to_num(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |n, x| (n << 8) | u128::from(*x))
}

fn from_num(n: u128, len: usize) -> Vec<u8> {
    n.to_be_bytes()[16 - len..].to_vec()
}

/// The key one past `k`, `None` past the last.
fn successor(k: &[u8]) -> Option<Vec<u8>> {
    let n = to_num(k);
    let max = if k.len() >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * k.len())) - 1
    };
    (n < max).then(|| from_num(n + 1, k.len()))
}

/// Whether a set of the host's table is one of these, and with ports:
/// `CTX_reachp6`, `CTX_accept4`…, the shared `netctx-deny4` (`shared`).
pub fn ported_name(name: &str) -> Option<bool> {
    if let Some(p) = shared::ported(name) {
        return Some(p);
    }
    let (_, tail) = name.rsplit_once('_')?;
    let tail = tail.strip_suffix(['4', '6'])?;
    let (kind, ports) = match tail.strip_suffix('p') {
        Some(k) => (k, true),
        None => (tail, false),
    };
    ["deny", "reach", "accept"].contains(&kind).then_some(ports)
}

/// The elements of a set as a dump answers them (each answer's element
/// list), back to ranges: ends included, an interval end at 0 left out.
pub fn parse_elems<'a>(ports: bool, lists: impl Iterator<Item = &'a [u8]>) -> Vec<Elem> {
    let (mut starts, mut ends, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for list in lists {
        for (_, elem) in parse_attrs(list) {
            let (mut key, mut key_end, mut end) = (None, None, false);
            for (t, v) in parse_attrs(elem) {
                let value = || {
                    parse_attrs(v)
                        .find(|(t, _)| *t == attr::DATA_VALUE)
                        .map(|(_, v)| v.to_vec())
                };
                match t {
                    attr::SET_ELEM_KEY => key = value(),
                    SET_ELEM_KEY_END => key_end = value(),
                    SET_ELEM_FLAGS => {
                        end = v.try_into().map(u32::from_be_bytes).unwrap_or(0) & ELEM_INTERVAL_END
                            != 0;
                    }
                    _ => {}
                }
            }
            let Some(key) = key else { continue };
            match (ports, end) {
                (true, _) => out.push(Elem {
                    hi: key_end.unwrap_or_else(|| key.clone()),
                    lo: key,
                }),
                (false, true) if key.iter().any(|b| *b != 0) => ends.push(key),
                (false, true) => {}
                (false, false) => starts.push(key),
            }
        }
    }
    starts.sort();
    ends.sort();
    for (i, lo) in starts.into_iter().enumerate() {
        let hi = match ends.get(i) {
            Some(e) => from_num(to_num(e) - 1, e.len()),
            None => vec![0xff; lo.len()],
        };
        out.push(Elem { lo, hi });
    }
    out.sort();
    out
}

/// A context's sets in the host's table: its timed sets (netctx's
/// resolver's: made when missing, kept with their elements when there),
/// its range sets (made, or their elements changed in place) and those
/// that go; the shared deny sets it needs (`shared`: made, or changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSets {
    pub keep: Vec<TimedSet>,
    pub ranges: Vec<RangeChange>,
    pub remove: Vec<String>,
    pub shared: Vec<RangeChange>,
}

/// A range set made (`create`: with all its elements) or changed in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeChange {
    pub set: RangeSet,
    pub create: bool,
    pub del: Vec<Elem>,
    pub add: Vec<Elem>,
}

impl RangeChange {
    pub fn msgs(&self, out: &mut Vec<Msg>) {
        if self.create {
            self.set.create_msgs(out);
        } else {
            self.set.change_msgs(&self.del, &self.add, out);
        }
    }

    /// In `nft` syntax (`plan -v`): the set, or its element changes.
    pub fn render(&self) -> String {
        if self.create {
            self.set.render()
        } else {
            self.set.render_change(&self.del, &self.add)
        }
    }
}

/// One context's part of a change to the host's table: its sets before the
/// chains whose rules look them up, those that go after the chains that
/// looked them up went.
pub fn host_context_msgs(
    existing: &[String],
    chains: &[super::table::Chain],
    dispatch: &super::dispatch::DispatchChange,
    sets: &HostSets,
    out: &mut Vec<Msg>,
) {
    out.extend(sets.keep.iter().map(TimedSet::create_msg));
    for r in sets.shared.iter().chain(&sets.ranges) {
        r.msgs(out);
    }
    super::dispatch::host_change_msgs(existing, chains, dispatch, out);
    out.extend(sets.remove.iter().map(|s| del_set(s)));
}

#[path = "ranges_render.rs"]
mod render;

#[path = "ranges_shared.rs"]
pub mod shared;

#[cfg(test)]
#[path = "ranges_tests.rs"]
mod tests;
