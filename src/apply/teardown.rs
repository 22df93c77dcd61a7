//! Teardown: remove what netctx made for some contexts, with or without their
//! configuration. Namespaces are unmounted and unlinked (the kernel destroys
//! their contents, and the host ends of their veths, on its own); host links
//! still carrying a context's alias afterwards are deleted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::apply::{CtxError, Host};
use crate::kernel::netlink::{NlError, Request, Rtnl};
use crate::kernel::netns;
use crate::kernel::nft::dispatch::nat::{Group, NatChange};
use crate::kernel::nft::dispatch::{self, DispatchChange};
use crate::kernel::nft::table;
use crate::kernel::profile::{self, DOWN};
use crate::kernel::rtnl;
use crate::observe::links::{self, ObsLink};
use crate::observe::nft as nft_live;
use crate::observe::owner::{self, NsOwner};
use crate::plan::Refusal;

/// Every context netctx has something of: markers, aliased host links and
/// chains in the host's table.
pub fn known(host: &mut Host) -> anyhow::Result<Vec<String>> {
    let links = links::read_links_only(&mut host.rtnl)
        .map_err(|e| anyhow::anyhow!("reading host links: {e}"))?;
    let live = nft_live::read_chains(&mut host.nft)
        .map_err(|e| anyhow::anyhow!("reading the host's nftables table: {e}"))?;
    known_in(links.iter(), &live)
}

/// `known`, from host links and the host's table already read.
pub fn known_in<'a>(
    links: impl IntoIterator<Item = &'a ObsLink>,
    live: &nft_live::Live,
) -> anyhow::Result<Vec<String>> {
    let mut names: HashSet<String> = owner::marked()?.into_iter().collect();
    for l in links {
        // Attachments are the CNI plugin's (DEL and GC), not `down`'s.
        if let Some(o) = l.owner().filter(|o| !crate::model::is_attachment_name(o)) {
            names.insert(o.to_string());
        }
    }
    if live.comment.as_deref() == Some(table::HOST_COMMENT) {
        for (chain, _) in &live.digest.chains {
            if let Some(ctx) = chain_owner(chain) {
                if !crate::model::is_attachment_chain(chain) {
                    names.insert(ctx.to_string());
                }
            }
        }
    }
    let mut v: Vec<_> = names.into_iter().collect();
    v.sort();
    Ok(v)
}

/// The context a chain of the host's table belongs to: the part of its
/// name before the first `_` (context names have none; shared chains,
/// such as the dispatch, have no `_` and belong to no context).
fn chain_owner(chain: &str) -> Option<&str> {
    chain.split_once('_').map(|(ctx, _)| ctx)
}

/// What `down` did for one context.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotPresent,
}

/// The host's chains of these contexts go in one transaction, and the host's
/// table with them when nothing else is left in it.
pub fn remove_host_chains(host: &mut Host, names: &[String]) -> Result<Vec<String>, NlError> {
    let names: HashSet<&str> = names.iter().map(String::as_str).collect();
    // Chains on the ingress of veths that are going may vanish on their own
    // meanwhile (kernels before 6.16 drop them with the device): if the
    // transaction misses one, look again.
    let mut attempt = 0;
    let gone = loop {
        attempt += 1;
        let live = nft_live::read_chains(&mut host.nft)?;
        if !live.exists || live.comment.as_deref() != Some(table::HOST_COMMENT) {
            return Ok(Vec::new());
        }
        // Their timed sets (netctx's resolver's) go after their chains.
        let gone_sets: Vec<String> = live
            .set_names
            .iter()
            .filter(|s| chain_owner(s).is_some_and(|o| names.contains(o)))
            .cloned()
            .collect();
        let (gone, kept): (Vec<String>, Vec<String>) = live
            .digest
            .chains
            .into_iter()
            .map(|c| c.0)
            .partition(|c| chain_owner(c).is_some_and(|o| names.contains(o)));
        // The dispatches alone are nobody's: with no context left they go
        // with the table.
        let msgs: Vec<_> = if kept.iter().all(|c| dispatch::is_dispatch(c)) {
            vec![table::del_table()]
        } else {
            let mut m = Vec::new();
            let nat = nft_live::read_nat(&mut host.nft)?;
            let d = dispatch_leaving(&mut host.nft, &gone, &nat)?;
            dispatch::host_change_msgs(&gone, &[], &d, &mut m);
            m.extend(gone_sets.iter().map(|s| table::del_set(s)));
            nat_prune(&nat, &gone, &kept, &mut m);
            m.extend(super::shared::leaving(&live.set_names, &kept));
            m
        };
        // Many contexts' chains do not fit one message: a transaction per
        // thousand chains (down needs no atomicity across contexts).
        match msgs.chunks(1000).try_for_each(|c| host.nft.transaction(c)) {
            Ok(()) => break gone,
            Err((_, e)) if e.errno == libc::ENOENT && attempt < 3 => continue,
            Err((_, e)) => return Err(e),
        }
    };
    crate::apply::crash::point("host chains removed");
    Ok(gone)
}

/// The dispatches' elements jumping to a chain that goes (`gone`), which
/// go before it.
fn dispatch_leaving(
    nft: &mut crate::kernel::nft::sock::Nft,
    gone: &[String],
    nat: &nft_live::NatLive,
) -> Result<DispatchChange, NlError> {
    let going: HashSet<&String> = gone.iter().collect();
    let remove = match nft_live::read_dispatch(nft)? {
        Some(d) => d
            .elems
            .into_iter()
            .filter(|(_, c)| going.contains(c))
            .map(|(k, _)| k)
            .collect(),
        None => Vec::new(),
    };
    let nat_remove = nat
        .elems
        .elems
        .iter()
        .filter(|(_, c)| going.contains(c))
        .map(|(k, _)| k.clone())
        .collect();
    Ok(DispatchChange {
        remove,
        nat: NatChange {
            remove: nat_remove,
            ..NatChange::default()
        },
        ..DispatchChange::default()
    })
}

/// The NAT dispatch's groups left without an element once the chains
/// `gone` go (their elements with them), removed after them: base chains
/// (those there, of `kept`), then maps.
fn nat_prune(
    nat: &nft_live::NatLive,
    gone: &[String],
    kept: &[String],
    out: &mut Vec<crate::kernel::nft::wire::Msg>,
) {
    let going: HashSet<&String> = gone.iter().collect();
    for g in Group::ALL {
        let present = g.maps().iter().any(|m| nat.maps.contains(m));
        let left = nat
            .elems
            .elems
            .iter()
            .any(|(k, c)| k.map().group() == g && !going.contains(c));
        if present && !left {
            let chains: Vec<String> = g
                .chains()
                .into_iter()
                .map(|c| c.name)
                .filter(|c| kept.contains(c))
                .collect();
            g.remove_msgs(&chains, out);
        }
    }
}

/// The NAT dispatch's groups that no element uses any more go (base chains,
/// then maps): after a run in which contexts left them. One transaction.
pub fn prune_nat(host: &mut Host) -> Result<(), NlError> {
    let nat = nft_live::read_nat(&mut host.nft)?;
    let empty = |g: Group| {
        g.maps().iter().any(|m| nat.maps.contains(m))
            && !nat.elems.elems.iter().any(|(k, _)| k.map().group() == g)
    };
    if !Group::ALL.into_iter().any(empty) {
        return Ok(());
    }
    let live = nft_live::read_chains(&mut host.nft)?;
    if live.foreign_host_table() {
        return Ok(());
    }
    let kept: Vec<String> = live.digest.chains.into_iter().map(|c| c.0).collect();
    let mut msgs = Vec::new();
    nat_prune(&nat, &[], &kept, &mut msgs);
    host.nft.transaction(&msgs).map_err(|(_, e)| e)
}

/// Remove the contexts. With `wait`, return only once the kernel has
/// destroyed their host veths (deleting those it does not destroy);
/// without, as soon as the namespaces are unmounted.
pub fn down(
    host: &mut Host,
    names: &[String],
    wait: bool,
) -> Vec<(String, Result<Removed, CtxError>)> {
    // A context in conflict (a namespace netctx did not make, a marker that
    // proves nothing) keeps everything: its host links and chains too.
    // Waiting needs to know them before anything goes; without, the
    // removal's own refusals say which they are.
    let conflict = |n: &String| owner::ns_owner(n).is_ok_and(|o| o.is_conflict());
    let mut touchable: Vec<String> = if wait {
        names.iter().filter(|n| !conflict(n)).cloned().collect()
    } else {
        names.to_vec()
    };
    // Host ends vanish with their namespaces, a little later: note which
    // are ours and listen for their deletion before anything goes.
    let mut events = if wait { Rtnl::link_events().ok() } else { None };
    let before = if wait {
        let wanted: HashSet<&str> = touchable.iter().map(String::as_str).collect();
        host_ends(&mut host.rtnl, &wanted)
    } else {
        Vec::new()
    };
    let mut out = profile::time(DOWN + 2, || remove_namespaces(names));
    if !wait {
        let refused: HashSet<&String> = out
            .iter()
            .filter(|(_, r)| matches!(r, Err(CtxError::Refused(_))))
            .map(|(m, _)| m)
            .collect();
        touchable.retain(|n| !refused.contains(n));
    }
    let wanted: HashSet<&str> = touchable.iter().map(String::as_str).collect();
    if wait {
        profile::time(DOWN + 3, || {
            let left = wait_for_host_ends(&mut host.rtnl, &wanted, events.as_mut(), before);
            delete_leftovers(&mut host.rtnl, left, &mut out);
        });
    }
    match profile::time(DOWN + 4, || remove_host_chains(host, &touchable)) {
        Ok(gone) => {
            let owners: HashSet<&str> = gone.iter().filter_map(|c| chain_owner(c)).collect();
            for (name, r) in &mut out {
                if matches!(r, Ok(Removed::NotPresent)) && owners.contains(name.as_str()) {
                    *r = Ok(Removed::Removed);
                }
            }
        }
        Err(e) => {
            for (_, r) in out.iter_mut().filter(|(n, _)| wanted.contains(n.as_str())) {
                if r.is_ok() {
                    *r = Err(CtxError::kernel(HOST_TABLE, e.clone()));
                }
            }
        }
    }
    out
}

const HOST_TABLE: &str = "host nftables table inet netctx";

/// (context, host link) of the host links of these contexts.
fn host_ends(nl: &mut Rtnl, wanted: &HashSet<&str>) -> Vec<(String, String)> {
    links::read_links_only(nl)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| {
            let o = l.owner()?.to_string();
            wanted.contains(o.as_str()).then_some((o, l.name))
        })
        .collect()
}

/// Unmount and unlink each context's namespace and its marker, on the
/// worker threads (an unmount waits for the kernel; they overlap).
fn remove_namespaces(names: &[String]) -> Vec<(String, Result<Removed, CtxError>)> {
    // Owners first, then the unmounts back to back, then the markers: the
    // kernel's unmounts go faster one after the other (their waits for
    // RCU overlap) than with other work between them.
    let owners = each(names, None, |n| {
        owner::ns_owner(n).map_err(|e| CtxError::ns(n, e))
    });
    let decided: Vec<Result<Option<&String>, CtxError>> = names
        .iter()
        .zip(owners)
        .map(|(name, o)| match o? {
            NsOwner::Foreign => Err(Refusal::ForeignNamespace(name.to_string()).into()),
            NsOwner::BadMarker(problem) => Err(Refusal::BadMarker {
                name: name.to_string(),
                problem,
            }
            .into()),
            NsOwner::Absent => Ok(None),
            NsOwner::Ours | NsOwner::OursUnmounted | NsOwner::OursMissing => Ok(Some(name)),
        })
        .collect();
    let going: Vec<String> = decided
        .iter()
        .filter_map(|d| d.as_ref().ok().copied().flatten().cloned())
        .collect();
    let unmounted = each(&going, Some("down"), |n| {
        netns::remove(n).map_err(|e| CtxError::ns(n, e))?;
        crate::apply::crash::point("namespace removed, marker still there");
        Ok(())
    });
    let gone: Vec<String> = going
        .iter()
        .zip(&unmounted)
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.clone())
        .collect();
    let unmarked = each(&gone, None, |n| {
        owner::unmark(n).map_err(|e| CtxError::ns(n, e))?;
        crate::apply::crash::point("context removed");
        Ok(())
    });
    let mut failed: HashMap<&String, CtxError> = HashMap::new();
    for (n, r) in going.iter().zip(unmounted) {
        if let Err(e) = r {
            failed.insert(n, e);
        }
    }
    for (n, r) in gone.iter().zip(unmarked) {
        if let Err(e) = r {
            failed.insert(n, e);
        }
    }
    names
        .iter()
        .zip(decided)
        .map(|(name, d)| {
            let r = match d {
                Err(e) => Err(e),
                Ok(None) => Ok(Removed::NotPresent),
                Ok(Some(_)) => failed.remove(name).map_or(Ok(Removed::Removed), Err),
            };
            (name.clone(), r)
        })
        .collect()
}

/// `f` of every name, on the workers (here, one by one, if none could
/// start); `progress` shown on a terminal.
fn each<R: Send>(
    names: &[String],
    progress: Option<&str>,
    f: impl Fn(&String) -> R + Sync,
) -> Vec<R> {
    crate::kernel::pool::map(names, progress, || Ok(()), |(), n| f(n))
        .unwrap_or_else(|_| names.iter().map(&f).collect())
}

/// Wait for the deletion notices of `before` (or poll, if notices were
/// lost); the host ends still there after 2 s.
fn wait_for_host_ends(
    nl: &mut Rtnl,
    wanted: &HashSet<&str>,
    events: Option<&mut Rtnl>,
    before: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut pending: HashSet<String> = before.into_iter().map(|(_, l)| l).collect();
    if pending.is_empty() {
        return Vec::new();
    }
    if let Some(ev) = events {
        let _ = ev.wait_deleted(Duration::from_secs(2), |name| {
            pending.remove(name);
            pending.is_empty()
        });
    }
    if pending.is_empty() {
        return Vec::new();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = host_ends(nl, wanted);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        left = host_ends(nl, wanted);
    }
    left
}

/// Delete host links that outlived their namespace (their peer was
/// elsewhere), and record the outcome per context.
fn delete_leftovers(
    nl: &mut Rtnl,
    left: Vec<(String, String)>,
    out: &mut [(String, Result<Removed, CtxError>)],
) {
    if left.is_empty() {
        return;
    }
    let reqs: Vec<Request> = left.iter().map(|(_, l)| rtnl::del_link(l)).collect();
    for ((ctx, link), r) in left.iter().zip(nl.exec(reqs)) {
        let Some(slot) = out.iter_mut().find(|(n, _)| n == ctx) else {
            continue;
        };
        match r {
            Err(e) if e.errno != libc::ENODEV => {
                slot.1 = Err(CtxError::kernel(&format!("host link {link}"), e));
            }
            Err(_) => {}
            Ok(()) if matches!(slot.1, Ok(Removed::NotPresent)) => slot.1 = Ok(Removed::Removed),
            Ok(()) => {}
        }
    }
    for (_, link) in &left {
        let _ = crate::apply::wait_gone(|| Ok(links::read_link(nl, link)?.is_some()), link);
    }
}

/// Remove a CNI attachment (an attachment is a context in a runtime's
/// namespace, which stays): its host link (and so the pair), inside
/// `netns` (when it still is a namespace) its link and its table, on the
/// host its chains. Only what carries the attachment's alias or name goes;
/// missing pieces are fine; every failure is reported, none stops the rest.
pub fn detach(
    host: &mut Host,
    name: &str,
    host_link: &str,
    ifname: &str,
    netns_path: &str,
) -> Vec<CtxError> {
    let mut errors = Vec::new();
    let what = format!("host link {host_link}");
    match links::read_link(&mut host.rtnl, host_link) {
        Ok(Some(l)) if l.owner() == Some(name) => {
            // The kernel may be deleting it already (its namespace went).
            if let Err(e) = host.rtnl.exec(vec![rtnl::del_link(host_link)]).remove(0) {
                if e.errno != libc::ENODEV {
                    errors.push(CtxError::kernel(&what, e));
                }
            }
        }
        Ok(_) => {}
        Err(e) => errors.push(CtxError::kernel(&what, e)),
    }
    if let Some(ns) = (!netns_path.is_empty())
        .then(|| netns::open_path(netns_path))
        .flatten()
    {
        match netns::run_in(&ns, || detach_inside(name, ifname, netns_path)) {
            Ok(r) => errors.extend(r.err()),
            Err(e) => errors.push(CtxError::ns(name, e)),
        }
    }
    if let Err(e) = remove_host_chains(host, &[name.to_string()]) {
        errors.push(CtxError::kernel(HOST_TABLE, e));
    }
    errors
}

/// Inside the runtime's namespace (the calling thread is in it).
fn detach_inside(name: &str, ifname: &str, netns_path: &str) -> Result<(), CtxError> {
    let (mut nl, mut nft) = super::open_here(name)?;
    let what = format!("link {ifname} in {netns_path}");
    if let Some(l) = links::read_link(&mut nl, ifname).map_err(|e| CtxError::kernel(&what, e))? {
        if l.owner() == Some(name) {
            // Usually gone with its host side already.
            if let Err(e) = nl.exec(vec![rtnl::del_link(ifname)]).remove(0) {
                if e.errno != libc::ENODEV {
                    return Err(CtxError::kernel(&what, e));
                }
            }
        }
    }
    let object = format!("nftables table inet netctx in {netns_path}");
    let live = nft_live::read(&mut nft, &[]).map_err(|e| CtxError::kernel(&object, e))?;
    if live.exists && live.comment.as_deref() == Some(format!("netctx context {name}").as_str()) {
        nft.transaction(&[table::del_table()])
            .map_err(|(_, e)| CtxError::kernel(&object, e))?;
    }
    Ok(())
}
