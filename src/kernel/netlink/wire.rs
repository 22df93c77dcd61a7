//! The netlink wire format shared by every family netctx speaks: flags,
//! attributes, framing of received datagrams, nfnetlink's header, error
//! payloads with their extended ack, and the one retry policy for dumps
//! the kernel interrupted. Pure bytes.

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// NLM_F_DUMP_INTR: the dump was interrupted by a change; its answer may be
/// inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
/// In an ack: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// enum nlmsgerr_attrs.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// How often an interrupted dump is tried again.
pub const DUMP_ATTEMPTS: usize = 5;

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

/// An nfnetlink message: nlmsghdr, nfgenmsg (`family`, version 0,
/// `res_id`), attributes.
pub fn encode_nfnl(
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

/// A NUL-terminated (or NUL-padded) string attribute.
pub fn cstr(v: &[u8]) -> String {
    let v = v.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(v).into_owned()
}

/// The errno of an NLMSG_ERROR payload (`None` for an ack).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    (code != 0).then_some(-code)
}

/// The extended ack message of an error, if the kernel sent one.
/// `after_errno` is what follows the errno: with NETLINK_CAP_ACK, the
/// request's 16-byte header, then attributes.
pub fn extack(flags: u16, after_errno: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    parse_attrs(after_errno.get(16..)?)
        .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
        .map(|(_, v)| cstr(v))
}

/// A dump answer, and whether the kernel flagged it interrupted.
pub struct Dumped<T> {
    pub value: T,
    pub interrupted: bool,
}

/// Run a dump until the kernel answers it without interruption, at most
/// `DUMP_ATTEMPTS` times.
pub fn retry_interrupted<T, E>(
    mut dump: impl FnMut() -> Result<Dumped<T>, E>,
    gave_up: impl FnOnce() -> E,
) -> Result<T, E> {
    for _ in 0..DUMP_ATTEMPTS {
        let d = dump()?;
        if !d.interrupted {
            return Ok(d.value);
        }
    }
    Err(gave_up())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_message_is_read_from_the_tlvs() {
        let mut p = vec![0u8; 16];
        let msg = b"Invalid prefix\0";
        let len = u16::try_from(4 + msg.len()).unwrap();
        p.extend_from_slice(&len.to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(msg);
        assert_eq!(
            extack(NLM_F_ACK_TLVS, &p).as_deref(),
            Some("Invalid prefix")
        );
        assert_eq!(extack(0, &p), None);
        assert_eq!(extack(NLM_F_ACK_TLVS, &p[..10]), None);
    }
}
