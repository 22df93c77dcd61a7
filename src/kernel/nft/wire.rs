//! nf_tables netlink wire format: attributes, messages, batches. Pure bytes;
//! the kernel ABI numbers are in one place here (linux/netfilter/nf_tables.h,
//! nfnetlink.h).

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

pub use crate::kernel::netlink::wire::{
    cstr, encode_nfnl, parse_attrs, Attrs, TooLong, NLA_F_NESTED, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_REQUEST,
};

/// NFT_MSG_* message types.
pub mod msg {
    pub const NEWTABLE: u16 = 0;
    pub const GETTABLE: u16 = 1;
    pub const DELTABLE: u16 = 2;
    pub const NEWCHAIN: u16 = 3;
    pub const GETCHAIN: u16 = 4;
    pub const DELCHAIN: u16 = 5;
    pub const NEWRULE: u16 = 6;
    pub const DELRULE: u16 = 8;
    pub const GETRULE: u16 = 7;
    pub const NEWSET: u16 = 9;
    pub const GETSET: u16 = 10;
    pub const DELSET: u16 = 11;
    pub const NEWSETELEM: u16 = 12;
    pub const GETSETELEM: u16 = 13;
    pub const DELSETELEM: u16 = 14;
    pub const GETGEN: u16 = 16;
}

/// Attribute numbers, by object.
pub mod attr {
    /// NFTA_GEN_ID: the ruleset's generation, moved by every commit.
    pub const GEN_ID: u16 = 1;

    pub const TABLE_NAME: u16 = 1;
    pub const TABLE_FLAGS: u16 = 2;
    pub const TABLE_USERDATA: u16 = 6;

    pub const CHAIN_TABLE: u16 = 1;
    pub const CHAIN_NAME: u16 = 3;
    pub const CHAIN_HOOK: u16 = 4;
    pub const CHAIN_POLICY: u16 = 5;
    pub const CHAIN_TYPE: u16 = 7;
    pub const HOOK_HOOKNUM: u16 = 1;
    pub const HOOK_PRIORITY: u16 = 2;
    pub const HOOK_DEV: u16 = 3;

    pub const RULE_TABLE: u16 = 1;
    pub const RULE_CHAIN: u16 = 2;
    pub const RULE_HANDLE: u16 = 3;
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const RULE_USERDATA: u16 = 7;

    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_DATA_TYPE: u16 = 6;
    pub const SET_DATA_LEN: u16 = 7;
    pub const SET_ID: u16 = 10;
    pub const SET_USERDATA: u16 = 13;

    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const SET_ELEM_KEY: u16 = 1;
    pub const SET_ELEM_DATA: u16 = 2;
    pub const SET_ELEM_TIMEOUT: u16 = 4;

    pub const LIST_ELEM: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;
    pub const VERDICT_CHAIN: u16 = 2;
}

/// A growing buffer of netlink attributes.
/// One nf_tables request: type, extra flags, attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub attrs: Attrs,
    /// The object's family (NFPROTO_*): netctx's own are `inet`.
    pub family: u8,
}

impl Msg {
    pub fn new(ty: u16, flags: u16, attrs: Attrs) -> Msg {
        Msg {
            ty,
            flags,
            attrs,
            family: NFPROTO_INET,
        }
    }

    /// The same request about an object of another family.
    pub fn in_family(mut self, family: u8) -> Msg {
        self.family = family;
        self
    }

    /// The nlmsghdr + nfgenmsg + attributes, with `seq`; refused when an
    /// attribute was too long to encode.
    pub fn encode(&self, seq: u32, out: &mut Vec<u8>) -> Result<(), TooLong> {
        if let Some(e) = self.attrs.1 {
            return Err(e);
        }
        encode_nfnl(
            (NFNL_SUBSYS_NFTABLES << 8) | self.ty,
            NLM_F_REQUEST | self.flags,
            seq,
            self.family,
            0,
            &self.attrs.0,
            out,
        );
        Ok(())
    }
}

/// A transaction: BATCH_BEGIN, the messages (each acked), BATCH_END.
/// Returns the bytes and the sequence numbers of the messages, or the index
/// of a message that cannot be encoded and why.
pub fn batch(msgs: &[Msg], first_seq: u32) -> Result<(Vec<u8>, Vec<u32>), (usize, TooLong)> {
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    let mut seq = first_seq;
    encode_nfnl(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
        &mut out,
    );
    for (i, m) in msgs.iter().enumerate() {
        seq += 1;
        let mut m = m.clone();
        m.flags |= NLM_F_ACK;
        m.encode(seq, &mut out).map_err(|e| (i, e))?;
        seqs.push(seq);
    }
    seq += 1;
    encode_nfnl(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
        &mut out,
    );
    Ok((out, seqs))
}

/// nft's user data TLV for a comment (NFTNL_UDATA_*_COMMENT), so that
/// `nft list` shows it as `comment "…"`.
pub fn comment_udata(text: &str) -> Vec<u8> {
    // nft's comments are at most 128 bytes; netctx's are far shorter.
    let len = u8::try_from(text.len() + 1).unwrap_or(u8::MAX);
    let mut v = vec![0u8, len];
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

/// The comment in nft user data, if any.
pub fn udata_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if ty == 0 {
            return Some(cstr(value));
        }
        rest = &rest[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut a = Attrs::default();
        a.str(1, "t");
        assert_eq!(a.0, [6, 0, 1, 0, b't', 0, 0, 0]);
        let mut n = Attrs::default();
        n.nested(4, |h| {
            h.be32(1, 3);
        });
        assert_eq!(n.0, [12, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 3]);
        let parsed: Vec<_> = parse_attrs(&n.0).collect();
        assert_eq!(parsed, [(4, &[8u8, 0, 1, 0, 0, 0, 0, 3][..])]);
    }

    #[test]
    fn batch_is_framed_by_begin_and_end() {
        let (bytes, seqs) = batch(&[Msg::new(msg::NEWTABLE, 0, Attrs::default())], 10).unwrap();
        assert_eq!(seqs, [11]);
        // BATCH_BEGIN: len 20, type 0x10, res_id = NFNL_SUBSYS_NFTABLES big-endian.
        assert_eq!(&bytes[..6], &[20, 0, 0, 0, 0x10, 0]);
        assert_eq!(&bytes[18..20], &[0, 10]);
        assert_eq!(
            &bytes[bytes.len() - 20 + 4..bytes.len() - 20 + 6],
            &[0x11, 0]
        );
    }

    #[test]
    fn comments_round_trip() {
        let u = comment_udata("netctx");
        assert_eq!(u, [0, 7, b'n', b'e', b't', b'c', b't', b'x', 0]);
        assert_eq!(udata_comment(&u).as_deref(), Some("netctx"));
    }

    #[test]
    fn an_attribute_over_64_kib_is_an_error_not_a_corrupt_batch() {
        let mut a = Attrs::default();
        a.nested(5, |l| {
            l.bytes(1, &vec![0u8; 70_000]);
        });
        let m = Msg::new(msg::NEWSETELEM, 0, a);
        let err = batch(&[Msg::new(msg::NEWTABLE, 0, Attrs::default()), m], 1).unwrap_err();
        assert_eq!(err.0, 1);
        assert_eq!(err.1, TooLong { ty: 1, len: 70_004 });
        let mut out = Vec::new();
        let mut fits = Attrs::default();
        fits.bytes(1, &vec![0u8; 65_531]);
        assert!(Msg::new(msg::NEWTABLE, 0, fits).encode(1, &mut out).is_ok());
    }
}
