//! The NAT expressions of `expr`: the published ports' destination match
//! and `dnat`.

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
