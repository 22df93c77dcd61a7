//! The expressions of `expr` the policy's rules add (docs/policy.md): a
//! destination port range, as nft sends it (two comparisons), and "no
//! output interface" (`oif 0`: the input hook), and address prefixes.

use super::*;

/// ICMP types a context may always send to its host side.
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
const NFT_META_OIF: u32 = 5;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;

/// `tcp dport LO-HI` (or udp).
pub(super) fn dport_range(l: &mut Attrs, proto: u8, lo: u16, hi: u16) {
    l4proto(l, proto);
    payload_at(l, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    cmp(l, NFT_CMP_GTE, &lo.to_be_bytes());
    cmp(l, NFT_CMP_LTE, &hi.to_be_bytes());
}

const NFTA_BYTEORDER_SREG: u16 = 1;
const NFTA_BYTEORDER_DREG: u16 = 2;
const NFTA_BYTEORDER_OP: u16 = 3;
const NFTA_BYTEORDER_LEN: u16 = 4;
const NFTA_BYTEORDER_SIZE: u16 = 5;
const NFT_BYTEORDER_HTON: u32 = 1;

/// `ip daddr @set`, or with `ports` `ip daddr . meta l4proto . th dport
/// @set` (the fields in consecutive 32-bit registers from NFT_REG_1, and
/// the byteorder nft puts after the protocol: a no-op, one byte).
pub(super) fn in_set(l: &mut Attrs, (v6, dir, ports): (bool, Dir, bool), set: &str, set_id: u32) {
    nfproto(l, v6);
    let len = if v6 { 16 } else { 4 };
    payload(l, addr_offset(v6, dir), len);
    if ports {
        // NFT_REG32_00 is 8: the register after the address.
        let proto_reg = 8 + len / 4;
        // nft names a 32-bit register that begins a 16-byte one by the latter.
        let named = if v6 { proto_reg / 4 - 1 } else { proto_reg };
        expr(l, "meta", |d| {
            d.be32(a::NFTA_META_KEY, NFT_META_L4PROTO)
                .be32(a::NFTA_META_DREG, named);
        });
        expr(l, "byteorder", |d| {
            d.be32(NFTA_BYTEORDER_SREG, named)
                .be32(NFTA_BYTEORDER_DREG, named)
                .be32(NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON)
                .be32(NFTA_BYTEORDER_LEN, 1)
                .be32(NFTA_BYTEORDER_SIZE, 2);
        });
        expr(l, "payload", |d| {
            d.be32(a::NFTA_PAYLOAD_DREG, proto_reg + 1)
                .be32(a::NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER)
                .be32(a::NFTA_PAYLOAD_OFFSET, 2)
                .be32(a::NFTA_PAYLOAD_LEN, 2);
        });
    }
    expr(l, "lookup", |d| {
        d.be32(a::NFTA_LOOKUP_SREG, NFT_REG_1)
            .str(a::NFTA_LOOKUP_SET, set)
            .be32(a::NFTA_LOOKUP_SET_ID, set_id);
    });
}

/// `oif 0`.
pub(super) fn no_oif(l: &mut Attrs) {
    meta(l, NFT_META_OIF);
    cmp_eq(l, &[0; 4]);
}

/// `ip saddr PREFIX` (or daddr, ip6), as nft encodes it.
pub(super) fn prefix(l: &mut Attrs, dir: Dir, cidr: &Cidr) {
    let v6 = !cidr.is_v4();
    nfproto(l, v6);
    // As nft does: a prefix on a byte boundary loads only
    // the bytes it covers; any other loads the whole address
    // and masks it.
    let bytes = addr_bytes(cidr.network());
    let p = usize::from(cidr.prefix);
    let n = if p % 8 == 0 { p / 8 } else { bytes.len() };
    payload(l, addr_offset(v6, dir), n.try_into().expect("≤ 16"));
    if p % 8 != 0 {
        let mask: Vec<u8> = (0..n)
            .map(|i| match p.saturating_sub(i * 8) {
                0 => 0,
                b if b >= 8 => 0xff,
                b => 0xffu8 << (8 - b),
            })
            .collect();
        bitwise(l, &mask);
    }
    cmp_eq(l, &bytes[..n]);
}
