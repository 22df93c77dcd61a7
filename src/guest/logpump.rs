//! The declared guest's output log, capped (`limits.log`, docs/fences.md):
//! the guest's stdout and stderr are a pipe that `netctx guest-log CTX
//! BYTES` (started by `start`, detached, outside the context) copies to
//! `/run/netctx/guests/CTX.log`; a write that would take it past BYTES
//! moves it to `CTX.log.1` first (replacing the older one), so at most
//! twice BYTES are kept. The pump ends when every holder of the pipe (the
//! guest and whatever it left behind) has closed it: at `stop` and `down`
//! at the latest. `down` removes both files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{guest_dir, log_file, start_time, write_private};

/// The older half of the log.
pub fn old_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.log.1"))
}

/// The pump's pid and start time.
fn pump_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.logger"))
}

fn open_log(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
}

/// Start the pump for `ctx`'s guest: the pipe's write end, for the
/// guest's stdout and stderr. The caller holds the netctx lock.
pub fn start(ctx: &str, cap: u64) -> anyhow::Result<OwnedFd> {
    // The log must be openable before anything is started.
    drop(open_log(&log_file(ctx)).with_context(|| format!("opening {}", log_file(ctx).display()))?);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making a pipe")?;
    let exe = std::env::current_exe().context("finding the netctx binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["guest-log", ctx, &cap.to_string()])
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    // Not waited for: it outlives netctx.
    let child = cmd.spawn().context("starting the log pump")?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    if let Some((t, _)) = start_time(pid) {
        write_private(&pump_file(ctx), &format!("{pid} {t}\n"))
            .with_context(|| format!("writing {}", pump_file(ctx).display()))?;
    }
    Ok(w)
}

/// `netctx guest-log CTX BYTES`: copy stdin into the log until it ends.
pub fn main(ctx: &str, cap: u64) -> anyhow::Result<u8> {
    let (path, old) = (log_file(ctx), old_file(ctx));
    let cap = cap.max(1);
    let mut f = open_log(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut size = f.metadata().map_or(0, |m| m.len());
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin = io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the guest's output"),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if size >= cap {
                std::fs::rename(&path, &old)
                    .with_context(|| format!("moving {} to {}", path.display(), old.display()))?;
                f = open_log(&path).with_context(|| format!("opening {}", path.display()))?;
                size = 0;
            }
            let k = usize::try_from(cap - size).map_or(rest.len(), |room| room.min(rest.len()));
            f.write_all(&rest[..k])
                .with_context(|| format!("writing {}", path.display()))?;
            size += k as u64;
            rest = &rest[k..];
        }
    }
}

/// `down`: the pump gone (it ends once the guests are: waited for up to
/// two seconds, then killed), then the log, its older half and the pump's
/// file removed. Problems are warnings.
pub fn remove(ctx: &str) -> Vec<String> {
    let mut warn = Vec::new();
    if let Some((pid, started)) = std::fs::read_to_string(pump_file(ctx)).ok().and_then(|s| {
        let mut it = s.split_whitespace();
        Some((
            it.next()?.parse::<i32>().ok()?,
            it.next()?.parse::<u64>().ok()?,
        ))
    }) {
        let alive = || matches!(start_time(pid), Some((t, st)) if t == started && st != 'Z');
        let t = Instant::now();
        while alive() && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for p in [log_file(ctx), old_file(ctx), pump_file(ctx)] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != io::ErrorKind::NotFound {
                warn.push(format!("removing {}: {e}", p.display()));
            }
        }
    }
    warn
}
