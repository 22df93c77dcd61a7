//! The guest's view of the filesystem, built in its own mount namespace:
//! the host's `/` (or the guest's `root`) cloned recursively read-only,
//! nosuid, nodev; `writable` paths bound read-write (nosuid, nodev); private
//! tmpfs on /tmp, /var/tmp and /run; a new /proc with runc's masked and
//! read-only paths; /sys of the context's network namespace and the cgroup
//! filesystem read-only; a minimal /dev; netctx's configuration masked; then
//! pivot_root. Runs in `netctx guest-jail`, before any privilege is dropped.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::jail::Spec;

#[derive(Debug, thiserror::Error)]
#[error("{step} {}", path.display())]
pub struct FsError {
    step: &'static str,
    path: PathBuf,
    source: io::Error,
}

type Result<T> = std::result::Result<T, FsError>;

fn at<T, E: Into<io::Error>>(
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

/// Where the new root is assembled (a tmpfs in the guest's mount namespace
/// only; after pivot_root it is gone).
const STAGE: &str = "/run/netctx";

const MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// mount_setattr(2) on `dfd`+`path` (`flags` may hold AT_RECURSIVE).
fn setattr(dfd: i32, path: &Path, set: u64, clr: u64, flags: libc::c_uint) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let p = c(path);
    // SAFETY: the path and attribute structure live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            p.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached recursive copy of the tree at `root`, read-only, nosuid,
/// nodev, moved to `to`.
fn clone_tree(root: &Path, to: &Path) -> Result<()> {
    let p = c(root);
    // SAFETY: open_tree with a valid path; the descriptor is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            1 | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE, // OPEN_TREE_CLONE
        )
    };
    // A descriptor or -1: within an int.
    let fd = libc::c_int::try_from(fd).unwrap_or(-1);
    at(
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        },
        "cloning the mount tree at",
        root,
    )?;
    let empty = Path::new("");
    let all = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV;
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE;
    let r = setattr(fd, empty, all, 0, flags).and_then(|_| {
        let t = c(to);
        // SAFETY: move_mount of the descriptor onto a valid path.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                4u32, // MOVE_MOUNT_F_EMPTY_PATH
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    });
    // SAFETY: closing the descriptor open_tree returned.
    unsafe { libc::close(fd) };
    at(r, "mounting read-only the tree of", root)
}

fn bind(src: &Path, dst: &Path, flags: MsFlags) -> Result<()> {
    at(
        mount(
            Some(src),
            dst,
            None::<&str>,
            MsFlags::MS_BIND | flags,
            None::<&str>,
        ),
        "bind-mounting onto",
        dst,
    )
}

fn remount_ro(dst: &Path) -> Result<()> {
    at(
        setattr(
            libc::AT_FDCWD,
            dst,
            ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV,
            0,
            AT_RECURSIVE,
        ),
        "making read-only",
        dst,
    )
}

fn fresh(fstype: &str, dst: &Path, flags: MsFlags, data: &str) -> Result<()> {
    // Whatever the clone had here goes first, with everything under it.
    while umount2(dst, MntFlags::MNT_DETACH).is_ok() {}
    let data = (!data.is_empty()).then_some(data);
    at(
        mount(Some(fstype), dst, Some(fstype), flags, data),
        "mounting a new filesystem on",
        dst,
    )
}

fn safe() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// A path in the new root.
fn inside(new: &Path, p: &Path) -> PathBuf {
    new.join(p.strip_prefix("/").unwrap_or(p))
}

/// Mask a file with /dev/null, a directory with an empty read-only tmpfs.
fn mask(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => at(
            mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                safe() | MsFlags::MS_RDONLY,
                Some("mode=000,size=0"),
            ),
            "masking",
            target,
        ),
        Ok(m) if m.is_file() => bind(Path::new("/dev/null"), target, MsFlags::empty()),
        _ => Ok(()),
    }
}

/// Hide netctx's configuration: a directory behind an empty read-only
/// tmpfs, a file behind an empty read-only file (not /dev/null, which
/// would take writes).
fn hide(stage: &Path, target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_file() => {
            let empty = stage.join("empty");
            at(std::fs::write(&empty, b""), "creating", &empty)?;
            bind(&empty, target, MsFlags::empty())?;
            remount_ro(target)
        }
        _ => mask(target),
    }
}

fn proc_(new: &Path) -> Result<()> {
    let p = new.join("proc");
    fresh("proc", &p, safe(), "")?;
    for m in MASKED.iter().filter(|m| m.starts_with("/proc")) {
        mask(&inside(new, Path::new(m)))?;
    }
    for r in READ_ONLY {
        let t = inside(new, Path::new(r));
        if t.exists() {
            bind(&t, &t, MsFlags::MS_REC)?;
            remount_ro(&t)?;
        }
    }
    Ok(())
}

fn sys(new: &Path) -> Result<()> {
    let s = new.join("sys");
    fresh("sysfs", &s, safe() | MsFlags::MS_RDONLY, "")?;
    let cg = s.join("fs/cgroup");
    if cg.is_dir() {
        // The guest's cgroup namespace is rooted at its context's group.
        at(
            mount(
                Some("cgroup2"),
                &cg,
                Some("cgroup2"),
                safe() | MsFlags::MS_RDONLY,
                None::<&str>,
            ),
            "mounting cgroup2 on",
            &cg,
        )?;
    }
    mask(&s.join("firmware"))
}

fn dev(new: &Path, tty: Option<&Path>) -> Result<()> {
    let d = new.join("dev");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    fresh("tmpfs", &d, flags, "mode=0755,size=64k")?;
    for name in DEVICES {
        let t = d.join(name);
        at(std::fs::write(&t, b""), "creating", &t)?;
        bind(&Path::new("/dev").join(name), &t, MsFlags::empty())?;
    }
    if let Some(t) = tty {
        let console = d.join("console");
        at(std::fs::write(&console, b""), "creating", &console)?;
        bind(t, &console, MsFlags::empty())?;
    }
    for dir in ["pts", "shm"] {
        at(std::fs::create_dir(d.join(dir)), "creating", &d.join(dir))?;
    }
    let pts = d.join("pts");
    let data = "newinstance,ptmxmode=0666,mode=0620";
    at(
        mount(Some("devpts"), &pts, Some("devpts"), flags, Some(data)),
        "mounting devpts on",
        &pts,
    )?;
    let shm = d.join("shm");
    at(
        mount(
            Some("tmpfs"),
            &shm,
            Some("tmpfs"),
            safe(),
            Some("mode=1777"),
        ),
        "mounting tmpfs on",
        &shm,
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        at(
            std::os::unix::fs::symlink(to, d.join(link)),
            "linking",
            &d.join(link),
        )?;
    }
    at(
        setattr(libc::AT_FDCWD, &d, ATTR_RDONLY, 0, 0),
        "making read-only",
        &d,
    )
}

/// The source of a writable path: it must not lead elsewhere through a
/// symlink (a guest could have planted one in an earlier run).
fn writable_source(root: &Path, w: &Path) -> Result<PathBuf> {
    let want = inside(root, w);
    let real = at(
        std::fs::canonicalize(&want),
        "resolving the writable path",
        &want,
    )?;
    if real != want {
        return Err(FsError {
            step: "refusing the writable path (it resolves elsewhere)",
            path: want,
            source: io::Error::other(format!("resolves to {}", real.display())),
        });
    }
    Ok(real)
}

/// Build the guest's filesystem and pivot into it.
pub fn build(s: &Spec) -> Result<()> {
    let root = s.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let stage = Path::new(STAGE);
    at(std::fs::create_dir_all(stage), "creating", stage)?;
    let new = stage.join("root");
    let tree_root = at(std::fs::canonicalize(&root), "resolving the root", &root)?;
    let t = tmpfs_stage(stage)?;
    clone_tree(&tree_root, &new)?;
    proc_(&new)?;
    sys(&new)?;
    dev(&new, s.tty.as_deref())?;
    for (dir, mode) in [("tmp", "1777"), ("var/tmp", "1777"), ("run", "0755")] {
        let p = new.join(dir);
        if p.is_dir() {
            let data = format!("mode={mode}");
            fresh("tmpfs", &p, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &data)?;
        }
    }
    for w in &s.writable {
        let src = writable_source(&tree_root, w)?;
        let dst = inside(&new, w);
        mount_point(&src, &dst)?;
        bind(&src, &dst, MsFlags::MS_REC)?;
        let flags = AT_RECURSIVE;
        at(
            setattr(
                libc::AT_FDCWD,
                &dst,
                ATTR_NOSUID | ATTR_NODEV,
                ATTR_RDONLY,
                flags,
            ),
            "making writable",
            &dst,
        )?;
    }
    if s.root.is_none() {
        for m in &s.masks {
            hide(&t, &inside(&new, m))?;
        }
        super::resolv::apply(&t, &new)?;
    }
    pivot(&new)
}

/// A writable path under a private tmpfs (/tmp, /run) needs its mount
/// point made there; elsewhere the clone has it already.
fn mount_point(src: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        return Ok(());
    }
    let r = if src.is_dir() {
        std::fs::create_dir_all(dst)
    } else {
        dst.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(dst, b""))
    };
    at(r, "making the mount point", dst)
}

fn tmpfs_stage(stage: &Path) -> Result<PathBuf> {
    at(
        mount(
            Some("tmpfs"),
            stage,
            Some("tmpfs"),
            safe(),
            Some("mode=0700,size=1m"),
        ),
        "mounting the staging tmpfs on",
        stage,
    )?;
    let new = stage.join("root");
    at(std::fs::create_dir(&new), "creating", &new)?;
    Ok(stage.to_path_buf())
}

fn pivot(new: &Path) -> Result<()> {
    at(nix::unistd::chdir(new), "entering", new)?;
    at(
        nix::unistd::pivot_root(".", "."),
        "pivot_root into (a root on the initramfs cannot be pivoted)",
        new,
    )?;
    at(
        umount2(".", MntFlags::MNT_DETACH),
        "detaching the old root from",
        new,
    )?;
    at(nix::unistd::chdir("/"), "entering", Path::new("/"))
}

/// `--privileged`: the host's filesystem, writable, with the context's
/// /proc (its PID namespace) and /sys (its network namespace).
pub fn privileged() -> Result<()> {
    fresh("proc", Path::new("/proc"), safe(), "")?;
    fresh("sysfs", Path::new("/sys"), safe(), "")
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
