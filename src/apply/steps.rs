//! From a plan's actions to kernel steps, per phase. Pure: unit-tested
//! without root.

use std::collections::HashMap;
use std::os::fd::RawFd;

use super::error::CtxError;
use super::journal::Step;
use crate::kernel::rtnl;
use crate::model::Context;
use crate::plan::{dest, single, Action, Side};

pub fn link_what(side: Side, name: &str) -> String {
    match side {
        Side::Host => format!("host link {name}"),
        Side::Ctx => format!("link {name}"),
    }
}

/// Phase 1: link deletions, then creations (a new link may take a deleted
/// one's name). `ns_fd` is the namespace a veth's peer is made in.
pub fn links(ctx: &Context, actions: &[Action], ns_fd: RawFd) -> (Vec<Step>, Vec<Step>) {
    let mut deletions = Vec::new();
    let mut creations = Vec::new();
    for a in actions {
        match a {
            Action::DeleteLink { side, name } => deletions.push(
                Step::new(*side, rtnl::del_link(name), link_what(*side, name))
                    .ok_if(&[libc::ENODEV]),
            ),
            Action::CreateVeth { host, peer } => {
                let what = format!("link {peer} (veth, host side {host})");
                let req = rtnl::new_veth(host, peer, ns_fd);
                creations.push(Step::new(Side::Host, req, what).undo(rtnl::del_link(host)));
                let alias = ctx.link_alias();
                let req = rtnl::set_alias(host, &alias);
                creations.push(Step::new(Side::Host, req, link_what(Side::Host, host)));
                if ctx.is_attachment() {
                    // In a runtime's namespace the alias tells netctx's link
                    // from the others.
                    let req = rtnl::set_alias(peer, &alias);
                    creations.push(Step::new(Side::Ctx, req, link_what(Side::Ctx, peer)));
                }
            }
            Action::CreateDummy { name } => {
                let mut s = Step::new(Side::Ctx, rtnl::new_dummy(name), link_what(Side::Ctx, name))
                    .undo(rtnl::del_link(name));
                s.dummy = true;
                creations.push(s);
            }
            _ => {}
        }
    }
    (deletions, creations)
}

/// Host links whose ifindex phase 3 needs (the inside's are read whole).
pub fn host_links_addressed(actions: &[Action]) -> Vec<&str> {
    let mut v: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::AddAddr {
                side: Side::Host,
                link,
                ..
            }
            | Action::DelAddr {
                side: Side::Host,
                link,
                ..
            }
            | Action::AddLinkRoute {
                side: Side::Host,
                link,
                ..
            }
            | Action::Announce { link, .. }
            | Action::Unannounce { link, .. } => Some(link.as_str()),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Phase 3: addresses, link state, routes; the host side before the inside
/// so the veth has carrier when routes go in, and the host's routes to the
/// context's addresses last (IPv6 refuses a route over a link without
/// carrier).
pub fn addresses_and_routes(
    ctx: &Context,
    actions: &[Action],
    index: &HashMap<(Side, String), u32>,
) -> Result<Vec<Step>, CtxError> {
    let ptp = |side: Side, link: &str| {
        side == Side::Ctx && ctx.links.iter().any(|l| l.ptp && l.name == link)
    };
    let mut late = Vec::new();
    let idx = |side: Side, link: &str| -> Result<u32, CtxError> {
        index
            .get(&(side, link.to_string()))
            .copied()
            .ok_or_else(|| CtxError::Missing(link_what(side, link)))
    };
    let mut host = Vec::new();
    let mut inside = Vec::new();
    for a in actions {
        let step = match a {
            Action::DelAddr { side, link, cidr } => {
                let i = idx(*side, link)?;
                let what = format!("address {cidr} on {}", link_what(*side, link));
                Step::new(*side, rtnl::del_address(i, *cidr), what)
                    .undo(rtnl::add_address(i, *cidr))
                    .ok_if(&[libc::EADDRNOTAVAIL])
            }
            Action::AddAddr { side, link, cidr } => {
                let i = idx(*side, link)?;
                let what = format!("address {cidr} on {}", link_what(*side, link));
                let req = if ptp(*side, link) {
                    rtnl::add_address_no_route(i, *cidr)
                } else {
                    rtnl::add_address(i, *cidr)
                };
                Step::new(*side, req, what).undo(rtnl::del_address(i, *cidr))
            }
            Action::AddLinkRoute { side, link, to } => {
                let i = idx(*side, link)?;
                let what = match side {
                    Side::Host => format!("host route {to} dev {link}"),
                    Side::Ctx => format!("route {to} dev {link}"),
                };
                let undo = rtnl::del_route(*to, None, Some(i), rtnl::ROUTE_PROTO);
                let step = Step::new(*side, rtnl::add_link_route(to.addr, i), what).undo(undo);
                if *side == Side::Host {
                    late.push(step);
                    continue;
                }
                step
            }
            Action::Announce { link, addr } => {
                let i = idx(Side::Host, link)?;
                let what = format!("host route {} dev {link} proto netctx", single(*addr));
                let undo = rtnl::del_host_route(*addr, i, rtnl::ANNOUNCE_PROTO);
                late.push(
                    Step::new(Side::Host, rtnl::add_announced_route(*addr, i), what).undo(undo),
                );
                continue;
            }
            Action::Unannounce { link, addr } => {
                let i = idx(Side::Host, link)?;
                let what = format!("host route {} dev {link} proto netctx", single(*addr));
                let req = rtnl::del_host_route(*addr, i, rtnl::ANNOUNCE_PROTO);
                Step::new(Side::Host, req, what)
                    .undo(rtnl::add_announced_route(*addr, i))
                    .ok_if(&[libc::ESRCH, libc::ENOENT])
            }
            Action::SetUp { side, link } => {
                Step::new(*side, rtnl::set_link_up(link, true), link_what(*side, link))
                    .undo(rtnl::set_link_up(link, false))
            }
            Action::DelRoute(r) => {
                let what = match r.via {
                    Some(via) => format!("route {} via {via}", dest(&r.to)),
                    None => format!("route {}", dest(&r.to)),
                };
                let req = rtnl::del_route(r.to, r.via, r.oif, r.protocol);
                let mut s = Step::new(Side::Ctx, req, what).ok_if(&[libc::ESRCH, libc::ENOENT]);
                s.undo = r.via.map(|via| rtnl::add_route(r.to, via));
                s
            }
            Action::AddRoute(r) => {
                let what = format!("route {} via {}", dest(&r.to), r.via);
                let undo = rtnl::del_route(r.to, Some(r.via), None, rtnl::ROUTE_PROTO);
                Step::new(Side::Ctx, rtnl::add_route(r.to, r.via), what).undo(undo)
            }
            _ => continue,
        };
        match step.side {
            Side::Host => host.push(step),
            Side::Ctx => inside.push(step),
        }
    }
    host.extend(inside);
    host.extend(late);
    Ok(host)
}
