//! Paths resolved once into descriptors, and mounts made from and onto
//! descriptors (design §3 Guests, "by file descriptor"). Nothing here
//! looks a path up twice: `resolve` walks beneath a directory descriptor
//! with openat2 (`RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`, never a magic
//! link), and every mount is `move_mount` of a detached mount (`fsmount`,
//! `open_tree`) onto such a descriptor — the new-mount-API version of
//! runc's `mountViaFds` after CVE-2021-30465.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// A descriptor from a system call's return value.
fn fd(r: libc::c_long) -> io::Result<OwnedFd> {
    let r = libc::c_int::try_from(r).unwrap_or(-1);
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn ok(r: libc::c_long) -> io::Result<()> {
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): `path` beneath `dir` with `resolve` flags, opened `flags`
/// (O_CLOEXEC always added).
pub fn openat2(dir: RawFd, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let p = c(path)?;
    let how = OpenHow {
        flags: u64::try_from(flags | libc::O_CLOEXEC).unwrap_or(0),
        mode: if flags & libc::O_CREAT != 0 { 0o644 } else { 0 },
        resolve,
    };
    // SAFETY: the path and the structure live across the call.
    fd(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
}

/// `rel` (relative; a leading `/` is ignored) beneath the root `dir`, as
/// the guest would see it: symlinks resolve inside `dir`, never a magic
/// link. An O_PATH descriptor of the object itself (a final symlink is not
/// followed out: it too resolves inside).
pub fn resolve(dir: RawFd, rel: &Path) -> io::Result<OwnedFd> {
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
pub fn stat(f: RawFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed is a valid stat; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a local.
    if unsafe { libc::fstat(f, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// A detached copy of the mount tree at `dir`+`path` (`""`: `dir` itself),
/// recursive or not.
pub fn clone_tree(dir: RawFd, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = c(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: open_tree with a valid path.
    fd(unsafe { libc::syscall(libc::SYS_open_tree, dir, p.as_ptr(), flags) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount of `mnt` (and, `recursive`, below it).
pub fn setattr(mnt: RawFd, set: u64, clr: u64, recursive: bool) -> io::Result<()> {
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
    // SAFETY: the attribute structure lives across the call.
    ok(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Attach the detached mount `mnt` onto the object `target` refers to.
pub fn attach(mnt: &OwnedFd, target: RawFd) -> io::Result<()> {
    // SAFETY: move_mount between two descriptors, empty paths.
    ok(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

/// Attach the detached mount `mnt` at an absolute path of the caller's own
/// (not a guest's) view.
pub fn attach_at(mnt: &OwnedFd, path: &Path) -> io::Result<()> {
    let p = c(path)?;
    // SAFETY: move_mount of a descriptor onto a valid path.
    ok(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            p.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// A new, detached filesystem of type `fstype` with string options `opts`
/// (`"key"` alone sets a flag), mounted with attributes `attrs`.
pub fn new_fs(fstype: &str, opts: &[(&str, Option<&str>)], attrs: u64) -> io::Result<OwnedFd> {
    let t = CString::new(fstype).map_err(io::Error::other)?;
    // SAFETY: fsopen with a valid name.
    let fs = fd(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })?;
    for (k, v) in opts {
        let key = CString::new(*k).map_err(io::Error::other)?;
        let val = v.map(CString::new).transpose().map_err(io::Error::other)?;
        let (cmd, vp) = match &val {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: fsconfig with valid strings (or null for a flag).
        ok(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key.as_ptr(), vp, 0) })?;
    }
    let null: *const libc::c_char = std::ptr::null();
    // SAFETY: fsconfig CMD_CREATE takes no key or value.
    ok(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            null,
            null,
            0,
        )
    })?;
    // SAFETY: fsmount of the configured context.
    fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// Make a directory `name` in `dir` (it may exist) and return it (O_PATH,
/// never through a symlink).
pub fn mkdir_in(dir: RawFd, name: &Path, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let n = c(name)?;
    // SAFETY: mkdirat with a valid name.
    if unsafe { libc::mkdirat(dir, n.as_ptr(), mode) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
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
pub fn file_in(dir: RawFd, name: &Path) -> io::Result<OwnedFd> {
    let n = c(name)?;
    // SAFETY: openat with a valid name; O_NOFOLLOW | O_CREAT never follows
    // a symlink; the descriptor is closed at once.
    let r = unsafe {
        libc::openat(
            dir,
            n.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            0o644,
        )
    };
    if r >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(r) };
    }
    let f = openat2(
        dir,
        name,
        libc::O_PATH,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    )?;
    if !is_reg(&stat(f.as_raw_fd())?) {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Write `text` into a new file `name` of `dir` (a private tmpfs of ours).
pub fn write_in(dir: RawFd, name: &Path, text: &[u8]) -> io::Result<()> {
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
pub fn symlink_in(target: &str, dir: RawFd, name: &Path) -> io::Result<()> {
    let t = CString::new(target).map_err(io::Error::other)?;
    let n = c(name)?;
    // SAFETY: symlinkat with valid strings.
    if unsafe { libc::symlinkat(t.as_ptr(), dir, n.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
