//! The rules netctx wants: the table `inet netctx` inside a context (address
//! sets, strict isolation, logging chains) and, on the host, one ingress chain
//! per host-side veth that drops sources the context does not own. Pure: from
//! the model to the tables and chains `kernel::nft` encodes.

use std::net::IpAddr;

use crate::kernel::nft::expr::{
    Action, Dir, Match, Rule, CT_ESTABLISHED, CT_RELATED, CT_STATUS_DNAT, ICMP_REDIRECT,
    ND_REDIRECT, ND_ROUTER_ADVERT, PACKET_BROADCAST, PACKET_MULTICAST,
};
use crate::kernel::nft::table::{
    Chain, ChainKind, Set, Table, NF_INET_FORWARD, NF_INET_INGRESS, NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT, REGULAR,
};
use crate::model::{Cidr, Context, Hook, Isolation, LinkKind};

fn log_rule(ctx: &Context, prefix: &str) -> Rule {
    Rule {
        matches: vec![],
        action: Action::Log {
            rate: ctx.log_rate,
            prefix: prefix.to_string(),
            group: ctx.log_group,
        },
    }
}

/// Accept what the host forwards for a context, marked (`FORWARD_MARK`) so
/// that the host's own firewall can let it pass too.
pub(super) fn accept_marked(matches: Vec<Match>) -> Rule {
    Rule {
        matches,
        action: Action::MarkAccept(FORWARD_MARK),
    }
}

fn accept(matches: Vec<Match>) -> Rule {
    Rule {
        matches,
        action: Action::Accept,
    }
}

fn drop_rules(ctx: &Context) -> [Rule; 2] {
    log_drop(ctx, "CTX:DROP:")
}

/// Log (rate-limited, with `prefix`) and count and drop.
pub(super) fn log_drop(ctx: &Context, prefix: &str) -> [Rule; 2] {
    [
        log_rule(ctx, prefix),
        Rule {
            matches: vec![],
            action: Action::Drop,
        },
    ]
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).expect("constant prefix")
}

/// The sets of the context's own addresses (`assigned4`, `assigned6`).
fn assigned_sets(ctx: &Context) -> Vec<Set> {
    let of = |v6: bool| -> Vec<IpAddr> {
        ctx.links
            .iter()
            .flat_map(|l| &l.addresses)
            .filter(|a| a.is_v4() != v6)
            .map(|a| a.addr)
            .collect()
    };
    vec![
        Set {
            name: "assigned4".into(),
            v6: false,
            id: 1,
            elems: of(false),
        },
        Set {
            name: "assigned6".into(),
            v6: true,
            id: 2,
            elems: of(true),
        },
    ]
}

/// The table inside the context; `None` when it needs none (isolation off,
/// no logging, no fences on connections).
pub fn context_table(ctx: &Context) -> Option<Table> {
    let strict = ctx.isolation == Isolation::Strict;
    if !strict && ctx.log.is_empty() && !super::fences::fenced(ctx) {
        return None;
    }
    let sets = if strict { assigned_sets(ctx) } else { vec![] };
    let in_set = |v6: bool, dir: Dir| Match::InSet {
        v6,
        dir,
        ports: false,
        set: if v6 { "assigned6" } else { "assigned4" }.into(),
        set_id: if v6 { 2 } else { 1 },
    };
    // The fences' regular chains first: the hooks' rules jump to them.
    let mut chains = super::fences::chains(ctx);
    for (hook, hooknum, prefix) in [
        (Hook::Input, NF_INET_LOCAL_IN, "CTX:INPUT:"),
        (Hook::Forward, NF_INET_FORWARD, "CTX:FORWARD:"),
        (Hook::Output, NF_INET_LOCAL_OUT, "CTX:OUTPUT:"),
    ] {
        let mut rules = Vec::new();
        if ctx.log.contains(&hook) {
            rules.push(log_rule(ctx, prefix));
        }
        rules.extend(super::fences::hook_rules(ctx, hook));
        if strict && hook == Hook::Input {
            rules.push(accept(vec![Match::IifName("lo".into())]));
            rules.push(accept(vec![in_set(false, Dir::Dst)]));
            rules.push(accept(vec![in_set(true, Dir::Dst)]));
            // Subnet broadcast, and IPv6 neighbour discovery (multicast,
            // link-local).
            rules.push(accept(vec![Match::PktType(PACKET_BROADCAST)]));
            rules.push(accept(vec![Match::PktType(PACKET_MULTICAST)]));
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Dst,
                cidr: cidr("fe80::/10"),
            }]));
            rules.extend(drop_rules(ctx));
        }
        if strict && hook == Hook::Output {
            rules.push(accept(vec![Match::OifName("lo".into())]));
            rules.push(accept(vec![in_set(false, Dir::Src)]));
            rules.push(accept(vec![in_set(true, Dir::Src)]));
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Src,
                cidr: cidr("fe80::/10"),
            }]));
            // Duplicate address detection sends from ::.
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Src,
                cidr: cidr("::/128"),
            }]));
            rules.extend(drop_rules(ctx));
        }
        if !rules.is_empty() {
            chains.push(Chain {
                name: hook_name(hook).into(),
                kind: ChainKind::Filter,
                hooknum,
                device: None,
                rules,
            });
        }
    }
    Some(Table {
        comment: format!("netctx context {}", ctx.name),
        sets,
        chains,
    })
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
    }
}

/// Prefix of the names of a context's chains in the host's table.
pub fn host_chain_prefix(ctx: &str) -> String {
    format!("{ctx}_")
}

/// The host's chains for a context: one per host-side veth, on its ingress,
/// refusing router advertisements and redirects and accepting the context's
/// sources (its addresses; with ip_forward also the subnets of its links),
/// dropping the rest; and its forward chain (`forward_chain`).
pub fn host_chains(ctx: &Context) -> Vec<Chain> {
    let strict = ctx.isolation == Isolation::Strict;
    // Without isolation, a chain only for the uplink's paths, or for the
    // contexts its reach names (a strict receiver refuses what no chain
    // accepted).
    let reaches = ctx.reach.iter().any(|r| r.context().is_some());
    if !strict && !ctx.uses_uplink() && !reaches {
        return Vec::new();
    }
    let mut sources = super::nat::sources(ctx);
    sources.push(cidr("fe80::/10"));
    sources.push(cidr("::/128"));
    let veths = host_veths(ctx);
    let mut chains: Vec<Chain> = Vec::new();
    if strict {
        chains.extend(veths.iter().map(|host| ingress_chain(ctx, host, &sources)));
    }
    if !veths.is_empty() {
        chains.push(forward_chain(ctx, &veths));
    }
    chains.extend(super::nat::chains(ctx));
    chains
}

/// The chain on the ingress of a host-side veth: router advertisements and
/// redirects would reroute the host; only the context's sources pass.
fn ingress_chain(ctx: &Context, host: &str, sources: &[Cidr]) -> Chain {
    let mut rules: Vec<Rule> = [
        (true, ND_ROUTER_ADVERT),
        (true, ND_REDIRECT),
        (false, ICMP_REDIRECT),
    ]
    .into_iter()
    .flat_map(|(v6, ty)| drop_if(ctx, vec![Match::Icmp { v6, ty }]))
    .collect();
    rules.extend(sources.iter().map(|c| {
        accept(vec![Match::Prefix {
            dir: Dir::Src,
            cidr: *c,
        }])
    }));
    rules.extend(drop_rules(ctx));
    Chain {
        name: format!("{}{host}", host_chain_prefix(&ctx.name)),
        kind: ChainKind::Filter,
        hooknum: NF_INET_INGRESS,
        device: Some(host.to_string()),
        rules,
    }
}

pub(crate) fn host_veths(ctx: &Context) -> Vec<String> {
    ctx.links
        .iter()
        .filter(|l| l.kind == LinkKind::Veth)
        .filter_map(|l| l.host.clone())
        .collect()
}

/// The packet-mark bit netctx's forward chains set on what they accept, so
/// that a foreign chain can accept it too (Docker's `DOCKER-USER`,
/// docs/coexistence.md): one bit, ORed in, the other bits left as they are.
/// Bit 13: outside kube-proxy's 0x4000/0x8000, Cilium's 0x0f00, Calico's
/// 0xffff0000 and Tailscale's 0xff0000.
pub const FORWARD_MARK: u32 = 0x0000_2000;

/// The name of the context's forward chain in the host's table.
pub fn forward_chain_name(ctx: &str) -> String {
    format!("{}forward", host_chain_prefix(ctx))
}

/// The dispatch's elements for the context (`kernel::nft::dispatch`): each
/// host veth to its forward chain, when its host chains (`host_chains`)
/// have one.
pub fn dispatch_elems(ctx: &Context, chains: &[Chain]) -> Vec<(String, String)> {
    let fwd = forward_chain_name(&ctx.name);
    if !chains.iter().any(|c| c.name == fwd) {
        return Vec::new();
    }
    let mut e: Vec<(String, String)> = host_veths(ctx)
        .into_iter()
        .map(|v| (v, fwd.clone()))
        .collect();
    e.sort();
    e
}

/// What the host forwards for packets that come from the context: replies
/// of connections others opened to it, connections to the contexts it may
/// `reach`; everything else is logged and dropped. Packets coming from
/// other contexts are their own forward chains' business.
fn forward_chain(ctx: &Context, veths: &[String]) -> Chain {
    let mut rules = Vec::new();
    if ctx.isolation != Isolation::Strict && !ctx.uses_uplink() {
        // No isolation: the floor and the contexts it may reach; the rest
        // falls through to the receivers' chains (and the host's policy).
        super::policy::deny(ctx, veths, &mut rules);
        super::policy::contexts(ctx, veths, &mut rules);
        return Chain {
            name: forward_chain_name(&ctx.name),
            kind: ChainKind::Filter,
            hooknum: REGULAR,
            device: None,
            rules,
        };
    }
    for v in veths {
        rules.push(accept_marked(vec![
            Match::IifName(v.clone()),
            Match::CtState(CT_ESTABLISHED | CT_RELATED),
        ]));
    }
    super::policy::deny(ctx, veths, &mut rules);
    super::policy::host_input(ctx, veths, &mut rules);
    super::policy::contexts(ctx, veths, &mut rules);
    if let Some(up) = ctx.uplink.as_deref().filter(|_| ctx.uses_uplink()) {
        uplink_rules(ctx, up, veths, &mut rules);
    }
    for v in veths {
        rules.extend(drop_if(ctx, vec![Match::IifName(v.clone())]));
    }
    super::policy::into(ctx, veths, &mut rules);
    // Reached through the dispatch, by the context's veths.
    Chain {
        name: forward_chain_name(&ctx.name),
        kind: ChainKind::Filter,
        hooknum: REGULAR,
        device: None,
        rules,
    }
}

/// The forward path through the uplink: out for egress; in, replies,
/// published ports (DNATed) and with `routed` or `announce` anything; the rest from the
/// uplink to the context is logged and dropped (a LAN host routing to the
/// context's private address included). Only packets between the uplink
/// and this context's veths: other contexts' traffic is theirs.
fn uplink_rules(ctx: &Context, up: &str, veths: &[String], rules: &mut Vec<Rule>) {
    let pair = |from: &str, to: &str| vec![Match::IifName(from.into()), Match::OifName(to.into())];
    for v in veths {
        super::policy::egress(ctx, v, up, rules);
        rules.push(accept_marked(vec![
            Match::OifName(v.clone()),
            Match::CtState(CT_ESTABLISHED | CT_RELATED),
        ]));
        if !ctx.publish.is_empty() {
            rules.push(accept_marked(vec![
                Match::OifName(v.clone()),
                Match::CtStatus(CT_STATUS_DNAT),
            ]));
        }
        super::policy::routed_in(ctx, v, up, rules);
        rules.extend(drop_if(ctx, pair(up, v)));
    }
}

/// Log (`CTX:DROP:`) and drop what `matches`.
pub(super) fn drop_if(ctx: &Context, matches: Vec<Match>) -> [Rule; 2] {
    let [mut log, mut drop] = drop_rules(ctx);
    log.matches.clone_from(&matches);
    drop.matches = matches;
    [log, drop]
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
