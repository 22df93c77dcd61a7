//! Cross-checks over all declarations of all files (names, ids, host-side
//! names, addresses, gateways) and the merge of `[defaults]` into each
//! context. Produces the validated `model::Config`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::parse::{CtxDecl, FileDecl, Settings};
use super::{Diag, Loc};
use crate::model::{Cidr, Config, Context, Isolation, Link, LinkKind, Route};

pub fn validate(files: Vec<FileDecl>, diags: &mut Vec<Diag>) -> Config {
    let mut err = |loc: &Loc, msg: String| {
        diags.push(Diag {
            loc: loc.clone(),
            msg,
        })
    };

    // [defaults]: at most once over all files.
    let mut defaults: Option<(Settings, Loc)> = None;
    let mut decls: Vec<CtxDecl> = Vec::new();
    for f in files {
        if let Some((s, loc)) = f.defaults {
            match &defaults {
                Some((_, first)) => err(&loc, format!("[defaults] already declared at {first}")),
                None => defaults = Some((s, loc)),
            }
        }
        decls.extend(f.contexts);
    }
    let defaults = defaults.map(|(s, _)| s).unwrap_or_default();

    // A context is declared once; ids are unique.
    let mut seen: HashMap<String, Loc> = HashMap::new();
    let mut ids: HashMap<u16, (String, Loc)> = HashMap::new();
    decls.retain(|c| {
        if let Some(first) = seen.get(&c.name) {
            err(
                &c.loc,
                format!("context {} already declared at {first}", c.name),
            );
            return false;
        }
        seen.insert(c.name.clone(), c.loc.clone());
        if let Some((id, loc)) = &c.id {
            if let Some((other, first)) = ids.get(id) {
                err(
                    loc,
                    format!("id {id} already used by context {other} at {first}"),
                );
            } else {
                ids.insert(*id, (c.name.clone(), loc.clone()));
            }
        }
        true
    });

    // Links: unique names within a context; host-side names resolved and
    // unique over all contexts.
    let mut host_names: HashMap<String, (String, Loc)> = HashMap::new();
    let mut resolved_hosts: Vec<Vec<Option<String>>> = Vec::new();
    for c in &decls {
        let mut names: HashMap<&str, &Loc> = HashMap::new();
        let mut veth_index = 0;
        let mut hosts = Vec::new();
        for l in &c.links {
            if let Some(first) = names.get(l.name.as_str()) {
                err(
                    &l.loc,
                    format!(
                        "context {}: link {} already declared at {first}",
                        c.name, l.name
                    ),
                );
            } else {
                names.insert(&l.name, &l.loc);
            }
            if l.kind != LinkKind::Veth {
                hosts.push(None);
                continue;
            }
            let (host, loc) = match &l.host {
                Some((h, loc)) => (h.clone(), loc.clone()),
                None => {
                    let h = match veth_index {
                        0 => format!("nx-{}", c.name),
                        i @ 1..=9 => format!("nx-{}{i}", c.name),
                        _ => {
                            err(
                                &l.loc,
                                format!(
                                    "context {}: more than 10 veth links need explicit host names",
                                    c.name
                                ),
                            );
                            veth_index += 1;
                            hosts.push(None);
                            continue;
                        }
                    };
                    (h, l.loc.clone())
                }
            };
            veth_index += 1;
            if let Some((other, first)) = host_names.get(&host) {
                err(
                    &loc,
                    format!("host-side name {host} already used by context {other} at {first}"),
                );
            } else {
                host_names.insert(host.clone(), (c.name.clone(), loc));
            }
            hosts.push(Some(host));
        }
        resolved_hosts.push(hosts);
    }

    // Addresses: each IP belongs to one place only.
    let mut owners: HashMap<IpAddr, (String, Loc)> = HashMap::new();
    for c in &decls {
        for l in &c.links {
            let places = l
                .addresses
                .iter()
                .map(|a| (a, format!("context {}", c.name)))
                .chain(
                    l.host_addresses
                        .iter()
                        .map(|a| (a, format!("the host side of context {}", c.name))),
                );
            for ((cidr, loc), owner) in places {
                if let Some((first_owner, first)) = owners.get(&cidr.addr) {
                    err(
                        loc,
                        format!(
                            "address {} is already assigned to {first_owner} at {first}",
                            cidr.addr
                        ),
                    );
                } else {
                    owners.insert(cidr.addr, (owner, loc.clone()));
                }
            }
        }
    }

    // Routes: the gateway must be on one of the context's link subnets.
    let mut contexts = Vec::new();
    for (c, hosts) in decls.into_iter().zip(resolved_hosts) {
        let subnets: Vec<Cidr> = c
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().map(|(a, _)| *a))
            .collect();
        let mut routes = Vec::new();
        for r in &c.routes {
            if !subnets.iter().any(|s| s.contains(r.via)) {
                err(
                    &r.via_loc,
                    format!(
                        "context {}: route gateway {} is on no link's subnet",
                        c.name, r.via
                    ),
                );
                continue;
            }
            let to = r.to.unwrap_or(match r.via {
                IpAddr::V4(_) => Cidr {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                },
                IpAddr::V6(_) => Cidr {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                },
            });
            let route = Route { to, via: r.via };
            if routes.iter().any(|x: &Route| x.to == to) {
                err(
                    &r.via_loc,
                    format!("context {}: a second route to {to}", c.name),
                );
                continue;
            }
            routes.push(route);
        }
        let s = &c.settings;
        let d = &defaults;
        let file = c.loc.file.clone();
        contexts.push(Context {
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
                })
                .collect(),
            routes,
            guest: c.guest,
            name: c.name,
            file,
        });
    }
    contexts.sort_by(|a, b| a.name.cmp(&b.name));
    Config { contexts }
}
