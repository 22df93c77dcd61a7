//! The jail: the process that becomes a guest. netctx clones it inside the
//! context's PID namespace and cgroup (`spawn::jail`), with the `Spec` and
//! the context's user and IPC namespaces as descriptors 3 and 4; it
//! confines itself in a fixed order — network namespace; the
//! sysfs of that namespace (only host root can make it); the context's
//! user namespace, as its root (nobody on the host: from here on nothing
//! it does is checked against host root's powers); the context's IPC
//! namespace; new mount/UTS/cgroup namespaces, owned by the user
//! namespace; the filesystem, by descriptor, and pivot_root; session and
//! terminal; the guest's user and capabilities; no_new_privs; descriptors;
//! seccomp — and execs the command with exactly the environment the spec
//! holds. `--privileged` skips the user namespace and the filesystem.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};

use super::{caps, cgroup, fs, seccomp};
use crate::kernel;

#[derive(Debug, Clone)]
pub struct Spec {
    pub ctx: String,
    pub netns: PathBuf,
    pub netns_inode: u64,
    pub hostname: String,
    pub cgroup: PathBuf,
    pub privileged: bool,
    pub root: Option<PathBuf>,
    pub writable: Vec<PathBuf>,
    /// Paths to hide (netctx's configuration).
    pub masks: Vec<PathBuf>,
    /// Guest ids, inside the context's user namespace.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The context's range: guest id u is host id `id_first` + u.
    pub id_first: u32,
    pub id_count: u32,
    /// Capabilities kept (root guests only).
    pub caps: Vec<u32>,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Bytes of each private tmpfs (/tmp, /var/tmp, /run, /dev/shm).
    pub tmp: u64,
    /// RLIMIT_NPROC for the guest, where no cgroup pids controller caps
    /// the context's tasks.
    pub nproc: Option<u64>,
    /// One of 0, 1, 2 is a pseudo-terminal of the guest's own (this path on
    /// the host): make it the controlling terminal and /dev/console.
    pub tty: Option<PathBuf>,
    /// netctx's resolver, when the context's `reach` names domains: the
    /// guest's only name servers.
    pub resolver: Vec<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("network namespace {}", .path.display())]
    Netns { path: PathBuf, source: io::Error },
    #[error("{step}")]
    Sys {
        step: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    Fs(#[from] fs::FsError),
    #[error("running {program:?}")]
    Exec { program: String, source: io::Error },
}

fn sys<T, E: Into<io::Error>>(r: Result<T, E>, step: &'static str) -> Result<T, JailError> {
    r.map_err(|e| JailError::Sys {
        step,
        source: e.into(),
    })
}

/// Confine this process (the child `spawn::jail` started) as the spec
/// says and exec its command; returns only on failure, with the cause.
pub fn run(s: &Spec) -> anyhow::Error {
    let err = match confine(s) {
        Ok(prog) => exec(s, prog),
        Err(e) => e,
    };
    anyhow::Error::new(err).context(format!("context {}", s.ctx))
}

/// The descriptors `launch` passes: the context's user and IPC namespaces.
const USER_NS_FD: RawFd = 3;
const IPC_NS_FD: RawFd = 4;

fn netns(s: &Spec) -> Result<(), JailError> {
    let ns_err = |e: io::Error| JailError::Netns {
        path: s.netns.clone(),
        source: e,
    };
    let f = std::fs::File::open(&s.netns).map_err(ns_err)?;
    if f.metadata().map_err(ns_err)?.ino() != s.netns_inode {
        return Err(ns_err(io::Error::other(
            "it changed since netctx checked it",
        )));
    }
    sys(
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET),
        "entering the network namespace",
    )
}

/// Enter the context's user namespace and become its root: host id
/// `id_first`, every capability but only over the context's namespaces.
/// (setns of a user namespace needs a single-threaded process: this one
/// is.)
fn userns() -> Result<(), JailError> {
    // SAFETY: descriptors 3 and 4 were given by `launch`, and this is the
    // one place that takes them over.
    let (user, ipc) = unsafe {
        (
            OwnedFd::from_raw_fd(USER_NS_FD),
            OwnedFd::from_raw_fd(IPC_NS_FD),
        )
    };
    sys(
        setns(user.as_fd(), CloneFlags::CLONE_NEWUSER),
        "entering the context's user namespace",
    )?;
    sys(nix::unistd::setgroups(&[]), "clearing supplementary groups")?;
    let (g, u) = (nix::unistd::Gid::from(0), nix::unistd::Uid::from(0));
    sys(
        nix::unistd::setresgid(g, g, g),
        "becoming the context's root group",
    )?;
    sys(
        nix::unistd::setresuid(u, u, u),
        "becoming the context's root",
    )?;
    sys(
        setns(ipc.as_fd(), CloneFlags::CLONE_NEWIPC),
        "entering the context's IPC namespace",
    )
}

fn own_namespaces(s: &Spec) -> Result<(), JailError> {
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWCGROUP;
    sys(unshare(flags), "unsharing mount, UTS and cgroup namespaces")?;
    sys(
        nix::unistd::sethostname(&s.hostname),
        "setting the hostname",
    )
}

/// Everything up to exec; the program's path and C strings.
fn confine(s: &Spec) -> Result<Prepared, JailError> {
    // Its memory (a copy of netctx's, the caller's environment in it) is
    // host root's alone until the exec gives the command a fresh one: not
    // dumpable, so no id of the context may read or trace it, not even
    // while this process is still host root in the context's user namespace.
    sys(
        nix::sys::prctl::set_dumpable(false),
        "making the jail undumpable",
    )?;
    netns(s)?;
    if s.privileged {
        own_namespaces(s)?;
        fs::private()?;
        fs::privileged()?;
    } else {
        let host = fs::before_userns(s)?;
        userns()?;
        own_namespaces(s)?;
        fs::build(s, host)?;
    }
    if std::env::set_current_dir(&s.cwd).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    let prog = prepare(s)?;
    sys(nix::unistd::setsid(), "starting a session")?;
    if s.tty.is_some() {
        // The first of 0, 1, 2 that is a terminal is the guest's own pty
        // slave (netctx passes no other terminal).
        let fd = (0..3)
            .map(|fd| {
                // SAFETY: 0, 1 and 2 are open (netctx gave them).
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            })
            .find(|fd| nix::unistd::isatty(fd).unwrap_or(false));
        if let Some(fd) = fd {
            sys(kernel::sys::take_controlling_tty(fd), "taking the terminal")?;
        }
    }
    if !s.privileged {
        let keep = if s.uid == 0 {
            s.caps.clone()
        } else {
            Vec::new()
        };
        sys(caps::bound(&keep), "shrinking the capability bounding set")?;
        user(s)?;
        sys(caps::set(&keep), "setting capabilities")?;
    } else {
        user(s)?;
    }
    if let Some(n) = s.nproc {
        // Counted per user id of the context's own range: per context.
        sys(
            kernel::sys::set_nproc(0, n),
            "setting the process limit (RLIMIT_NPROC)",
        )?;
    }
    sys(nix::sys::prctl::set_no_new_privs(), "setting no_new_privs")?;
    // Every descriptor above stderr: none is in use here.
    sys(kernel::sys::close_from(3), "closing inherited descriptors")?;
    if !s.privileged {
        sys(
            seccomp::install(&prog.filter),
            "installing the seccomp filter",
        )?;
    }
    Ok(prog)
}

fn user(s: &Spec) -> Result<(), JailError> {
    if s.uid == 0 && s.gid == 0 && s.groups.is_empty() {
        return sys(nix::unistd::setgroups(&[]), "clearing supplementary groups");
    }
    let groups: Vec<nix::unistd::Gid> = s.groups.iter().map(|g| (*g).into()).collect();
    sys(
        nix::unistd::setgroups(&groups),
        "setting supplementary groups",
    )?;
    sys(nix::unistd::setgid(s.gid.into()), "setting the group")?;
    sys(nix::unistd::setuid(s.uid.into()), "setting the user")
}

struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    filter: Vec<seccomp::Insn>,
}

fn cstring(s: &str, program: &str) -> Result<CString, JailError> {
    CString::new(s).map_err(|e| JailError::Exec {
        program: program.into(),
        source: io::Error::other(e),
    })
}

/// Resolve the program on the guest's PATH and build exec's arguments
/// before anything is dropped (the seccomp filter is installed last).
fn prepare(s: &Spec) -> Result<Prepared, JailError> {
    let prog = &s.argv[0];
    let path_var = s
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    let found = if prog.contains('/') {
        PathBuf::from(prog)
    } else {
        path_var
            .split(':')
            .map(|d| PathBuf::from(d).join(prog))
            .find(|p| p.is_file())
            .ok_or_else(|| JailError::Exec {
                program: prog.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })?
    };
    Ok(Prepared {
        path: cstring(&found.to_string_lossy(), prog)?,
        argv: s
            .argv
            .iter()
            .map(|a| cstring(a, prog))
            .collect::<Result<_, _>>()?,
        envp: s
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}"), prog))
            .collect::<Result<_, _>>()?,
        filter: seccomp::program(),
    })
}

fn exec(s: &Spec, p: Prepared) -> JailError {
    let e = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    JailError::Exec {
        program: s.argv[0].clone(),
        source: e.into(),
    }
}
