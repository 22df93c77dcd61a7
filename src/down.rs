//! Teardown: remove what netctx made for some contexts, with or without their
//! configuration. Namespaces are unmounted and unlinked (the kernel destroys
//! their contents, and the host ends of their veths, on its own); host links
//! still carrying a context's alias afterwards are deleted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::apply::CtxError;
use crate::msgs;
use crate::netns;
use crate::nl::{Request, Rtnl};
use crate::owner::{self, NsOwner};
use crate::plan::Refusal;
use crate::state;

/// Every context netctx has something of: markers and aliased host links.
pub fn known(nl: &mut Rtnl) -> anyhow::Result<Vec<String>> {
    let mut names: HashSet<String> = owner::marked()?.into_iter().collect();
    for l in state::read_links(nl).map_err(|e| anyhow::anyhow!("reading host links: {e}"))? {
        if let Some(o) = l.owner() {
            names.insert(o.to_string());
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

pub fn down(nl: &mut Rtnl, names: &[String]) -> Vec<(String, Result<Removed, CtxError>)> {
    let mut out = Vec::new();
    for name in names {
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
                    owner::unmark(name).map_err(ns_err)?;
                    Ok(Removed::Removed)
                }
            }
        })();
        out.push((name.clone(), r));
    }

    // Host ends vanish with their namespaces, a little later; wait for them,
    // then delete whatever is left (links whose peer was elsewhere).
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let ours = |nl: &mut Rtnl| -> Vec<(String, String)> {
        state::read_links(nl)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                let o = l.owner()?.to_string();
                wanted.contains(o.as_str()).then_some((o, l.name))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = ours(nl);
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
    out
}
