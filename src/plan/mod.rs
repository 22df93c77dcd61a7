//! `plan(desired, observed) -> Plan`: the pure diff between a context's
//! declaration and what the kernel has. No I/O; `apply` carries it out and
//! `status` shows it as drift.

use std::collections::HashMap;
use std::fmt;

use crate::kernel::nft::table::{self, HOST_COMMENT};
use crate::kernel::sysctl;
use crate::model::{Cidr, Context, LinkKind, Route};
use crate::observe::links::{NsState, ObsLink, ObsRoute};
use crate::observe::nft::Live;
use crate::observe::owner::NsOwner;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Host,
    Ctx,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove a namespace file of ours that has nothing mounted on it.
    RemoveNsFile,
    CreateNs,
    DeleteLink {
        side: Side,
        name: String,
    },
    CreateVeth {
        host: String,
        peer: String,
    },
    CreateDummy {
        name: String,
    },
    DelAddr {
        side: Side,
        link: String,
        cidr: Cidr,
    },
    AddAddr {
        side: Side,
        link: String,
        cidr: Cidr,
    },
    SetUp {
        side: Side,
        link: String,
    },
    DelRoute(ObsRoute),
    AddRoute(Route),
    /// A switch under /proc/sys inside the namespace.
    Sysctl {
        path: String,
        on: bool,
    },
    /// Replace the context's table `inet netctx` (one transaction).
    ReplaceTable {
        rules: usize,
        /// Whether a table is there to replace (a new one needs no delete,
        /// and a transaction without deletes is cheaper to close).
        exists: bool,
    },
    /// Remove the context's table (isolation off, no logging).
    DeleteTable,
    /// Replace the context's chains in the host's table (one transaction).
    ReplaceHostChains {
        remove: Vec<String>,
        chains: Vec<String>,
    },
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Host => "host link",
        Side::Ctx => "link",
    }
}

fn dest(c: &Cidr) -> String {
    if c.prefix == 0 {
        "default".into()
    } else {
        c.to_string()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::RemoveNsFile => write!(f, "remove the unmounted namespace file"),
            Action::CreateNs => write!(f, "create network namespace"),
            Action::DeleteLink { side: s, name } => write!(f, "delete {} {name}", side(*s)),
            Action::CreateVeth { host, peer } => {
                write!(f, "create veth {peer} (host side {host})")
            }
            Action::CreateDummy { name } => write!(f, "create dummy {name}"),
            Action::DelAddr {
                side: s,
                link,
                cidr,
            } => {
                write!(f, "remove address {cidr} from {} {link}", side(*s))
            }
            Action::AddAddr {
                side: s,
                link,
                cidr,
            } => {
                write!(f, "add address {cidr} to {} {link}", side(*s))
            }
            Action::SetUp { side: s, link } => write!(f, "set {} {link} up", side(*s)),
            Action::DelRoute(r) => match r.via {
                Some(via) => write!(f, "remove route {} via {via}", dest(&r.to)),
                None => write!(f, "remove route {}", dest(&r.to)),
            },
            Action::AddRoute(r) => write!(f, "add route {} via {}", dest(&r.to), r.via),
            Action::Sysctl { path, on } => {
                write!(f, "set {} = {}", path.replace('/', "."), u8::from(*on))
            }
            Action::ReplaceTable { rules, .. } => {
                write!(f, "replace nftables table inet netctx ({rules} rules)")
            }
            Action::DeleteTable => write!(f, "delete nftables table inet netctx"),
            Action::ReplaceHostChains { remove, chains } if chains.is_empty() => {
                write!(f, "remove host nftables chains {}", remove.join(", "))
            }
            Action::ReplaceHostChains { chains, .. } => {
                write!(f, "replace host nftables chains {}", chains.join(", "))
            }
        }
    }
}

/// Why a context cannot be converged without touching what is not netctx's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("namespace /run/netns/{0} exists and was not made by netctx; not touching it")]
    ForeignNamespace(String),
    #[error("host link {0} exists and was not made by netctx; not touching it")]
    ForeignHostLink(String),
    #[error("host link {name} belongs to context {owner}")]
    OtherContextsLink { name: String, owner: String },
    #[error("the host's nftables table inet netctx was not made by netctx; not touching it")]
    ForeignHostTable,
}

/// What the kernel has for one context.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub owner: NsOwner,
    pub ns: NsState,
    /// The host's links by name.
    pub host: &'a HashMap<String, ObsLink>,
    /// The host's table `inet netctx`.
    pub host_nft: &'a Live,
}

/// The actions, in order, that bring the kernel to `ctx`.
pub fn plan(ctx: &Context, obs: &Observed) -> Result<Vec<Action>, Refusal> {
    let mut acts = Vec::new();
    let empty = NsState::default();
    let ns = match obs.owner {
        NsOwner::Foreign => return Err(Refusal::ForeignNamespace(ctx.name.clone())),
        NsOwner::Ours => &obs.ns,
        NsOwner::Absent | NsOwner::OursMissing => {
            acts.push(Action::CreateNs);
            &empty
        }
        NsOwner::OursUnmounted => {
            acts.push(Action::RemoveNsFile);
            acts.push(Action::CreateNs);
            &empty
        }
    };

    // Host side first: refuse before deciding anything else.
    let declared_hosts: Vec<&str> = ctx.links.iter().filter_map(|l| l.host.as_deref()).collect();
    for h in &declared_hosts {
        if let Some(l) = obs.host.get(*h) {
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
    // Host links of ours that the context no longer declares.
    let mut stale_hosts: Vec<&ObsLink> = obs
        .host
        .values()
        .filter(|l| l.owner() == Some(&ctx.name) && !declared_hosts.contains(&l.name.as_str()))
        .collect();
    stale_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    for l in stale_hosts {
        acts.push(Action::DeleteLink {
            side: Side::Host,
            name: l.name.clone(),
        });
    }

    // Links inside: which are kept, which are (re)made.
    let mut gone: Vec<u32> = Vec::new(); // ifindexes deleted inside
    let mut fresh: Vec<&str> = Vec::new(); // links created by this plan
    for l in &ns.links {
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
            gone.push(l.index);
        }
    }
    for d in &ctx.links {
        let present = ns.link(&d.name).is_some_and(|l| !gone.contains(&l.index));
        if present {
            continue;
        }
        fresh.push(&d.name);
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

    // Addresses and link state.
    for d in &ctx.links {
        let is_fresh = fresh.contains(&d.name.as_str());
        if let Some(h) = &d.host {
            let obs_host = obs.host.get(h).filter(|_| !is_fresh);
            diff_addrs(&mut acts, Side::Host, h, obs_host, &d.host_addresses);
            if !obs_host.is_some_and(|l| l.up) {
                acts.push(Action::SetUp {
                    side: Side::Host,
                    link: h.clone(),
                });
            }
        }
        let obs_link = ns.link(&d.name).filter(|_| !is_fresh);
        diff_addrs(&mut acts, Side::Ctx, &d.name, obs_link, &d.addresses);
        if !obs_link.is_some_and(|l| l.up) {
            acts.push(Action::SetUp {
                side: Side::Ctx,
                link: d.name.clone(),
            });
        }
    }
    if !ns.link("lo").is_some_and(|l| l.up) {
        acts.push(Action::SetUp {
            side: Side::Ctx,
            link: "lo".into(),
        });
    }

    // Routes: those through deleted links went with them.
    let routes: Vec<&ObsRoute> = ns
        .routes
        .iter()
        .filter(|r| !r.oif.is_some_and(|o| gone.contains(&o)))
        .collect();
    for r in &routes {
        let wanted = ctx
            .routes
            .iter()
            .any(|d| d.to == r.to && Some(d.via) == r.via);
        if !wanted {
            acts.push(Action::DelRoute((*r).clone()));
        }
    }
    for d in &ctx.routes {
        if !routes.iter().any(|r| r.to == d.to && r.via == Some(d.via)) {
            acts.push(Action::AddRoute(*d));
        }
    }

    // Switches, inside the namespace only: forwarding (a new namespace
    // starts with 0) and router advertisements (a new link accepts them;
    // rogue advertisements are a known way out of a container).
    let mut want: Vec<(String, bool, bool)> = vec![
        (sysctl::FORWARD_V4.into(), ctx.ip_forward, false),
        (sysctl::FORWARD_V6.into(), ctx.ip_forward, false),
    ];
    want.extend(
        ctx.links
            .iter()
            .map(|d| (sysctl::accept_ra(&d.name), d.accept_ra, true)),
    );
    for (path, on, default) in want {
        let renewed = fresh.iter().any(|f| path == sysctl::accept_ra(f));
        let have = if renewed {
            None
        } else {
            ns.sysctls.get(&path).copied()
        };
        if have.unwrap_or(default) != on {
            acts.push(Action::Sysctl { path, on });
        }
    }

    // Rules inside: replaced whole when anything differs.
    match rules::context_table(ctx) {
        Some(t) => {
            let differs = !ns.nft.exists
                || ns.nft.comment.as_deref() != Some(t.comment.as_str())
                || ns.nft.digest != t.digest();
            if differs {
                acts.push(Action::ReplaceTable {
                    rules: t.chains.iter().map(|c| c.rules.len()).sum(),
                    exists: ns.nft.exists,
                });
            }
        }
        None if ns.nft.exists => acts.push(Action::DeleteTable),
        None => {}
    }

    // The host's chains for this context.
    let prefix = rules::host_chain_prefix(&ctx.name);
    let chains = rules::host_chains(ctx);
    let have = obs.host_nft.only(&prefix);
    // A chain on the ingress of a host veth that is made anew goes with the
    // old device on some kernels (6.1) and stays on others (6.18): either
    // way it is installed again.
    let veth_renewed = acts.iter().any(|a| matches!(a, Action::CreateVeth { .. }));
    if have != table::digest_of(&chains, &[]) || (veth_renewed && !chains.is_empty()) {
        if obs.host_nft.exists && obs.host_nft.comment.as_deref() != Some(HOST_COMMENT) {
            return Err(Refusal::ForeignHostTable);
        }
        acts.push(Action::ReplaceHostChains {
            remove: have.chains.into_iter().map(|c| c.0).collect(),
            chains: chains.into_iter().map(|c| c.name).collect(),
        });
    }
    Ok(acts)
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

#[cfg(test)]
mod tests;

pub mod rules;
