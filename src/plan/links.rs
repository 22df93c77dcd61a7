//! The plan for the namespace, the links on both sides and their addresses
//! and state.

use super::{Action, Made, Observed, Refusal, Side};
use crate::model::{Cidr, Context, LinkKind};
use crate::observe::links::{kernel_link_local, NsState, ObsLink};
use crate::observe::owner::NsOwner;

/// The namespace: refused when foreign, (re)made when missing. Returns the
/// state to plan the inside against (empty for a new namespace).
pub(super) fn namespace<'a>(
    ctx: &Context,
    obs: &'a Observed,
    acts: &mut Vec<Action>,
    empty: &'a NsState,
) -> Result<&'a NsState, Refusal> {
    Ok(match obs.owner {
        NsOwner::Foreign => return Err(Refusal::ForeignNamespace(ctx.name.clone())),
        NsOwner::BadMarker(problem) => {
            return Err(Refusal::BadMarker {
                name: ctx.name.clone(),
                problem,
            })
        }
        NsOwner::Ours => &obs.ns,
        NsOwner::Absent | NsOwner::OursMissing => {
            acts.push(Action::CreateNs);
            empty
        }
        NsOwner::OursUnmounted => {
            acts.push(Action::RemoveNsFile);
            acts.push(Action::CreateNs);
            empty
        }
    })
}

/// Whether a link inside the namespace is the context's to change: in
/// netctx's own namespace every link is; in a runtime's (an attachment's)
/// only the links carrying the attachment's alias.
pub(super) fn ours_inside(ctx: &Context, l: &ObsLink) -> bool {
    !ctx.is_attachment() || l.alias.as_deref() == Some(ctx.link_alias().as_str())
}

/// In a runtime's namespace, a link of a declared name that is not the
/// attachment's is someone else's: refused, not replaced.
pub(super) fn refuse_foreign_links_inside(ctx: &Context, ns: &NsState) -> Result<(), Refusal> {
    if let crate::model::Netns::Runtime { path, .. } = &ctx.netns {
        for d in &ctx.links {
            if ns.link(&d.name).is_some_and(|l| !ours_inside(ctx, l)) {
                return Err(Refusal::ForeignLinkInside {
                    name: d.name.clone(),
                    netns: path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Host side first: refuse before deciding anything else. A host address
/// (or its subnet) already on a host interface netctx did not make is that
/// interface's.
pub(super) fn refuse_foreign_host_links(ctx: &Context, obs: &Observed) -> Result<(), Refusal> {
    for h in ctx.links.iter().filter_map(|l| l.host.as_deref()) {
        if let Some(l) = obs.host.get(h) {
            match l.owner() {
                Some(o) if o == ctx.name => {}
                Some(o) => {
                    return Err(Refusal::OtherContextsLink {
                        name: h.to_string(),
                        owner: o.to_string(),
                    })
                }
                None => return Err(Refusal::ForeignHostLink(h.to_string())),
            }
        }
    }
    for wanted in ctx.links.iter().flat_map(|l| &l.host_addresses) {
        for l in obs.host.foreign() {
            if let Some(present) = l.addrs.iter().find(|a| a.overlaps(wanted)) {
                return Err(Refusal::HostAddressTaken {
                    wanted: *wanted,
                    iface: l.name.clone(),
                    present: *present,
                });
            }
        }
    }
    Ok(())
}

/// Host links of ours that the context no longer declares.
pub(super) fn stale_host_links(ctx: &Context, obs: &Observed, acts: &mut Vec<Action>) {
    let declared: Vec<&str> = ctx.links.iter().filter_map(|l| l.host.as_deref()).collect();
    let stale = obs
        .host
        .owned_by(&ctx.name)
        .filter(|l| !declared.contains(&l.name.as_str()));
    for l in stale {
        acts.push(Action::DeleteLink {
            side: Side::Host,
            name: l.name.clone(),
        });
    }
}

/// Links inside: which are kept, which are (re)made.
pub(super) fn links<'a>(
    ctx: &'a Context,
    obs: &Observed,
    ns: &NsState,
    acts: &mut Vec<Action>,
) -> Made<'a> {
    let mut made = Made::default();
    for l in ns.links.iter().filter(|l| ours_inside(ctx, l)) {
        let declared = ctx.links.iter().find(|d| d.name == l.name);
        let keep = l.name == "lo"
            || declared.is_some_and(|d| {
                l.kind.as_deref() == Some(d.kind.as_str())
                    && (d.kind != LinkKind::Veth
                        || d.host.as_deref().is_some_and(|h| obs.host.contains_key(h)))
            });
        if !keep {
            acts.push(Action::DeleteLink {
                side: Side::Ctx,
                name: l.name.clone(),
            });
            made.gone.push(l.index);
        }
    }
    for d in &ctx.links {
        let present = ns
            .link(&d.name)
            .is_some_and(|l| !made.gone.contains(&l.index));
        if present {
            continue;
        }
        made.fresh.push(&d.name);
        match d.kind {
            LinkKind::Veth => {
                let host = d.host.clone().expect("validated veth has a host name");
                if obs.host.contains_key(&host) {
                    // Ours (checked above) but its peer is gone or wrong, or a
                    // leftover of a namespace that was removed.
                    acts.push(Action::DeleteLink {
                        side: Side::Host,
                        name: host.clone(),
                    });
                }
                acts.push(Action::CreateVeth {
                    host,
                    peer: d.name.clone(),
                });
            }
            LinkKind::Dummy => acts.push(Action::CreateDummy {
                name: d.name.clone(),
            }),
        }
    }
    made
}

/// Addresses and link state, on both sides.
pub(super) fn addresses(
    ctx: &Context,
    obs: &Observed,
    ns: &NsState,
    made: &Made,
    acts: &mut Vec<Action>,
) {
    for d in &ctx.links {
        let is_fresh = made.fresh.contains(&d.name.as_str());
        if let Some(h) = &d.host {
            let obs_host = obs.host.get(h).filter(|_| !is_fresh);
            diff_addrs(acts, Side::Host, h, obs_host, &d.host_addresses);
            if !obs_host.is_some_and(|l| l.up) {
                acts.push(Action::SetUp {
                    side: Side::Host,
                    link: h.clone(),
                });
            }
        }
        let obs_link = ns.link(&d.name).filter(|_| !is_fresh);
        diff_addrs(acts, Side::Ctx, &d.name, obs_link, &d.addresses);
        if !obs_link.is_some_and(|l| l.up) {
            acts.push(Action::SetUp {
                side: Side::Ctx,
                link: d.name.clone(),
            });
        }
    }
    // A runtime's loopback is the runtime's.
    if !ns.link("lo").is_some_and(|l| l.up) && !ctx.is_attachment() {
        acts.push(Action::SetUp {
            side: Side::Ctx,
            link: "lo".into(),
        });
    }
    extra_kernel_addresses(ctx, ns, made, acts);
}

/// Addresses the kernel does not give and netctx did not declare: on lo,
/// anything but 127.0.0.1/8 and ::1/128 (lo's own come with it when it goes
/// up); on a declared link, link-local addresses beyond the kernel's own
/// (EUI-64 of its hardware address).
fn extra_kernel_addresses(ctx: &Context, ns: &NsState, made: &Made, acts: &mut Vec<Action>) {
    let lo_own = [
        Cidr::parse("127.0.0.1/8").expect("constant"),
        Cidr::parse("::1/128").expect("constant"),
    ];
    let mut del = |link: &str, cidr: Cidr| {
        acts.push(Action::DelAddr {
            side: Side::Ctx,
            link: link.to_string(),
            cidr,
        })
    };
    if let Some(lo) = ns.link("lo").filter(|_| !ctx.is_attachment()) {
        for c in lo.addrs.iter().chain(&lo.link_local) {
            if !lo_own.contains(c) {
                del("lo", *c);
            }
        }
    }
    for d in ctx
        .links
        .iter()
        .filter(|d| !made.fresh.contains(&d.name.as_str()))
    {
        let Some(l) = ns.link(&d.name) else { continue };
        let Some(mac) = l.mac else { continue };
        let own = kernel_link_local(mac);
        for c in l.link_local.iter().filter(|c| c.addr != own.addr) {
            del(&d.name, *c);
        }
    }
}

fn diff_addrs(
    acts: &mut Vec<Action>,
    side: Side,
    link: &str,
    obs: Option<&ObsLink>,
    want: &[Cidr],
) {
    let have: &[Cidr] = obs.map_or(&[], |l| &l.addrs);
    for c in have.iter().filter(|c| !want.contains(c)) {
        acts.push(Action::DelAddr {
            side,
            link: link.to_string(),
            cidr: *c,
        });
    }
    for c in want.iter().filter(|c| !have.contains(c)) {
        acts.push(Action::AddAddr {
            side,
            link: link.to_string(),
            cidr: *c,
        });
    }
}
