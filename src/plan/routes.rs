//! The plan for the routes inside a context, and the host routes to a
//! point-to-point link's addresses.

use super::{Action, Made, Observed, Side};
use crate::model::{max_prefix, Cidr, Context};
use crate::observe::links::{NsState, ObsRoute};

fn single(addr: std::net::IpAddr) -> Cidr {
    Cidr {
        addr,
        prefix: max_prefix(addr),
    }
}

/// Routes: undeclared ones go, declared ones come; those through deleted
/// links went with them. In a runtime's namespace only the routes over the
/// attachment's own links are looked at. A point-to-point link's gateways
/// are routes on the link, before the routes through them.
pub(super) fn routes(ctx: &Context, ns: &NsState, made: &Made, acts: &mut Vec<Action>) {
    let own: Vec<u32> = ns
        .links
        .iter()
        .filter(|l| super::links::ours_inside(ctx, l))
        .map(|l| l.index)
        .collect();
    let routes: Vec<&ObsRoute> = ns
        .routes
        .iter()
        .filter(|r| !r.oif.is_some_and(|o| made.gone.contains(&o)))
        .filter(|r| !ctx.is_attachment() || r.oif.is_some_and(|o| own.contains(&o)))
        .collect();
    // (link, its index if it is there and kept, gateway).
    let on_link: Vec<(&str, Option<u32>, Cidr)> = ctx
        .links
        .iter()
        .filter(|l| l.ptp)
        .flat_map(|l| {
            let index = ns
                .link(&l.name)
                .filter(|_| !made.fresh.contains(&l.name.as_str()))
                .map(|o| o.index);
            l.host_addresses
                .iter()
                .map(move |g| (l.name.as_str(), index, single(g.addr)))
        })
        .collect();
    for r in &routes {
        let wanted = match r.via {
            Some(via) => ctx.routes.iter().any(|d| d.to == r.to && d.via == via),
            None => on_link
                .iter()
                .any(|(_, i, to)| *to == r.to && r.oif.is_some() && r.oif == *i),
        };
        if !wanted {
            acts.push(Action::DelRoute((*r).clone()));
        }
    }
    for (link, index, to) in &on_link {
        let there = routes
            .iter()
            .any(|r| r.to == *to && r.via.is_none() && index.is_some() && r.oif == *index);
        if !there {
            acts.push(Action::AddLinkRoute {
                side: Side::Ctx,
                link: link.to_string(),
                to: *to,
            });
        }
    }
    for d in &ctx.routes {
        if !routes.iter().any(|r| r.to == d.to && r.via == Some(d.via)) {
            acts.push(Action::AddRoute(*d));
        }
    }
}

/// The host's routes to a point-to-point link's addresses over its host
/// veth (the host side holds only the gateways, no subnet).
pub(super) fn host_routes(ctx: &Context, obs: &Observed, made: &Made, acts: &mut Vec<Action>) {
    for l in ctx.links.iter().filter(|l| l.ptp) {
        let Some(host) = l.host.as_deref() else {
            continue;
        };
        let index = obs
            .host
            .get(host)
            .filter(|_| !made.fresh.contains(&l.name.as_str()))
            .map(|h| h.index);
        for a in &l.addresses {
            let there = index.is_some_and(|i| obs.host_routed.routes.contains(&(a.addr, i)));
            if !there {
                acts.push(Action::AddLinkRoute {
                    side: Side::Host,
                    link: host.to_string(),
                    to: single(a.addr),
                });
            }
        }
    }
}
