//! The host's table `inet netctx` as the last whole read found it, kept in
//! the run directory with the nf_tables generation it was read at: every
//! committed transaction in the namespace (netctx's, `nft`'s, anyone's)
//! moves the generation, so while it has not moved the table is exactly
//! what was read, and `status` and `up` of a converged host ask the kernel
//! for one number instead of dumping every rule of every context (12 MB
//! with 1,000 contexts). A read whose generation moved while it ran is not
//! kept; a file of another namespace, another format or a damaged one is
//! ignored.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::nft::{read, read_dispatch, read_nat, Live};
use crate::kernel::netlink::NlError;
use crate::kernel::nft::sock::Nft;
use crate::kernel::rundir::{self, RUN_DIR};

const VERSION: u32 = 3;

fn path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("host-table.json")
}

#[derive(Serialize, Deserialize)]
struct Kept {
    version: u32,
    /// The namespace read (its cookie and the inode of its nsfs file).
    netns: (u64, u64),
    generation: u32,
    live: Live,
}

/// The calling thread's network namespace: its cookie (never reused while
/// the machine runs, where an inode of a namespace gone may be) and the
/// inode of its nsfs file.
fn netns() -> Option<(u64, u64)> {
    let m = fs::metadata("/proc/thread-self/ns/net").ok()?;
    // SAFETY: a socket we own, closed below; getsockopt writes at most
    // `len` bytes into `cookie`.
    let cookie = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut cookie = 0u64;
        let mut len: libc::socklen_t = 8;
        let r = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        );
        libc::close(fd);
        (r == 0).then_some(cookie)?
    };
    Some((cookie, m.ino()))
}

fn kept(netns: (u64, u64), generation: u32) -> Option<Live> {
    let k: Kept = serde_json::from_slice(&fs::read(path()).ok()?).ok()?;
    (k.version == VERSION && k.netns == netns && k.generation == generation).then_some(k.live)
}

fn keep(netns: (u64, u64), generation: u32, live: &Live) {
    let k = Kept {
        version: VERSION,
        netns,
        generation,
        live: live.clone(),
    };
    let tmp = path().with_extension("tmp");
    let put = serde_json::to_vec(&k)
        .map_err(std::io::Error::other)
        .and_then(|data| rundir::write_private(&tmp, &data))
        .and_then(|()| fs::rename(&tmp, path()));
    if let Err(e) = put {
        tracing::debug!("keeping the host's table: {e}");
    }
}

/// The host's table with its dispatch map (the calling thread's namespace
/// is the host's): as kept if the generation has not moved since, else
/// read whole (and kept when nothing committed while it was read). With
/// it, the generation it is exactly the table of (`None` when something
/// committed while it was read).
pub fn read_host(nft: &mut Nft) -> Result<(Live, Option<u32>), NlError> {
    let ns = netns();
    let generation = nft.generation()?;
    if let Some(live) = ns.and_then(|ns| kept(ns, generation)) {
        return Ok((live, Some(generation)));
    }
    let mut live = read(nft, &[])?;
    if live.exists {
        live.dispatch = read_dispatch(nft)?;
        live.nat = read_nat(nft)?;
    }
    let still = nft.generation()? == generation;
    if let (Some(ns), true, true) = (ns, still, live.exists) {
        keep(ns, generation, &live);
    }
    Ok((live, still.then_some(generation)))
}

/// The generation after one commit from `generation` (nf_tables skips 0).
fn next(generation: u32) -> u32 {
    generation.checked_add(1).unwrap_or(1)
}

/// After `up`'s one transaction on the host's table committed: `live`, the
/// table at `before`, with the transaction's `parts` (each context's, as
/// sent) made, is the table at the generation after `before` — kept when
/// that is the generation now, i.e. nothing else committed since `before`
/// (netctx's lock is held; anyone else's commit moves the generation past
/// it, and then the next reader reads whole).
pub fn committed(nft: &mut Nft, live: &Live, before: u32, parts: &[splice::Part<'_>]) {
    let Some(ns) = netns() else { return };
    match nft.generation() {
        Ok(now) if now == next(before) => {
            let mut live = live.clone();
            splice::splice(&mut live, parts);
            keep(ns, now, &live);
        }
        Ok(_) => tracing::debug!("the host's table moved beside netctx's transaction: not kept"),
        Err(e) => tracing::debug!("the host's table's generation: {e}"),
    }
}

pub mod splice;
