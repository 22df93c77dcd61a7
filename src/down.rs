//! Teardown: remove what netctx made for some contexts, with or without their
//! configuration. Namespaces are unmounted and unlinked (the kernel destroys
//! their contents, and the host ends of their veths, on its own); host links
//! still carrying a context's alias afterwards are deleted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::apply::{CtxError, Host};
use crate::msgs;
use crate::netns;
use crate::nft::{observe, ruleset};
use crate::nl::{Request, Rtnl};
use crate::owner::{self, NsOwner};
use crate::plan::Refusal;
use crate::state;

/// Every context netctx has something of: markers, aliased host links and
/// chains in the host's table.
pub fn known(host: &mut Host) -> anyhow::Result<Vec<String>> {
    let mut names: HashSet<String> = owner::marked()?.into_iter().collect();
    for l in
        state::read_links(&mut host.rtnl).map_err(|e| anyhow::anyhow!("reading host links: {e}"))?
    {
        if let Some(o) = l.owner() {
            names.insert(o.to_string());
        }
    }
    let live = observe::read(&mut host.nft, &[])
        .map_err(|e| anyhow::anyhow!("reading the host's nftables table: {e}"))?;
    if live.comment.as_deref() == Some(ruleset::HOST_COMMENT) {
        for (chain, _) in live.digest.chains {
            if let Some((ctx, _)) = chain.split_once('_') {
                if !crate::cni::is_attachment_chain(&chain) {
                    names.insert(ctx.to_string());
                }
            }
        }
    }
    let mut v: Vec<_> = names.into_iter().collect();
    v.sort();
    Ok(v)
}

/// What `down` did for one context.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotPresent,
}

/// The host's chains of these contexts go in one transaction, and the host's
/// table with them when nothing else is left in it.
pub fn remove_host_chains(host: &mut Host, names: &[String]) -> Result<Vec<String>, CtxError> {
    let kernel = |e: &crate::nl::NlError| CtxError::Kernel {
        object: "host nftables table inet netctx".into(),
        cause: e.to_string(),
    };
    let prefixes: Vec<String> = names
        .iter()
        .map(|n| ruleset::host_chain_prefix(n))
        .collect();
    // Chains on the ingress of veths that are going may vanish on their own
    // meanwhile (kernels before 6.16 drop them with the device): if the
    // transaction misses one, look again.
    let mut attempt = 0;
    let gone = loop {
        attempt += 1;
        let live = observe::read(&mut host.nft, &[]).map_err(|e| kernel(&e))?;
        if !live.exists || live.comment.as_deref() != Some(ruleset::HOST_COMMENT) {
            return Ok(Vec::new());
        }
        let (gone, kept): (Vec<String>, Vec<String>) = live
            .digest
            .chains
            .into_iter()
            .map(|c| c.0)
            .partition(|c| prefixes.iter().any(|p| c.starts_with(p.as_str())));
        let msgs: Vec<_> = if kept.is_empty() {
            vec![ruleset::del_table()]
        } else {
            gone.iter().map(|c| ruleset::del_chain(c)).collect()
        };
        match host.nft.transaction(&msgs) {
            Ok(()) => break gone,
            Err((_, e)) if e.errno == libc::ENOENT && attempt < 3 => continue,
            Err((_, e)) => return Err(kernel(&e)),
        }
    };
    crate::crash::point("host chains removed");
    Ok(gone)
}

/// Remove the contexts. With `wait`, return only once the kernel has
/// destroyed their host veths (deleting those it does not destroy);
/// without, as soon as the namespaces are unmounted.
pub fn down(
    host: &mut Host,
    names: &[String],
    wait: bool,
) -> Vec<(String, Result<Removed, CtxError>)> {
    let nl = &mut host.rtnl;
    // Host ends vanish with their namespaces, a little later: note which
    // are ours and listen for their deletion before anything goes.
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let ours = |nl: &mut Rtnl| -> Vec<(String, String)> {
        state::read_links_only(nl)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                let o = l.owner()?.to_string();
                wanted.contains(o.as_str()).then_some((o, l.name))
            })
            .collect()
    };
    let mut events = if wait { Rtnl::link_events().ok() } else { None };
    let before = if wait { ours(nl) } else { Vec::new() };
    let mut out = Vec::new();
    let progress = names.len() > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (i, name) in names.iter().enumerate() {
        if progress {
            eprint!("\rdown: {}/{}", i + 1, names.len());
        }
        let r = (|| -> Result<Removed, CtxError> {
            let ns_err = |e| CtxError::Namespace {
                name: name.clone(),
                source: e,
            };
            match owner::ns_owner(name).map_err(ns_err)? {
                NsOwner::Foreign => Err(Refusal::ForeignNamespace(name.clone()).into()),
                NsOwner::Absent => Ok(Removed::NotPresent),
                NsOwner::Ours | NsOwner::OursUnmounted | NsOwner::OursMissing => {
                    netns::remove(name).map_err(ns_err)?;
                    crate::crash::point("namespace removed, marker still there");
                    owner::unmark(name).map_err(ns_err)?;
                    crate::crash::point("context removed");
                    Ok(Removed::Removed)
                }
            }
        })();
        out.push((name.clone(), r));
    }
    if progress {
        eprintln!();
    }

    // Wait for their deletion notices (or poll, if notices were lost),
    // then delete whatever is left (links whose peer was elsewhere).
    let mut pending: HashSet<String> = before.into_iter().map(|(_, l)| l).collect();
    if let Some(ev) = events.as_mut().filter(|_| !pending.is_empty()) {
        let _ = ev.wait_deleted(Duration::from_secs(2), |name| {
            pending.remove(name);
            pending.is_empty()
        });
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = if wait && !pending.is_empty() {
        ours(nl)
    } else {
        Vec::new()
    };
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        left = ours(nl);
    }
    if !left.is_empty() {
        let reqs: Vec<Request> = left.iter().map(|(_, l)| msgs::del_link(l)).collect();
        for ((ctx, link), r) in left.iter().zip(nl.exec(reqs)) {
            if let Err(e) = r {
                if e.errno != libc::ENODEV {
                    let err = CtxError::Kernel {
                        object: format!("host link {link}"),
                        cause: e.to_string(),
                    };
                    if let Some(slot) = out.iter_mut().find(|(n, _)| n == ctx) {
                        slot.1 = Err(err);
                    }
                }
            } else if let Some(slot) = out.iter_mut().find(|(n, _)| n == ctx) {
                if matches!(slot.1, Ok(Removed::NotPresent)) {
                    slot.1 = Ok(Removed::Removed);
                }
            }
        }
        for (_, link) in &left {
            let _ = crate::apply::wait_gone(nl, link);
        }
    }
    match remove_host_chains(host, names) {
        Ok(gone) => {
            for (name, r) in &mut out {
                let prefix = ruleset::host_chain_prefix(name);
                if matches!(r, Ok(Removed::NotPresent))
                    && gone.iter().any(|c| c.starts_with(&prefix))
                {
                    *r = Ok(Removed::Removed);
                }
            }
        }
        Err(e) => {
            for (_, r) in &mut out {
                if r.is_ok() {
                    *r = Err(CtxError::Other(e.to_string()));
                }
            }
        }
    }
    out
}
