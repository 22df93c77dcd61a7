//! The kernel's filesystems in a guest's view, made fresh for it and
//! mounted by descriptor (see `fs`): `/proc` with runc's masked and
//! read-only paths, `/sys` of the context's network namespace with the
//! cgroup filesystem, and a minimal `/dev`. Shared helpers for `fs`:
//! directories resolved beneath a root, fresh tmpfs, masks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::fd::{self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY};
use super::fs::{at, FsError, Result};

const MASKED: [&str; 9] = [
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
const READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The object at `rel` beneath `dir`, which must be a directory.
pub(super) fn dir_at(dir: BorrowedFd<'_>, rel: &Path, shown: &Path) -> Result<OwnedFd> {
    let f = at(
        fd::resolve(dir, rel),
        "resolving in the guest's tree",
        shown,
    )?;
    let st = at(fd::stat(f.as_fd()), "reading", shown)?;
    if !fd::is_dir(&st) {
        return Err(FsError {
            step: "needs a directory at",
            path: shown.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    Ok(f)
}

pub(super) fn enoent(r: &io::Result<OwnedFd>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::ENOENT))
}

/// A fresh detached tmpfs.
pub(super) fn tmpfs(mode: &str, size: &str, attrs: u64) -> io::Result<OwnedFd> {
    fd::new_fs(
        "tmpfs",
        &[("mode", Some(mode)), ("size", Some(size))],
        attrs,
    )
}

/// A detached bind of a host file of the caller's own view (`/dev/null`).
pub(super) fn host_file(p: &Path) -> Result<OwnedFd> {
    at(
        fd::clone_tree(nix::fcntl::AT_FDCWD, p, false),
        "cloning the mount of",
        p,
    )
}

/// Mask what `rel` beneath `base` names: a directory with an empty
/// read-only tmpfs, anything else with /dev/null. Nothing there: nothing.
pub(super) fn mask(base: BorrowedFd<'_>, rel: &Path, shown: &Path) -> Result<()> {
    let t = fd::resolve(base, rel);
    if enoent(&t) {
        return Ok(());
    }
    let t = at(t, "resolving", shown)?;
    let st = at(fd::stat(t.as_fd()), "reading", shown)?;
    let m = if fd::is_dir(&st) {
        let all = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC;
        at(tmpfs("000", "4k", all), "making a mask for", shown)?
    } else {
        host_file(Path::new("/dev/null"))?
    };
    at(fd::attach(&m, t.as_fd()), "masking", shown)
}

pub(super) fn proc_(root: BorrowedFd<'_>) -> Result<()> {
    let shown = Path::new("/proc");
    let t = dir_at(root, shown, shown)?;
    let p = at(
        fd::new_fs("proc", &[], ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC),
        "making the context's /proc for",
        shown,
    )?;
    at(fd::attach(&p, t.as_fd()), "mounting", shown)?;
    let pf = p.as_fd();
    for m in MASKED {
        mask(pf, Path::new(m), &shown.join(m))?;
    }
    for r in READ_ONLY {
        let shown = shown.join(r);
        let t = fd::resolve(pf, Path::new(r));
        if enoent(&t) {
            continue;
        }
        let t = at(t, "resolving", &shown)?;
        let c = at(
            fd::clone_tree(t.as_fd(), Path::new(""), true),
            "cloning",
            &shown,
        )?;
        at(
            fd::setattr(c.as_fd(), ATTR_RDONLY, 0, true),
            "making read-only",
            &shown,
        )?;
        at(fd::attach(&c, t.as_fd()), "mounting", &shown)?;
    }
    Ok(())
}

pub(super) fn sys(root: BorrowedFd<'_>, sysfs: OwnedFd) -> Result<()> {
    let shown = Path::new("/sys");
    let t = dir_at(root, shown, shown)?;
    at(fd::attach(&sysfs, t.as_fd()), "mounting", shown)?;
    let cg = Path::new("fs/cgroup");
    if let Ok(c) = dir_at(sysfs.as_fd(), cg, &shown.join(cg)) {
        // The guest's cgroup namespace is rooted at its context's group.
        let all = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC;
        let m = at(
            fd::new_fs("cgroup2", &[], all),
            "making cgroup2 for",
            &shown.join(cg),
        )?;
        at(fd::attach(&m, c.as_fd()), "mounting", &shown.join(cg))?;
    }
    mask(
        sysfs.as_fd(),
        Path::new("firmware"),
        &shown.join("firmware"),
    )
}

/// `/dev`, its shm a tmpfs of `shm_size` bytes.
pub(super) fn dev(root: BorrowedFd<'_>, tty: Option<&Path>, shm_size: u64) -> Result<()> {
    let shown = Path::new("/dev");
    let t = dir_at(root, shown, shown)?;
    let d = at(
        tmpfs("0755", "64k", ATTR_NOSUID | ATTR_NOEXEC),
        "making",
        shown,
    )?;
    at(fd::attach(&d, t.as_fd()), "mounting", shown)?;
    let df = d.as_fd();
    let nodes = DEVICES
        .iter()
        .map(|n| (n.to_string(), Path::new("/dev").join(n)))
        .chain(tty.map(|t| ("console".to_string(), t.to_path_buf())));
    for (name, src) in nodes {
        let shown = shown.join(&name);
        let f = at(fd::file_in(df, Path::new(&name)), "creating", &shown)?;
        let m = host_file(&src)?;
        at(fd::attach(&m, f.as_fd()), "mounting", &shown)?;
    }
    let pts = at(
        fd::mkdir_in(df, Path::new("pts"), 0o755),
        "creating",
        &shown.join("pts"),
    )?;
    let opts = [
        ("newinstance", None),
        ("ptmxmode", Some("0666")),
        ("mode", Some("0620")),
    ];
    let m = at(
        fd::new_fs("devpts", &opts, ATTR_NOSUID | ATTR_NOEXEC),
        "making",
        &shown.join("pts"),
    )?;
    at(fd::attach(&m, pts.as_fd()), "mounting", &shown.join("pts"))?;
    let shm = at(
        fd::mkdir_in(df, Path::new("shm"), 0o755),
        "creating",
        &shown.join("shm"),
    )?;
    let m = at(
        tmpfs(
            "1777",
            &shm_size.to_string(),
            ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
        ),
        "making",
        &shown.join("shm"),
    )?;
    at(fd::attach(&m, shm.as_fd()), "mounting", &shown.join("shm"))?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        at(
            fd::symlink_in(to, df, Path::new(link)),
            "linking",
            &shown.join(link),
        )?;
    }
    at(
        fd::setattr(df, ATTR_RDONLY, 0, false),
        "making read-only",
        shown,
    )
}
