//! The packet-mark expressions of `expr`, as nft and iptables-nft encode
//! them: `meta mark set meta mark | BIT` (netctx's forward chains) and
//! `meta mark & BIT == BIT` (its rule in Docker's `DOCKER-USER`), and
//! `meta nftrace set 1` and `reject with tcp reset` (`netctx explain`).

use super::*;

/// `meta mark & BIT == BIT`.
pub(super) fn has_bit(l: &mut Attrs, bit: u32) {
    meta(l, NFT_META_MARK);
    expr(l, "bitwise", |d| {
        d.be32(a::NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_LEN, 4)
            .nested(a::NFTA_BITWISE_MASK, |v| {
                v.bytes(attr::DATA_VALUE, &bit.to_ne_bytes());
            })
            .nested(a::NFTA_BITWISE_XOR, |v| {
                v.bytes(attr::DATA_VALUE, &[0; 4]);
            });
    });
    cmp_eq(l, &bit.to_ne_bytes());
}

/// `meta mark set meta mark | BIT`.
pub(super) fn set_bit(l: &mut Attrs, bit: u32) {
    meta(l, NFT_META_MARK);
    expr(l, "bitwise", |d| {
        d.be32(a::NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(a::NFTA_BITWISE_OP, NFT_BITWISE_BOOL)
            .be32(a::NFTA_BITWISE_LEN, 4)
            .nested(a::NFTA_BITWISE_MASK, |v| {
                v.bytes(attr::DATA_VALUE, &(!bit).to_ne_bytes());
            })
            .nested(a::NFTA_BITWISE_XOR, |v| {
                v.bytes(attr::DATA_VALUE, &bit.to_ne_bytes());
            });
    });
    expr(l, "meta", |d| {
        d.be32(a::NFTA_META_KEY, NFT_META_MARK)
            .be32(a::NFTA_META_SREG, NFT_REG_1);
    });
}

/// `meta nftrace set 1`.
pub(super) fn set_nftrace(l: &mut Attrs) {
    expr(l, IMMEDIATE, |d| {
        d.be32(a::NFTA_IMMEDIATE_DREG, NFT_REG_1)
            .nested(a::NFTA_IMMEDIATE_DATA, |v| {
                v.bytes(attr::DATA_VALUE, &[1]);
            });
    });
    expr(l, "meta", |d| {
        d.be32(a::NFTA_META_KEY, NFT_META_NFTRACE)
            .be32(a::NFTA_META_SREG, NFT_REG_1);
    });
}

/// `reject with tcp reset` (NFTA_REJECT_TYPE: NFT_REJECT_TCP_RST): a TCP
/// packet answered with a reset, any other only dropped.
pub(super) fn reset(l: &mut Attrs) {
    expr(l, "reject", |d| {
        d.be32(1, 1);
    });
}
