//! Starting the guest directly inside the context's cgroup with
//! clone3(CLONE_INTO_CGROUP): moving a running process between cgroups
//! waits for an RCU grace period (about 10 ms, most of an `exec`'s cost),
//! being born there does not.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::jail::Spec;
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

/// Start the guest for `spec`: a child born in the cgroup `cgroup` (a
/// directory), with stdio from `stdio` and the descriptors `extra` as 3,
/// 4, …, that confines itself (`jail::run`) and execs the command; it never
/// comes back to the caller's code. Returns the child's pid (to wait for).
/// `extra` must not hold a descriptor below 3 + its length (see `high`).
///
/// The child is a copy of this process, not a fresh `execve` of netctx:
/// one start of the binary less for every `exec`. That is sound because
/// this process has one thread (checked here: no other thread can hold a
/// lock the child would wait for), and what the copy holds stays out of
/// the guest's reach: the command's `execve` replaces the address space,
/// every descriptor above stderr is closed before it, and until then the
/// child's memory belongs to the host's user namespace, so neither the
/// guest's root (after the child drops to its ids) nor anyone else of the
/// context can ptrace it or read it through /proc (docs/guests.md).
pub fn jail(spec: &Spec, stdio: [RawFd; 3], extra: &[RawFd], cgroup: &File) -> io::Result<i32> {
    if sys::threads()? != 1 {
        return Err(io::Error::other(
            "netctx has more than one thread here; a guest is started from one",
        ));
    }
    let hidden = Hidden::now()?;
    // SAFETY: this process is single-threaded (checked above), so the
    // child may allocate; it never returns into the caller's code.
    match unsafe { clone3(0, Some(cgroup.as_raw_fd())) } {
        Ok(0) => {
            // The child's copy stays hidden.
            std::mem::forget(hidden);
            let run = std::panic::AssertUnwindSafe(|| child(spec, stdio, extra));
            sys::exit_now(std::panic::catch_unwind(run).unwrap_or(127))
        }
        r => r,
    }
}

/// What the context reads as the jail's command line.
const JAIL_CMDLINE: &[u8] = b"netctx\0guest-jail\0";

/// This process's command line and environment strings (the bytes
/// /proc/PID/cmdline and /proc/PID/environ read) overwritten with `netctx
/// guest-jail` and NULs while it clones the jail, and put back when
/// dropped: the jail is born without the caller's (`netctx exec --env K=V
/// -c … CTX -- …`; its command line is readable by anyone who sees the
/// process, undumpable or not). For the caller's own process on the host,
/// only for the clone. (PR_SET_MM, which would point the jail's elsewhere,
/// needs CAP_SYS_RESOURCE, which not every host root has.)
struct Hidden {
    saved: [(usize, Vec<u8>); 2],
}

impl Hidden {
    fn now() -> io::Result<Hidden> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let unreadable = || io::Error::other("an unreadable /proc/self/stat");
        let f = sys::stat_fields(&stat, [48, 49, 50, 51]).ok_or_else(unreadable)?;
        let mut at = [0usize; 4];
        for (a, v) in at.iter_mut().zip(f) {
            *a = usize::try_from(v).map_err(|_| unreadable())?;
        }
        let [a0, a1, e0, e1] = at;
        let save = |start: usize, end: usize| {
            let len = end.saturating_sub(start);
            // SAFETY: the kernel's record of where this process's argument
            // and environment strings lie: its initial stack, mapped,
            // readable and writable, no Rust object's.
            let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
            (start, bytes.to_vec())
        };
        let h = Hidden {
            saved: [save(a0, a1), save(e0, e1)],
        };
        for (i, (start, bytes)) in h.saved.iter().enumerate() {
            // SAFETY: as above; this process has one thread and only
            // clones before `drop` puts them back; the child never reads
            // them (a lookup there finds empty strings: `jail` takes all
            // it needs from its Spec).
            unsafe {
                std::ptr::write_bytes(*start as *mut u8, 0, bytes.len());
                if i == 0 && bytes.len() >= JAIL_CMDLINE.len() {
                    std::ptr::copy_nonoverlapping(
                        JAIL_CMDLINE.as_ptr(),
                        *start as *mut u8,
                        JAIL_CMDLINE.len(),
                    );
                }
            }
        }
        Ok(h)
    }
}

impl Drop for Hidden {
    fn drop(&mut self) {
        for (start, bytes) in &self.saved {
            // SAFETY: back where `now` took them from.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), *start as *mut u8, bytes.len())
            };
        }
    }
}

/// The child of `jail`: its descriptors in place, then confine and exec;
/// the exit code if that failed.
fn child(spec: &Spec, stdio: [RawFd; 3], extra: &[RawFd]) -> libc::c_int {
    for (i, fd) in (0..).zip(stdio.iter().chain(extra)) {
        // SAFETY: integer arguments; the numbers below 3 + extra.len() are
        // the child's to replace.
        if *fd != i && unsafe { libc::dup2(*fd, i) } < 0 {
            return 127;
        }
    }
    let e = super::jail::run(spec);
    eprintln!("netctx: error: {e:#}");
    1
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
