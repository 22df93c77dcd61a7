//! Cross-checks over all declarations of all files (names, ids, host-side
//! names, addresses, subnets, reach, gateways) and the merge of `[defaults]`
//! into each context. Produces the validated `model::Config`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::parse::{CtxDecl, FileDecl, Settings};
use super::ports::{parse_entry, EntryKind};
use super::{Diag, Loc};
use crate::model::{
    Cidr, Config, Context, Egress, Isolation, Link, LinkKind, Reach, Route, DEFAULT_DENY,
};

/// Collects the errors of every check.
pub(super) struct Errors<'a>(pub(super) &'a mut Vec<Diag>);

impl Errors<'_> {
    pub(super) fn at(&mut self, loc: &Loc, msg: String) {
        self.0.push(Diag {
            loc: loc.clone(),
            msg,
        });
    }
}

pub fn validate(files: Vec<FileDecl>, diags: &mut Vec<Diag>) -> Config {
    let mut err = Errors(diags);
    let (defaults, mut decls) = merge(files, &mut err);
    unique_contexts(&mut decls, &mut err);
    super::ids::id_ranges(&decls, &super::ids::subordinate_ids(), &mut *err.0);
    let hosts: Vec<Vec<Option<String>>> = host_names(&decls, &mut err);
    unique_addresses(&decls, &mut err);
    disjoint_subnets(&decls, &mut err);
    reach_targets(&decls, &mut err);
    super::uplink::check(&decls, &defaults, &hosts, err.0);
    let mut contexts: Vec<Context> = decls
        .into_iter()
        .zip(hosts)
        .map(|(c, hosts)| build(c, hosts, &defaults, &mut err))
        .collect();
    contexts.sort_by(|a, b| a.name.cmp(&b.name));
    super::policy::resolve_reach(&mut contexts);
    Config {
        contexts,
        host_firewall: defaults.host_firewall.unwrap_or_default(),
    }
}

/// `[defaults]` at most once over all files; every context of every file.
fn merge(files: Vec<FileDecl>, err: &mut Errors) -> (Settings, Vec<CtxDecl>) {
    let mut defaults: Option<(Settings, Loc)> = None;
    let mut decls: Vec<CtxDecl> = Vec::new();
    for f in files {
        if let Some((s, loc)) = f.defaults {
            match &defaults {
                Some((_, first)) => err.at(&loc, format!("[defaults] already declared at {first}")),
                None => defaults = Some((s, loc)),
            }
        }
        decls.extend(f.contexts);
    }
    (defaults.map(|(s, _)| s).unwrap_or_default(), decls)
}

/// A context is declared once; ids are unique.
fn unique_contexts(decls: &mut Vec<CtxDecl>, err: &mut Errors) {
    let mut seen: HashMap<String, Loc> = HashMap::new();
    let mut ids: HashMap<u16, (String, Loc)> = HashMap::new();
    decls.retain(|c| {
        if let Some(first) = seen.get(&c.name) {
            err.at(
                &c.loc,
                format!("context {} already declared at {first}", c.name),
            );
            return false;
        }
        seen.insert(c.name.clone(), c.loc.clone());
        if let Some((id, loc)) = &c.id {
            if let Some((other, first)) = ids.get(id) {
                err.at(
                    loc,
                    format!("id {id} already used by context {other} at {first}"),
                );
            } else {
                ids.insert(*id, (c.name.clone(), loc.clone()));
            }
        }
        true
    });
}

/// The default host-side name of a context's `i`th veth.
fn default_host(ctx: &str, i: usize) -> Option<String> {
    match i {
        0 => Some(format!("nx-{ctx}")),
        1..=9 => Some(format!("nx-{ctx}{i}")),
        _ => None,
    }
}

/// Links: unique names within a context; host-side names resolved and
/// unique over all contexts. One entry per link (None for non-veths).
fn host_names(decls: &[CtxDecl], err: &mut Errors) -> Vec<Vec<Option<String>>> {
    let mut taken: HashMap<String, (String, Loc)> = HashMap::new();
    let mut all = Vec::new();
    for c in decls {
        let mut names: HashMap<&str, &Loc> = HashMap::new();
        let mut veths = 0;
        let mut hosts = Vec::new();
        for l in &c.links {
            if let Some(first) = names.get(l.name.as_str()) {
                let m = format!(
                    "context {}: link {} already declared at {first}",
                    c.name, l.name
                );
                err.at(&l.loc, m);
            } else {
                names.insert(&l.name, &l.loc);
            }
            if l.kind != LinkKind::Veth {
                hosts.push(None);
                continue;
            }
            let (host, loc) = match &l.host {
                Some((h, loc)) => (Some(h.clone()), loc.clone()),
                None => (default_host(&c.name, veths), l.loc.clone()),
            };
            veths += 1;
            let Some(host) = host else {
                let m = format!(
                    "context {}: more than 10 veth links need explicit host names",
                    c.name
                );
                err.at(&l.loc, m);
                hosts.push(None);
                continue;
            };
            if crate::model::RESERVED_CHAINS.contains(&host.as_str()) {
                // The names of the context's other chains in the host table.
                err.at(&loc, format!("host-side name {host:?} is reserved"));
            }
            if let Some((other, first)) = taken.get(&host) {
                let m = format!("host-side name {host} already used by context {other} at {first}");
                err.at(&loc, m);
            } else {
                taken.insert(host.clone(), (c.name.clone(), loc));
            }
            hosts.push(Some(host));
        }
        all.push(hosts);
    }
    all
}

/// Each address belongs to one place only.
fn unique_addresses(decls: &[CtxDecl], err: &mut Errors) {
    let mut owners: HashMap<IpAddr, (String, Loc)> = HashMap::new();
    for c in decls {
        for l in &c.links {
            let inside = l
                .addresses
                .iter()
                .map(|a| (a, format!("context {}", c.name)));
            let host = l
                .host_addresses
                .iter()
                .map(|a| (a, format!("the host side of context {}", c.name)));
            for ((cidr, loc), owner) in inside.chain(host) {
                if let Some((first_owner, first)) = owners.get(&cidr.addr) {
                    let m = format!(
                        "address {} is already assigned to {first_owner} at {first}",
                        cidr.addr
                    );
                    err.at(loc, m);
                } else {
                    owners.insert(cidr.addr, (owner, loc.clone()));
                }
            }
        }
    }
}

/// No subnet of a context's links (inside or host side) overlaps a subnet
/// of another context's: else the host could not tell them apart. (Two
/// CIDRs overlap only when one contains the other.)
fn disjoint_subnets(decls: &[CtxDecl], err: &mut Errors) {
    let mut index = SubnetIndex::default();
    for c in decls {
        let mine: Vec<(Cidr, &Loc)> = c
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().chain(&l.host_addresses))
            .map(|(a, loc)| (*a, loc))
            .collect();
        for (a, loc) in &mine {
            let clash = index.overlapping(&a.subnet(), &c.name);
            // The same address twice is reported once, as a duplicate.
            if let Some((other, owner, at)) = clash.filter(|(o, _, _)| o.addr != a.addr) {
                let m = format!(
                    "subnet {} of context {} overlaps subnet {} of context {owner} at {at}",
                    a.subnet(),
                    c.name,
                    other.subnet()
                );
                err.at(loc, m);
            }
        }
        for (a, loc) in mine {
            index.insert(a, &c.name, loc);
        }
    }
}

/// Subnets by (family, first address, prefix): which contain a subnet, and
/// which a subnet contains, without comparing every pair.
#[derive(Default)]
struct SubnetIndex<'a> {
    by_start: std::collections::BTreeMap<(bool, u128, u8), Vec<Entry<'a>>>,
}

/// A subnet's address, its context and where it was declared.
type Entry<'a> = (Cidr, &'a str, &'a Loc);

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl<'a> SubnetIndex<'a> {
    fn insert(&mut self, a: Cidr, owner: &'a str, loc: &'a Loc) {
        let (v6, start) = bits(a.network());
        self.by_start
            .entry((v6, start, a.prefix))
            .or_default()
            .push((a, owner, loc));
    }

    /// A subnet of another owner that contains `s` or lies inside it.
    fn overlapping(&self, s: &Cidr, owner: &str) -> Option<Entry<'a>> {
        let (v6, start) = bits(s.network());
        let width = if v6 { 128 } else { 32 };
        let other =
            |v: &Vec<(Cidr, &'a str, &'a Loc)>| v.iter().find(|(_, o, _)| *o != owner).copied();
        // Subnets containing s: its own network at every shorter prefix.
        for q in 1..=s.prefix {
            let host = width - u32::from(q);
            let net = if host >= 128 {
                0
            } else {
                start >> host << host
            };
            if let Some(hit) = self.by_start.get(&(v6, net, q)).and_then(other) {
                return Some(hit);
            }
        }
        // Subnets inside s: their first address lies in s.
        let host = width - u32::from(s.prefix);
        let last = start | ((1u128 << host) - 1);
        self.by_start
            .range((v6, start, 0)..=(v6, last, u8::MAX))
            .find_map(|(_, v)| other(v))
    }
}

/// `reach` and `accept_from` name declared contexts, other than itself.
fn reach_targets(decls: &[CtxDecl], err: &mut Errors) {
    for c in decls {
        let entries = c.reach.iter().map(|e| ("reach", e));
        let entries = entries.chain(c.accept_from.iter().map(|e| ("accept_from", e)));
        for (key, (r, loc)) in entries {
            let Some(to) = r.context() else { continue };
            if to == c.name {
                err.at(
                    loc,
                    format!(
                        "context {}: {key} entry {r:?} names itself",
                        c.name,
                        r = r.to_string()
                    ),
                );
            } else if !decls.iter().any(|d| d.name == to) {
                let m = format!(
                    "context {}: {key} entry {:?} names context {to}, which is not declared",
                    c.name,
                    r.to_string()
                );
                err.at(loc, m);
            }
        }
    }
}

/// Routes: the gateway must be on one of the context's link subnets, one
/// route per destination.
fn routes(c: &CtxDecl, err: &mut Errors) -> Vec<Route> {
    let subnets: Vec<Cidr> = c
        .links
        .iter()
        .flat_map(|l| l.addresses.iter().map(|(a, _)| *a))
        .collect();
    let mut routes: Vec<Route> = Vec::new();
    for r in &c.routes {
        if !subnets.iter().any(|s| s.contains(r.via)) {
            let m = format!(
                "context {}: route gateway {} is on no link's subnet",
                c.name, r.via
            );
            err.at(&r.via_loc, m);
            continue;
        }
        let unspecified = match r.via {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let to = r.to.unwrap_or(Cidr {
            addr: unspecified,
            prefix: 0,
        });
        if routes.iter().any(|x| x.to == to) {
            err.at(
                &r.via_loc,
                format!("context {}: a second route to {to}", c.name),
            );
            continue;
        }
        routes.push(Route { to, via: r.via });
    }
    routes
}

/// The validated context: its settings over `[defaults]`.
fn build(c: CtxDecl, hosts: Vec<Option<String>>, d: &Settings, err: &mut Errors) -> Context {
    let routes = routes(&c, err);
    let s = &c.settings;
    let entries = |v: Vec<(Reach, Loc)>| {
        let mut v: Vec<Reach> = v.into_iter().map(|(r, _)| r).collect();
        v.sort();
        v.dedup();
        v
    };
    let reach = entries(c.reach);
    let accept_from = entries(c.accept_from);
    let deny = match &d.deny {
        Some(v) => entries(v.clone()),
        None => DEFAULT_DENY
            .iter()
            .map(|s| parse_entry(s, EntryKind::Deny).expect("a constant range"))
            .collect(),
    };
    Context {
        limits: c.limits.unwrap_or_default(),
        hostname: c.hostname.unwrap_or_else(|| c.name.clone()),
        id: c.id.map(|(i, _)| i),
        ip_forward: s.ip_forward.or(d.ip_forward).unwrap_or(false),
        log: s.log.clone().or_else(|| d.log.clone()).unwrap_or_default(),
        log_group: s
            .log_group
            .or(d.log_group)
            .unwrap_or(crate::model::DEFAULT_LOG_GROUP),
        log_rate: s
            .log_rate
            .or(d.log_rate)
            .unwrap_or(crate::model::DEFAULT_LOG_RATE),
        isolation: s.isolation.or(d.isolation).unwrap_or(Isolation::Strict),
        single_ip: s.single_ip.or(d.single_ip).unwrap_or(false),
        announce: s.announce.or(d.announce).unwrap_or(false),
        links: c
            .links
            .into_iter()
            .zip(hosts)
            .map(|(l, host)| Link {
                kind: l.kind,
                name: l.name,
                host,
                host_addresses: l.host_addresses.into_iter().map(|(a, _)| a).collect(),
                addresses: l.addresses.into_iter().map(|(a, _)| a).collect(),
                accept_ra: l.accept_ra,
                ptp: false,
            })
            .collect(),
        routes,
        reach,
        accept_from,
        deny,
        uplink: s
            .uplink
            .as_ref()
            .or(d.uplink.as_ref())
            .map(|(u, _)| u.clone()),
        egress: s
            .egress
            .as_ref()
            .or(d.egress.as_ref())
            .map_or(Egress::None, |(e, _)| *e),
        publish: c.publish.into_iter().map(|(p, _)| p).collect(),
        guest: c.guest,
        file: c.loc.file.clone(),
        netns: crate::model::Netns::Named,
        name: c.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subnet_index_agrees_with_comparing_every_pair() {
        let loc = Loc {
            file: "t.toml".into(),
            line: 1,
            col: 1,
        };
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut all: Vec<(Cidr, String)> = Vec::new();
        for i in 0..400 {
            let v6 = next() % 4 == 0;
            let (addr, max) = if v6 {
                let a = u128::from(next() % 4) << 120 | u128::from(next() % 16) << 112;
                (IpAddr::V6(Ipv6Addr::from(a | 1)), 128)
            } else {
                let a = 10u32 << 24 | u32::try_from(next() % 4).unwrap() << 16 | 1;
                (IpAddr::V4(Ipv4Addr::from(a)), 32)
            };
            let prefix = u8::try_from(next() % max + 1).unwrap();
            all.push((Cidr { addr, prefix }, format!("c{}", i % 50)));
        }
        let mut index = SubnetIndex::default();
        for (i, (c, owner)) in all.iter().enumerate() {
            let brute = all[..i]
                .iter()
                .any(|(o, w)| w != owner && crate::config::addr::overlap(&o.subnet(), &c.subnet()));
            assert_eq!(
                index.overlapping(&c.subnet(), owner).is_some(),
                brute,
                "{c}"
            );
            index.insert(*c, owner, &loc);
        }
    }
}
