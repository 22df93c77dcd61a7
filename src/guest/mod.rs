//! Processes inside a context: `exec` (foreground) and the declared guest
//! (`start`/`stop`, detached, tracked by a pid file). A process is confined
//! between fork and exec: the context's network namespace, a fresh UTS
//! namespace with the context's hostname, a mount namespace with the
//! context's /sys, and — unless privileged — no CAP_NET_ADMIN, CAP_NET_RAW or
//! CAP_SYS_ADMIN in any set, plus no_new_privs.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::kernel::RUN_DIR;

/// Capabilities a guest must not have: they would let it change its
/// addresses, routes or firewall, forge packets, or leave its namespace.
pub const DROPPED_CAPS: [u32; 3] = [
    12, // CAP_NET_ADMIN
    13, // CAP_NET_RAW
    21, // CAP_SYS_ADMIN
];

/// How to confine a process.
pub struct Jail {
    pub netns: File,
    pub hostname: String,
    pub privileged: bool,
    pub user: Option<User>,
}

pub fn lookup_user(name: &str) -> io::Result<User> {
    User::from_name(name)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::other(format!("no user {name:?}")))
}

fn os(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Remove `caps` from the ambient, effective, permitted and inheritable
/// sets of the calling thread (the bounding set is done before any change
/// of user, while CAP_SETPCAP is still there).
fn drop_caps(caps: &[u32]) -> io::Result<()> {
    for &c in caps {
        // SAFETY: prctl with integer arguments only; lowering an ambient
        // capability never fails for a valid capability number.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_LOWER,
                c as libc::c_ulong,
                0,
                0,
            )
        };
    }
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData records for version 3 headers; both
    // pointers are valid for the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &c in caps {
        let (word, bit) = ((c / 32) as usize, 1u32 << (c % 32));
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
        data[word].inheritable &= !bit;
    }
    // SAFETY: as for capget; capset reads the two records.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs in the child between fork and exec.
fn confine(j: &Jail, host: &CString, groups: &[Gid], session: bool) -> io::Result<()> {
    // SAFETY: restoring default dispositions the parent ignores while it waits.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGQUIT, libc::SIG_DFL);
    }
    if session {
        nix::unistd::setsid().map_err(os)?;
    }
    setns(j.netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(os)?;
    unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS).map_err(os)?;
    nix::unistd::sethostname(host.to_str().unwrap_or_default()).map_err(os)?;
    // The context's own /sys (so /sys/class/net shows its links), as
    // `ip netns exec` does; mounts do not propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(os)?;
    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
        let _ = mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        );
    }
    if !j.privileged {
        // The bounding set needs CAP_SETPCAP: drop before changing user.
        for &c in &DROPPED_CAPS {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    if let Some(u) = &j.user {
        nix::unistd::setgroups(groups).map_err(os)?;
        nix::unistd::setgid(u.gid).map_err(os)?;
        nix::unistd::setuid(u.uid).map_err(os)?;
    }
    if !j.privileged {
        drop_caps(&DROPPED_CAPS)?;
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn command(j: Jail, argv: &[String], session: bool) -> io::Result<Command> {
    let host = CString::new(j.hostname.clone()).map_err(io::Error::other)?;
    let groups = match &j.user {
        Some(u) => {
            let name = CString::new(u.name.clone()).map_err(io::Error::other)?;
            nix::unistd::getgrouplist(&name, u.gid).map_err(os)?
        }
        None => Vec::new(),
    };
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    if let Some(u) = &j.user {
        c.env("HOME", &u.dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
        if Uid::current() != u.uid {
            // The user's home if it exists (nobody's does not), else /.
            c.current_dir(if u.dir.is_dir() {
                u.dir.as_path()
            } else {
                Path::new("/")
            });
        }
    }
    // SAFETY: `confine` only makes system calls (setns, unshare, mount,
    // prctl, capset, set*id) on data prepared before the fork.
    unsafe {
        c.pre_exec(move || confine(&j, &host, &groups, session));
    }
    Ok(c)
}

/// Exit status as a shell reports it: the code, or 128 + signal.
pub fn exit_code(s: ExitStatus) -> u8 {
    match (s.code(), s.signal()) {
        // A status is 0..=255; a signal number is below 128.
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => 128u8.wrapping_add(u8::try_from(sig & 0x7f).unwrap_or(0)),
        _ => 1,
    }
}

/// Run `argv` in the jail in the foreground; its exit status.
pub fn exec(j: Jail, argv: &[String]) -> io::Result<ExitStatus> {
    let mut c = command(j, argv, false)?;
    // While the command runs, a terminal's ^C is for it, not for us.
    // SAFETY: changing signal dispositions of this single-purpose process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    c.status()
}

fn guest_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("guests")
}

pub fn pid_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.pid"))
}

pub fn log_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.log"))
}

/// Start time of a process in clock ticks since boot (field 22 of stat),
/// which with the pid identifies it even after pid reuse.
fn start_time(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

/// The guest netctx started for a context, if any: its pid and whether it
/// still runs (the pid names a live process with the recorded start time).
pub fn recorded(ctx: &str) -> Option<(i32, bool)> {
    let s = std::fs::read_to_string(pid_file(ctx)).ok()?;
    let mut it = s.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    let alive =
        matches!(start_time(pid), Some((t, state)) if t == started && state != 'Z' && state != 'X');
    Some((pid, alive))
}

/// The running guest of a context: its pid.
pub fn running(ctx: &str) -> Option<i32> {
    recorded(ctx).filter(|g| g.1).map(|g| g.0)
}

/// Start the guest detached, in its own session, output to its log file.
pub fn start(ctx: &str, j: Jail, argv: &[String]) -> io::Result<i32> {
    std::fs::create_dir_all(guest_dir())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file(ctx))?;
    let mut c = command(j, argv, true)?;
    c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let child = c.spawn()?;
    let pid = child.id() as i32;
    let (t, _) = start_time(pid).ok_or_else(|| io::Error::other("guest exited at once"))?;
    let tmp = guest_dir().join(format!(".{ctx}.pid"));
    std::fs::write(&tmp, format!("{pid} {t}\n"))?;
    std::fs::rename(tmp, pid_file(ctx))?;
    // Not waited for: it outlives netctx and is reaped by init.
    drop(child);
    Ok(pid)
}

/// Stop the guest: SIGTERM to its process group, then SIGKILL after
/// `grace`. Returns the pid stopped, or None if none was running.
pub fn stop(ctx: &str, grace: Duration) -> io::Result<Option<i32>> {
    let Some(pid) = running(ctx) else {
        let _ = std::fs::remove_file(pid_file(ctx));
        return Ok(None);
    };
    let group = Pid::from_raw(-pid);
    let _ = kill(group, Signal::SIGTERM);
    let gone = |limit: Duration| {
        let t = Instant::now();
        while t.elapsed() < limit {
            if running(ctx) != Some(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        running(ctx) != Some(pid)
    };
    if !gone(grace) {
        let _ = kill(group, Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if !gone(Duration::from_secs(5)) {
            return Err(io::Error::other(format!(
                "guest pid {pid} survived SIGKILL"
            )));
        }
    }
    let _ = std::fs::remove_file(pid_file(ctx));
    Ok(Some(pid))
}

/// The network namespace inode of a process.
pub fn netns_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}
