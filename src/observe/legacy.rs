//! iptables-legacy's tables, which nf_tables does not see
//! (docs/coexistence.md): only those that exist (named in
//! `/proc/net/ip_tables_names` and `ip6_tables_names`; asking for another
//! would make it), read with the legacy interface (IPT_SO_GET_INFO and
//! IPT_SO_GET_ENTRIES on a raw socket): for each chain on a hook, how many
//! rules it holds and whether its policy drops. What the rules match is not
//! read: that is iptables' own format, and netctx judges only what it can.

use std::os::fd::AsFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

use crate::kernel::sys::getsockopt_buf;

const SO_GET_INFO: i32 = 64;
const SO_GET_ENTRIES: i32 = 65;
/// XT_TABLE_MAXNAMELEN.
const NAME: usize = 32;
/// sizeof(struct ipt_getinfo): name, valid_hooks, hook_entry[5],
/// underflow[5], num_entries, size.
const INFO: usize = NAME + 4 + 20 + 20 + 4 + 4;
/// sizeof(struct ipt_get_entries) before its entries (8-aligned).
const ENTRIES: usize = 40;

/// One chain on a hook of a legacy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyChain {
    /// `ip` or `ip6`.
    pub family: &'static str,
    pub table: String,
    /// NF_INET_*.
    pub hook: u32,
    pub rules: usize,
    pub policy_drop: bool,
    /// Its first rule accepts every packet with this mark bit set
    /// (`-m mark --mark B/B -j ACCEPT`, nothing else matched), if one.
    pub first_accepts_mark: Option<u32>,
}

/// A legacy table, read or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Legacy {
    Chain(LegacyChain),
    Unreadable {
        family: &'static str,
        table: String,
        error: String,
    },
}

struct Family {
    name: &'static str,
    names: &'static str,
    af: AddressFamily,
    level: i32,
    /// Where an entry's target_offset and next_offset are (u16 each);
    /// the size of its address part (`ipt_ip`, `ip6t_ip6`) and of the
    /// whole entry before its matches.
    offsets_at: usize,
    ip: usize,
    entry: usize,
}

const FAMILIES: [Family; 2] = [
    Family {
        name: "ip",
        names: "/proc/net/ip_tables_names",
        af: AddressFamily::Inet,
        level: libc::SOL_IP,
        offsets_at: 88,
        ip: 84,
        entry: 112,
    },
    Family {
        name: "ip6",
        names: "/proc/net/ip6_tables_names",
        af: AddressFamily::Inet6,
        level: libc::SOL_IPV6,
        offsets_at: 140,
        ip: 136,
        entry: 168,
    },
];

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The verdict of a standard target at `at` (a 32-byte header, then the
/// verdict: -NF_DROP-1 = -1 drop, -NF_ACCEPT-1 = -2 accept).
fn standard_verdict(entries: &[u8], at: usize) -> Option<i32> {
    let name = entries.get(at + 2..at + 31)?;
    if name.iter().any(|b| *b != 0) {
        return None;
    }
    u32_at(entries, at + 32).map(|v| v as i32)
}

/// The mark bit the entry at `at` accepts, if that is all it does: no
/// address, interface or protocol, one `mark` match (revision 1, not
/// inverted, mark == mask, one bit), the standard target ACCEPT.
fn accepts_mark(f: &Family, entries: &[u8], at: usize) -> Option<u32> {
    let target = usize::from(u16_at(entries, at + f.offsets_at)?);
    if entries.get(at..at + f.ip)?.iter().any(|b| *b != 0) {
        return None;
    }
    let m = at + f.entry;
    let size = usize::from(u16_at(entries, m)?);
    let name = entries.get(m + 2..m + 31)?;
    let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
    let (mark, mask) = (u32_at(entries, m + 32)?, u32_at(entries, m + 36)?);
    let invert = *entries.get(m + 40)?;
    let one_match = m + size == at + target;
    let revision = *entries.get(m + 31)?;
    (one_match
        && name == b"mark"
        && revision == 1
        && invert == 0
        && mark == mask
        && mark.count_ones() == 1
        && standard_verdict(entries, at + target) == Some(-2))
    .then_some(mark)
}

/// The chains on hooks of `table`, from the kernel's blobs.
fn chains(f: &Family, table: &str) -> Result<Vec<LegacyChain>, String> {
    let fd = socket(
        f.af,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .map_err(|e| format!("raw socket: {e}"))?;
    let mut info = [0u8; INFO];
    let n = table.len().min(NAME - 1);
    info[..n].copy_from_slice(&table.as_bytes()[..n]);
    getsockopt_buf(fd.as_fd(), f.level, SO_GET_INFO, &mut info)
        .map_err(|e| format!("IPT_SO_GET_INFO: {e}"))?;
    let valid = u32_at(&info, NAME).unwrap_or(0);
    let size = u32_at(&info, NAME + 4 + 40 + 4).unwrap_or(0) as usize;
    let mut all = vec![0u8; ENTRIES + size];
    all[..n].copy_from_slice(&table.as_bytes()[..n]);
    all[NAME..NAME + 4].copy_from_slice(&u32::try_from(size).unwrap_or(0).to_ne_bytes());
    getsockopt_buf(fd.as_fd(), f.level, SO_GET_ENTRIES, &mut all)
        .map_err(|e| format!("IPT_SO_GET_ENTRIES: {e}"))?;
    let entries = &all[ENTRIES..];
    let mut out = Vec::new();
    for hook in 0..5u32 {
        if valid & (1 << hook) == 0 {
            continue;
        }
        let i = hook as usize * 4;
        let (Some(first), Some(policy)) = (
            u32_at(&info, NAME + 4 + i),
            u32_at(&info, NAME + 4 + 20 + i),
        ) else {
            continue;
        };
        let (first, policy) = (first as usize, policy as usize);
        let mut rules = 0;
        let mut at = first;
        while at < policy {
            match u16_at(entries, at + f.offsets_at + 2) {
                Some(next) if next > 0 => at += usize::from(next),
                _ => return Err(format!("a malformed entry at {at}")),
            }
            rules += 1;
        }
        // The policy: the standard target of the chain's last entry.
        let target = u16_at(entries, policy + f.offsets_at).map(usize::from);
        let verdict = target.and_then(|t| standard_verdict(entries, policy + t));
        out.push(LegacyChain {
            family: f.name,
            table: table.to_string(),
            hook,
            rules,
            policy_drop: verdict == Some(-1),
            first_accepts_mark: (rules > 0)
                .then(|| accepts_mark(f, entries, first))
                .flatten(),
        });
    }
    Ok(out)
}

/// Every existing legacy table's chains on hooks, in the calling thread's
/// namespace.
pub fn read() -> Vec<Legacy> {
    let mut out = Vec::new();
    for f in &FAMILIES {
        let Ok(names) = std::fs::read_to_string(f.names) else {
            continue;
        };
        for table in names.lines().filter(|l| !l.is_empty()) {
            match chains(f, table) {
                Ok(c) => out.extend(c.into_iter().map(Legacy::Chain)),
                Err(error) => out.push(Legacy::Unreadable {
                    family: f.name,
                    table: table.to_string(),
                    error,
                }),
            }
        }
    }
    out
}
