//! The context's PID namespace and its init: `netctx guest-init CTX` joins
//! the context's cgroup, unshares a PID namespace and forks its PID 1, which
//! reaps every orphan of the context and does nothing else. Its host pid and
//! start time are recorded in `/run/netctx/guests/CTX.init`; every `exec`
//! and the declared guest enter its PID namespace.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid};

use super::{caps, cgroup, guest_dir, start_time, write_private};
use crate::kernel::sys;

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

/// The context's init, started when none runs (call under the netctx
/// lock). Its user namespace maps the context's range (`first`, `count`):
/// an init whose map differs (the context's `id` changed while it ran) is
/// refused, with what to do.
pub fn ensure(ctx: &str, (first, count): (u32, u32)) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    if let Some(pid) = running(ctx) {
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
        let want = format!("0 {first} {count}");
        let have: Vec<&str> = map.split_whitespace().collect();
        if have.join(" ") != want {
            anyhow::bail!(
                "the guests of context {ctx} run with user ids {:?}, not the configured \
                 {want:?} (its `id` changed): run `netctx stop {ctx}` first",
                have.join(" ")
            );
        }
        return Ok(pid);
    }
    cgroup::create(ctx)?;
    let exe = std::env::current_exe().context("finding the netctx binary")?;
    let out = Command::new(exe)
        .args(["guest-init", ctx, &first.to_string(), &count.to_string()])
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

const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
const CLONE_NEWPID: u64 = libc::CLONE_NEWPID as u64;
const CLONE_NEWIPC: u64 = libc::CLONE_NEWIPC as u64;

/// `netctx guest-init CTX FIRST COUNT`: makes the context's user, PID and
/// IPC namespaces in one clone — the user namespace owns the other two, so
/// a guest's root has its powers over them and over nothing of the host's
/// — maps guest ids 0..COUNT to host ids FIRST.. and prints the host pid of
/// the new PID 1.
pub fn main(ctx: &str, first: u32, count: u32) -> anyhow::Result<u8> {
    cgroup::join(&cgroup::path(ctx)?)?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: this process is single-threaded; the child never returns
    // (pid1).
    let pid = unsafe { super::spawn::clone3(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC, None) }?;
    match pid {
        0 => {
            drop(wr);
            // Wait until the parent has written the maps (or died: EOF).
            let mut b = [0u8; 1];
            let got = nix::unistd::read(&rd, &mut b).unwrap_or(0);
            if got != 1 {
                sys::exit_now(1);
            }
            pid1()
        }
        child => {
            let map = format!("0 {first} {count}\n");
            let r = std::fs::write(format!("/proc/{child}/uid_map"), &map)
                .and_then(|_| std::fs::write(format!("/proc/{child}/gid_map"), &map));
            if let Err(e) = r {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
                return Err(anyhow::Error::new(e).context(format!(
                    "mapping the user ids of context {ctx} ({first}..{})",
                    u64::from(first) + u64::from(count)
                )));
            }
            nix::unistd::write(&wr, b"1").map_err(io::Error::from)?;
            println!("{child}");
            io::stdout().flush()?;
            Ok(0)
        }
    }
}

/// PID 1 of the context: orphans are reparented to it and, with SIGCHLD
/// ignored, the kernel reaps them. It becomes the context's root (nobody
/// on the host) with no capability at all. Signals from inside the
/// namespace cannot reach it; `cgroup.kill` ends it and with it the
/// namespaces (and every IPC object of the context's guests).
fn pid1() -> ! {
    // Plain system calls on no shared data, their errors ignored; nothing
    // allocates (this is the child of a clone).
    let root = (Uid::from_raw(0), Gid::from_raw(0));
    let _ = nix::unistd::setgroups(&[]);
    let _ = nix::unistd::setresgid(root.1, root.1, root.1);
    let _ = nix::unistd::setresuid(root.0, root.0, root.0);
    let _ = caps::set(&[]);
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir(c"/");
    let _ = sys::close_from(0);
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = crate::kernel::signals::set_disposition(
        Signal::SIGCHLD,
        crate::kernel::signals::Disposition::Ignore,
    );
    loop {
        nix::unistd::pause();
    }
}
