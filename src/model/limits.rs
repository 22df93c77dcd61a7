//! A context's fences (`[context.NAME.limits]`, docs/fences.md): what its
//! guests and links may use at most.

/// Bytes in a MiB.
const MIB: u64 = 1 << 20;

/// `limits.processes`' default.
pub const DEFAULT_PROCESSES: u64 = 4096;
/// `limits.tmp`'s default: 256 MiB.
pub const DEFAULT_TMP: u64 = 256 * MIB;
/// `limits.log`'s default: 1 MiB.
pub const DEFAULT_LOG: u64 = MIB;

/// The unit of `new_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// The token bucket (`tbf`, docs/fences.md) a veth end gets for
/// `bandwidth`, as netctx sets it and reads it back: bytes a second and
/// the bytes it queues at most (what a dump shows of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate: u64,
    pub limit: u32,
}

impl Tbf {
    /// The bucket for `bits` a second: 10 ms of burst (at least 64 KiB,
    /// a whole GSO packet), and 50 ms of queue beyond it.
    pub fn for_bits(bits: u64) -> Tbf {
        let rate = (bits / 8).max(1);
        let limit = (rate / 20).saturating_add(u64::from(burst(rate)));
        Tbf {
            rate,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }
}

/// The bucket's size for `rate` bytes a second.
pub fn burst(rate: u64) -> u32 {
    u32::try_from((rate / 100).max(64 << 10)).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Tasks of the context's guests together.
    pub processes: u64,
    /// Bytes of memory of its guests.
    pub memory: Option<u64>,
    /// Bytes of each private tmpfs of a guest.
    pub tmp: u64,
    /// Bits a second each of its veths carries each way.
    pub bandwidth: Option<u64>,
    /// Tracked connections from and to it.
    pub connections: Option<u64>,
    /// New connections it opens, so many a unit.
    pub new_connections: Option<(u64, Per)>,
    /// Bytes of its guests' output log (kept twice).
    pub log: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            processes: DEFAULT_PROCESSES,
            memory: None,
            tmp: DEFAULT_TMP,
            bandwidth: None,
            connections: None,
            new_connections: None,
            log: DEFAULT_LOG,
        }
    }
}
