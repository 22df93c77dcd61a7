//! A context's fences on its guests (docs/fences.md): the cgroup v2 `pids`
//! and `memory` controllers of its group `netctx/CTX` where the host hands
//! them to netctx, else the guests' RLIMIT_NPROC (counted per user id, and
//! a context's ids are its own: per context); and what cannot be enforced
//! here, said, never silently skipped.

use std::path::Path;

use super::cgroup;
use crate::model::{Context, Limits};

/// The cgroup v2 controllers netctx's groups can have here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    pub pids: bool,
    pub memory: bool,
}

impl Host {
    /// What `netctx/` has (its `cgroup.controllers`), or before it exists
    /// what the mount's root hands down (its `cgroup.subtree_control`).
    /// netctx never enables a controller above its own group.
    pub fn read() -> Host {
        let Ok(m) = cgroup::mount_point() else {
            return Host::default();
        };
        let list = std::fs::read_to_string(m.join("netctx/cgroup.controllers"))
            .or_else(|_| std::fs::read_to_string(m.join("cgroup.subtree_control")))
            .unwrap_or_default();
        let has = |c: &str| list.split_whitespace().any(|w| w == c);
        Host {
            pids: has("pids"),
            memory: has("memory"),
        }
    }
}

/// The fences of `l` this host cannot enforce as designed, each as
/// `status` shows it (empty: all are).
pub fn notes(l: &Limits, h: Host) -> Vec<String> {
    let mut out = Vec::new();
    if !h.pids {
        out.push("processes by rlimit".to_string());
    }
    if l.memory.is_some() && !h.memory {
        out.push("memory not enforced (no cgroup v2 memory controller)".to_string());
    }
    // bandwidth, connections and new_connections are the network's
    // (plan::fences): a qdisc or nft object the kernel refuses fails `up`
    // naming it, never a quiet skip; nothing to say here.
    out
}

/// `limits: …` for a context whose fences matter (it declares a guest or
/// limits, or a guest ran: `ran`) and are not all enforced as designed.
pub fn line(ctx: &Context, h: Host, ran: bool) -> Option<String> {
    let matters = ran || ctx.guest.is_some() || ctx.limits != Limits::default();
    let n = notes(&ctx.limits, h);
    (matters && !n.is_empty()).then(|| format!("limits: {}", n.join(", ")))
}

fn write(p: &Path, v: &str) -> anyhow::Result<()> {
    std::fs::write(p, v).map_err(|e| anyhow::anyhow!("writing {v:?} to {}: {e}", p.display()))
}

/// Set the context's group `cg` to its limits: `pids.max` and
/// `memory.max` where the controllers are there, else every process of
/// the group gets the RLIMIT_NPROC a new guest gets (so `up` changes the
/// limit of running guests too). What could not be set on running guests
/// (raising a hard limit needs CAP_SYS_RESOURCE) comes back as warnings.
pub fn apply(ctx: &Context, cg: &Path) -> anyhow::Result<Vec<String>> {
    let h = Host::read();
    let l = &ctx.limits;
    let mut warn = Vec::new();
    if let Some(parent) = cg.parent() {
        let want: Vec<&str> = [(h.pids, "+pids"), (h.memory, "+memory")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect();
        if !want.is_empty() {
            write(&parent.join("cgroup.subtree_control"), &want.join(" "))?;
        }
    }
    if h.pids {
        write(&cg.join("pids.max"), &l.processes.to_string())?;
    } else {
        let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        let mut refused = (0, None);
        // The context's init forks nothing: its limit does not matter.
        let init = super::init::running(&ctx.name);
        let pids = procs.lines().filter_map(|p| p.trim().parse::<i32>().ok());
        for pid in pids.filter(|p| Some(*p) != init) {
            match crate::kernel::sys::set_nproc(pid, nproc(l)) {
                // Gone meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => refused = (refused.0 + 1, Some(e)),
                Ok(()) => {}
            }
        }
        if let (n, Some(e)) = refused {
            warn.push(format!(
                "limits.processes {}: not set on {n} running process(es) ({e}); \
                 they keep their limit until they are restarted",
                l.processes
            ));
        }
    }
    if h.memory {
        let v = l.memory.map_or("max".to_string(), |m| m.to_string());
        write(&cg.join("memory.max"), &v)?;
    }
    Ok(warn)
}

/// The RLIMIT_NPROC guests get: `processes`, never above netctx's own
/// hard limit (raising that needs CAP_SYS_RESOURCE).
pub fn nproc(l: &Limits) -> u64 {
    crate::kernel::sys::nproc_hard().map_or(l.processes, |h| l.processes.min(h))
}

/// The soft RLIMIT_NPROC in a /proc/PID/limits text.
fn nproc_of(limits: &str) -> Option<u64> {
    let l = limits.lines().find(|l| l.starts_with("Max processes"))?;
    let soft = l
        .trim_start_matches("Max processes")
        .split_whitespace()
        .next()?;
    Some(if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().ok()?
    })
}

/// How the context's running guests differ from its limits (a change
/// `up` makes), for `status`: empty when they agree or nothing runs.
pub fn pending(ctx: &Context) -> Vec<String> {
    let Ok(cg) = cgroup::path(&ctx.name) else {
        return Vec::new();
    };
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    if procs.trim().is_empty() {
        return Vec::new();
    }
    let (h, l) = (Host::read(), &ctx.limits);
    let mut out = Vec::new();
    let file = |f: &str| {
        std::fs::read_to_string(cg.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    if h.pids {
        match file("pids.max") {
            Some(v) if v == l.processes.to_string() => {}
            v => out.push(format!(
                "needs: limits.processes {} (pids.max is {})",
                l.processes,
                v.as_deref().unwrap_or("unreadable")
            )),
        }
    } else {
        // The context's init forks nothing: its limit does not matter.
        let init = super::init::running(&ctx.name).map(|p| p.to_string());
        let off = procs
            .lines()
            .filter(|p| Some(p.trim()) != init.as_deref())
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{}/limits", p.trim())).ok())
            .filter_map(|t| nproc_of(&t))
            .filter(|n| *n != nproc(l))
            .count();
        if off > 0 {
            out.push(format!(
                "needs: limits.processes {} on {off} running process(es) (RLIMIT_NPROC)",
                l.processes
            ));
        }
    }
    if h.memory {
        let want = l.memory.map_or("max".to_string(), |m| m.to_string());
        match file("memory.max") {
            Some(v) if v == want => {}
            v => out.push(format!(
                "needs: limits.memory {want} (memory.max is {})",
                v.as_deref().unwrap_or("unreadable")
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_this_host_cannot_enforce_is_said() {
        let mut l = Limits::default();
        let none = Host::default();
        assert_eq!(notes(&l, none), ["processes by rlimit"]);
        let all = Host {
            pids: true,
            memory: true,
        };
        assert!(notes(&l, all).is_empty());
        l.memory = Some(1 << 30);
        assert_eq!(
            notes(&l, none).join(", "),
            "processes by rlimit, memory not enforced (no cgroup v2 memory controller)"
        );
        assert!(notes(&l, all).is_empty());
        // The network's fences are enforced (or fail `up`): never a note.
        l.bandwidth = Some(20_000_000);
        l.connections = Some(10);
        l.new_connections = Some((5, crate::model::Per::Second));
        assert!(notes(&l, all).is_empty());
    }

    #[test]
    fn the_process_limit_is_read_from_proc_limits() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max cpu time              unlimited            unlimited            seconds   \n\
                 Max processes             24                   24                   processes \n";
        assert_eq!(nproc_of(t), Some(24));
        let t = "Max processes             unlimited            unlimited            processes \n";
        assert_eq!(nproc_of(t), Some(u64::MAX));
        assert_eq!(nproc_of("Max open files 1024 1024 files\n"), None);
    }
}
