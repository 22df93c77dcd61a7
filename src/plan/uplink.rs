//! The host's switches an uplink needs (docs/uplink.md), and the guard
//! chain that keeps the host from forwarding anything else because of them.
//! Pure: `apply::uplink` records, writes and restores.
//!
//! Forwarding is turned on per interface wherever the kernel honours it:
//! IPv4 `net.ipv4.conf.IF.forwarding` (the input device's switch decides,
//! with `ip_forward` off), IPv6 `net.ipv6.conf.IF.force_forwarding` (Linux
//! 6.17+). Without the latter (6.1), IPv6 forwarding is the global
//! `net.ipv6.conf.all.forwarding`. The uplink keeps learning its default
//! route from router advertisements: `accept_ra = 2` where it was 1. The host
//! veths' own switches are netctx's links' and go with them
//! (`sysctls::host_wanted`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Action;
use crate::kernel::nft::expr::{Action as Verdict, Match, Rule};
use crate::kernel::nft::table::{Chain, ChainKind, IfnameSet, NF_INET_FORWARD};
use crate::model::{Cidr, Context, Egress, DEFAULT_LOG_GROUP, DEFAULT_LOG_RATE};

/// The guard chain in the host's table, and its set of the uplink
/// contexts' host veths: not any context's (no `_` in the name, so no
/// context prefix matches it).
pub const GUARD: &str = "netctx-guard";
/// Present when the kernel has per-interface IPv6 forwarding.
pub const FORCE_FORWARDING_PROBE: &str = "net/ipv6/conf/all/force_forwarding";

fn v4(dev: &str, key: &str) -> String {
    format!("net/ipv4/conf/{dev}/{key}")
}

fn v6(dev: &str, key: &str) -> String {
    format!("net/ipv6/conf/{dev}/{key}")
}

/// Whether the kernel has `force_forwarding`, from the host's switches read.
pub fn has_force_forwarding(host: &BTreeMap<String, String>) -> bool {
    host.contains_key(FORCE_FORWARDING_PROBE)
}

/// The paths whose values decide `switches` (read before planning).
pub fn observed_paths(ctx: &Context) -> Vec<String> {
    let Some(up) = ctx.uplink.as_deref().filter(|_| ctx.uses_uplink()) else {
        return Vec::new();
    };
    vec![
        v4(up, "forwarding"),
        v6(up, "force_forwarding"),
        v6(up, "forwarding"),
        v6("all", "forwarding"),
        v6(up, "accept_ra"),
        v6(up, "proxy_ndp"),
    ]
}

/// The host's switches `ctx` needs, with their values; `host` holds the
/// values now (for `accept_ra`, which becomes 2 only where it is 1).
pub fn switches(ctx: &Context, host: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let Some(up) = ctx.uplink.as_deref().filter(|_| ctx.uses_uplink()) else {
        return Vec::new();
    };
    let on = || "1".to_string();
    let mut w = vec![(v4(up, "forwarding"), on())];
    if has_force_forwarding(host) {
        w.push((v6(up, "force_forwarding"), on()));
    } else {
        w.push((v6("all", "forwarding"), on()));
    }
    let ra = v6(up, "accept_ra");
    if matches!(host.get(&ra).map(String::as_str), Some("1" | "2")) {
        w.push((ra, "2".into()));
    }
    if ctx.egress == Egress::Routed {
        // The kernel answers an NDP proxy entry only on an interface whose
        // own `forwarding` is on; `force_forwarding` does not set it (on
        // 6.1, `all.forwarding` did, for every interface).
        if has_force_forwarding(host) {
            w.push((v6(up, "forwarding"), on()));
        }
        w.push((v6(up, "proxy_ndp"), on()));
    }
    w
}

/// A routed context's addresses inside a subnet of the uplink (`subnets`:
/// the uplink's addresses), each with the host veth of its link: the host
/// answers for them on the uplink and routes them to that veth.
pub fn routed_entries(ctx: &Context, subnets: &[Cidr]) -> Vec<(IpAddr, String)> {
    if ctx.egress != Egress::Routed || ctx.uplink.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for l in &ctx.links {
        let Some(veth) = &l.host else { continue };
        for a in &l.addresses {
            if subnets.iter().any(|s| s.contains(a.addr)) {
                out.push((a.addr, veth.clone()));
            }
        }
    }
    out
}

/// Drift of the uplink's switches, as actions (`up` writes them through
/// the record, after the contexts converge).
pub(super) fn plan(ctx: &Context, host: &BTreeMap<String, String>, acts: &mut Vec<Action>) {
    for (path, value) in switches(ctx, host) {
        if host.get(&path) != Some(&value) {
            acts.push(Action::UplinkSysctl { path, value });
        }
    }
}

/// Drift of a routed context's proxy entries and host routes, as actions
/// (`up` adds them through the record, after the contexts converge). An
/// uplink or host veth that is not there yet has neither.
pub(super) fn routed(ctx: &Context, obs: &super::Observed, acts: &mut Vec<Action>) {
    let Some(up) = ctx.uplink.as_ref().and_then(|u| obs.host.get(u)) else {
        return;
    };
    for (addr, veth) in routed_entries(ctx, &up.addrs) {
        let oif = obs.host.get(&veth).map(|l| l.index);
        let proxy = obs.host_routed.proxies.contains(&(up.index, addr));
        let route = oif.is_some_and(|i| obs.host_routed.routes.contains(&(addr, i)));
        let missing = match (proxy, route) {
            (true, true) => continue,
            (false, false) => "proxy neighbour entry and route",
            (false, true) => "proxy neighbour entry",
            (true, false) => "route",
        };
        acts.push(Action::Routed {
            uplink: up.name.clone(),
            addr,
            veth,
            missing,
        });
    }
}

/// Which traffic a recorded switch lets the host forward: `(v6, Some(IF))`
/// for an interface's, `(v6, None)` for every interface's.
pub fn forwarding_scope(path: &str) -> Option<(bool, Option<&str>)> {
    let p: Vec<&str> = path.split('/').collect();
    match p.as_slice() {
        ["net", "ipv4", "ip_forward"] => Some((false, None)),
        ["net", "ipv4", "conf", "all", "forwarding"] => Some((false, None)),
        ["net", "ipv6", "conf", "all", "forwarding" | "force_forwarding"] => Some((true, None)),
        ["net", "ipv4", "conf", dev, "forwarding"] => Some((false, Some(*dev))),
        ["net", "ipv6", "conf", dev, "forwarding" | "force_forwarding"] => Some((true, Some(*dev))),
        _ => None,
    }
}

/// The guard: what passes through the uplink contexts' veths (the set
/// `GUARD`) is their chains' business; everything else the switches netctx
/// turned on (`changed`, recorded paths) would let the host forward is
/// logged and dropped. `None` when netctx turned no forwarding on.
pub fn guard(changed: &[&str], veths: &[String]) -> Option<(Chain, IfnameSet)> {
    let mut scopes: Vec<(bool, Option<&str>)> =
        changed.iter().filter_map(|p| forwarding_scope(p)).collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return None;
    }
    let set = IfnameSet {
        name: GUARD.into(),
        id: 1,
        elems: veths.to_vec(),
    };
    let mut rules = Vec::new();
    for output in [false, true] {
        rules.push(Rule {
            matches: vec![Match::IfnameInSet {
                output,
                set: GUARD.into(),
                set_id: 1,
            }],
            action: Verdict::Accept,
        });
    }
    for (v6, dev) in scopes {
        let mut m = vec![Match::Nfproto { v6 }];
        m.extend(dev.map(|d| Match::IifName(d.to_string())));
        let log = Verdict::Log {
            rate: DEFAULT_LOG_RATE,
            prefix: "CTX:DROP:".into(),
            group: DEFAULT_LOG_GROUP,
        };
        for action in [log, Verdict::Drop] {
            rules.push(Rule {
                matches: m.clone(),
                action,
            });
        }
    }
    let chain = Chain {
        name: GUARD.into(),
        kind: ChainKind::Filter,
        hooknum: NF_INET_FORWARD,
        device: None,
        rules,
    };
    Some((chain, set))
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
