//! The system calls netctx makes that neither std nor nix wraps safely,
//! each behind a safe signature: descriptors are borrowed or owned (never a
//! bare number), memory is passed only as references, and a request whose
//! argument type differs is a variant of its own. One `unsafe` block per
//! system call (and one for taking over the descriptors some return), so
//! the callers have none. What is here: the new mount API (fsopen,
//! fsconfig, fsmount, open_tree, mount_setattr, move_mount), duplicating a
//! descriptor above a floor, the terminal ioctls, waitpid with the raw
//! status, close_range, capset and the capability prctls, IPV6_TRANSPARENT, getsockopt into a
//! buffer, and _exit
//! (sigaction is `signals`').

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// fcntl(F_DUPFD_CLOEXEC): a close-on-exec duplicate of `fd` numbered
/// `floor` or above.
pub fn dup_from(fd: BorrowedFd<'_>, floor: RawFd) -> io::Result<OwnedFd> {
    let r = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor))?;
    new_fd(r.into())
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

/// The terminal ioctls netctx makes, each with the argument it takes.
enum Tty<'a> {
    GetWinsize(&'a mut libc::winsize),
    SetWinsize(&'a libc::winsize),
    TakeControlling,
}

fn tty_ioctl(fd: BorrowedFd<'_>, op: Tty<'_>) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: TIOCGWINSZ fills a winsize, TIOCSWINSZ reads one, TIOCSCTTY
    // takes an integer: each is given exactly that.
    let r = unsafe {
        match op {
            Tty::GetWinsize(ws) => libc::ioctl(fd, libc::TIOCGWINSZ, std::ptr::from_mut(ws)),
            Tty::SetWinsize(ws) => libc::ioctl(fd, libc::TIOCSWINSZ, std::ptr::from_ref(ws)),
            Tty::TakeControlling => libc::ioctl(fd, libc::TIOCSCTTY, 0),
        }
    };
    ok(r.into())
}

/// TIOCGWINSZ: the window size of the terminal `fd`.
pub fn winsize(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tty_ioctl(fd, Tty::GetWinsize(&mut ws))?;
    Ok(ws)
}

/// TIOCSWINSZ: set the window size of the terminal `fd`.
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    tty_ioctl(fd, Tty::SetWinsize(ws))
}

/// TIOCSCTTY (argument 0): make the terminal `fd` the caller's controlling
/// terminal.
pub fn take_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    tty_ioctl(fd, Tty::TakeControlling)
}

/// waitpid(2) for `pid` with `flags`: the raw wait status (as
/// `ExitStatus::from_raw` takes it) once it ended, `None` while it runs
/// (`WNOHANG`).
pub fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<libc::c_int>> {
    let mut st = 0;
    // SAFETY: waitpid writes the status into a local.
    let r = unsafe { libc::waitpid(pid, &mut st, flags) };
    match r {
        0 => Ok(None),
        r if r < 0 => Err(io::Error::last_os_error()),
        _ => Ok(Some(st)),
    }
}

/// RLIMIT_NPROC of process `pid` (0: this one), soft and hard, to `n`.
pub fn set_nproc(pid: libc::pid_t, n: u64) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit reads a valid rlimit and writes no old value.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NPROC, &r, std::ptr::null_mut()) };
    ok(rc.into())
}

/// The hard RLIMIT_NPROC of this process.
pub fn nproc_hard() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit writes the current limit into `r` and sets nothing.
    let rc = unsafe { libc::prlimit(0, libc::RLIMIT_NPROC, std::ptr::null(), &mut r) };
    ok(rc.into()).map(|()| r.rlim_max)
}

/// close_range(2): close every descriptor from `first` up, for a process
/// about to exec or to do nothing else — no descriptor from `first` up
/// may be owned by anything it still uses (both callers own none).
pub fn close_from(first: libc::c_uint) -> io::Result<()> {
    // SAFETY: integer arguments only; the descriptors it closes are, by
    // the contract above, used by nothing afterwards.
    ok(unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0u32) })
}

/// prctl(2) with an option that takes two integers (the capability
/// bounding and ambient sets).
pub fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<()> {
    // SAFETY: integer arguments only.
    ok(unsafe { libc::prctl(op, a, b, 0, 0) }.into())
}

/// IPV6_TRANSPARENT on an IPv6 socket (nix wraps only IPv4's
/// IP_TRANSPARENT): it may send from an address that is not the host's
/// (`netctx explain --from`). Needs CAP_NET_ADMIN.
pub fn set_ipv6_transparent(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `one` outlives the call and `len` is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_TRANSPARENT,
            (&one as *const libc::c_int).cast(),
            len,
        )
    };
    ok(r.into())
}

/// getsockopt(2) of an option read into (and, for some, first written
/// into) `buf`: the length the kernel gave back (iptables-legacy's
/// IPT_SO_GET_INFO and IPT_SO_GET_ENTRIES).
pub fn getsockopt_buf(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is valid for `len` bytes, and `len` is passed by
    // reference for the kernel to update.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    ok(r.into())?;
    Ok(usize::try_from(len).unwrap_or(0))
}

/// _LINUX_CAPABILITY_VERSION_3 of the calling thread (pid 0).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One of the two 32-capability halves of capset's data.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// capset(2), version 3, on the calling thread.
pub fn capset(data: &[CapData; 2]) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: capset reads one header and two data records, all valid.
    ok(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) })
}

/// _exit(2): end the process at once, nothing run or flushed (what a
/// child of a clone may do).
pub fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// The number of threads of this process (field 20 of /proc/self/stat).
pub fn threads() -> io::Result<u64> {
    threads_in(&std::fs::read_to_string("/proc/self/stat")?)
        .ok_or_else(|| io::Error::other("an unreadable /proc/self/stat"))
}

/// Field 20 of a stat line.
fn threads_in(stat: &str) -> Option<u64> {
    stat_fields(stat, [20]).map(|[n]| n)
}

/// Numeric fields of a /proc/PID/stat line, numbered as proc(5) numbers
/// them (from 1; the command's name, field 2, may hold spaces and
/// parentheses, so fields from 3 on are counted after its last `)`).
pub fn stat_fields<const N: usize>(stat: &str, fields: [usize; N]) -> Option<[u64; N]> {
    let rest: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let mut out = [0; N];
    for (o, f) in out.iter_mut().zip(fields) {
        *o = rest.get(f.checked_sub(3)?)?.trim_end().parse().ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_is_field_20_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 \
                    7 0 12345 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(super::threads_in(stat), Some(7));
        assert_eq!(super::threads_in("4242 (x) S 1"), None);
        // With a thread of its own alive, this process has two at least.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(super::threads().unwrap() >= 2);
        tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    }
}
