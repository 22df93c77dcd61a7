//! nf_tables netlink wire format: attributes, messages, batches. Pure bytes;
//! the kernel ABI numbers are in one place here (linux/netfilter/nf_tables.h,
//! nfnetlink.h).

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFPROTO_INET: u8 = 1;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLA_F_NESTED: u16 = 0x8000;

/// NFT_MSG_* message types.
pub mod msg {
    pub const NEWTABLE: u16 = 0;
    pub const GETTABLE: u16 = 1;
    pub const DELTABLE: u16 = 2;
    pub const NEWCHAIN: u16 = 3;
    pub const GETCHAIN: u16 = 4;
    pub const DELCHAIN: u16 = 5;
    pub const NEWRULE: u16 = 6;
    pub const GETRULE: u16 = 7;
    pub const NEWSET: u16 = 9;
    pub const NEWSETELEM: u16 = 12;
    pub const GETSETELEM: u16 = 13;
}

/// Attribute numbers, by object.
pub mod attr {
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
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const RULE_USERDATA: u16 = 7;

    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_ID: u16 = 10;

    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const SET_ELEM_KEY: u16 = 1;

    pub const LIST_ELEM: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;
}

/// A growing buffer of netlink attributes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs(pub Vec<u8>, pub Option<TooLong>);

/// An attribute whose value does not fit netlink's 16-bit length: the
/// message cannot be sent (it would corrupt the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("netlink attribute {ty} of {len} bytes is over the 65,535 bytes an attribute can hold")]
pub struct TooLong {
    pub ty: u16,
    pub len: usize,
}

fn pad(n: usize) -> usize {
    (n + 3) & !3
}

impl Attrs {
    pub fn bytes(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        let Ok(len16) = u16::try_from(len) else {
            self.1.get_or_insert(TooLong { ty, len });
            return self;
        };
        self.0.extend_from_slice(&len16.to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len() + pad(len) - len, 0);
        self
    }
    pub fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(ty, &v)
    }
    pub fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }
    pub fn be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }
    pub fn be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }
    pub fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::default();
        f(&mut inner);
        if let Some(e) = inner.1 {
            self.1.get_or_insert(e);
        }
        self.bytes(ty | NLA_F_NESTED, &inner.0)
    }
}

/// Iterate over `(type without flags, value)` of a buffer of attributes.
pub fn parse_attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[pad(len).min(buf.len())..];
        Some((ty, value))
    })
}

/// One netlink message of a received datagram.
pub struct Frame<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// What follows the 16-byte netlink header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[16..]
    }
}

/// The netlink messages in one datagram, as the kernel frames them.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 16 > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            return None;
        }
        let f = Frame {
            ty: u16::from_ne_bytes([buf[off + 4], buf[off + 5]]),
            flags: u16::from_ne_bytes([buf[off + 6], buf[off + 7]]),
            seq: u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap()),
            bytes: &buf[off..off + len],
        };
        off += (len + 3) & !3;
        Some(f)
    })
}

/// One nf_tables request: type, extra flags, attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub attrs: Attrs,
}

impl Msg {
    pub fn new(ty: u16, flags: u16, attrs: Attrs) -> Msg {
        Msg { ty, flags, attrs }
    }

    /// The nlmsghdr + nfgenmsg + attributes, with `seq`; refused when an
    /// attribute was too long to encode.
    pub fn encode(&self, seq: u32, out: &mut Vec<u8>) -> Result<(), TooLong> {
        if let Some(e) = self.attrs.1 {
            return Err(e);
        }
        encode_raw(
            (NFNL_SUBSYS_NFTABLES << 8) | self.ty,
            NLM_F_REQUEST | self.flags,
            seq,
            NFPROTO_INET,
            0,
            &self.attrs.0,
            out,
        );
        Ok(())
    }
}

pub fn encode_raw(
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
    out: &mut Vec<u8>,
) {
    // A message is sent whole in one datagram: far below 4 GiB.
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// A transaction: BATCH_BEGIN, the messages (each acked), BATCH_END.
/// Returns the bytes and the sequence numbers of the messages, or the index
/// of a message that cannot be encoded and why.
pub fn batch(msgs: &[Msg], first_seq: u32) -> Result<(Vec<u8>, Vec<u32>), (usize, TooLong)> {
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    let mut seq = first_seq;
    encode_raw(
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
    encode_raw(
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
            let s = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(s).into_owned());
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
