//! Carrying out a plan: the only place that changes the kernel for a context.
//! Requests are batched per namespace and phase; every request that succeeded
//! leaves its inverse in a journal, and a failure replays the journal
//! backwards so the context is as it was (a new context is removed whole).

use std::collections::HashMap;
use std::fs::File;
use std::io;

use crate::crash;
use crate::model::Context;
use crate::msgs;
use crate::netns;
use crate::nft::observe::Live;
use crate::nft::ruleset;
use crate::nft::sock::Nft;
use crate::nl::{NlError, Request, Rtnl};
use crate::owner::{self, NsOwner};
use crate::plan::{plan, Action, Observed, Refusal, Side};
use crate::profile;
use crate::state::{self, alias_for, NsState, ObsLink};

/// Why a context could not be converged; shown after `context NAME: `.
#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{object}: {cause}")]
    Kernel { object: String, cause: String },
    #[error("namespace /run/netns/{name}: {source}")]
    Namespace { name: String, source: io::Error },
    #[error("{0}")]
    Other(String),
}

impl CtxError {
    fn kernel(object: &str, e: &NlError) -> CtxError {
        let cause = if e.errno == libc::EOPNOTSUPP && object.contains("(dummy)") {
            "this kernel cannot create dummy links (CONFIG_DUMMY)".to_string()
        } else {
            e.to_string()
        };
        CtxError::Kernel {
            object: object.replace(" (dummy)", ""),
            cause,
        }
    }
    fn ns(name: &str, source: io::Error) -> CtxError {
        CtxError::Namespace {
            name: name.to_string(),
            source,
        }
    }
}

/// What `converge` did or would do.
#[derive(Debug)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Who owned the namespace before.
    pub owner: NsOwner,
}

/// A kernel request with what it is about (for errors) and how to undo it.
struct Step {
    side: Side,
    req: Request,
    what: String,
    undo: Option<Request>,
    /// errno values that count as success (e.g. ENODEV when deleting).
    ok_errno: &'static [i32],
}

enum Undo {
    Nl(Side, Request),
    Sysctl(String, bool),
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

/// What the host has, read once per run: its links by name, its table.
pub struct HostView {
    pub links: HashMap<String, ObsLink>,
    pub nft: Live,
}

impl HostView {
    pub fn read(host: &mut Host) -> Result<HostView, NlError> {
        let links = state::read_links(&mut host.rtnl)?;
        Ok(HostView {
            links: links.into_iter().map(|l| (l.name.clone(), l)).collect(),
            nft: crate::nft::observe::read(&mut host.nft, &[])?,
        })
    }
}

struct Sockets<'a> {
    host: &'a mut Host,
    ns: Rtnl,
    ns_nft: Nft,
}

impl Sockets<'_> {
    fn get(&mut self, side: Side) -> &mut Rtnl {
        match side {
            Side::Host => &mut self.host.rtnl,
            Side::Ctx => &mut self.ns,
        }
    }
}

/// Sockets inside the calling thread's namespace.
fn open_here(name: &str) -> Result<(Rtnl, Nft), CtxError> {
    let rtnl = Rtnl::open().map_err(|e| CtxError::ns(name, e))?;
    let nft = Nft::open().map_err(|e| CtxError::ns(name, e))?;
    Ok((rtnl, nft))
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
    let name = &ctx.name;
    let owner = owner::ns_owner(name).map_err(|e| CtxError::ns(name, e))?;
    let observed = |ns| Observed {
        owner,
        ns,
        host: &view.links,
        host_nft: &view.nft,
    };
    if owner == NsOwner::Ours {
        let file = netns::open(name).map_err(|e| CtxError::ns(name, e))?;
        return netns::run_in(&file, || -> Result<Outcome, CtxError> {
            let (mut ns_nl, mut ns_nft) = open_here(name)?;
            let ns = profile::time(6, || state::read_ns(&mut ns_nl, &mut ns_nft))
                .map_err(|e| CtxError::kernel("reading the namespace", &e))?;
            let actions = plan(ctx, &observed(ns))?;
            if !dry && !actions.is_empty() {
                let mut socks = Sockets {
                    host,
                    ns: ns_nl,
                    ns_nft,
                };
                let mut journal = Vec::new();
                if let Err(e) = apply(ctx, &actions, &file, &mut socks, &mut journal) {
                    rollback(&mut socks, journal);
                    return Err(e);
                }
            }
            Ok(Outcome { actions, owner })
        })
        .map_err(|e| CtxError::ns(name, e))?;
    }

    let actions = plan(ctx, &observed(NsState::default()))?;
    if dry {
        return Ok(Outcome { actions, owner });
    }
    if actions.contains(&Action::RemoveNsFile) {
        netns::remove(name).map_err(|e| CtxError::ns(name, e))?;
    }
    owner::mark_intent(name).map_err(|e| CtxError::ns(name, e))?;
    crash::point("marker written, no namespace yet");
    let started = std::time::Instant::now();
    let mut inner = std::time::Duration::ZERO;
    let made = netns::create_and_run(name, |file| -> Result<(), CtxError> {
        let t = std::time::Instant::now();
        crash::point("namespace made, not configured");
        let inode = netns::current_inode().map_err(|e| CtxError::ns(name, e))?;
        owner::mark_made(name, inode).map_err(|e| CtxError::ns(name, e))?;
        // New links in here refuse router advertisements from the start.
        let _ = state::write_sysctl("net/ipv6/conf/default/accept_ra", false);
        // Guests ping through ICMP datagram sockets, whatever their group.
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
        let (ns, ns_nft) = open_here(name)?;
        let mut socks = Sockets { host, ns, ns_nft };
        let mut journal = Vec::new();
        let r = apply(ctx, &actions, file, &mut socks, &mut journal);
        inner = t.elapsed();
        if r.is_err() {
            // A new context leaves nothing: its host links go now, the rest
            // with the namespace.
            let dels: Vec<Request> = journal
                .into_iter()
                .filter_map(|u| match u {
                    Undo::Nl(Side::Host, req) => Some(req),
                    _ => None,
                })
                .collect();
            socks.host.rtnl.exec(dels);
        }
        r
    });
    profile::add(0, started.elapsed().saturating_sub(inner));
    let r = match made {
        Ok(r) => r,
        Err(e) => Err(CtxError::ns(name, e)),
    };
    if r.is_err() {
        let _ = netns::remove(name);
        let _ = owner::unmark(name);
    }
    r.map(|()| Outcome { actions, owner })
}

/// Run steps on their sockets in order (consecutive steps of one side go in
/// one batch); journal the undo of each success; stop at the first failure.
fn run(socks: &mut Sockets, steps: Vec<Step>, journal: &mut Vec<Undo>) -> Result<(), CtxError> {
    let mut steps = steps.into_iter().peekable();
    while let Some(first) = steps.next() {
        let side = first.side;
        let mut group = vec![first];
        while let Some(s) = steps.next_if(|s| s.side == side) {
            group.push(s);
        }
        let reqs = group.iter().map(|s| s.req.clone()).collect();
        let results = socks.get(side).exec(reqs);
        let mut failed = None;
        for (s, r) in group.into_iter().zip(results) {
            match r {
                Ok(()) => journal.extend(s.undo.map(|u| Undo::Nl(side, u))),
                Err(e) if s.ok_errno.contains(&e.errno) => {}
                Err(e) => {
                    failed.get_or_insert(CtxError::kernel(&s.what, &e));
                }
            }
        }
        crash::point("a batch of link, address or route requests done");
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

fn rollback(socks: &mut Sockets, journal: Vec<Undo>) {
    for u in journal.into_iter().rev() {
        match u {
            Undo::Nl(side, req) => {
                let _ = socks.get(side).exec(vec![req]);
            }
            Undo::Sysctl(path, old) => {
                let _ = state::write_sysctl(&path, old);
            }
        }
    }
}

fn link_what(side: Side, name: &str) -> String {
    match side {
        Side::Host => format!("host link {name}"),
        Side::Ctx => format!("link {name}"),
    }
}

/// Apply `actions` to the context whose namespace is `ns_file`; the calling
/// thread is inside that namespace.
fn apply(
    ctx: &Context,
    actions: &[Action],
    ns_file: &File,
    socks: &mut Sockets,
    journal: &mut Vec<Undo>,
) -> Result<(), CtxError> {
    // Phase 1: links disappear, then appear.
    let mut deletions = Vec::new();
    let mut creations = Vec::new();
    for a in actions {
        match a {
            Action::DeleteLink { side, name } => deletions.push(Step {
                side: *side,
                req: msgs::del_link(name),
                what: link_what(*side, name),
                undo: None,
                ok_errno: &[libc::ENODEV],
            }),
            Action::CreateVeth { host, peer } => {
                creations.push(Step {
                    side: Side::Host,
                    req: msgs::new_veth(host, peer, std::os::fd::AsRawFd::as_raw_fd(ns_file)),
                    what: format!("link {peer} (veth, host side {host})"),
                    undo: Some(msgs::del_link(host)),
                    ok_errno: &[],
                });
                creations.push(Step {
                    side: Side::Host,
                    req: msgs::set_alias(host, &alias_for(&ctx.name)),
                    what: link_what(Side::Host, host),
                    undo: None,
                    ok_errno: &[],
                });
            }
            Action::CreateDummy { name } => creations.push(Step {
                side: Side::Ctx,
                req: msgs::new_dummy(name),
                what: format!("link {name} (dummy)"),
                undo: Some(msgs::del_link(name)),
                ok_errno: &[],
            }),
            _ => {}
        }
    }
    // Deletions first (a new link may take a deleted one's name), and wait
    // until deleted host links have let go of their names.
    profile::time(1, || run(socks, deletions, journal))?;
    for a in actions {
        if let Action::DeleteLink {
            side: Side::Host,
            name,
        } = a
        {
            wait_gone(&mut socks.host.rtnl, name)?;
        }
    }
    profile::time(1, || run(socks, creations, journal))?;

    // Phase 2: ifindexes of the links addresses go on.
    let mut index: HashMap<(Side, String), u32> = HashMap::new();
    let ns_links =
        state::read_links(&mut socks.ns).map_err(|e| CtxError::kernel("reading links", &e))?;
    for l in ns_links {
        index.insert((Side::Ctx, l.name), l.index);
    }
    for a in actions {
        if let Action::AddAddr {
            side: Side::Host,
            link,
            ..
        }
        | Action::DelAddr {
            side: Side::Host,
            link,
            ..
        } = a
        {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                index.entry((Side::Host, link.clone()))
            {
                let l = state::read_link(&mut socks.host.rtnl, link)
                    .map_err(|e| CtxError::kernel(&link_what(Side::Host, link), &e))?
                    .ok_or_else(|| CtxError::Other(format!("host link {link} vanished")))?;
                slot.insert(l.index);
            }
        }
    }
    let idx = |side: Side, link: &str| -> Result<u32, CtxError> {
        index
            .get(&(side, link.to_string()))
            .copied()
            .ok_or_else(|| CtxError::Other(format!("{} is missing", link_what(side, link))))
    };

    // Switches before links come up (router advertisements), forwarding.
    for a in actions {
        if let Action::Sysctl { path, on } = a {
            let old = state::read_sysctl(path).unwrap_or(!on);
            profile::time(3, || state::write_sysctl(path, *on))
                .map_err(|e| CtxError::Other(format!("{a}: {e}")))?;
            journal.push(Undo::Sysctl(path.clone(), old));
            crash::point("a sysctl written");
        }
    }

    // Phase 3: addresses, link state, routes; host side before the inside so
    // the veth has carrier when routes go in.
    let mut host_steps = Vec::new();
    let mut ns_steps = Vec::new();
    for a in actions {
        let (side, step) = match a {
            Action::DelAddr { side, link, cidr } => {
                let i = idx(*side, link)?;
                let step = Step {
                    side: *side,
                    req: msgs::del_address(i, *cidr),
                    what: format!("address {cidr} on {}", link_what(*side, link)),
                    undo: Some(msgs::add_address(i, *cidr)),
                    ok_errno: &[libc::EADDRNOTAVAIL],
                };
                (*side, step)
            }
            Action::AddAddr { side, link, cidr } => {
                let i = idx(*side, link)?;
                let step = Step {
                    side: *side,
                    req: msgs::add_address(i, *cidr),
                    what: format!("address {cidr} on {}", link_what(*side, link)),
                    undo: Some(msgs::del_address(i, *cidr)),
                    ok_errno: &[],
                };
                (*side, step)
            }
            Action::SetUp { side, link } => {
                let step = Step {
                    side: *side,
                    req: msgs::set_link_up(link, true),
                    what: link_what(*side, link),
                    undo: Some(msgs::set_link_up(link, false)),
                    ok_errno: &[],
                };
                (*side, step)
            }
            Action::DelRoute(r) => {
                let step = Step {
                    side: Side::Ctx,
                    req: msgs::del_route(r.to, r.via, r.oif, r.protocol),
                    what: format!(
                        "route {}",
                        a.to_string().trim_start_matches("remove route ")
                    ),
                    undo: r.via.map(|via| msgs::add_route(r.to, via)),
                    ok_errno: &[libc::ESRCH, libc::ENOENT],
                };
                (Side::Ctx, step)
            }
            Action::AddRoute(r) => {
                let step = Step {
                    side: Side::Ctx,
                    req: msgs::add_route(r.to, r.via),
                    what: format!("route {}", a.to_string().trim_start_matches("add route ")),
                    undo: Some(msgs::del_route(r.to, Some(r.via), None, msgs::ROUTE_PROTO)),
                    ok_errno: &[],
                };
                (Side::Ctx, step)
            }
            _ => continue,
        };
        match side {
            Side::Host => host_steps.push(step),
            Side::Ctx => ns_steps.push(step),
        }
    }
    host_steps.extend(ns_steps);
    profile::time(2, || run(socks, host_steps, journal))?;

    // Phase 4: rules, one transaction inside, one on the host. Each is all
    // or nothing.
    for a in actions {
        match a {
            Action::ReplaceTable { exists, .. } => {
                let msgs = ruleset::replace_table(ruleset::context_table(ctx).as_ref(), *exists);
                nft_transaction(&mut socks.ns_nft, &msgs, "nftables table inet netctx", 4)?;
            }
            Action::DeleteTable => {
                let msgs = ruleset::replace_table(None, true);
                nft_transaction(&mut socks.ns_nft, &msgs, "nftables table inet netctx", 4)?;
            }
            Action::ReplaceHostChains { remove, .. } => {
                let chains = ruleset::host_chains(ctx);
                let mut remove = remove.clone();
                let object = "host nftables table inet netctx";
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let msgs = ruleset::replace_host_chains(&remove, &chains);
                    match profile::time(5, || socks.host.nft.transaction(&msgs)) {
                        Ok(()) => break,
                        // A chain to remove went on its own (its device was
                        // deleted, on kernels that drop such chains): look
                        // again at what is there.
                        Err((_, e)) if e.errno == libc::ENOENT && attempt <= 3 => {
                            let live = crate::nft::observe::read(&mut socks.host.nft, &[])
                                .map_err(|e| CtxError::kernel(object, &e))?;
                            remove = live
                                .only(&ruleset::host_chain_prefix(&ctx.name))
                                .chains
                                .into_iter()
                                .map(|c| c.0)
                                .collect();
                        }
                        Err((_, e)) => return Err(CtxError::kernel(object, &e)),
                    }
                }
                crash::point("an nf_tables transaction done");
            }
            _ => {}
        }
    }
    Ok(())
}

/// One nf_tables transaction, timed as profile phase `phase`.
fn nft_transaction(
    nft: &mut Nft,
    msgs: &[crate::nft::wire::Msg],
    object: &str,
    phase: usize,
) -> Result<(), CtxError> {
    profile::time(phase, || nft.transaction(msgs))
        .map_err(|(_, e)| CtxError::kernel(object, &e))?;
    crash::point("an nf_tables transaction done");
    Ok(())
}

/// Wait until no link is called `name` any more: a link the kernel is
/// destroying (its namespace was removed a moment ago) holds its name for up
/// to a few hundred milliseconds.
pub fn wait_gone(nl: &mut Rtnl, name: &str) -> Result<(), CtxError> {
    for _ in 0..250 {
        match state::read_link(nl, name) {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(CtxError::kernel(&link_what(Side::Host, name), &e)),
        }
    }
    Err(CtxError::Other(format!(
        "host link {name} is still there 5 s after its deletion"
    )))
}
