//! The expressions of a context's fences (docs/fences.md): `ct count
//! over N` (nft_connlimit), `limit rate over …` and the `jump` to the
//! chains that log and drop what they refuse.

use super::*;

/// NFTA_CONNLIMIT_COUNT, NFTA_CONNLIMIT_FLAGS; NFT_CONNLIMIT_F_INV.
const NFTA_CONNLIMIT_COUNT: u16 = 1;
const NFTA_CONNLIMIT_FLAGS: u16 = 2;
const NFT_CONNLIMIT_F_INV: u32 = 1;
/// NFT_LIMIT_F_INV: the limit matches what is over the rate.
const NFT_LIMIT_F_INV: u32 = 1;
/// NFT_JUMP as the kernel's signed verdict code.
const NFT_JUMP: i32 = -3;

/// `ct count over N`.
pub(super) fn ct_count_over(l: &mut Attrs, n: u32) {
    expr(l, "connlimit", |d| {
        d.be32(NFTA_CONNLIMIT_COUNT, n)
            .be32(NFTA_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
    });
}

/// `limit rate over RATE/UNIT burst BURST packets`.
pub(super) fn rate_over(l: &mut Attrs, rate: u64, unit: u64, burst: u32) {
    expr(l, "limit", |d| {
        d.be64(a::NFTA_LIMIT_RATE, rate)
            .be64(a::NFTA_LIMIT_UNIT, unit)
            .be32(a::NFTA_LIMIT_BURST, burst)
            .be32(a::NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS)
            .be32(a::NFTA_LIMIT_FLAGS, NFT_LIMIT_F_INV);
    });
}

/// `jump CHAIN`.
pub(super) fn jump(l: &mut Attrs, chain: &str) {
    expr(l, IMMEDIATE, |d| {
        d.be32(a::NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
            .nested(a::NFTA_IMMEDIATE_DATA, |v| {
                v.nested(attr::DATA_VERDICT, |c| {
                    c.be32(
                        attr::VERDICT_CODE,
                        u32::from_ne_bytes(NFT_JUMP.to_ne_bytes()),
                    )
                    .str(attr::VERDICT_CHAIN, chain);
                });
            });
    });
}
