//! Switches under /proc/sys, read and written in the calling thread's network
//! namespace (`/proc/sys/net` shows the namespace of the reading thread).
//!
//! Every namespace's `net/ipv4` and `net/ipv6` are entries of the same name
//! under the one `/proc/sys/net`: they share a dcache hash chain, and every
//! path walk through them compares each (`proc_sys_compare`). With 1,000
//! namespaces that walk costs 0.1–0.3 ms, which made 80 % of `status` and a
//! growing part of `up`. So a thread opens `net/ipv4` and `net/ipv6` once for
//! the namespace it is in and reaches the switches below them with `openat`.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

/// The directories of one namespace, opened when first needed: `None` not
/// yet, `Some(None)` absent (IPv6 off).
struct Dirs {
    /// The namespace they belong to (its nsfs inode).
    ns: u64,
    fam: [Option<Option<OwnedFd>>; 2],
}

thread_local! {
    static DIRS: RefCell<Option<Dirs>> = const { RefCell::new(None) };
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
    // The namespace can change under a thread (setns): the cache is per
    // namespace, not per thread.
    let ns = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    DIRS.with_borrow_mut(|cache| {
        let dirs = match cache {
            Some(d) if d.ns == ns => d,
            _ => cache.insert(Dirs {
                ns,
                fam: [None, None],
            }),
        };
        if dirs.fam[i].is_none() {
            let dir = format!("/proc/sys/{}", FAMILIES[i].trim_end_matches('/'));
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            dirs.fam[i] = match open(dir.as_str(), flags, Mode::empty()) {
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

/// The value of a switch, whitespace normalised (`ping_group_range` prints
/// a tab); `None` if it does not exist (IPv6 off, a link that went).
pub fn read(path: &str) -> Option<String> {
    let mut f = open_switch(path, OFlag::O_RDONLY).ok()?;
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
    }
}
