//! VServer's bind restriction, enforced by the kernel: six cgroup
//! sock_addr programs on a context's cgroup (bind, connect and UDP sendmsg,
//! IPv4 and IPv6) refuse with EADDRNOTAVAIL an address that is not the
//! context's, and with `single_ip` turn the wildcard into the first address.
//!
//! Owns: the programs named `netctx_*` on the cgroups it is given and their
//! two maps; nothing else. Depends on no other netctx module. No pinning and
//! no state file: programs attached with BPF_PROG_ATTACH stay until detached
//! or the cgroup is removed, and netctx finds its own again by name through
//! BPF_PROG_QUERY and BPF_OBJ_GET_INFO_BY_FD (after a crash too). An address
//! change rewrites the maps; nothing is reloaded.
//!
//! # How the engine calls this (for the merge)
//!
//! - The cgroup is `netctx/CTX` under the cgroup2 mount, made by the guest
//!   sandbox; this module never creates or removes a cgroup.
//! - `start` / `exec` of a strict context: `ensure(cg, &assigned, single_ip)`
//!   once the cgroup exists and before the child writes its pid to
//!   `cgroup.procs`; the child joins before `execve`, so every socket it makes
//!   is the cgroup's. (`exec --privileged` joins the same cgroup and is
//!   restricted too, but keeps the capabilities to undo it.)
//! - `up` of a strict context whose cgroup exists: `ensure` again. With the
//!   programs there it only rewrites the maps (0.11 ms), so address and
//!   `single_ip` changes reach running guests without a reload; a non-empty
//!   `Status::attached` means hooks were missing (report it as repaired
//!   drift). Where no cgroup exists yet there is nothing to restrict: the
//!   first `ensure` costs 1.8 ms (six verifier runs), so doing it for every
//!   context at `up` would break the benchmark's 10 % budget.
//! - `isolation = "off"`: `detach(cg)` when the cgroup exists.
//! - `stop` / `down`: once the cgroup's processes are gone, removing the
//!   cgroup detaches and frees everything; call `detach` first only when
//!   the cgroup is kept. Rollback of a failed `start`/`up`: `detach`. Errors
//!   join the teardown's list; they never stop it.
//! - `audit` / `status`: `status(cg)` for each strict context with a cgroup:
//!   `!complete()` is a violation (exit 2, naming `missing`); `addresses`
//!   other than the assigned ones or another `single_ip` is drift.
//! - `addrs`: the context's assigned addresses in configuration order (the
//!   first of each family is `single_ip`'s), `Cidr::addr` of each; add the
//!   context's own link-local addresses if guests may bind them.

mod insn;
mod maps;
mod progs;
mod sys;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use self::insn::{AsmError, Insn};
use self::maps::{MapSet, Wanted};
use self::progs::MapFds;

/// One cgroup hook netctx attaches a program to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Bind4,
    Bind6,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
}

impl Hook {
    pub const ALL: [Hook; 6] = [
        Hook::Bind4,
        Hook::Bind6,
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
    ];

    /// `enum bpf_attach_type`.
    fn attach_type(self) -> u32 {
        match self {
            Hook::Bind4 => 8,     // BPF_CGROUP_INET4_BIND
            Hook::Bind6 => 9,     // BPF_CGROUP_INET6_BIND
            Hook::Connect4 => 10, // BPF_CGROUP_INET4_CONNECT
            Hook::Connect6 => 11, // BPF_CGROUP_INET6_CONNECT
            Hook::Sendmsg4 => 14, // BPF_CGROUP_UDP4_SENDMSG
            Hook::Sendmsg6 => 15, // BPF_CGROUP_UDP6_SENDMSG
        }
    }

    /// Short name, as in libbpf's section names `cgroup/NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Bind4 => "bind4",
            Hook::Bind6 => "bind6",
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
        }
    }

    /// The program's kernel name, by which netctx recognises its own.
    pub fn prog_name(self) -> &'static str {
        match self {
            Hook::Bind4 => "netctx_bind4",
            Hook::Bind6 => "netctx_bind6",
            Hook::Connect4 => "netctx_conn4",
            Hook::Connect6 => "netctx_conn6",
            Hook::Sendmsg4 => "netctx_send4",
            Hook::Sendmsg6 => "netctx_send6",
        }
    }

    fn generate(self, m: MapFds, idmap: Option<u16>) -> Result<Vec<Insn>, AsmError> {
        match self {
            Hook::Bind4 => progs::bind4(m, idmap),
            Hook::Bind6 => progs::bind6(m, idmap),
            Hook::Connect4 => progs::connect4(m),
            Hook::Connect6 => progs::connect6(m),
            Hook::Sendmsg4 => progs::sendmsg4(m),
            Hook::Sendmsg6 => progs::sendmsg6(m),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cgroup/{}", self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("failed to open cgroup {}", cgroup.display())]
    OpenCgroup { cgroup: PathBuf, source: io::Error },
    #[error("failed to query the {hook} programs of cgroup {}", cgroup.display())]
    Query {
        hook: Hook,
        cgroup: PathBuf,
        source: io::Error,
    },
    #[error("failed to inspect BPF {kind} id {id} on cgroup {}", cgroup.display())]
    Inspect {
        kind: &'static str,
        id: u32,
        cgroup: PathBuf,
        source: io::Error,
    },
    #[error("failed to create BPF map {name}")]
    CreateMap {
        name: &'static str,
        source: io::Error,
    },
    #[error("failed to write BPF map {name} (id {id})")]
    WriteMap {
        name: &'static str,
        id: u32,
        source: io::Error,
    },
    #[error("failed to read BPF map {name} (id {id})")]
    ReadMap {
        name: &'static str,
        id: u32,
        source: io::Error,
    },
    #[error("{count} addresses for cgroup {}: at most {max}", cgroup.display())]
    TooManyAddresses {
        cgroup: PathBuf,
        count: usize,
        max: u32,
    },
    #[error("failed to assemble the {hook} program")]
    Assemble { hook: Hook, source: AsmError },
    #[error("the kernel refused the {hook} program{}", verifier_log(log))]
    Load {
        hook: Hook,
        log: String,
        source: io::Error,
    },
    #[error("failed to attach the {hook} program to cgroup {}", cgroup.display())]
    Attach {
        hook: Hook,
        cgroup: PathBuf,
        source: io::Error,
    },
    #[error("failed to detach the {hook} program (id {id}) from cgroup {}", cgroup.display())]
    Detach {
        hook: Hook,
        id: u32,
        cgroup: PathBuf,
        source: io::Error,
    },
    #[error("{} error(s) detaching from cgroup {}: {}", errors.len(), cgroup.display(),
            errors.iter().map(|e| format!("{e}: {}", source_of(e))).collect::<Vec<_>>().join("; "))]
    Teardown {
        cgroup: PathBuf,
        errors: Vec<BpfError>,
    },
}

fn verifier_log(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; verifier log:\n{log}")
    }
}

fn source_of(e: &BpfError) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Hooks whose program was loaded and attached by this call.
    pub attached: Vec<Hook>,
    /// Map sets (of already-attached programs, or new) written.
    pub maps_written: usize,
    /// Surplus copies of a program that were detached.
    pub duplicates_removed: usize,
}

/// What [`status`] found on a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStatus {
    /// Hooks with netctx's program attached, and its program id.
    pub attached: Vec<(Hook, u32)>,
    pub missing: Vec<Hook>,
    /// The addresses in the map of the attached programs (sorted).
    pub addresses: Vec<IpAddr>,
    pub single_ip: bool,
}

impl HookStatus {
    /// All six hooks attached.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Attach the six programs to `cgroup` where missing (with `idmap`, the
/// bind hooks keep ports below 1024 for the root of that user-id range),
/// and set the maps of
/// every netctx program on it to exactly `addrs` and `single_ip`. The maps
/// are written before a new program is attached, so no program ever sees an
/// empty map. Idempotent; a second call only rewrites the maps.
pub fn ensure(
    cgroup: &Path,
    addrs: &[IpAddr],
    single_ip: bool,
    idmap: Option<u16>,
) -> Result<Status, BpfError> {
    let wanted = Wanted::new(addrs, single_ip);
    if wanted.keys.len() > maps::MAX_ADDRESSES as usize {
        return Err(BpfError::TooManyAddresses {
            cgroup: cgroup.into(),
            count: wanted.keys.len(),
            max: maps::MAX_ADDRESSES,
        });
    }
    let cg = open_cgroup(cgroup)?;
    let seen = maps::observe(&cg, cgroup)?;
    let sets = if seen.sets.is_empty() {
        vec![MapSet::create()?]
    } else {
        seen.sets
    };
    for set in &sets {
        set.write(&wanted)?;
    }
    let mut new: Vec<(Hook, OwnedFd)> = Vec::new();
    for hook in Hook::ALL {
        if seen.progs.iter().any(|p| p.hook == hook) {
            continue;
        }
        match load_attach(&cg, cgroup, hook, sets[0].fds(), idmap) {
            Ok(fd) => new.push((hook, fd)),
            Err(e) => {
                // Leave the cgroup as it was: detach what this call attached.
                for (h, fd) in &new {
                    let _ = sys::prog_detach(&cg, fd, h.attach_type());
                }
                return Err(e);
            }
        }
    }
    let mut duplicates_removed = 0;
    for (i, p) in seen.progs.iter().enumerate() {
        if seen.progs[..i].iter().any(|q| q.hook == p.hook) {
            sys::prog_detach(&cg, &p.fd, p.hook.attach_type()).map_err(|source| {
                BpfError::Detach {
                    hook: p.hook,
                    id: p.id,
                    cgroup: cgroup.into(),
                    source,
                }
            })?;
            duplicates_removed += 1;
        }
    }
    Ok(Status {
        attached: new.into_iter().map(|(h, _)| h).collect(),
        maps_written: sets.len(),
        duplicates_removed,
    })
}

/// Which of netctx's programs are attached to `cgroup`, and the addresses
/// and `single_ip` their maps hold (for `audit` and `status`).
pub fn status(cgroup: &Path) -> Result<HookStatus, BpfError> {
    let cg = open_cgroup(cgroup)?;
    let seen = maps::observe(&cg, cgroup)?;
    let mut attached: Vec<(Hook, u32)> = Vec::new();
    for p in &seen.progs {
        if !attached.iter().any(|(h, _)| *h == p.hook) {
            attached.push((p.hook, p.id));
        }
    }
    attached.sort();
    let missing = Hook::ALL
        .into_iter()
        .filter(|h| !attached.iter().any(|(a, _)| a == h))
        .collect();
    let (addresses, single_ip) = match seen.sets.first() {
        Some(set) => set.read()?,
        None => (Vec::new(), false),
    };
    Ok(HookStatus {
        attached,
        missing,
        addresses,
        single_ip,
    })
}

/// Detach every netctx program from `cgroup` (their maps go with the last
/// reference). Does not stop at the first error. Ok: the hooks detached.
pub fn detach(cgroup: &Path) -> Result<Vec<Hook>, BpfError> {
    detach_hooks(cgroup, &Hook::ALL)
}

/// [`detach`] for some hooks only (what a crash between two attaches
/// leaves, for the tests).
pub fn detach_hooks(cgroup: &Path, hooks: &[Hook]) -> Result<Vec<Hook>, BpfError> {
    let cg = open_cgroup(cgroup)?;
    let seen = maps::observe(&cg, cgroup)?;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for p in seen.progs.iter().filter(|p| hooks.contains(&p.hook)) {
        match sys::prog_detach(&cg, &p.fd, p.hook.attach_type()) {
            Ok(()) => done.push(p.hook),
            Err(source) => errors.push(BpfError::Detach {
                hook: p.hook,
                id: p.id,
                cgroup: cgroup.into(),
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(BpfError::Teardown {
            cgroup: cgroup.into(),
            errors,
        })
    }
}

fn open_cgroup(cgroup: &Path) -> Result<OwnedFd, BpfError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(cgroup)
        .map(OwnedFd::from)
        .map_err(|source| BpfError::OpenCgroup {
            cgroup: cgroup.into(),
            source,
        })
}

fn load_attach(
    cg: &OwnedFd,
    cgroup: &Path,
    hook: Hook,
    m: MapFds,
    idmap: Option<u16>,
) -> Result<OwnedFd, BpfError> {
    let insns = hook
        .generate(m, idmap)
        .map_err(|source| BpfError::Assemble { hook, source })?;
    let prog = sys::prog_load(&insns, hook.prog_name(), hook.attach_type()).map_err(|e| {
        BpfError::Load {
            hook,
            log: e.log,
            source: e.source,
        }
    })?;
    sys::prog_attach(cg, &prog, hook.attach_type()).map_err(|source| BpfError::Attach {
        hook,
        cgroup: cgroup.into(),
        source,
    })?;
    Ok(prog)
}
