//! The lock that serialises netctx processes: flock on a file in the run
//! directory (0600 in a 0700 directory: only root can open it, so nobody
//! else can hold it). Who holds it is read from /proc/locks, not from the
//! file, so the message never names a stale pid.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::rundir::{self, RUN_DIR};

/// An exclusive lock on the run directory, held until dropped.
pub struct Lock {
    _file: Flock<File>,
}

/// Take the lock; if another netctx holds it, say so once and wait up to
/// `wait` (`--wait`). A lock whose holder died is free: flock goes with the process.
pub fn lock(wait: Duration) -> io::Result<Lock> {
    let path = PathBuf::from(RUN_DIR).join("lock");
    let f = rundir::open_private(&path, false)?;
    // A lock file made by an older netctx may be world-readable.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let try_lock = |f: File| Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(f, _)| f);
    let mut f = match try_lock(f) {
        Ok(held) => held,
        Err(f) => {
            let meta = f.metadata()?;
            let id = (libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
            let holder = || holder_of(id).map_or("unknown".to_string(), |p| p.to_string());
            eprintln!("netctx: waiting for the lock held by pid {}", holder());
            let start = std::time::Instant::now();
            let mut f = f;
            loop {
                match try_lock(f) {
                    Ok(held) => break held,
                    Err(back) => f = back,
                }
                if start.elapsed() >= wait {
                    return Err(io::Error::other(format!(
                        "another netctx (pid {}) holds {}; gave up after {} s (see --wait)",
                        holder(),
                        path.display(),
                        wait.as_secs_f64()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(Lock { _file: f })
}

/// The pid holding a flock on the file (major, minor, inode), from
/// /proc/locks (`1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`, the
/// device numbers in hex).
fn holder_of((major, minor, inode): (u32, u32, u64)) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (pid, id) = match f.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] => (pid, id),
            _ => return None,
        };
        let mut parts = id.split(':');
        let maj = u32::from_str_radix(parts.next()?, 16).ok()?;
        let min = u32::from_str_radix(parts.next()?, 16).ok()?;
        let ino: u64 = parts.next()?.parse().ok()?;
        ((maj, min, ino) == (major, minor, inode))
            .then(|| pid.parse().ok())
            .flatten()
    })
}
