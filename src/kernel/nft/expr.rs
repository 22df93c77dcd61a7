//! Rules as netctx writes them: a few matches and one action, encoded into
//! nf_tables expressions exactly as `nft` encodes the same rule, and rendered
//! as `nft` syntax (shown by `plan -v`, used to derive the test fixtures).

use std::fmt::Write;
use std::net::IpAddr;

use super::wire::{attr, Attrs};
use crate::model::Cidr;

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
const META_PKTTYPE: u32 = 19;
const PAYLOAD_NETWORK: u32 = 1;
pub const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// Expression names that `observe::counters` looks for in rule dumps.
pub const COUNTER: &str = "counter";
pub const LOG: &str = "log";
pub const IMMEDIATE: &str = "immediate";
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    IifName(String),
    OifName(String),
    PktType(u8),
    /// The address is in the named set (`v6` picks ip6 and its set type).
    InSet {
        v6: bool,
        dir: Dir,
        set: String,
        set_id: u32,
    },
    /// The address lies in the prefix (a /32 or /128 is one address).
    Prefix {
        dir: Dir,
        cidr: Cidr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Count and drop.
    Drop,
    /// Log to an NFLOG group, rate-limited (packets per second, burst), and
    /// count what is logged.
    Log {
        rate: u32,
        prefix: String,
        group: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
}

/// One expression: name and data attributes.
fn expr(list: &mut Attrs, name: &str, data: impl FnOnce(&mut Attrs)) {
    list.nested(attr::LIST_ELEM, |e| {
        e.str(attr::EXPR_NAME, name);
        e.nested(attr::EXPR_DATA, data);
    });
}

fn meta(list: &mut Attrs, key: u32) {
    expr(list, "meta", |d| {
        d.be32(2, key).be32(1, REG_1);
    });
}

fn cmp_eq(list: &mut Attrs, value: &[u8]) {
    expr(list, "cmp", |d| {
        d.be32(1, REG_1).be32(2, 0).nested(3, |v| {
            v.bytes(attr::DATA_VALUE, value);
        });
    });
}

fn payload(list: &mut Attrs, offset: u32, len: u32) {
    expr(list, "payload", |d| {
        d.be32(1, REG_1)
            .be32(2, PAYLOAD_NETWORK)
            .be32(3, offset)
            .be32(4, len);
    });
}

fn bitwise(list: &mut Attrs, mask: &[u8]) {
    expr(list, "bitwise", |d| {
        d.be32(1, REG_1)
            .be32(2, REG_1)
            .be32(3, mask.len() as u32)
            .nested(4, |v| {
                v.bytes(attr::DATA_VALUE, mask);
            })
            .nested(5, |v| {
                v.bytes(attr::DATA_VALUE, &vec![0; mask.len()]);
            });
    });
}

/// The `counter` statement as nft encodes it: an empty data nest (the
/// kernel starts at zero and reports packets and bytes in rule dumps).
pub fn counter(list: &mut Attrs) {
    expr(list, COUNTER, |_| {});
}

fn verdict(list: &mut Attrs, code: u32) {
    expr(list, IMMEDIATE, |d| {
        d.be32(1, REG_VERDICT).nested(2, |v| {
            v.nested(attr::DATA_VERDICT, |c| {
                c.be32(attr::VERDICT_CODE, code);
            });
        });
    });
}

fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

fn addr_offset(v6: bool, dir: Dir) -> u32 {
    match (v6, dir) {
        (false, Dir::Src) => 12,
        (false, Dir::Dst) => 16,
        (true, Dir::Src) => 8,
        (true, Dir::Dst) => 24,
    }
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn nfproto(list: &mut Attrs, v6: bool) {
    meta(list, META_NFPROTO);
    cmp_eq(list, &[if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }]);
}

impl Rule {
    /// The NFTA_RULE_EXPRESSIONS payload.
    pub fn encode(&self) -> Attrs {
        let mut l = Attrs::default();
        for m in &self.matches {
            match m {
                Match::IifName(n) => {
                    meta(&mut l, META_IIFNAME);
                    cmp_eq(&mut l, &ifname(n));
                }
                Match::OifName(n) => {
                    meta(&mut l, META_OIFNAME);
                    cmp_eq(&mut l, &ifname(n));
                }
                Match::PktType(t) => {
                    meta(&mut l, META_PKTTYPE);
                    cmp_eq(&mut l, &[*t]);
                }
                Match::InSet {
                    v6,
                    dir,
                    set,
                    set_id,
                } => {
                    nfproto(&mut l, *v6);
                    payload(&mut l, addr_offset(*v6, *dir), if *v6 { 16 } else { 4 });
                    expr(&mut l, "lookup", |d| {
                        d.be32(2, REG_1).str(1, set).be32(4, *set_id);
                    });
                }
                Match::Prefix { dir, cidr } => {
                    let v6 = !cidr.is_v4();
                    nfproto(&mut l, v6);
                    // As nft does: a prefix on a byte boundary loads only
                    // the bytes it covers; any other loads the whole address
                    // and masks it.
                    let bytes = addr_bytes(cidr.network());
                    let p = usize::from(cidr.prefix);
                    let n = if p % 8 == 0 { p / 8 } else { bytes.len() };
                    payload(&mut l, addr_offset(v6, *dir), n as u32);
                    if p % 8 != 0 {
                        let mask: Vec<u8> = (0..n)
                            .map(|i| match p.saturating_sub(i * 8) {
                                0 => 0,
                                b if b >= 8 => 0xff,
                                b => 0xffu8 << (8 - b),
                            })
                            .collect();
                        bitwise(&mut l, &mask);
                    }
                    cmp_eq(&mut l, &bytes[..n]);
                }
            }
        }
        match &self.action {
            Action::Accept => verdict(&mut l, NF_ACCEPT),
            Action::Drop => {
                counter(&mut l);
                verdict(&mut l, NF_DROP);
            }
            Action::Log {
                rate,
                prefix,
                group,
            } => {
                expr(&mut l, "limit", |d| {
                    d.be64(1, u64::from(*rate))
                        .be64(2, 1)
                        .be32(3, *rate)
                        .be32(4, 0)
                        .be32(5, 0);
                });
                // Counted after the limit: the packets actually logged.
                counter(&mut l);
                expr(&mut l, LOG, |d| {
                    d.str(2, prefix).be16(1, *group);
                });
            }
        }
        l
    }

    /// The rule in `nft` syntax.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for m in &self.matches {
            match m {
                Match::IifName(n) => write!(s, "iifname \"{n}\" "),
                Match::OifName(n) => write!(s, "oifname \"{n}\" "),
                Match::PktType(t) => {
                    let name = if *t == PACKET_BROADCAST {
                        "broadcast"
                    } else {
                        "multicast"
                    };
                    write!(s, "meta pkttype {name} ")
                }
                Match::InSet { v6, dir, set, .. } => {
                    let (fam, ip) = if *v6 { ("ipv6", "ip6") } else { ("ipv4", "ip") };
                    let d = if *dir == Dir::Src { "saddr" } else { "daddr" };
                    write!(s, "meta nfproto {fam} {ip} {d} @{set} ")
                }
                Match::Prefix { dir, cidr } => {
                    let (fam, ip) = if cidr.is_v4() {
                        ("ipv4", "ip")
                    } else {
                        ("ipv6", "ip6")
                    };
                    let d = if *dir == Dir::Src { "saddr" } else { "daddr" };
                    if cidr.prefix == crate::model::max_prefix(cidr.addr) {
                        write!(s, "meta nfproto {fam} {ip} {d} {} ", cidr.addr)
                    } else {
                        write!(s, "meta nfproto {fam} {ip} {d} {} ", cidr.subnet())
                    }
                }
            }
            .unwrap();
        }
        match &self.action {
            Action::Accept => s.push_str("accept"),
            Action::Drop => s.push_str("counter drop"),
            Action::Log {
                rate,
                prefix,
                group,
            } => write!(
                s,
                "limit rate {rate}/second burst {rate} packets counter log prefix \"{prefix}\" group {group}"
            )
            .unwrap(),
        }
        s
    }
}
