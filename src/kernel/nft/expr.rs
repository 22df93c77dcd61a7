//! Rules as netctx writes them: a few matches and one action, encoded into
//! nf_tables expressions exactly as `nft` encodes the same rule, and rendered
//! as `nft` syntax (`render.rs`: shown by `plan -v`, used to derive the
//! test fixtures).

use std::net::IpAddr;

use super::wire::{attr, Attrs};

#[path = "render.rs"]
mod render;
use crate::model::Cidr;

/// Registers (enum nft_registers).
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
/// Meta keys (enum nft_meta_keys).
const NFT_META_MARK: u32 = 3;
const NFT_META_NFTRACE: u32 = 12;
/// NFT_BITWISE_BOOL (`(reg & mask) ^ xor`), as nft names it for a mark.
const NFT_BITWISE_BOOL: u32 = 0;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_PKTTYPE: u32 = 19;
const NFT_META_L4PROTO: u32 = 16;
/// enum nft_ct_keys.
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
/// Conntrack status bits (enum ip_conntrack_status): IPS_DST_NAT.
pub const CT_STATUS_DNAT: u32 = 1 << 5;
/// Conntrack states as a bit mask (NF_CT_STATE_BIT).
pub const CT_ESTABLISHED: u32 = 1 << 1;
pub const CT_NEW: u32 = 1 << 3;
pub const CT_RELATED: u32 = 1 << 2;
/// Transport protocols (IPPROTO_*).
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// ICMP types netctx refuses from a context.
pub const ICMP_REDIRECT: u8 = 5;
pub const ND_ROUTER_ADVERT: u8 = 134;
pub const ND_REDIRECT: u8 = 137;
/// Payload bases (enum nft_payload_bases).
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// enum nft_cmp_ops.
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// enum nft_limit_type.
const NFT_LIMIT_PKTS: u32 = 0;
/// Verdicts (linux/netfilter.h).
pub const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// Expression attributes (enum nft_*_attributes), as in nf_tables.h.
mod a {
    pub const NFTA_META_DREG: u16 = 1;
    pub const NFTA_META_KEY: u16 = 2;
    pub const NFTA_META_SREG: u16 = 3;
    pub const NFTA_CMP_SREG: u16 = 1;
    pub const NFTA_CMP_OP: u16 = 2;
    pub const NFTA_CMP_DATA: u16 = 3;
    pub const NFTA_PAYLOAD_DREG: u16 = 1;
    pub const NFTA_PAYLOAD_BASE: u16 = 2;
    pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
    pub const NFTA_PAYLOAD_LEN: u16 = 4;
    pub const NFTA_BITWISE_SREG: u16 = 1;
    pub const NFTA_BITWISE_DREG: u16 = 2;
    pub const NFTA_BITWISE_LEN: u16 = 3;
    pub const NFTA_BITWISE_MASK: u16 = 4;
    pub const NFTA_BITWISE_XOR: u16 = 5;
    pub const NFTA_BITWISE_OP: u16 = 6;
    pub const NFTA_IMMEDIATE_DREG: u16 = 1;
    pub const NFTA_IMMEDIATE_DATA: u16 = 2;
    pub const NFTA_LIMIT_RATE: u16 = 1;
    pub const NFTA_LIMIT_UNIT: u16 = 2;
    pub const NFTA_LIMIT_BURST: u16 = 3;
    pub const NFTA_LIMIT_TYPE: u16 = 4;
    pub const NFTA_LIMIT_FLAGS: u16 = 5;
    pub const NFTA_LOG_GROUP: u16 = 1;
    pub const NFTA_LOG_PREFIX: u16 = 2;
    pub const NFTA_LOOKUP_SET: u16 = 1;
    pub const NFTA_LOOKUP_SREG: u16 = 2;
    pub const NFTA_LOOKUP_DREG: u16 = 3;
    pub const NFTA_LOOKUP_SET_ID: u16 = 4;
    pub const NFTA_CT_DREG: u16 = 1;
    pub const NFTA_CT_KEY: u16 = 2;
    pub const NFTA_FIB_DREG: u16 = 1;
    pub const NFTA_FIB_RESULT: u16 = 2;
    pub const NFTA_FIB_FLAGS: u16 = 3;
    pub const NFTA_NAT_TYPE: u16 = 1;
    pub const NFTA_NAT_FAMILY: u16 = 2;
    pub const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
    pub const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
    pub const NFTA_NAT_FLAGS: u16 = 7;
}
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// Expression names that `observe::counters` looks for in rule dumps.
pub const COUNTER: &str = "counter";
pub const LOG: &str = "log";
pub const IMMEDIATE: &str = "immediate";
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;

#[path = "expr_limits.rs"]
mod limits;
#[path = "expr_mark.rs"]
mod mark;
#[path = "expr_nat.rs"]
mod nat;
#[path = "expr_policy.rs"]
mod policy;
pub use nat::ConcatKey;
use nat::{dnat, ifname_lookup, local_not_loopback, vmap_concat};
pub use policy::{ICMPV6_ECHO_REQUEST, ICMP_ECHO_REQUEST, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `meta nfproto ipv4|ipv6`.
    Nfproto {
        v6: bool,
    },
    IifName(String),
    OifName(String),
    PktType(u8),
    /// The address is in the named set (`v6` picks ip6 and its set type;
    /// `ports`: address . l4proto . destination port, `kernel::nft::ranges`).
    InSet {
        v6: bool,
        dir: Dir,
        ports: bool,
        set: String,
        set_id: u32,
    },
    /// The input (or, with `output`, output) interface's name is in the
    /// named set of interface names.
    IfnameInSet {
        output: bool,
        set: String,
        set_id: u32,
    },
    /// The address lies in the prefix (a /32 or /128 is one address).
    Prefix {
        dir: Dir,
        cidr: Cidr,
    },
    /// Any of these conntrack states (CT_* bits).
    CtState(u32),
    /// `ct count over N`: the rule's own list of tracked connections
    /// (nft_connlimit) holds more than N with this one.
    CtCountOver(u32),
    /// `limit rate over RATE/UNIT burst BURST packets` (UNIT in seconds).
    RateOver {
        rate: u64,
        unit: u64,
        burst: u32,
    },
    /// Any of these conntrack status bits (`ct status dnat`).
    CtStatus(u32),
    /// The destination is one of the host's addresses, not loopback
    /// (`fib daddr type local ip daddr != 127.0.0.0/8`; IPv6: `!= ::1`).
    LocalNotLoopback {
        v6: bool,
    },
    /// A TCP or UDP destination port.
    Dport {
        proto: u8,
        port: u16,
    },
    /// A TCP or UDP destination port in `lo..=hi` (`tcp dport 8000-8100`).
    DportRange {
        proto: u8,
        lo: u16,
        hi: u16,
    },
    /// No output interface (`oif 0`): the input hook.
    NoOif,
    /// The packet's mark has this bit set (`meta mark & BIT == BIT`,
    /// iptables' `-m mark --mark BIT/BIT`).
    MarkBit(u32),
    /// An ICMP (or, with `v6`, ICMPv6) type.
    Icmp {
        v6: bool,
        ty: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Set this bit of the packet's mark (the others kept) and accept.
    MarkAccept(u32),
    /// `meta nftrace set 1`: the kernel reports every chain the packet
    /// walks through (`netctx explain`).
    Trace,
    /// Count and drop.
    Drop,
    /// `jump CHAIN` (a regular chain of the same table).
    Jump(String),
    /// `reject with tcp reset`: a TCP packet is answered with a reset and
    /// dropped; any other only dropped (`netctx explain`'s answers).
    Reset,
    /// Log to an NFLOG group, rate-limited (packets per second, burst), and
    /// count what is logged.
    Log {
        rate: u32,
        prefix: String,
        group: u16,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade,
    /// Destination NAT to `to:port` (the family is the address's).
    Dnat {
        to: IpAddr,
        port: u16,
    },
    /// The verdict the named map holds for the input (with `output`, the
    /// output) interface's name (`iifname vmap @set`); none: on to the next
    /// rule.
    Vmap {
        output: bool,
        set: String,
        set_id: u32,
    },
    /// The verdict the named map holds for a concatenation of the packet's
    /// fields (`ConcatKey`); none: on to the next rule.
    VmapConcat {
        key: ConcatKey,
        set: String,
        set_id: u32,
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
        d.be32(a::NFTA_META_KEY, key)
            .be32(a::NFTA_META_DREG, NFT_REG_1);
    });
}

fn cmp_eq(list: &mut Attrs, value: &[u8]) {
    cmp(list, NFT_CMP_EQ, value);
}

fn cmp(list: &mut Attrs, op: u32, value: &[u8]) {
    expr(list, "cmp", |d| {
        d.be32(a::NFTA_CMP_SREG, NFT_REG_1)
            .be32(a::NFTA_CMP_OP, op)
            .nested(a::NFTA_CMP_DATA, |v| {
                v.bytes(attr::DATA_VALUE, value);
            });
    });
}

fn payload(list: &mut Attrs, offset: u32, len: u32) {
    payload_at(list, NFT_PAYLOAD_NETWORK_HEADER, offset, len);
}

fn payload_at(list: &mut Attrs, base: u32, offset: u32, len: u32) {
    expr(list, "payload", |d| {
        d.be32(a::NFTA_PAYLOAD_DREG, NFT_REG_1)
            .be32(a::NFTA_PAYLOAD_BASE, base)
            .be32(a::NFTA_PAYLOAD_OFFSET, offset)
            .be32(a::NFTA_PAYLOAD_LEN, len);
    });
}

/// `mask` is at most an IPv6 address long.
fn bitwise(list: &mut Attrs, mask: &[u8]) {
    let len = u32::try_from(mask.len()).expect("an address mask");
    expr(list, "bitwise", |d| {
        d.be32(a::NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_LEN, len)
            .nested(a::NFTA_BITWISE_MASK, |v| {
                v.bytes(attr::DATA_VALUE, mask);
            })
            .nested(a::NFTA_BITWISE_XOR, |v| {
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
        d.be32(a::NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
            .nested(a::NFTA_IMMEDIATE_DATA, |v| {
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

/// `meta l4proto P`, as nft loads it before a transport header field.
fn l4proto(list: &mut Attrs, proto: u8) {
    meta(list, NFT_META_L4PROTO);
    cmp_eq(list, &[proto]);
}

/// `ct state S` or `ct status S`: load, mask, compare with 0.
fn ct_bits(list: &mut Attrs, key: u32, mask: u32) {
    expr(list, "ct", |d| {
        d.be32(a::NFTA_CT_KEY, key).be32(a::NFTA_CT_DREG, NFT_REG_1);
    });
    bitwise(list, &mask.to_ne_bytes());
    cmp(list, NFT_CMP_NEQ, &[0; 4]);
}

fn nfproto(list: &mut Attrs, v6: bool) {
    meta(list, NFT_META_NFPROTO);
    cmp_eq(list, &[if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }]);
}

impl Rule {
    /// The NFTA_RULE_EXPRESSIONS payload.
    pub fn encode(&self) -> Attrs {
        let mut l = Attrs::default();
        for m in &self.matches {
            encode_match(&mut l, m);
        }
        encode_action(&mut l, &self.action);
        l
    }
}

/// The expressions of one match.
fn encode_match(l: &mut Attrs, m: &Match) {
    match m {
        Match::MarkBit(bit) => mark::has_bit(l, *bit),
        Match::Nfproto { v6 } => nfproto(l, *v6),
        Match::IifName(n) => {
            meta(l, NFT_META_IIFNAME);
            cmp_eq(l, &ifname(n));
        }
        Match::OifName(n) => {
            meta(l, NFT_META_OIFNAME);
            cmp_eq(l, &ifname(n));
        }
        Match::PktType(t) => {
            meta(l, NFT_META_PKTTYPE);
            cmp_eq(l, &[*t]);
        }
        Match::InSet {
            v6,
            dir,
            ports,
            set,
            set_id,
        } => policy::in_set(l, (*v6, *dir, *ports), set, *set_id),
        Match::IfnameInSet {
            output,
            set,
            set_id,
        } => ifname_lookup(l, *output, set, *set_id, None),
        Match::Prefix { dir, cidr } => policy::prefix(l, *dir, cidr),
        Match::CtState(mask) => ct_bits(l, NFT_CT_STATE, *mask),
        Match::CtCountOver(n) => limits::ct_count_over(l, *n),
        Match::RateOver { rate, unit, burst } => limits::rate_over(l, *rate, *unit, *burst),
        Match::CtStatus(mask) => ct_bits(l, NFT_CT_STATUS, *mask),
        Match::LocalNotLoopback { v6 } => local_not_loopback(l, *v6),
        Match::Dport { proto, port } => {
            l4proto(l, *proto);
            payload_at(l, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
            cmp_eq(l, &port.to_be_bytes());
        }
        Match::DportRange { proto, lo, hi } => policy::dport_range(l, *proto, *lo, *hi),
        Match::NoOif => policy::no_oif(l),
        Match::Icmp { v6, ty } => {
            nfproto(l, *v6);
            l4proto(l, if *v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP });
            payload_at(l, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            cmp_eq(l, &[*ty]);
        }
    }
}

/// The expressions of the rule's action.
fn encode_action(l: &mut Attrs, action: &Action) {
    match action {
        Action::Accept => verdict(l, NF_ACCEPT),
        Action::Trace => mark::set_nftrace(l),
        Action::MarkAccept(bit) => {
            mark::set_bit(l, *bit);
            verdict(l, NF_ACCEPT);
        }
        Action::Drop => {
            counter(l);
            verdict(l, NF_DROP);
        }
        Action::Log {
            rate,
            prefix,
            group,
        } => {
            expr(l, "limit", |d| {
                // `limit rate RATE/second burst RATE packets`.
                d.be64(a::NFTA_LIMIT_RATE, u64::from(*rate))
                    .be64(a::NFTA_LIMIT_UNIT, 1)
                    .be32(a::NFTA_LIMIT_BURST, *rate)
                    .be32(a::NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS)
                    .be32(a::NFTA_LIMIT_FLAGS, 0);
            });
            // Counted after the limit: the packets actually logged.
            counter(l);
            expr(l, LOG, |d| {
                d.str(a::NFTA_LOG_PREFIX, prefix)
                    .be16(a::NFTA_LOG_GROUP, *group);
            });
        }
        Action::Reset => mark::reset(l),
        Action::Jump(chain) => limits::jump(l, chain),
        Action::Masquerade => expr(l, "masq", |_| {}),
        Action::Dnat { to, port } => dnat(l, *to, *port),
        Action::Vmap {
            output,
            set,
            set_id,
        } => ifname_lookup(l, *output, set, *set_id, Some(NFT_REG_VERDICT)),
        Action::VmapConcat { key, set, set_id } => vmap_concat(l, *key, set, *set_id),
    }
}
