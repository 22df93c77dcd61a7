//! Capabilities of a guest: an allow-list (docs/guests.md), narrowed by the
//! guest's `capabilities`, set in all five sets; none for a non-root guest.

use std::io;

pub use crate::model::guest_caps::default_set;

use crate::kernel::sys::{self, prctl, CapData};

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Shrink the bounding set to `keep` (needs CAP_SETPCAP: before the user
/// changes) and clear the ambient set.
pub fn bound(keep: &[u32]) -> io::Result<()> {
    for c in 0..=last_cap() {
        if !keep.contains(&c) {
            match prctl(libc::PR_CAPBSET_DROP, c.into(), 0) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                r => r?,
            }
        }
    }
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
}

/// Effective, permitted and inheritable become `keep`; ambient too.
pub fn set(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &c in keep {
        let (w, bit) = ((c / 32) as usize, 1u32 << (c % 32));
        data[w].effective |= bit;
        data[w].permitted |= bit;
        data[w].inheritable |= bit;
    }
    sys::capset(&data)?;
    for &c in keep {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            c.into(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::guest_caps::parse;

    #[test]
    fn names_parse_in_either_spelling() {
        assert_eq!(parse("net_bind_service"), Some(10));
        assert_eq!(parse("CAP_SETUID"), Some(7));
        assert_eq!(parse("sys_admin"), None);
        assert_eq!(parse("net_raw"), None);
        assert_eq!(default_set().len(), 11);
    }
}
