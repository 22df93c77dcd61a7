//! The system calls netctx makes that neither std nor nix wraps safely,
//! each behind a safe signature: descriptors are borrowed or owned (never a
//! bare number), memory is passed only as references, and a request whose
//! argument type differs is a variant of its own. One `unsafe` block per
//! system call (and one for taking over the descriptors some return), so
//! the callers have none. What is here: the new mount API (fsopen,
//! fsconfig, fsmount, open_tree, mount_setattr, move_mount).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A descriptor from the return value of a system call that makes one
/// (private: only ever given such a value).
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
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

/// fsopen(2): a filesystem context of type `fstype`.
pub fn fsopen(fstype: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name that outlives the call.
    new_fd(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), flags) })
}

/// The fsconfig(2) commands netctx gives.
pub enum FsConfig<'a> {
    /// FSCONFIG_SET_FLAG: key.
    Flag(&'a CStr),
    /// FSCONFIG_SET_STRING: key, value.
    String(&'a CStr, &'a CStr),
    /// FSCONFIG_CMD_CREATE.
    Create,
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// fsconfig(2) on the filesystem context `fs`.
pub fn fsconfig(fs: BorrowedFd<'_>, what: FsConfig<'_>) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    let (cmd, key, value) = match what {
        FsConfig::Flag(k) => (FSCONFIG_SET_FLAG, k.as_ptr(), null),
        FsConfig::String(k, v) => (FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr()),
        FsConfig::Create => (FSCONFIG_CMD_CREATE, null, null),
    };
    // SAFETY: each command gets what it reads: NUL-terminated strings that
    // outlive the call (or null where it takes none), and aux 0.
    ok(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) })
}

/// fsmount(2): a detached mount of the created context `fs`.
pub fn fsmount(fs: BorrowedFd<'_>, flags: libc::c_uint, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    new_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), flags, attrs) })
}

/// open_tree(2) of `dir`+`path`.
pub fn open_tree(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path that outlives the call.
    new_fd(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), path.as_ptr(), flags) })
}

/// struct mount_attr.
#[repr(C)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr(2) of `dir`+`path`.
pub fn mount_setattr(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> io::Result<()> {
    let (fd, p) = (dir.as_raw_fd(), path.as_ptr());
    let (a, size) = (std::ptr::from_ref(attr), std::mem::size_of::<MountAttr>());
    // SAFETY: the path and the attribute structure (of the size given)
    // outlive the call, which only reads them.
    ok(unsafe { libc::syscall(libc::SYS_mount_setattr, fd, p, flags, a, size) })
}

/// move_mount(2) from `from`+`from_path` to `to`+`to_path`.
pub fn move_mount(
    (from, from_path): (BorrowedFd<'_>, &CStr),
    (to, to_path): (BorrowedFd<'_>, &CStr),
    flags: libc::c_uint,
) -> io::Result<()> {
    let (f, t) = (from.as_raw_fd(), to.as_raw_fd());
    let (fp, tp) = (from_path.as_ptr(), to_path.as_ptr());
    // SAFETY: two NUL-terminated paths that outlive the call.
    ok(unsafe { libc::syscall(libc::SYS_move_mount, f, fp, t, tp, flags) })
}
