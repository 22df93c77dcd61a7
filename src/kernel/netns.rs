//! Named network namespaces as iproute2 makes them (`/run/netns/NAME`, a bind
//! mount of an nsfs file under a shared mount), and running work inside one:
//! the calling thread enters it for the work and always comes back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub const NETNS_DIR: &str = "/run/netns";
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// Buckets of a context's own TCP established and UDP hash tables.
const CHILD_HASH_ENTRIES: &str = "4096";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// What is at `/run/netns/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsFile {
    Absent,
    /// A mounted namespace; its inode identifies it.
    Mounted {
        inode: u64,
    },
    /// A plain file with no namespace mounted on it.
    Unmounted,
}

/// One `statx`: a namespace file is on nsfs, whose one superblock holds
/// every namespace, so its device says whether one is mounted there (opening
/// it to ask `fstatfs` made a file the unmount then waited on).
pub fn probe(name: &str) -> io::Result<NsFile> {
    let meta = match std::fs::metadata(path(name)) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NsFile::Absent),
        Err(e) => return Err(e),
    };
    if meta.dev() == nsfs_dev()? {
        Ok(NsFile::Mounted { inode: meta.ino() })
    } else {
        Ok(NsFile::Unmounted)
    }
}

/// The device of nsfs (that of the calling process's own namespace file).
fn nsfs_dev() -> io::Result<u64> {
    static DEV: OnceLock<u64> = OnceLock::new();
    if let Some(d) = DEV.get() {
        return Ok(*d);
    }
    let f = File::open("/proc/self/ns/net")?;
    if !is_nsfs(&f)? {
        return Err(io::Error::other("/proc/self/ns/net is not on nsfs"));
    }
    let dev = f.metadata()?.dev();
    Ok(*DEV.get_or_init(|| dev))
}

fn is_nsfs(f: &File) -> io::Result<bool> {
    let st = nix::sys::statfs::fstatfs(f.as_fd()).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64 == NSFS_MAGIC)
}

/// Open a mounted named namespace.
pub fn open(name: &str) -> io::Result<File> {
    let f = File::open(path(name))?;
    if !is_nsfs(&f)? {
        return Err(io::Error::other(format!(
            "{} is not a mounted network namespace",
            path(name).display()
        )));
    }
    Ok(f)
}

/// Open a namespace file a container runtime names (`CNI_NETNS`): `None`
/// when the path is not (or no longer) a namespace. Entering it checks it
/// is a network namespace (`setns` with `CLONE_NEWNET`).
pub fn open_path(path: &str) -> Option<File> {
    let f = File::open(path).ok()?;
    is_nsfs(&f).ok()?.then_some(f)
}

/// Make `/run/netns` exist and be a shared mount, as `ip netns add` does,
/// so namespaces mounted there propagate to other mount namespaces.
pub fn prepare_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_DIR)?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The namespace new contexts are made from. A namespace takes the size of
/// its TCP established and UDP hash tables from the one it is made in
/// (`tcp_child_ehash_entries`, 6.1; `udp_child_hash_entries`, 6.2); made
/// from a host that leaves them 0, it shares the host's global tables, and
/// every socket dump of it (`audit`, four a context) walks all of them:
/// 262,144 + 16,384 + 16,384 buckets on a 24 GiB machine, 80 % of `audit`
/// of 1,000 contexts. So contexts are made inside this namespace, which
/// sets both for its children only and holds nothing else; the host's own
/// switches stay as they are. `None` (the contexts come from the caller's
/// namespace) if it cannot be made.
fn nursery() -> Option<&'static File> {
    static NURSERY: OnceLock<Option<File>> = OnceLock::new();
    NURSERY
        .get_or_init(|| {
            std::thread::scope(|s| {
                s.spawn(|| -> io::Result<File> {
                    unshare(CloneFlags::CLONE_NEWNET)?;
                    for key in [
                        "net/ipv4/tcp_child_ehash_entries",
                        "net/ipv4/udp_child_hash_entries",
                    ] {
                        crate::kernel::sysctl::write(key, CHILD_HASH_ENTRIES)?;
                    }
                    File::open("/proc/thread-self/ns/net")
                })
                .join()
                .ok()
                .and_then(Result::ok)
            })
        })
        .as_ref()
}

/// Make a fresh network namespace (the calling thread enters it and comes
/// back afterwards), hand its inode to `claim` (which records it) before
/// anything of it is visible, then mount it at `/run/netns/NAME` and run `f`
/// inside it. Returns `f`'s result. If `claim` fails nothing exists; if a
/// later step fails, the file goes again.
pub fn create_and_run<T>(
    name: &str,
    claim: impl FnOnce(u64) -> io::Result<()>,
    f: impl FnOnce(&File) -> T,
) -> io::Result<T> {
    let p = path(name);
    let _back = Back::here()?;
    crate::kernel::sysctl::forget();
    if let Some(parent) = nursery() {
        setns(parent.as_fd(), CloneFlags::CLONE_NEWNET)?;
    }
    unshare(CloneFlags::CLONE_NEWNET)?;
    let inode = current_inode()?;
    crate::kernel::sysctl::entered(inode);
    claim(inode)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&p)?;
    let made = (|| -> io::Result<File> {
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        File::open(&p)
    })();
    match made {
        Ok(file) => Ok(f(&file)),
        Err(e) => {
            let _ = std::fs::remove_file(&p);
            Err(e)
        }
    }
}

/// Brings the calling thread back to the network namespace it was in when
/// made, when dropped (also in a panic). A thread that cannot go back must
/// not run anything else, so then the process ends.
struct Back(File);

impl Back {
    fn here() -> io::Result<Back> {
        Ok(Back(File::open("/proc/thread-self/ns/net")?))
    }
}

impl Drop for Back {
    fn drop(&mut self) {
        crate::kernel::sysctl::forget();
        if let Err(e) = setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!("netctx: fatal: returning to the thread's own network namespace: {e}");
            std::process::abort();
        }
    }
}

/// Run `f` inside the namespace `ns`: the calling thread enters it and comes
/// back to its own namespace afterwards, also when `f` panics. (A thread per
/// namespace cost more than the work of an `up` that changes nothing.)
pub fn run_in<T>(ns: &File, f: impl FnOnce() -> T) -> io::Result<T> {
    let inode = ns.metadata()?.ino();
    let back = Back::here()?;
    crate::kernel::sysctl::forget();
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
    crate::kernel::sysctl::entered(inode);
    let out = f();
    drop(back);
    Ok(out)
}

/// Unmount and remove `/run/netns/NAME`. The kernel destroys the namespace
/// (and everything in it) once the last user is gone.
pub fn remove(name: &str) -> io::Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}
