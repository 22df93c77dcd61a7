//! Carrying out a plan: the only place that changes the kernel for a context.
//! The plan's actions become phased steps (`steps`, pure); requests are
//! batched per namespace and phase; every request that succeeded leaves its
//! inverse in a journal (`journal`), and a failure replays the journal
//! backwards so the context is as it was (a new context is removed whole).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub mod announce;
pub mod crash;
pub mod dns;
mod error;
pub mod firewall;
mod journal;
mod kernel;
pub mod routed;
mod rules;
pub mod shared;
mod steps;
pub mod teardown;
#[cfg(test)]
mod tests;
pub mod uplink;

pub use error::CtxError;
pub use rules::host_rules;

use self::journal::{rollback, run, undo_new, Undo};
use self::kernel::{Kernel, Sockets};
use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::netns;
use crate::kernel::nft::sock::Nft;
use crate::kernel::profile;
use crate::kernel::sysctl;
use crate::model::Context;
use crate::observe::links::NsState;
use crate::observe::owner::{self, NsOwner};
use crate::plan::sysctls;
use crate::plan::{plan, Action, Observed, Side};

/// What `converge` did or would do.
#[derive(Debug)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Who owned the namespace before.
    pub owner: NsOwner,
}

/// The host's sockets of one worker, opened in the host's namespace.
pub struct Host {
    pub rtnl: Rtnl,
    pub nft: Nft,
}

impl Host {
    pub fn open() -> io::Result<Host> {
        Ok(Host {
            rtnl: Rtnl::open()?,
            nft: Nft::open()?,
        })
    }
}

pub use crate::observe::host::{HostView, Seen};

impl HostView {
    /// `ctxs`: the contexts whose host-side switches are wanted.
    pub fn read(host: &mut Host, ctxs: &[&Context]) -> Result<HostView, NlError> {
        let mut paths: Vec<String> = ctxs
            .iter()
            .flat_map(|c| sysctls::host_wanted(c))
            .map(|(p, _)| p)
            .collect();
        let mut uplink: Vec<String> = ctxs
            .iter()
            .flat_map(|c| crate::plan::uplink::observed_paths(c))
            .collect();
        uplink.push(crate::plan::uplink::FORCE_FORWARDING_PROBE.to_string());
        uplink.sort();
        uplink.dedup();
        paths.extend(uplink);
        // Proxy entries and host routes matter to routed contexts,
        // point-to-point links and announced addresses — and to a context
        // that announced them and no longer does: always read.
        let routed = true;
        HostView::read_from(&mut host.rtnl, &mut host.nft, &paths, routed)
    }
}

/// Sockets inside the calling thread's namespace.
fn open_here(name: &str) -> Result<(Rtnl, Nft), CtxError> {
    let rtnl = Rtnl::open().map_err(|e| CtxError::ns(name, e))?;
    let nft = Nft::open().map_err(|e| CtxError::ns(name, e))?;
    Ok((rtnl, nft))
}

/// What `converge_with` does with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the plan is returned.
    Dry,
    /// Apply it all, or roll back.
    Apply,
    /// Apply it but the host's chains, which the caller sends for every
    /// context in one transaction (`host_rules`).
    DeferHostRules,
}

/// Observe one context and plan it against the host's `view`. With `dry`,
/// nothing is changed and the plan is returned; otherwise the plan is
/// applied, or rolled back on failure.
pub fn converge(
    ctx: &Context,
    view: &HostView,
    host: &mut Host,
    dry: bool,
) -> Result<Outcome, CtxError> {
    let mode = if dry { Mode::Dry } else { Mode::Apply };
    converge_with(ctx, view, host, mode)
}

/// `converge`, with the host's chains applied now or left to the caller.
pub fn converge_with(
    ctx: &Context,
    view: &HostView,
    host: &mut Host,
    mode: Mode,
) -> Result<Outcome, CtxError> {
    converge_seen(ctx, observe(ctx)?, view, host, mode)
}

/// Look at one context's namespace (nothing of the host's): what `plan`
/// compares with the configuration.
pub fn observe(ctx: &Context) -> Result<Seen, CtxError> {
    use crate::observe::host::LookError;
    let paths = sysctls::observed_paths(ctx);
    crate::observe::host::look(&ctx.name, &ctx.netns, &paths).map_err(|e| match e {
        LookError::Namespace(e) => CtxError::ns(&ctx.name, e),
        LookError::Kernel(e) => CtxError::kernel("reading the namespace", e),
    })
}

/// Plan one context from what `observe` saw and the host's `view`; unless
/// `mode` is `Dry`, apply the plan (or roll it back). Changes go into the
/// very namespace that was looked at: one mounted at the name since is
/// refused.
pub fn converge_seen(
    ctx: &Context,
    seen: Seen,
    view: &HostView,
    host: &mut Host,
    mode: Mode,
) -> Result<Outcome, CtxError> {
    let dry = mode == Mode::Dry;
    let defer = mode == Mode::DeferHostRules;
    let name = &ctx.name;
    let owner = seen.owner;
    let observed = |ns| Observed {
        owner,
        ns,
        host: &view.links,
        host_nft: &view.nft,
        host_sysctls: &view.sysctls,
        host_routed: &view.routed,
    };
    if seen.inode.is_some() || seen.file.is_some() {
        let actions = profile::time(profile::OBSERVE + 5, || plan(ctx, &observed(seen.ns)))?;
        if dry || actions.is_empty() {
            return Ok(Outcome { actions, owner });
        }
        let file = match (seen.file, seen.inode) {
            (Some(f), _) => f,
            (None, inode) => {
                let file = netns::open(name).map_err(|e| CtxError::ns(name, e))?;
                if Some(file.metadata().map_err(|e| CtxError::ns(name, e))?.ino()) != inode {
                    return Err(CtxError::ns(
                        name,
                        std::io::Error::other(
                            "another namespace was mounted at its name meanwhile",
                        ),
                    ));
                }
                file
            }
        };
        let outcome = netns::run_in(&file, || -> Result<Outcome, CtxError> {
            let (ns_nl, ns_nft) = open_here(name)?;
            let mut k = Sockets {
                host,
                ns: ns_nl,
                ns_nft,
            };
            let mut journal = Vec::new();
            if let Err(e) = apply(ctx, &actions, &file, &mut k, &mut journal, defer) {
                return Err(rollback(&mut k, journal, e));
            }
            Ok(Outcome { actions, owner })
        })
        .map_err(|e| CtxError::ns(name, e))?;
        return outcome.and_then(|o| host_sysctls(&o.actions).map(|()| o));
    }
    let actions = plan(ctx, &observed(NsState::default()))?;
    if !dry {
        create(ctx, &actions, host, defer)?;
    }
    Ok(Outcome { actions, owner })
}

/// Make a new context's namespace and apply `actions` inside it; on failure
/// nothing of it is left.
fn create(ctx: &Context, actions: &[Action], host: &mut Host, defer: bool) -> Result<(), CtxError> {
    let name = &ctx.name;
    if actions.contains(&Action::RemoveNsFile) {
        netns::remove(name).map_err(|e| CtxError::ns(name, e))?;
    }
    let started = std::time::Instant::now();
    let mut inner = std::time::Duration::ZERO;
    let claim = |inode| {
        owner::mark(name, inode)?;
        crash::point("marker written, namespace not mounted yet");
        Ok(())
    };
    let made = netns::create_and_run(name, claim, |file| -> Result<(), CtxError> {
        let t = std::time::Instant::now();
        crash::point("namespace made, not configured");
        // Before any link exists: the hardening switches of "all",
        // "default" (which new links inherit) and lo.
        for (path, value) in sysctls::creation() {
            sysctl::write(&path, &value).map_err(|source| CtxError::Sysctl {
                path: format!("{} = {value}", path.replace('/', ".")),
                source,
            })?;
        }
        let (ns, ns_nft) = open_here(name)?;
        let mut k = Sockets { host, ns, ns_nft };
        let mut journal = Vec::new();
        let r = apply(ctx, actions, file, &mut k, &mut journal, defer);
        inner = t.elapsed();
        r.map_err(|e| undo_new(&mut k, journal, e))
    });
    profile::add(0, started.elapsed().saturating_sub(inner));
    let r = made
        .unwrap_or_else(|e| Err(CtxError::ns(name, e)))
        .and_then(|()| host_sysctls(actions));
    if r.is_err() {
        // Best effort: the namespace and its marker go with the context; an
        // error here leaves the marker, which a later `down` removes.
        let _ = netns::remove(name).and_then(|()| owner::unmark(name));
    }
    r
}

/// Apply `actions` to the context whose namespace is `ns_file`; the calling
/// thread is inside that namespace. Phases: links, sysctls, addresses and
/// routes, rules.
fn apply(
    ctx: &Context,
    actions: &[Action],
    ns_file: &File,
    k: &mut impl Kernel,
    journal: &mut Vec<Undo>,
    defer_host_rules: bool,
) -> Result<(), CtxError> {
    let (deletions, creations) = steps::links(ctx, actions, ns_file.as_raw_fd());
    profile::time(1, || run(k, deletions, journal))?;
    // Deleted host links must let go of their names before new ones come.
    for a in actions {
        if let Action::DeleteLink {
            side: Side::Host,
            name,
        } = a
        {
            wait_gone(|| Ok(k.host_link(name)?.is_some()), name)?;
        }
    }
    profile::time(1, || run(k, creations, journal))?;
    let index = link_indexes(actions, k)?;
    // Switches before links come up (router advertisements), forwarding.
    sysctls(actions, k, journal)?;
    let steps = steps::addresses_and_routes(ctx, actions, &index)?;
    profile::time(2, || run(k, steps, journal))?;
    rules::rules_phase(ctx, actions, k, defer_host_rules)?;
    qdiscs(actions, k)
}

/// The rate of each end of the context's veths (`limits.bandwidth`): last,
/// once its links are there. A kernel without the `tbf` qdisc refuses it
/// here, naming the link.
fn qdiscs(actions: &[Action], k: &mut impl Kernel) -> Result<(), CtxError> {
    use crate::kernel::tc;
    let mut inside = None;
    for a in actions {
        let Action::Qdisc {
            side,
            link,
            bandwidth,
        } = a
        else {
            continue;
        };
        let what = format!(
            "the rate limit (tbf qdisc) of {}",
            steps::link_what(*side, link)
        );
        let index = match side {
            Side::Host => k.host_link(link),
            Side::Ctx => {
                if inside.is_none() {
                    inside = Some(
                        k.ns_links()
                            .map_err(|e| CtxError::kernel("reading links", e))?,
                    );
                }
                let found = inside.iter().flatten().find(|(n, _)| n == link);
                Ok(found.map(|(_, i)| *i))
            }
        }
        .map_err(|e| CtxError::kernel(&what, e))?
        .ok_or_else(|| CtxError::Vanished(link.clone()))?;
        let req = match bandwidth {
            Some(b) => tc::replace(index, tc::Tbf::for_bits(*b)),
            None => tc::delete(index),
        };
        let r = k.exec(*side, vec![req]).pop().unwrap_or(Ok(()));
        match r {
            // Gone already: what removing wanted.
            Err(e) if bandwidth.is_none() && e.errno == libc::ENOENT => {}
            r => r.map_err(|e| CtxError::kernel(&what, e))?,
        }
    }
    Ok(())
}

/// The ifindexes that addresses go on: every link inside, and the host links
/// addressed.
fn link_indexes(
    actions: &[Action],
    k: &mut impl Kernel,
) -> Result<HashMap<(Side, String), u32>, CtxError> {
    let mut index = HashMap::new();
    for (name, i) in k
        .ns_links()
        .map_err(|e| CtxError::kernel("reading links", e))?
    {
        index.insert((Side::Ctx, name), i);
    }
    for link in steps::host_links_addressed(actions) {
        let i = k
            .host_link(link)
            .map_err(|e| CtxError::kernel(&steps::link_what(Side::Host, link), e))?
            .ok_or_else(|| CtxError::Vanished(link.to_string()))?;
        index.insert((Side::Host, link.to_string()), i);
    }
    Ok(index)
}

fn sysctls(
    actions: &[Action],
    k: &mut impl Kernel,
    journal: &mut Vec<Undo>,
) -> Result<(), CtxError> {
    for a in actions {
        if let Action::Sysctl { path, value } = a {
            let old = k.read_sysctl(path);
            profile::time(3, || k.write_sysctl(path, value)).map_err(|source| {
                CtxError::Sysctl {
                    path: format!("{} = {value}", path.replace('/', ".")),
                    source,
                }
            })?;
            journal.extend(old.map(|old| Undo::Sysctl {
                path: path.clone(),
                old,
            }));
            crash::point("a sysctl written");
        }
    }
    Ok(())
}

/// The host-side switches of the context's veths, written on the worker's
/// thread (in the host's namespace) once the namespace work is done.
fn host_sysctls(actions: &[Action]) -> Result<(), CtxError> {
    for a in actions {
        if let Action::HostSysctl { path, value } = a {
            sysctl::write(path, value).map_err(|source| CtxError::Sysctl {
                path: format!("host {} = {value}", path.replace('/', ".")),
                source,
            })?;
        }
    }
    Ok(())
}

/// Wait until no link is called `name` any more: a link the kernel is
/// destroying (its namespace was removed a moment ago) holds its name for up
/// to a few hundred milliseconds.
/// `exists` says whether a link of that name is there.
pub fn wait_gone(
    mut exists: impl FnMut() -> Result<bool, NlError>,
    name: &str,
) -> Result<(), CtxError> {
    for _ in 0..250 {
        match exists() {
            Ok(false) => return Ok(()),
            Ok(true) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(CtxError::kernel(&steps::link_what(Side::Host, name), e)),
        }
    }
    Err(CtxError::StillThere(name.to_string()))
}
