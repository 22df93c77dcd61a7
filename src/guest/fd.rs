//! Paths resolved once into descriptors, and mounts made from and onto
//! descriptors (docs/guests.md, "Filesystem, built by descriptor").
//! Nothing here looks a path up twice: `resolve` walks beneath a directory
//! descriptor with openat2 (`RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`, never a
//! magic link), and every mount is `move_mount` of a detached mount (`fsmount`,
//! `open_tree`) onto such a descriptor — the new-mount-API version of
//! runc's `mountViaFds` after CVE-2021-30465.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::kernel::sys::{self, FsConfig, MountAttr};

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;

const AT_RECURSIVE: libc::c_uint = 0x8000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// openat2(2): `path` beneath `dir` with `resolve` flags, opened `flags`
/// (O_CLOEXEC always added).
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = c(path)?;
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags | libc::O_CLOEXEC))
        .mode(Mode::from_bits_retain(if flags & libc::O_CREAT != 0 {
            0o644
        } else {
            0
        }))
        .resolve(ResolveFlag::from_bits_retain(resolve));
    Ok(nix::fcntl::openat2(dir, p.as_c_str(), how)?)
}

/// `rel` (relative; a leading `/` is ignored) beneath the root `dir`, as
/// the guest would see it: symlinks resolve inside `dir`, never a magic
/// link. An O_PATH descriptor of the object itself (a final symlink is not
/// followed out: it too resolves inside).
pub fn resolve(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        dir,
        rel,
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// fstat of a descriptor.
pub fn stat(f: BorrowedFd<'_>) -> io::Result<libc::stat> {
    Ok(nix::sys::stat::fstat(f)?)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// A detached copy of the mount tree at `dir`+`path` (`""`: `dir` itself),
/// recursive or not.
pub fn clone_tree(dir: BorrowedFd<'_>, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = c(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    sys::open_tree(dir, &p, flags)
}

/// mount_setattr(2) on the mount of `mnt` (and, `recursive`, below it).
pub fn setattr(mnt: BorrowedFd<'_>, set: u64, clr: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    sys::mount_setattr(mnt, c"", flags, &attr)
}

/// Attach the detached mount `mnt` onto the object `target` refers to.
pub fn attach(mnt: &OwnedFd, target: BorrowedFd<'_>) -> io::Result<()> {
    sys::move_mount(
        (mnt.as_fd(), c""),
        (target, c""),
        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Attach the detached mount `mnt` at an absolute path of the caller's own
/// (not a guest's) view.
pub fn attach_at(mnt: &OwnedFd, path: &Path) -> io::Result<()> {
    let p = c(path)?;
    sys::move_mount(
        (mnt.as_fd(), c""),
        (nix::fcntl::AT_FDCWD, &p),
        MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// A new, detached filesystem of type `fstype` with string options `opts`
/// (`"key"` alone sets a flag), mounted with attributes `attrs`.
pub fn new_fs(fstype: &str, opts: &[(&str, Option<&str>)], attrs: u64) -> io::Result<OwnedFd> {
    let t = CString::new(fstype).map_err(io::Error::other)?;
    let fs = sys::fsopen(&t, FSOPEN_CLOEXEC)?;
    for (k, v) in opts {
        let key = CString::new(*k).map_err(io::Error::other)?;
        let val = v.map(CString::new).transpose().map_err(io::Error::other)?;
        let what = match &val {
            Some(v) => FsConfig::String(&key, v),
            None => FsConfig::Flag(&key),
        };
        sys::fsconfig(fs.as_fd(), what)?;
    }
    sys::fsconfig(fs.as_fd(), FsConfig::Create)?;
    sys::fsmount(fs.as_fd(), FSMOUNT_CLOEXEC, attrs)
}

/// Make a directory `name` in `dir` (it may exist) and return it (O_PATH,
/// never through a symlink).
pub fn mkdir_in(dir: BorrowedFd<'_>, name: &Path, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let n = c(name)?;
    match nix::sys::stat::mkdirat(dir, n.as_c_str(), Mode::from_bits_retain(mode)) {
        Err(e) if e != Errno::EEXIST => return Err(e.into()),
        _ => {}
    }
    openat2(
        dir,
        name,
        libc::O_PATH | libc::O_DIRECTORY,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    )
}

/// Create an empty regular file `name` in `dir` (a mount point for a file),
/// or use the regular file that is there; O_PATH.
pub fn file_in(dir: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    let n = c(name)?;
    // O_NOFOLLOW | O_CREAT never follows a symlink; the descriptor (if
    // any) is closed at once.
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    drop(nix::fcntl::openat(
        dir,
        n.as_c_str(),
        flags | OFlag::O_NONBLOCK,
        Mode::from_bits_retain(0o644),
    ));
    let f = openat2(
        dir,
        name,
        libc::O_PATH,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    )?;
    if !is_reg(&stat(f.as_fd())?) {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Write `text` into a new file `name` of `dir` (a private tmpfs of ours).
pub fn write_in(dir: BorrowedFd<'_>, name: &Path, text: &[u8]) -> io::Result<()> {
    let f = openat2(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )?;
    let mut file = std::fs::File::from(f);
    io::Write::write_all(&mut file, text)
}

/// symlinkat(2).
pub fn symlink_in(target: &str, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let t = CString::new(target).map_err(io::Error::other)?;
    let n = c(name)?;
    Ok(nix::unistd::symlinkat(t.as_c_str(), dir, n.as_c_str())?)
}
