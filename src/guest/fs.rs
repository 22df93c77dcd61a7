//! The guest's view of the filesystem, built by file descriptor from inside
//! the context's user namespace (docs/guests.md): the host's `/` (or the
//! guest's `root`) cloned recursively read-only, nosuid, nodev; `writable`
//! paths bound read-write (nosuid, nodev); private tmpfs on /tmp, /var/tmp
//! and /run; a new /proc with runc's masked and read-only paths; /sys of
//! the context's network namespace and the cgroup filesystem read-only; a
//! minimal /dev (those three in `kernelfs`); netctx's configuration
//! masked; then pivot_root.
//!
//! Every path inside the tree is resolved once, beneath the tree's root
//! (`fd::resolve`: openat2 `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`), and
//! every mount is made onto that descriptor from a detached mount
//! (`fsmount`, `open_tree`): a path the tree's owner swaps for a symlink
//! while this runs lands inside the tree, never on the host. And since all
//! of it runs as the context's root (nobody on the host), what a lost race
//! could still reach is checked against the context's ids, not host root's.
//! Only the sysfs of the context's network namespace is made before, as
//! host root (sysfs belongs to the network namespace's owner), and touches
//! no path.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::fd::{self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY};
use super::jail::Spec;
use super::kernelfs::{dev, enoent, mask, proc_, sys, tmpfs};

#[derive(Debug, thiserror::Error)]
#[error("{step} {}", path.display())]
pub struct FsError {
    pub(super) step: &'static str,
    pub(super) path: PathBuf,
    pub(super) source: io::Error,
}

pub(super) type Result<T> = std::result::Result<T, FsError>;

pub(super) fn at<T, E: Into<io::Error>>(
    r: std::result::Result<T, E>,
    step: &'static str,
    path: &Path,
) -> Result<T> {
    r.map_err(|e| FsError {
        step,
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Where the new root is attached before pivot_root: netctx's own run
/// directory, in the guest's private mount namespace (a tmpfs there).
const STAGE: &str = "/run/netctx";

/// What host root prepares for the build before the jail enters the
/// context's user namespace.
pub struct Host {
    /// A detached sysfs of the context's network namespace, read-only.
    sysfs: OwnedFd,
    /// Device and inode of the tree's root as host root found it.
    tree: (u64, u64),
    /// The guest's resolv.conf, where it must differ from the tree's.
    resolv: Option<(String, Option<PathBuf>)>,
}

fn tree_path(s: &Spec) -> PathBuf {
    s.root.clone().unwrap_or_else(|| PathBuf::from("/"))
}

/// As host root, in the context's network namespace, before the user
/// namespace.
pub fn before_userns(s: &Spec) -> Result<Host> {
    let sysfs = at(
        fd::new_fs(
            "sysfs",
            &[],
            ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
        ),
        "making the context's sysfs for",
        Path::new("/sys"),
    )?;
    let root = tree_path(s);
    let t = at(
        fd::openat2(
            nix::fcntl::AT_FDCWD,
            &root,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        ),
        "opening the guest's root",
        &root,
    )?;
    let st = at(fd::stat(t.as_fd()), "reading", &root)?;
    let resolv = if !s.resolver.is_empty() {
        Some(super::resolv::resolver(&s.resolver, s.root.is_none()))
    } else if s.root.is_none() {
        super::resolv::content()
    } else {
        None
    };
    Ok(Host {
        sysfs,
        tree: (st.st_dev, st.st_ino),
        resolv,
    })
}

/// The mount point for `rel` beneath `root`: what is there, or — where the
/// path goes on below a private tmpfs of the guest's (/tmp, /run) — made
/// there, one component at a time. The bool says it was made.
fn mount_point(
    root: BorrowedFd<'_>,
    rel: &Path,
    dir: bool,
    shown: &Path,
) -> Result<(OwnedFd, bool)> {
    let there = fd::resolve(root, rel);
    if !enoent(&there) {
        return Ok((at(there, "resolving in the guest's tree", shown)?, false));
    }
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut prefix = PathBuf::new();
    let mut cur = at(fd::resolve(root, &prefix), "resolving", shown)?;
    for (i, n) in names.iter().enumerate() {
        prefix.push(n);
        let next = fd::resolve(root, &prefix);
        cur = if enoent(&next) {
            let made = if i + 1 == names.len() && !dir {
                fd::file_in(cur.as_fd(), Path::new(n))
            } else {
                fd::mkdir_in(cur.as_fd(), Path::new(n), 0o755)
            };
            at(
                made,
                "making the mount point",
                &Path::new("/").join(&prefix),
            )?
        } else {
            at(
                next,
                "resolving in the guest's tree",
                &Path::new("/").join(&prefix),
            )?
        };
    }
    Ok((cur, true))
}

/// Bind the `writable` path `w` of the tree `tree` (the original, writable
/// mount) onto the same path of the read-only clone `root`.
fn writable(tree: BorrowedFd<'_>, root: BorrowedFd<'_>, w: &Path) -> Result<()> {
    let src = at(fd::resolve(tree, w), "resolving the writable path", w)?;
    let sst = at(fd::stat(src.as_fd()), "reading", w)?;
    let m = at(
        fd::clone_tree(src.as_fd(), Path::new(""), true),
        "cloning the writable path",
        w,
    )?;
    at(
        fd::setattr(m.as_fd(), ATTR_NOSUID | ATTR_NODEV, ATTR_RDONLY, true),
        "making writable",
        w,
    )?;
    let (dst, made) = mount_point(root, w, fd::is_dir(&sst), w)?;
    let dst_st = at(fd::stat(dst.as_fd()), "reading", w)?;
    let same = (dst_st.st_dev, dst_st.st_ino) == (sst.st_dev, sst.st_ino);
    if !made && !same {
        // The clone shows the tree as it is now: another object at the
        // same path means the path was swapped between the two lookups.
        return Err(FsError {
            step: "refusing the writable path (it changed while netctx set it up)",
            path: w.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        });
    }
    if fd::is_dir(&dst_st) != fd::is_dir(&sst) {
        return Err(FsError {
            step: "refusing the writable path (a directory and a file)",
            path: w.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    at(fd::attach(&m, dst.as_fd()), "mounting the writable path", w)
}

/// Hide netctx's configuration: a directory behind an empty read-only
/// tmpfs, a file behind an empty read-only file (not /dev/null, which would
/// take writes).
fn hide(stage: BorrowedFd<'_>, root: BorrowedFd<'_>, target: &Path) -> Result<()> {
    let t = fd::resolve(root, target);
    // Not there, or not reachable by the context's root (under a 0700
    // /root, say): then no guest of the context reaches it either.
    let unreachable = |r: &std::io::Result<OwnedFd>| matches!(r, Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::ENOTDIR)));
    if enoent(&t) || unreachable(&t) {
        return Ok(());
    }
    let t = at(t, "resolving", target)?;
    let st = at(fd::stat(t.as_fd()), "reading", target)?;
    if !fd::is_reg(&st) {
        return mask(root, target, target);
    }
    let empty = Path::new("empty");
    if fd::resolve(stage, empty).is_err() {
        at(fd::write_in(stage, empty, b""), "creating", empty)?;
    }
    let m = at(fd::clone_tree(stage, empty, false), "cloning", empty)?;
    at(
        fd::setattr(m.as_fd(), ATTR_RDONLY, 0, false),
        "making read-only",
        target,
    )?;
    at(fd::attach(&m, t.as_fd()), "hiding", target)
}

/// Give the guest's `/etc/resolv.conf` its content: bound from a file on
/// the stage or — for a symlink into /run — written where it points in the
/// guest's private /run.
fn resolv(
    stage: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    text: &str,
    into_run: Option<&Path>,
) -> Result<()> {
    let r = (|| -> io::Result<()> {
        match into_run {
            Some(t) => {
                let parent = t.parent().unwrap_or(Path::new("/run"));
                let (dir, _) = mount_point(root, parent, true, parent).map_err(io::Error::other)?;
                let name = t.file_name().unwrap_or_default();
                fd::write_in(dir.as_fd(), Path::new(name), text.as_bytes())
            }
            None => {
                let name = Path::new("resolv.conf");
                fd::write_in(stage, name, text.as_bytes())?;
                let dst = fd::resolve(root, Path::new("etc/resolv.conf"))?;
                if !fd::is_reg(&fd::stat(dst.as_fd())?) {
                    return Err(io::Error::other("not a regular file"));
                }
                let m = fd::clone_tree(stage, name, false)?;
                fd::attach(&m, dst.as_fd())
            }
        }
    })();
    if let Err(e) = r {
        eprintln!("netctx: warning: could not set the guest's /etc/resolv.conf: {e}");
    }
    Ok(())
}

/// Build the guest's filesystem and pivot into it. Runs as the context's
/// root in a mount namespace of the context's user namespace.
pub fn build(s: &Spec, h: Host) -> Result<()> {
    private()?;
    let root = tree_path(s);
    let tree = at(
        fd::openat2(
            nix::fcntl::AT_FDCWD,
            &root,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        ),
        "opening the guest's root (the context's root needs to search it)",
        &root,
    )?;
    let st = at(fd::stat(tree.as_fd()), "reading", &root)?;
    if (st.st_dev, st.st_ino) != h.tree {
        return Err(FsError {
            step: "refusing the guest's root (it changed while netctx set it up)",
            path: root,
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        });
    }
    let stage_path = Path::new(STAGE);
    let stage = at(
        tmpfs("0700", "1m", ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC),
        "making the staging tmpfs for",
        stage_path,
    )?;
    at(
        fd::attach_at(&stage, stage_path),
        "mounting the staging tmpfs on",
        stage_path,
    )?;
    let sf = stage.as_fd();
    let new = at(
        fd::clone_tree(tree.as_fd(), Path::new(""), true),
        "cloning the mount tree at",
        &root,
    )?;
    // `writable = ["/"]` (a guest tree only): the whole tree, writable,
    // before the kernel's filesystems go on it (a bind onto `/` afterwards
    // would cover them).
    let whole = s.writable.iter().any(|w| w == Path::new("/"));
    let (set, clear) = if whole {
        (ATTR_NOSUID | ATTR_NODEV, ATTR_RDONLY)
    } else {
        (ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV, 0)
    };
    at(
        fd::setattr(new.as_fd(), set, clear, true),
        "making read-only the tree of",
        &root,
    )?;
    let point = at(
        fd::mkdir_in(sf, Path::new("root"), 0o755),
        "creating",
        stage_path,
    )?;
    at(
        fd::attach(&new, point.as_fd()),
        "mounting the tree of",
        &root,
    )?;
    let r = new.as_fd();
    proc_(r)?;
    sys(r, h.sysfs)?;
    dev(r, s.tty.as_deref(), s.tmp)?;
    let size = s.tmp.to_string();
    for (dir, mode) in [("tmp", "1777"), ("var/tmp", "1777"), ("run", "0755")] {
        match fd::resolve(r, Path::new(dir)) {
            Ok(t) if fd::stat(t.as_fd()).is_ok_and(|st| fd::is_dir(&st)) => {
                let shown = Path::new("/").join(dir);
                let m = at(
                    tmpfs(mode, &size, ATTR_NOSUID | ATTR_NODEV),
                    "making",
                    &shown,
                )?;
                at(fd::attach(&m, t.as_fd()), "mounting", &shown)?;
            }
            _ => {}
        }
    }
    for w in s.writable.iter().filter(|w| *w != Path::new("/")) {
        writable(tree.as_fd(), r, w)?;
    }
    if s.root.is_none() {
        for m in &s.masks {
            hide(sf, r, m)?;
        }
        if let Some((text, into_run)) = &h.resolv {
            resolv(sf, r, text, into_run.as_deref())?;
        }
    }
    pivot(r)
}

fn pivot(new: BorrowedFd<'_>) -> Result<()> {
    let shown = Path::new(STAGE);
    at(nix::unistd::fchdir(new), "entering", shown)?;
    at(
        nix::unistd::pivot_root(".", "."),
        "pivot_root into (a root on the initramfs cannot be pivoted)",
        shown,
    )?;
    at(
        umount2(".", MntFlags::MNT_DETACH),
        "detaching the old root from",
        shown,
    )?;
    at(nix::unistd::chdir("/"), "entering", Path::new("/"))
}

fn fresh(fstype: &str, dst: &Path) -> Result<()> {
    // Whatever the host had here goes first, with everything under it.
    while umount2(dst, MntFlags::MNT_DETACH).is_ok() {}
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    at(
        mount(Some(fstype), dst, Some(fstype), flags, None::<&str>),
        "mounting a new filesystem on",
        dst,
    )
}

/// `--privileged`: the host's filesystem, writable, with the context's
/// /proc (its PID namespace) and /sys (its network namespace).
pub fn privileged() -> Result<()> {
    fresh("proc", Path::new("/proc"))?;
    fresh("sysfs", Path::new("/sys"))
}

/// The mount namespace stops propagating to and from the host.
pub fn private() -> Result<()> {
    at(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        "making private the mounts under",
        Path::new("/"),
    )
}
