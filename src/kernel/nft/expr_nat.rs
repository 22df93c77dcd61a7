//! The NAT expressions of `expr`: the published ports' destination match,
//! `dnat`, and the NAT dispatch's lookups of concatenated keys.

use super::*;

/// enum nft_fib_result, nft_fib_flags; RTN_LOCAL.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
/// enum nft_nat_types; NF_NAT_RANGE_PROTO_SPECIFIED.
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 1 << 1;
const NFT_REG_2: u32 = 2;

/// `fib daddr type local` and the destination not loopback, as nft
/// encodes it after `meta nfproto`.
pub(super) fn local_not_loopback(l: &mut Attrs, v6: bool) {
    nfproto(l, v6);
    expr(l, "fib", |d| {
        // In nft's order: flags, result, register.
        d.be32(a::NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR)
            .be32(a::NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
            .be32(a::NFTA_FIB_DREG, NFT_REG_1);
    });
    cmp_eq(l, &RTN_LOCAL.to_ne_bytes());
    if v6 {
        payload(l, addr_offset(true, Dir::Dst), 16);
        cmp(l, NFT_CMP_NEQ, &std::net::Ipv6Addr::LOCALHOST.octets());
    } else {
        // 127.0.0.0/8 is on a byte boundary: one byte is loaded.
        payload(l, addr_offset(false, Dir::Dst), 1);
        cmp(l, NFT_CMP_NEQ, &[127]);
    }
}

fn immediate(l: &mut Attrs, reg: u32, value: &[u8]) {
    expr(l, "immediate", |d| {
        d.be32(a::NFTA_IMMEDIATE_DREG, reg)
            .nested(a::NFTA_IMMEDIATE_DATA, |v| {
                v.bytes(attr::DATA_VALUE, value);
            });
    });
}

/// `dnat ip to ADDR:PORT` (or ip6).
pub(super) fn dnat(l: &mut Attrs, to: IpAddr, port: u16) {
    immediate(l, NFT_REG_1, &addr_bytes(to));
    immediate(l, NFT_REG_2, &port.to_be_bytes());
    let family = if to.is_ipv6() {
        NFPROTO_IPV6
    } else {
        NFPROTO_IPV4
    };
    expr(l, "nat", |d| {
        d.be32(a::NFTA_NAT_TYPE, NFT_NAT_DNAT)
            .be32(a::NFTA_NAT_FAMILY, u32::from(family))
            .be32(a::NFTA_NAT_REG_ADDR_MIN, NFT_REG_1)
            .be32(a::NFTA_NAT_REG_PROTO_MIN, NFT_REG_2)
            .be32(a::NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
    });
}

/// The fields of a verdict map's key (`Action::VmapConcat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcatKey {
    /// `meta nfproto . meta l4proto . th dport`.
    ProtoPort,
    /// `ip daddr . meta l4proto . th dport` (or ip6).
    AddrProtoPort { v6: bool },
}

/// The register nft loads a concatenation's field into, from its offset
/// in 32-bit words: a 128-bit register where one begins, else a 32-bit one.
fn concat_reg(word: u32) -> u32 {
    if word.is_multiple_of(4) {
        NFT_REG_1 + word / 4
    } else {
        NFT_REG32_00 + word
    }
}

const NFT_REG32_00: u32 = 8;

fn load(l: &mut Attrs, word: u32, what: impl FnOnce(&mut Attrs, u32)) {
    what(l, concat_reg(word));
}

/// `KEY vmap @set`, as nft encodes it.
pub(super) fn vmap_concat(l: &mut Attrs, key: ConcatKey, set: &str, set_id: u32) {
    let meta_to = |l: &mut Attrs, k: u32, reg: u32| {
        expr(l, "meta", |d| {
            d.be32(a::NFTA_META_KEY, k).be32(a::NFTA_META_DREG, reg);
        });
    };
    let words = match key {
        ConcatKey::ProtoPort => {
            meta_to(l, NFT_META_NFPROTO, NFT_REG_1);
            1
        }
        ConcatKey::AddrProtoPort { v6 } => {
            nfproto(l, v6);
            let len = if v6 { 16 } else { 4 };
            expr(l, "payload", |d| {
                d.be32(a::NFTA_PAYLOAD_DREG, NFT_REG_1)
                    .be32(a::NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
                    .be32(a::NFTA_PAYLOAD_OFFSET, addr_offset(v6, Dir::Dst))
                    .be32(a::NFTA_PAYLOAD_LEN, len);
            });
            len / 4
        }
    };
    load(l, words, |l, reg| meta_to(l, NFT_META_L4PROTO, reg));
    load(l, words + 1, |l, reg| {
        expr(l, "payload", |d| {
            d.be32(a::NFTA_PAYLOAD_DREG, reg)
                .be32(a::NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER)
                .be32(a::NFTA_PAYLOAD_OFFSET, 2)
                .be32(a::NFTA_PAYLOAD_LEN, 2);
        });
    });
    expr(l, "lookup", |d| {
        d.be32(a::NFTA_LOOKUP_SREG, NFT_REG_1)
            .be32(a::NFTA_LOOKUP_DREG, NFT_REG_VERDICT)
            .str(a::NFTA_LOOKUP_SET, set)
            .be32(a::NFTA_LOOKUP_SET_ID, set_id);
    });
}

/// The input (or output) interface's name looked up in a set; with `dreg`,
/// in a map whose data goes to that register (libnftnl's attribute order:
/// sreg, dreg, set, set id).
pub(super) fn ifname_lookup(
    l: &mut Attrs,
    output: bool,
    set: &str,
    set_id: u32,
    dreg: Option<u32>,
) {
    meta(
        l,
        if output {
            NFT_META_OIFNAME
        } else {
            NFT_META_IIFNAME
        },
    );
    expr(l, "lookup", |d| {
        d.be32(a::NFTA_LOOKUP_SREG, NFT_REG_1);
        if let Some(r) = dreg {
            d.be32(a::NFTA_LOOKUP_DREG, r);
        }
        d.str(a::NFTA_LOOKUP_SET, set)
            .be32(a::NFTA_LOOKUP_SET_ID, set_id);
    });
}
