//! The lock that serialises netctx processes: flock on a file in the run
//! directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use super::RUN_DIR;

/// An exclusive lock on the run directory, held until dropped.
pub struct Lock {
    _file: File,
}

/// Take the lock; if another netctx holds it, say so once and wait up to
/// `wait` (`--wait`). A lock whose holder died is free: flock goes with the process.
pub fn lock(wait: Duration) -> io::Result<Lock> {
    std::fs::create_dir_all(RUN_DIR)?;
    let path = PathBuf::from(RUN_DIR).join("lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let try_lock =
        |f: &File| unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !try_lock(&f) {
        let holder = || {
            let mut s = String::new();
            let _ = File::open(&path).and_then(|mut h| h.read_to_string(&mut s));
            s.trim().to_string()
        };
        eprintln!("netctx: waiting for the lock held by pid {}", holder());
        let start = std::time::Instant::now();
        while !try_lock(&f) {
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
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(Lock { _file: f })
}
