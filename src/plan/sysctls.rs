//! The switches netctx owns inside a context (docs/design.md, "Integrity") and on
//! the host side of its veths, and the plan that restores them: any other
//! value is drift.

use std::collections::BTreeMap;

use super::{Action, Made};
use crate::model::{Context, LinkKind};
use crate::observe::links::NsState;

/// Per-device switches of IPv4 that a context must not have on: a new
/// namespace inherits them from the host's (`devconf_inherit_init_net`).
const V4_CONF: [&str; 4] = [
    "accept_redirects",
    "accept_source_route",
    "proxy_arp",
    "route_localnet",
];
/// Per-device switches of IPv6 that are off; `forwarding` follows
/// `ip_forward` and `accept_ra` the link's `accept_ra`.
const V6_CONF: [&str; 2] = ["accept_redirects", "accept_source_route"];
/// Every group may open ICMP datagram sockets (ping without raw sockets),
/// guests' groups included: their host ids reach 65536·65535 + 65534.
pub const PING_GROUPS: &str = "0 4294967294";
/// Guests run in a user namespace of their context, whose root has no
/// privilege over the context's network namespace: ports below 1024 are
/// open to them through this switch (docs/guests.md).
pub const UNPRIVILEGED_PORT_START: &str = "0";

fn v4(dev: &str, key: &str) -> String {
    format!("net/ipv4/conf/{dev}/{key}")
}

fn v6(dev: &str, key: &str) -> String {
    format!("net/ipv6/conf/{dev}/{key}")
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// Every switch netctx owns inside `ctx`, with its value, in the order they
/// are written ("all" and "default" before the devices).
pub fn wanted(ctx: &Context) -> Vec<(String, String)> {
    if ctx.is_attachment() {
        return attachment_wanted(ctx);
    }
    let fwd = flag(ctx.ip_forward);
    let mut w = vec![
        ("net/ipv4/ip_forward".to_string(), fwd.clone()),
        ("net/ipv4/ip_nonlocal_bind".to_string(), flag(false)),
        ("net/ipv6/ip_nonlocal_bind".to_string(), flag(false)),
        (
            "net/ipv4/ping_group_range".to_string(),
            PING_GROUPS.to_string(),
        ),
        (
            "net/ipv4/ip_unprivileged_port_start".to_string(),
            UNPRIVILEGED_PORT_START.to_string(),
        ),
    ];
    let mut devs: Vec<(&str, bool)> = vec![("all", false), ("default", false), ("lo", false)];
    devs.extend(ctx.links.iter().map(|l| (l.name.as_str(), l.accept_ra)));
    for (dev, accept_ra) in devs {
        w.extend(V4_CONF.iter().map(|k| (v4(dev, k), flag(false))));
        w.extend(V6_CONF.iter().map(|k| (v6(dev, k), flag(false))));
        w.push((v6(dev, "forwarding"), fwd.clone()));
        w.push((v6(dev, "accept_ra"), flag(accept_ra)));
    }
    w
}

/// What a namespace holds right after netctx made it: the kernel's values,
/// and the ones `creation` writes before any link exists (so links made
/// later inherit them from "default").
pub fn fresh() -> BTreeMap<String, String> {
    let mut s: BTreeMap<String, String> = creation().into_iter().collect();
    for (k, v) in [
        ("net/ipv4/ip_forward", "0"),
        ("net/ipv4/ip_nonlocal_bind", "0"),
        ("net/ipv6/ip_nonlocal_bind", "0"),
        ("net/ipv4/ping_group_range", "1 0"),
        ("net/ipv4/ip_unprivileged_port_start", "1024"),
    ] {
        s.insert(k.into(), v.into());
    }
    for dev in ["all", "default", "lo"] {
        s.insert(v6(dev, "accept_source_route"), "0".into());
        s.insert(v6(dev, "forwarding"), "0".into());
    }
    s
}

/// In a runtime's namespace, whose own switches are the runtime's: only the
/// hardening switches of the attachment's links.
fn attachment_wanted(ctx: &Context) -> Vec<(String, String)> {
    let mut w = Vec::new();
    for l in &ctx.links {
        let dev = l.name.as_str();
        w.extend(V4_CONF.iter().map(|k| (v4(dev, k), flag(false))));
        w.extend(V6_CONF.iter().map(|k| (v6(dev, k), flag(false))));
        w.push((v6(dev, "accept_ra"), flag(l.accept_ra)));
    }
    w
}

/// The switches to read before planning: those netctx owns, and for a link
/// that may be made anew the "default" it inherits from.
pub fn observed_paths(ctx: &Context) -> Vec<String> {
    let mut paths: Vec<String> = wanted(ctx).into_iter().map(|(p, _)| p).collect();
    if ctx.is_attachment() {
        let dev: Vec<&str> = ctx.links.iter().map(|l| l.name.as_str()).collect();
        let defaults: Vec<String> = paths
            .iter()
            .filter_map(|p| {
                let (fam, rest) = p.strip_prefix("net/")?.split_once("/conf/")?;
                let (d, key) = rest.split_once('/')?;
                dev.contains(&d)
                    .then(|| format!("net/{fam}/conf/default/{key}"))
            })
            .collect();
        paths.extend(defaults);
        paths.sort();
        paths.dedup();
    }
    paths
}

/// Written into a new namespace before anything else: the hardening
/// switches of "all", "default" and lo.
pub fn creation() -> Vec<(String, String)> {
    let mut w = Vec::new();
    for dev in ["all", "default", "lo"] {
        w.extend(V4_CONF.iter().map(|k| (v4(dev, k), flag(false))));
        w.push((v6(dev, "accept_redirects"), flag(false)));
        w.push((v6(dev, "accept_ra"), flag(false)));
    }
    w
}

/// The value a switch has now, as far as the plan knows: what the plan's
/// earlier writes made it (`after`), else a link made by this plan inherits
/// the "default" observed, else what was observed.
fn have(ns: &NsState, path: &str, made: &Made, after: &BTreeMap<String, String>) -> Option<String> {
    if let Some(v) = after.get(path) {
        return Some(v.clone());
    }
    let mut parts = path.split('/');
    if let (Some("net"), Some(fam), Some("conf"), Some(dev), Some(key)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        if made.fresh.contains(&dev) {
            // Links are made before switches are written: it inherits the
            // value "default" has now.
            let dflt = format!("net/{fam}/conf/default/{key}");
            return ns.sysctls.get(&dflt).cloned();
        }
    }
    ns.sysctls.get(path).cloned()
}

/// What the kernel changes on its own when a switch is written: IPv4
/// forwarding turns "all" redirects to its opposite; IPv6 "all" forwarding
/// sets every device's.
fn side_effects(ctx: &Context, path: &str, value: &str, after: &mut BTreeMap<String, String>) {
    let flip = if value == "1" { "0" } else { "1" };
    match path {
        "net/ipv4/ip_forward" => {
            after.insert(v4("all", "accept_redirects"), flip.to_string());
        }
        "net/ipv6/conf/all/forwarding" => {
            let devs = ["default", "lo"]
                .into_iter()
                .chain(ctx.links.iter().map(|l| l.name.as_str()));
            for d in devs {
                after.insert(v6(d, "forwarding"), value.to_string());
            }
        }
        _ => {}
    }
}

/// Switches, inside the namespace only, that differ from what netctx owns.
pub(super) fn sysctls(ctx: &Context, ns: &NsState, made: &Made, acts: &mut Vec<Action>) {
    let mut after: BTreeMap<String, String> = BTreeMap::new();
    for (path, value) in wanted(ctx) {
        // A switch the kernel does not have (IPv6 off) is not drift.
        let Some(now) = have(ns, &path, made, &after) else {
            continue;
        };
        if now != value {
            side_effects(ctx, &path, &value, &mut after);
            after.insert(path.clone(), value.clone());
            acts.push(Action::Sysctl { path, value });
        }
    }
}

/// Host-side veth switches: a context must not reconfigure the host.
pub fn host_wanted(ctx: &Context) -> Vec<(String, String)> {
    let mut w = Vec::new();
    for l in ctx.links.iter().filter(|l| l.kind == LinkKind::Veth) {
        let Some(h) = &l.host else { continue };
        for key in ["accept_ra", "autoconf", "accept_redirects"] {
            w.push((v6(h, key), flag(false)));
        }
        w.push((v4(h, "accept_redirects"), flag(false)));
        if ctx.uses_uplink() {
            // Forwarding on the context's side of the uplink path (a kernel
            // without per-interface IPv6 forwarding has no such switch).
            w.push((v4(h, "forwarding"), flag(true)));
            w.push((v6(h, "force_forwarding"), flag(true)));
        }
        if ctx.uplink.is_some() && ctx.egress == crate::model::Egress::Routed {
            // The context's on-link LAN neighbours are answered for by the
            // host, which routes to them.
            w.push((v4(h, "proxy_arp"), flag(true)));
        }
    }
    w
}

/// The host-side switches to write: a new veth has the kernel's defaults.
pub(super) fn host_sysctls(ctx: &Context, host: &BTreeMap<String, String>, acts: &mut Vec<Action>) {
    let renewed: Vec<String> = acts
        .iter()
        .filter_map(|a| match a {
            Action::CreateVeth { host, .. } => Some(host.clone()),
            _ => None,
        })
        .collect();
    for (path, value) in host_wanted(ctx) {
        let fresh = renewed.iter().any(|h| path.contains(&format!("/{h}/")));
        if fresh || host.get(&path).is_some_and(|v| *v != value) {
            acts.push(Action::HostSysctl { path, value });
        }
    }
}
