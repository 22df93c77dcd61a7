//! The context's PID namespace and its init: `netctx guest-init CTX` joins
//! the context's cgroup, unshares a PID namespace and forks its PID 1, which
//! reaps every orphan of the context and does nothing else. Its host pid and
//! start time are recorded in `/run/netctx/guests/CTX.init`; every `exec`
//! and the declared guest enter its PID namespace.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, ForkResult};

use super::{cgroup, guest_dir, start_time, write_private};

fn record(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.init"))
}

/// The context's init, if it runs: its host pid.
pub fn running(ctx: &str) -> Option<i32> {
    let s = std::fs::read_to_string(record(ctx)).ok()?;
    let mut it = s.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    matches!(start_time(pid), Some((t, st)) if t == started && st != 'Z' && st != 'X')
        .then_some(pid)
}

pub fn forget(ctx: &str) {
    let _ = std::fs::remove_file(record(ctx));
}

/// The context's init, started when none runs (call under the netctx lock).
pub fn ensure(ctx: &str) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    if let Some(pid) = running(ctx) {
        return Ok(pid);
    }
    cgroup::create(ctx)?;
    let exe = std::env::current_exe().context("finding the netctx binary")?;
    let out = Command::new(exe)
        .args(["guest-init", ctx])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting the context's init")?;
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|_| out.status.success())
        .context("the context's init did not start")?;
    let (t, _) = start_time(pid).context("the context's init exited at once")?;
    write_private(&record(ctx), &format!("{pid} {t}\n"))
        .with_context(|| format!("recording the init in {}", record(ctx).display()))?;
    Ok(pid)
}

/// `netctx guest-init CTX`: prints the host pid of the new PID 1.
pub fn main(ctx: &str) -> anyhow::Result<u8> {
    cgroup::join(&cgroup::path(ctx)?)?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
    // SAFETY: this process is single-threaded; the child only makes system
    // calls (pid1) and never returns.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => pid1(),
        ForkResult::Parent { child } => {
            println!("{child}");
            io::stdout().flush()?;
            Ok(0)
        }
    }
}

/// PID 1 of the context: orphans are reparented to it and, with SIGCHLD
/// ignored, the kernel reaps them. Signals from inside the namespace cannot
/// reach it; `cgroup.kill` ends it and with it the namespace.
fn pid1() -> ! {
    // SAFETY: plain system calls on no shared data; this process only sleeps.
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        loop {
            libc::pause();
        }
    }
}
