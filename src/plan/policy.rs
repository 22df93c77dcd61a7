//! The policy's rules in a context's forward chain on the host
//! (docs/policy.md): the administrator's floor (`deny`), what the context
//! may open to the host's own services (reached through the same chain
//! from the input hook's dispatch, where the output interface is none),
//! to other contexts (their `accept_from` resolved into `admit`), to the
//! world through the uplink, and what may open connections into it.

use super::rules::{accept_marked, drop_if};
use crate::kernel::nft::expr::{
    Dir, Match, Rule, CT_ESTABLISHED, CT_RELATED, ICMPV6_ECHO_REQUEST, ICMP_ECHO_REQUEST,
    IPPROTO_TCP, IPPROTO_UDP, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT,
};
use crate::kernel::nft::ranges::{shared, RangeSet};
use crate::kernel::nft::table::{Chain, TimedSet};
use crate::model::{dns_set, Cidr, Context, Egress, Isolation, Peer, Ports, Proto, Reach};

/// The DNS service of netctx's resolver (`netctx watch`), on the host side.
pub const DNS_PORT: u16 = 53;

/// The host's sets of the addresses netctx's resolver allowed the context:
/// none unless its `reach` names a domain (and it goes out by an uplink).
pub fn dns_sets(ctx: &Context) -> Vec<TimedSet> {
    if !ctx.needs_resolver() {
        return Vec::new();
    }
    [false, true]
        .into_iter()
        .map(|v6| TimedSet {
            name: dns_set(&ctx.name, v6),
            v6,
        })
        .collect()
}

/// Which list a context's range set holds the address ranges of. Not
/// `deny`: the administrator's floor is the same few ranges for every
/// context, in a few sets they share (`deny_sets`); a set a context would
/// cost the kernel a search through every set of the host's table at every
/// set and rule made (nf_tables keeps them in a list): quadratic, a third
/// of `up`'s CPU at 8,000 contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reach,
    Accept,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reach => "reach",
            Kind::Accept => "accept",
        }
    }
}

/// The name of a context's range set: `CTX_reach4`, `CTX_acceptp6`…
pub fn range_set_name(ctx: &str, kind: Kind, v6: bool, ports: bool) -> String {
    let p = if ports { "p" } else { "" };
    format!("{ctx}_{}{p}{}", kind.name(), if v6 { 6 } else { 4 })
}

/// The range sets of one of the context's lists that hold any entry: per
/// family, the ranges without ports and those with.
pub fn kind_sets(ctx: &Context, kind: Kind) -> Vec<RangeSet> {
    let all = [Kind::Reach, Kind::Accept];
    let mut out: Vec<(Kind, RangeSet)> = all
        .into_iter()
        .flat_map(|k| sets_of(ctx, k).into_iter().map(move |s| (k, s)))
        .collect();
    // Numbered as nft numbers a file's sets after the dispatches' maps
    // (the forward one 1, the NAT ones 2 to 5) and the shared deny sets (6
    // to 9): ids unique in a transaction.
    let first = u32::try_from(crate::kernel::nft::dispatch::nat::NatMap::ALL.len()).unwrap_or(0)
        + 2
        + shared::COUNT;
    for (i, (_, s)) in out.iter_mut().enumerate() {
        s.id = u32::try_from(i).unwrap_or(0) + first;
    }
    out.retain(|(k, _)| *k == kind);
    out.into_iter().map(|(_, s)| s).collect()
}

/// The address ranges of a list (`reach`, `accept_from`, `deny`), with
/// their ports.
fn net_entries(list: &[Reach]) -> Vec<(Cidr, Option<Ports>)> {
    list.iter()
        .filter_map(|r| match r.to {
            Peer::Net(n) => Some((n, r.ports)),
            _ => None,
        })
        .collect()
}

/// Whether `e` has ranges of the family and kind (with ports or not) of a
/// set.
fn has_kind(e: &[(Cidr, Option<Ports>)], v6: bool, ports: bool) -> bool {
    e.iter()
        .any(|(c, p)| c.is_v4() != v6 && p.is_some() == ports)
}

fn sets_of(ctx: &Context, kind: Kind) -> Vec<RangeSet> {
    let list = match kind {
        Kind::Reach => &ctx.reach,
        Kind::Accept => &ctx.accept_from,
    };
    let e = net_entries(list);
    let mut out = Vec::new();
    for v6 in [false, true] {
        for ports in [false, true] {
            if has_kind(&e, v6, ports) {
                let name = range_set_name(&ctx.name, kind, v6, ports);
                out.push(RangeSet::new(name, v6, ports, &e));
            }
        }
    }
    out
}

/// The names of the sets the chains look up.
fn used(chains: &[Chain]) -> std::collections::HashSet<&str> {
    chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.matches)
        .filter_map(|m| match m {
            Match::InSet { set, .. } => Some(set.as_str()),
            _ => None,
        })
        .collect()
}

/// Every range set of the context's own that its chains look up.
pub fn range_sets(ctx: &Context, chains: &[Chain]) -> Vec<RangeSet> {
    let used = used(chains);
    [Kind::Reach, Kind::Accept]
        .into_iter()
        .flat_map(|k| kind_sets(ctx, k))
        .filter(|s| used.contains(s.name.as_str()))
        .collect()
}

/// The shared deny sets the context's chains look up.
pub fn shared_sets(ctx: &Context, chains: &[Chain]) -> Vec<RangeSet> {
    let used = used(chains);
    deny_sets(ctx)
        .into_iter()
        .filter(|s| used.contains(s.name.as_str()))
        .collect()
}

fn in_range_set(s: &RangeSet, dir: Dir) -> Match {
    Match::InSet {
        v6: s.v6,
        dir,
        ports: s.ports,
        set: s.name.clone(),
        set_id: s.id(),
    }
}

/// The matches of a port specification (none: any port and protocol).
pub fn ports(p: Option<Ports>) -> Vec<Match> {
    let Some(p) = p else { return Vec::new() };
    let proto = match p.proto {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
    };
    if p.lo == p.hi {
        vec![Match::Dport { proto, port: p.lo }]
    } else {
        vec![Match::DportRange {
            proto,
            lo: p.lo,
            hi: p.hi,
        }]
    }
}

fn prefix(dir: Dir, cidr: Cidr) -> Match {
    Match::Prefix { dir, cidr }
}

/// What the input hook brings: no output interface.
fn to_host(v: &str) -> Vec<Match> {
    vec![Match::IifName(v.into()), Match::NoOif]
}

/// The shared sets of the context's floor (`deny`), one per family and
/// kind (with ports or not) it has entries of: the declared contexts' or,
/// for a CNI attachment, the attachments' (`ranges::shared`).
pub fn deny_sets(ctx: &Context) -> Vec<RangeSet> {
    let e = net_entries(&ctx.deny);
    let mut out = Vec::new();
    for ports in [false, true] {
        for v6 in [false, true] {
            if has_kind(&e, v6, ports) {
                let name = shared::name(ctx.is_attachment(), v6, ports);
                let mut s = RangeSet::new(name, v6, ports, &e);
                s.id = shared::id(v6, ports);
                out.push(s);
            }
        }
    }
    out
}

/// `deny`: logged and dropped before anything the context may reach, by a
/// lookup in the shared sets (`deny_sets`), whose elements change in place.
pub(super) fn deny(ctx: &Context, veths: &[String], rules: &mut Vec<Rule>) {
    let sets = deny_sets(ctx);
    for v in veths {
        for s in &sets {
            let m = vec![Match::IifName(v.clone()), in_range_set(s, Dir::Dst)];
            rules.extend(drop_if(ctx, m));
        }
    }
}

/// The host's own services: a strict context reaches them only on the
/// ports its `reach` names as `host`, and always sends ICMP echo to its
/// host side and IPv6 neighbour discovery; the rest falls to the chain's
/// drop. A context without isolation reaches them all.
pub(super) fn host_input(ctx: &Context, veths: &[String], rules: &mut Vec<Rule>) {
    for v in veths {
        if ctx.isolation != Isolation::Strict {
            rules.push(accept_marked(to_host(v)));
            continue;
        }
        let link = ctx.links.iter().find(|l| l.host.as_deref() == Some(v));
        let mut sides: Vec<Cidr> = link
            .map(|l| {
                l.host_addresses
                    .iter()
                    .map(|a| Cidr {
                        prefix: crate::model::max_prefix(a.addr),
                        ..*a
                    })
                    .collect()
            })
            .unwrap_or_default();
        sides.push(Cidr::parse("fe80::/10").expect("constant prefix"));
        for side in sides {
            let (v6, ty) = if side.is_v4() {
                (false, ICMP_ECHO_REQUEST)
            } else {
                (true, ICMPV6_ECHO_REQUEST)
            };
            let mut m = to_host(v);
            m.push(Match::Icmp { v6, ty });
            m.push(prefix(Dir::Dst, side));
            rules.push(accept_marked(m));
        }
        for ty in [ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT] {
            let mut m = to_host(v);
            m.push(Match::Icmp { v6: true, ty });
            rules.push(accept_marked(m));
        }
        for r in ctx.reach.iter().filter(|r| r.to == Peer::Host) {
            let mut m = to_host(v);
            m.extend(ports(r.ports));
            rules.push(accept_marked(m));
        }
        if ctx.needs_resolver() {
            resolver_input(link, v, rules);
        }
    }
}

/// netctx's resolver, at the host side of the context's first veth: UDP
/// and TCP port 53 to its host addresses.
fn resolver_input(link: Option<&crate::model::Link>, v: &str, rules: &mut Vec<Rule>) {
    let Some(link) = link else { return };
    for a in &link.host_addresses {
        for proto in [IPPROTO_UDP, IPPROTO_TCP] {
            let mut m = to_host(v);
            m.push(prefix(
                Dir::Dst,
                Cidr {
                    prefix: crate::model::max_prefix(a.addr),
                    ..*a
                },
            ));
            m.push(Match::Dport {
                proto,
                port: DNS_PORT,
            });
            rules.push(accept_marked(m));
        }
    }
}

/// Other contexts: each `reach` entry naming one, as far as its
/// `accept_from` admits it.
pub(super) fn contexts(ctx: &Context, veths: &[String], rules: &mut Vec<Rule>) {
    for r in ctx.reach.iter().filter(|r| r.context().is_some()) {
        for a in &r.admit {
            for v in veths {
                for to in &r.links {
                    let mut m = vec![Match::IifName(v.clone()), Match::OifName(to.clone())];
                    m.extend(a.from.map(|f| prefix(Dir::Src, f)));
                    m.extend(ports(a.ports));
                    rules.push(accept_marked(m));
                }
            }
        }
    }
}

/// Out through the uplink: the whole world, or exactly the address ranges
/// `reach` names when it names ranges or domains (a domain's addresses are
/// those netctx's resolver answered, in the context's timed sets).
pub(super) fn egress(ctx: &Context, v: &str, up: &str, rules: &mut Vec<Rule>) {
    if ctx.egress == Egress::None {
        return;
    }
    let pair = vec![Match::IifName(v.into()), Match::OifName(up.into())];
    if !ctx.reach.iter().any(|r| r.is_world()) {
        rules.push(accept_marked(pair));
        return;
    }
    for s in kind_sets(ctx, Kind::Reach) {
        let mut m = pair.clone();
        m.push(in_range_set(&s, Dir::Dst));
        rules.push(accept_marked(m));
    }
    // One rule per set and port specification, however many names share it.
    let mut specs: Vec<Option<Ports>> = ctx.domains().map(|(_, r)| r.ports).collect();
    specs.sort();
    specs.dedup();
    for set in dns_sets(ctx) {
        for p in &specs {
            let mut m = pair.clone();
            m.push(Match::InSet {
                v6: set.v6,
                dir: Dir::Dst,
                ports: false,
                set: set.name.clone(),
                set_id: set.id(),
            });
            m.extend(ports(*p));
            rules.push(accept_marked(m));
        }
    }
}

/// In from the uplink to a routed or announced context: every source, or exactly the
/// address ranges its `accept_from` names when it has one.
pub(super) fn routed_in(ctx: &Context, v: &str, up: &str, rules: &mut Vec<Rule>) {
    // Routed and announced addresses are reached from beyond the uplink
    // directly.
    if ctx.egress != Egress::Routed && !ctx.announce {
        return;
    }
    let pair = vec![Match::IifName(up.into()), Match::OifName(v.into())];
    if ctx.accept_from.is_empty() {
        rules.push(accept_marked(pair));
        return;
    }
    for s in kind_sets(ctx, Kind::Accept) {
        let mut m = pair.clone();
        m.push(in_range_set(&s, Dir::Src));
        rules.push(accept_marked(m));
    }
}

/// Into a strict context, from whatever the host forwards that no other
/// rule admitted (a second LAN, docker0, a VPN, a context without
/// isolation): replies to its own connections pass, the rest is logged and
/// dropped. With an uplink, `uplink_rules` already accepted the replies.
pub(super) fn into(ctx: &Context, veths: &[String], rules: &mut Vec<Rule>) {
    if ctx.isolation != Isolation::Strict {
        return;
    }
    for v in veths {
        if !ctx.uses_uplink() {
            rules.push(accept_marked(vec![
                Match::OifName(v.clone()),
                Match::CtState(CT_ESTABLISHED | CT_RELATED),
            ]));
        }
        rules.extend(drop_if(ctx, vec![Match::OifName(v.clone())]));
    }
}
