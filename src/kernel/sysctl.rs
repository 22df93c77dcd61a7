//! Switches under /proc/sys, read and written in the calling thread's network
//! namespace (`/proc/sys/net` shows the namespace of the reading thread).
//!
//! Every namespace's `net/ipv4` and `net/ipv6` are entries of the same name
//! under the one `/proc/sys/net`: they share a dcache hash chain, and every
//! path walk through them compares each (`proc_sys_compare`). With 1,000
//! namespaces that walk costs 0.1–0.3 ms, which made 80 % of `status` and a
//! growing part of `up`. So a thread opens `net/ipv4` and `net/ipv6` once for
//! the namespace it is in and reaches the switches below them with `openat`;
//! and it opens them through a procfs instance of its own (a detached mount,
//! `fsopen`), whose dentries are only the ones it looked up, so even those
//! two walks compare a few entries, not one for every namespace on the
//! machine. The instance serves `PROC_REUSE` namespaces before a new one is
//! made (making and unmounting one per namespace cost more than the walk).

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use crate::kernel::sys;

/// The directories of one namespace, opened when first needed: `None` not
/// yet, `Some(None)` absent (IPv6 off).
struct Dirs {
    /// The namespace they belong to (its nsfs inode).
    ns: u64,
    fam: [Option<Option<OwnedFd>>; 2],
}

/// How many namespaces one private procfs instance serves.
const PROC_REUSE: u32 = 128;

thread_local! {
    static DIRS: RefCell<Option<Dirs>> = const { RefCell::new(None) };
    /// The root of the thread's private procfs instance (`None`: none could
    /// be made) and how many namespaces it served.
    static PROC: RefCell<Option<(Option<OwnedFd>, u32)>> = const { RefCell::new(None) };
    /// The namespace the thread entered through `netns` (`entered`).
    static CURRENT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Drop the calling thread's directories of its namespace: called when a
/// thread leaves a namespace, since a later namespace may get the same
/// inode number.
pub fn forget() {
    DIRS.with_borrow_mut(|d| *d = None);
    CURRENT.set(None);
}

/// The calling thread has just entered the namespace of inode `ns` (so
/// switches need not look it up each time, until `forget`).
pub fn entered(ns: u64) {
    CURRENT.set(Some(ns));
}

/// `dir` opened below the thread's private procfs (or /proc), for a
/// namespace it has not served before when `fresh`.
fn open_proc_dir(dir: &str, fresh: bool) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    PROC.with_borrow_mut(|p| {
        if fresh {
            match p {
                Some((_, uses)) if *uses < PROC_REUSE => *uses += 1,
                _ => *p = Some((private_proc(), 1)),
            }
        }
        let (root, _) = p.get_or_insert_with(|| (private_proc(), 1));
        match root {
            Some(root) => openat(&*root, dir, flags, Mode::empty()),
            None => open(format!("/proc/{dir}").as_str(), flags, Mode::empty()),
        }
    })
}

const FAMILIES: [&str; 2] = ["net/ipv4/", "net/ipv6/"];

/// Open `/proc/sys/PATH` with `flags`: below `net/ipv4` or `net/ipv6`
/// relative to the calling thread's descriptor of that directory.
fn open_switch(path: &str, flags: OFlag) -> io::Result<File> {
    let flags = flags | OFlag::O_CLOEXEC;
    let Some((i, rest)) = FAMILIES
        .iter()
        .enumerate()
        .find_map(|(i, f)| path.strip_prefix(f).map(|r| (i, r)))
    else {
        return Ok(File::from(open(
            format!("/proc/sys/{path}").as_str(),
            flags,
            Mode::empty(),
        )?));
    };
    open_in(current_ns()?, i, rest, flags)
}

/// The calling thread's namespace. It can change under a thread (setns):
/// the cache is per namespace, not per thread.
fn current_ns() -> io::Result<u64> {
    if let Some(ns) = CURRENT.get() {
        return Ok(ns);
    }
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// `rest` below family `i`'s directory of namespace `ns`, the caller's.
fn open_in(ns: u64, i: usize, rest: &str, flags: OFlag) -> io::Result<File> {
    DIRS.with_borrow_mut(|cache| {
        let fresh = !matches!(cache, Some(d) if d.ns == ns);
        if fresh {
            *cache = Some(Dirs {
                ns,
                fam: [None, None],
            });
        }
        let Some(dirs) = cache else { unreachable!() };
        if dirs.fam[i].is_none() {
            let dir = format!("sys/{}", FAMILIES[i].trim_end_matches('/'));
            let first = dirs.fam.iter().all(Option::is_none);
            dirs.fam[i] = match open_proc_dir(&dir, first) {
                Ok(fd) => Some(Some(fd)),
                Err(Errno::ENOENT) => Some(None),
                Err(e) => return Err(e.into()),
            };
        }
        match &dirs.fam[i] {
            Some(Some(dir)) => Ok(File::from(openat(dir, rest, flags, Mode::empty())?)),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    })
}

/// A new procfs instance, not mounted anywhere: the descriptor of its root.
fn private_proc() -> Option<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let fs = sys::fsopen(c"proc", FSOPEN_CLOEXEC).ok()?;
    sys::fsconfig(fs.as_fd(), sys::FsConfig::Create).ok()?;
    sys::fsmount(fs.as_fd(), FSMOUNT_CLOEXEC, 0).ok()
}

/// The value of a switch, whitespace normalised (`ping_group_range` prints
/// a tab); `None` if it does not exist (IPv6 off, a link that went).
pub fn read(path: &str) -> Option<String> {
    value(open_switch(path, OFlag::O_RDONLY).ok()?)
}

/// `read` of every path, the namespace looked up once.
pub fn read_many(paths: &[String]) -> Vec<Option<String>> {
    let ns = current_ns().ok();
    paths
        .iter()
        .map(|p| {
            let below = FAMILIES
                .iter()
                .enumerate()
                .find_map(|(i, f)| p.strip_prefix(f).map(|r| (i, r)));
            match (ns, below) {
                (Some(ns), Some((i, rest))) => {
                    value(open_in(ns, i, rest, OFlag::O_RDONLY | OFlag::O_CLOEXEC).ok()?)
                }
                _ => read(p),
            }
        })
        .collect()
}

fn value(mut f: File) -> Option<String> {
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Write a switch; a switch this kernel does not have is not an error.
pub fn write(path: &str, value: &str) -> io::Result<()> {
    match open_switch(path, OFlag::O_WRONLY) {
        Ok(mut f) => f.write_all(value.as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_below_the_family_directories_and_elsewhere() {
        // Readable without root; the same value by either way.
        let direct = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lo/forwarding").ok();
        let ours = read("net/ipv4/conf/lo/forwarding");
        assert_eq!(direct.map(|s| s.trim().to_string()), ours);
        assert!(read("net/ipv4/conf/no-such-link/forwarding").is_none());
        assert!(read("net/core/somaxconn").is_some());
        assert!(read("net/ipv4/ping_group_range").is_some_and(|v| !v.contains('\t')));
        let paths: Vec<String> = [
            "net/ipv4/conf/lo/forwarding",
            "net/ipv4/conf/no-such-link/forwarding",
            "net/core/somaxconn",
            "net/ipv6/conf/lo/forwarding",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        let one_by_one: Vec<_> = paths.iter().map(|p| read(p)).collect();
        assert_eq!(read_many(&paths), one_by_one);
    }
}
