//! `plan(desired, observed) -> Plan`: the pure diff between a context's
//! declaration and what the kernel has. No I/O; `apply` carries it out and
//! `status` shows it as drift.

use std::fmt;
use std::net::IpAddr;

use crate::kernel::nft::dispatch::render_map;
use crate::kernel::nft::table::{render_chain, Chain, Table};
use crate::model::{Cidr, Context, Route};
use crate::observe::links::{NsState, ObsRoute};
use crate::observe::nft::Live;
use crate::observe::owner::NsOwner;

pub mod announce;
pub mod fences;
pub mod firewall;
mod links;
pub mod nat;
mod policy;
mod routes;
pub mod rules;
pub mod sysctls;
pub mod tables;
pub mod uplink;

pub use policy::deny_sets;

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
    /// A route to one address on a link, no gateway (`TO dev LINK scope
    /// link`): inside, to a point-to-point link's gateway; on the host, to
    /// one of the context's addresses over its host veth.
    AddLinkRoute {
        side: Side,
        link: String,
        to: Cidr,
    },
    /// A switch under /proc/sys inside the namespace.
    Sysctl {
        path: String,
        value: String,
    },
    /// A switch under /proc/sys on the host (of a host-side veth).
    HostSysctl {
        path: String,
        value: String,
    },
    /// A switch on the host that the context's uplink needs (recorded
    /// before it is written, restored when the last context needing it goes).
    UplinkSysctl {
        path: String,
        value: String,
    },
    /// A routed context's address: answered for on the uplink (a proxy
    /// neighbour entry) and routed to the context's host veth (`up`
    /// adds both through the record, after the contexts converge).
    Routed {
        uplink: String,
        addr: IpAddr,
        veth: String,
        /// Which of the two is missing.
        missing: &'static str,
    },
    /// An announced address: a host route `ADDR/32` (`/128`) over the host
    /// veth `link`, of protocol netctx (docs/cluster.md).
    Announce {
        link: String,
        addr: IpAddr,
    },
    /// A route of protocol netctx over the context's host veth `link` that
    /// no announced address wants.
    Unannounce {
        link: String,
        addr: IpAddr,
    },
    /// Replace the context's table `inet netctx` with `table` (one
    /// transaction).
    ReplaceTable {
        table: Table,
        /// Whether a table is there to replace (a new one needs no delete,
        /// and a transaction without deletes is cheaper to close).
        exists: bool,
    },
    /// Remove the context's table (isolation off, no logging).
    DeleteTable,
    /// Set the rate of one end of a veth (netctx's token bucket at its
    /// root, changed in place), or with `None` remove the bucket.
    Qdisc {
        side: Side,
        link: String,
        /// Bits a second (`limits.bandwidth`).
        bandwidth: Option<u64>,
    },
    /// Replace the context's chains in the host's table (one transaction):
    /// the chains named in `remove` go, `chains` come.
    ReplaceHostChains {
        remove: Vec<String>,
        chains: Vec<Chain>,
        /// The forward and NAT dispatches' elements of the context (and
        /// the dispatches themselves when they are missing).
        dispatch: crate::kernel::nft::dispatch::DispatchChange,
        /// The context's timed sets (netctx's resolver's): made when
        /// missing, kept with their elements when there; those that go.
        sets: Box<crate::kernel::nft::table::HostSets>,
    },
    /// Change the elements of the context's range sets in the host's table
    /// in place (one transaction; its chains stay as they are).
    UpdateHostSets(Vec<crate::kernel::nft::ranges::RangeChange>),
}

impl Action {
    /// The kind of object the action is about, as a noun (for CHECK's
    /// details and the like).
    pub fn object(&self) -> &'static str {
        let on = |s: &Side, host: &'static str, inside: &'static str| match s {
            Side::Host => host,
            Side::Ctx => inside,
        };
        match self {
            Action::RemoveNsFile | Action::CreateNs => "namespace",
            Action::DeleteLink { side, .. } | Action::SetUp { side, .. } => {
                on(side, "host link", "link")
            }
            Action::CreateVeth { .. } | Action::CreateDummy { .. } => "link",
            Action::DelAddr { side, .. } | Action::AddAddr { side, .. } => {
                on(side, "host address", "address")
            }
            Action::DelRoute(_) | Action::AddRoute(_) => "route",
            Action::AddLinkRoute { side, .. } => on(side, "host route", "route"),
            Action::Sysctl { .. } => "switch",
            Action::HostSysctl { .. } | Action::UplinkSysctl { .. } => "host switch",
            Action::Routed { .. } | Action::Announce { .. } | Action::Unannounce { .. } => {
                "host route"
            }
            Action::ReplaceTable { .. } | Action::DeleteTable => "table",
            Action::Qdisc { side, .. } => on(side, "host qdisc", "qdisc"),
            Action::ReplaceHostChains { .. } => "host chain",
            Action::UpdateHostSets(_) => "host set",
        }
    }

    /// The rules the action sends, in nft syntax (`plan -v`): a table, or
    /// host chains with the context's elements of the forward dispatch.
    pub fn rules_text(&self) -> Option<String> {
        match self {
            Action::ReplaceTable { table, .. } => Some(table.render()),
            Action::ReplaceHostChains {
                chains,
                dispatch,
                sets,
                ..
            } => {
                let mut t: String = sets.keep.iter().map(|s| s.render()).collect();
                t.extend(sets.shared.iter().chain(&sets.ranges).map(|r| r.render()));
                t.extend(chains.iter().map(render_chain));
                if !dispatch.add.is_empty() {
                    t.push_str(&render_map(&dispatch.add));
                }
                t.push_str(&dispatch.nat.render());
                Some(t)
            }
            Action::UpdateHostSets(r) => Some(r.iter().map(|r| r.render()).collect()),
            _ => None,
        }
    }
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Host => "host link",
        Side::Ctx => "link",
    }
}

/// `ADDR/32` or `ADDR/128`.
pub(crate) fn single(addr: IpAddr) -> Cidr {
    Cidr {
        addr,
        prefix: crate::model::max_prefix(addr),
    }
}

pub(crate) fn dest(c: &Cidr) -> String {
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
            Action::AddLinkRoute { side: s, link, to } => match s {
                Side::Host => write!(f, "add host route {to} dev {link}"),
                Side::Ctx => write!(f, "add route {to} dev {link}"),
            },
            Action::Sysctl { path, value } => {
                write!(f, "set {} = {value}", path.replace('/', "."))
            }
            Action::HostSysctl { path, value } => {
                write!(f, "set host {} = {value}", path.replace('/', "."))
            }
            Action::UplinkSysctl { path, value } => {
                write!(
                    f,
                    "set host {} = {value} (for the uplink)",
                    path.replace('/', ".")
                )
            }
            Action::Routed {
                uplink,
                addr,
                veth,
                missing,
            } => write!(
                f,
                "add host {missing} for routed {addr} (proxy on {uplink}, route to {veth})"
            ),
            Action::Announce { link, addr } => write!(
                f,
                "add host route {} dev {link} proto netctx (announce)",
                single(*addr)
            ),
            Action::Unannounce { link, addr } => write!(
                f,
                "remove host route {} dev {link} proto netctx (no longer announced)",
                single(*addr)
            ),
            _ => self.fmt_nft(f),
        }
    }
}

impl Action {
    /// The nftables and qdisc actions, as `Display` shows them.
    fn fmt_nft(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::ReplaceTable { table, .. } => {
                let rules: usize = table.chains.iter().map(|c| c.rules.len()).sum();
                write!(f, "replace nftables table inet netctx ({rules} rules)")
            }
            Action::DeleteTable => write!(f, "delete nftables table inet netctx"),
            Action::Qdisc {
                side: s,
                link,
                bandwidth: Some(b),
            } => write!(
                f,
                "set the rate of {} {link} to {} (limits.bandwidth)",
                side(*s),
                fences::rate_text(*b)
            ),
            Action::Qdisc {
                side: s,
                link,
                bandwidth: None,
            } => write!(f, "remove the rate limit of {} {link}", side(*s)),
            Action::ReplaceHostChains { remove, chains, .. } if chains.is_empty() => {
                write!(f, "remove host nftables chains {}", remove.join(", "))
            }
            Action::ReplaceHostChains { chains, .. } => {
                let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
                write!(f, "replace host nftables chains {}", names.join(", "))
            }
            Action::UpdateHostSets(r) => {
                let (del, add) = r
                    .iter()
                    .fold((0, 0), |(d, a), r| (d + r.del.len(), a + r.add.len()));
                let names: Vec<&str> = r.iter().map(|r| r.set.name.as_str()).collect();
                write!(
                    f,
                    "update host nftables sets {} in place (-{del} +{add} elements)",
                    names.join(", ")
                )
            }
            // The others are shown by `Display` itself.
            other => write!(f, "{other:?}"),
        }
    }
}

/// Why a context cannot be converged without touching what is not netctx's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("namespace /run/netns/{0} exists and was not made by netctx; not touching it")]
    ForeignNamespace(String),
    #[error("link {name} in {netns} was not made by netctx; not touching it")]
    ForeignLinkInside { name: String, netns: String },
    #[error("host link {0} exists and was not made by netctx; not touching it")]
    ForeignHostLink(String),
    #[error("host link {name} belongs to context {owner}")]
    OtherContextsLink { name: String, owner: String },
    #[error("the host's nftables table inet netctx was not made by netctx; not touching it")]
    ForeignHostTable,
    #[error(
        "host address {wanted} is taken: host interface {iface} (not made by netctx) has \
         {present}; not touching it (choose another subnet for this context)"
    )]
    HostAddressTaken {
        wanted: Cidr,
        iface: String,
        present: Cidr,
    },
    #[error(
        "marker /run/netctx/netns/{name} {problem}: not touching anything of this context \
         (namespace, host links, host chains); if /run/netns/{name} is netctx's, remove both \
         by hand (ip netns delete {name}; rm /run/netctx/netns/{name}) and run `netctx up {name}`, \
         otherwise rename the context"
    )]
    BadMarker {
        name: String,
        problem: crate::observe::owner::MarkerProblem,
    },
}

/// What the kernel has for one context.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub owner: NsOwner,
    pub ns: NsState,
    /// The host's links by name.
    pub host: &'a crate::observe::links::HostLinks,
    /// The host's table `inet netctx`.
    pub host_nft: &'a Live,
    /// The switches of the host's netctx links (`net/ipv6/conf/nx-web/…`).
    pub host_sysctls: &'a std::collections::BTreeMap<String, String>,
    /// The host's proxy neighbour entries and host routes.
    pub host_routed: &'a crate::observe::links::RoutedObs,
}

/// The actions, in order, that bring the kernel to `ctx`: one function per
/// kind of object, each appending to the plan.
pub fn plan(ctx: &Context, obs: &Observed) -> Result<Vec<Action>, Refusal> {
    let mut acts = Vec::new();
    // What a namespace about to be made starts with.
    let empty = match obs.owner {
        NsOwner::Ours => NsState::default(),
        _ => NsState {
            sysctls: sysctls::fresh(),
            ..NsState::default()
        },
    };
    let ns = links::namespace(ctx, obs, &mut acts, &empty)?;
    links::refuse_foreign_links_inside(ctx, ns)?;
    links::refuse_foreign_host_links(ctx, obs)?;
    links::stale_host_links(ctx, obs, &mut acts);
    let made = links::links(ctx, obs, ns, &mut acts);
    links::addresses(ctx, obs, ns, &made, &mut acts);
    routes::routes(ctx, ns, &made, &mut acts);
    routes::host_routes(ctx, obs, &made, &mut acts);
    announce::plan(ctx, obs, &made, &mut acts);
    sysctls::sysctls(ctx, ns, &made, &mut acts);
    sysctls::host_sysctls(ctx, obs.host_sysctls, &mut acts);
    uplink::plan(ctx, obs.host_sysctls, &mut acts);
    uplink::routed(ctx, obs, &mut acts);
    tables::context_table(ctx, ns, &mut acts);
    tables::host_chains(ctx, obs, &mut acts)?;
    fences::qdiscs(ctx, obs.host, ns, &made, &mut acts);
    Ok(acts)
}

/// What the link plan changed, for the plans after it.
#[derive(Debug, Default)]
pub(crate) struct Made<'a> {
    /// ifindexes of links deleted inside the namespace.
    pub gone: Vec<u32>,
    /// Links created by this plan.
    pub fresh: Vec<&'a str>,
}

#[cfg(test)]
mod tests;
