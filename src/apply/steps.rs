//! From a plan's actions to kernel steps, per phase. Pure: unit-tested
//! without root.

use std::collections::HashMap;
use std::os::fd::RawFd;

use super::error::CtxError;
use super::journal::Step;
use crate::kernel::rtnl;
use crate::model::Context;
use crate::observe::links::alias_for;
use crate::plan::{dest, Action, Side};

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
                let alias = rtnl::set_alias(host, &alias_for(&ctx.name));
                creations.push(Step::new(Side::Host, alias, link_what(Side::Host, host)));
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
            } => Some(link.as_str()),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Phase 3: addresses, link state, routes; the host side before the inside
/// so the veth has carrier when routes go in.
pub fn addresses_and_routes(
    actions: &[Action],
    index: &HashMap<(Side, String), u32>,
) -> Result<Vec<Step>, CtxError> {
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
                Step::new(*side, rtnl::add_address(i, *cidr), what)
                    .undo(rtnl::del_address(i, *cidr))
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
    Ok(host)
}
