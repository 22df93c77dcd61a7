//! `announce = true` (docs/cluster.md): each of the context's addresses
//! gets a host route `ADDR/32` (`/128`) over the host veth of its link, of
//! protocol netctx, for a routing daemon to export. Routes of protocol
//! netctx over the context's host veths that are not wanted (announce
//! turned off, an address gone) go. Pure.

use std::net::IpAddr;

use super::{Action, Made, Observed};
use crate::model::{Context, LinkKind};

/// The announced addresses of `ctx`, each with the host veth of its link.
pub fn wanted(ctx: &Context) -> Vec<(IpAddr, String)> {
    if !ctx.announce {
        return Vec::new();
    }
    ctx.links
        .iter()
        .filter(|l| l.kind == LinkKind::Veth)
        .filter_map(|l| l.host.as_ref().map(|h| (l, h)))
        .flat_map(|(l, h)| l.addresses.iter().map(move |a| (a.addr, h.clone())))
        .collect()
}

/// Announced routes missing (or over a veth made by this plan) are added;
/// routes of protocol netctx over the context's host veths that no address
/// wants are removed.
pub(super) fn plan(ctx: &Context, obs: &Observed, made: &Made, acts: &mut Vec<Action>) {
    let want = wanted(ctx);
    // The context's host veths that are there and kept: name, ifindex.
    let kept: Vec<(&str, u32)> = ctx
        .links
        .iter()
        .filter(|l| !made.fresh.contains(&l.name.as_str()))
        .filter_map(|l| l.host.as_deref())
        .filter_map(|h| obs.host.get(h).map(|o| (h, o.index)))
        .collect();
    for (link, index) in &kept {
        for (addr, i) in &obs.host_routed.announced {
            if i == index && !want.iter().any(|(a, h)| a == addr && h == link) {
                acts.push(Action::Unannounce {
                    link: link.to_string(),
                    addr: *addr,
                });
            }
        }
    }
    for (addr, link) in want {
        let index = kept.iter().find(|(h, _)| *h == link).map(|(_, i)| *i);
        let there = index.is_some_and(|i| obs.host_routed.announced.contains(&(addr, i)));
        if !there {
            acts.push(Action::Announce { link, addr });
        }
    }
}
