//! Starting `netctx guest-jail` directly inside the context's cgroup with
//! clone3(CLONE_INTO_CGROUP): moving a running process between cgroups
//! waits for an RCU grace period (about 10 ms, most of an `exec`'s cost),
//! being born there does not. Between clone3 and execve the child only
//! calls dup2, execve and _exit on data prepared before.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use crate::kernel::sys;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone_args(flags: u64, cgroup: Option<RawFd>) -> CloneArgs {
    CloneArgs {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    }
}

/// clone3(2) as a fork (no CLONE_VM, SIGCHLD at exit) with `flags`, born
/// in the cgroup directory `cgroup` if given: 0 in the child, the child's
/// pid in the parent.
///
/// # Safety
/// As fork: in a multi-threaded process the child may only make
/// async-signal-safe calls until it execs or exits.
pub unsafe fn clone3(flags: u64, cgroup: Option<RawFd>) -> io::Result<i32> {
    let (ca, size) = (clone_args(flags, cgroup), std::mem::size_of::<CloneArgs>());
    // SAFETY: clone3 reads `ca` during the call; without CLONE_VM the
    // child gets a copy of this address space (the caller's contract).
    let pid = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::from_ref(&ca), size) };
    match pid {
        p if p < 0 => Err(io::Error::last_os_error()),
        p => i32::try_from(p).map_err(|_| io::Error::other("pid out of range")),
    }
}

/// Run `exe argv…` with exactly `envp`, stdio from `stdio`, the
/// descriptors `extra` as 3, 4, …, born in the cgroup `cgroup` (a
/// directory). Returns the child's pid (to wait for). `extra` must not
/// hold a descriptor below 3 + its length (see `high`).
pub fn spawn(
    exe: &CStr,
    argv: &[CString],
    envp: &[CString],
    stdio: [RawFd; 3],
    extra: &[RawFd],
    cgroup: &File,
) -> io::Result<i32> {
    let args_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([ptr::null()])
        .collect();
    let env_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain([ptr::null()])
        .collect();
    // SAFETY: the child only calls async-signal-safe functions on the
    // arrays above and never returns.
    match unsafe { clone3(0, Some(cgroup.as_raw_fd())) }? {
        0 => {
            // SAFETY: as above: dup2, execve, _exit only.
            unsafe {
                for (i, fd) in (0..).zip(stdio.iter().chain(extra)) {
                    if *fd != i && libc::dup2(*fd, i) < 0 {
                        libc::_exit(127);
                    }
                }
                libc::execve(exe.as_ptr(), args_p.as_ptr(), env_p.as_ptr());
                libc::_exit(127)
            }
        }
        p => Ok(p),
    }
}

/// A close-on-exec duplicate of `fd` numbered 16 or above, out of the way
/// of the numbers `spawn` gives its child.
pub fn high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    sys::dup_from(fd, 16)
}

/// Wait for a child without blocking: its status once it ended.
pub fn try_wait(pid: i32) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let st = sys::waitpid(pid, libc::WNOHANG)?;
    Ok(st.map(std::process::ExitStatus::from_raw))
}
