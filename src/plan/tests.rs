//! The planner's tests: synthetic observed states (empty, converged, drifted,
//! foreign objects) against one declared context.

use super::*;
use crate::config::load_sources;
use crate::kernel::nft::table::{digest_of, HOST_COMMENT};
use crate::observe::links::{alias_for, HostLinks, ObsLink, ObsRoute};
use crate::observe::nft::Live;
use crate::plan::rules::{context_table, host_chains};
use netlink_packet_route::route::RouteProtocol;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const WEB: &str = r#"
[context.web]
ip_forward = true
[[context.web.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.100.0.1/24"]
addresses = ["10.100.0.2/24", "fd00:100::2/64"]
[[context.web.link]]
kind = "dummy"
name = "dummy0"
addresses = ["10.200.0.1/32"]
[[context.web.route]]
to = "default"
via = "10.100.0.1"
"#;

fn ctx() -> Context {
    let c = load_sources(&[(PathBuf::from("t.toml"), WEB.to_string())]).unwrap();
    c.contexts[0].clone()
}

fn link(index: u32, name: &str, kind: &str, addrs: &[&str]) -> ObsLink {
    ObsLink {
        index,
        name: name.into(),
        kind: Some(kind.into()),
        up: true,
        alias: None,
        addrs: addrs.iter().map(|a| Cidr::parse(a).unwrap()).collect(),
        link_local: Vec::new(),
        mac: None,
        qdisc: None,
        tbf: None,
    }
}

/// The state `up` leaves behind for `ctx()`.
fn converged() -> (NsState, HashMap<String, ObsLink>) {
    let mut lo = link(1, "lo", "", &[]);
    lo.kind = None;
    let ns = NsState {
        links: vec![
            lo,
            link(2, "eth0", "veth", &["10.100.0.2/24", "fd00:100::2/64"]),
            link(3, "dummy0", "dummy", &["10.200.0.1/32"]),
        ],
        routes: vec![ObsRoute {
            to: Cidr::parse("0.0.0.0/0").unwrap(),
            via: Some("10.100.0.1".parse().unwrap()),
            oif: Some(2),
            protocol: RouteProtocol::Static,
        }],
        sysctls: crate::plan::sysctls::wanted(&ctx()).into_iter().collect(),
        nft: {
            let t = context_table(&ctx()).unwrap();
            Live {
                exists: true,
                comment: Some(t.comment.clone()),
                digest: t.digest(),
                dispatch: None,
                nat: Default::default(),
                set_names: Vec::new(),
                ranges: Default::default(),
            }
        },
    };
    let mut h = link(9, "nx-web", "veth", &["10.100.0.1/24"]);
    h.alias = Some(alias_for("web"));
    let mut other = link(4, "eth0", "", &["192.0.2.1/24"]);
    other.kind = None;
    let host = HashMap::from([("nx-web".to_string(), h), ("eth0".to_string(), other)]);
    (ns, host)
}

/// The host-side switches `up` leaves for `ctx()`.
fn host_sysctls() -> BTreeMap<String, String> {
    crate::plan::sysctls::host_wanted(&ctx())
        .into_iter()
        .collect()
}

fn texts(a: &[Action]) -> Vec<String> {
    a.iter().map(|a| a.to_string()).collect()
}

#[test]
fn nothing_there_builds_everything_in_order() {
    let host = HashMap::new();
    let obs = Observed {
        owner: NsOwner::Absent,
        ns: NsState::default(),
        host: &HostLinks::from(host.clone()),
        host_nft: &Live::default(),
        host_sysctls: &BTreeMap::new(),
        host_routed: &Default::default(),
    };
    let p = plan(&ctx(), &obs).unwrap();
    assert_eq!(
        texts(&p),
        [
            "create network namespace",
            "create veth eth0 (host side nx-web)",
            "create dummy dummy0",
            "add address 10.100.0.1/24 to host link nx-web",
            "set host link nx-web up",
            "add address 10.100.0.2/24 to link eth0",
            "add address fd00:100::2/64 to link eth0",
            "set link eth0 up",
            "add address 10.200.0.1/32 to link dummy0",
            "set link dummy0 up",
            "set link lo up",
            "add route default via 10.100.0.1",
            "set net.ipv4.ip_forward = 1",
            "set net.ipv4.ping_group_range = 0 4294967294",
            "set net.ipv4.ip_unprivileged_port_start = 0",
            // Every device follows "all"; new links inherit "default"'s
            // switches, which netctx writes when it makes the namespace.
            "set net.ipv6.conf.all.forwarding = 1",
            "set host net.ipv6.conf.nx-web.accept_ra = 0",
            "set host net.ipv6.conf.nx-web.autoconf = 0",
            "set host net.ipv6.conf.nx-web.accept_redirects = 0",
            "set host net.ipv4.conf.nx-web.accept_redirects = 0",
            "replace nftables table inet netctx (15 rules)",
            "replace host nftables chains web_nx-web, web_forward",
        ]
    );
}

#[test]
fn converged_state_needs_nothing() {
    let (ns, host) = converged();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(plan(&ctx(), &obs).unwrap(), []);
}

#[test]
fn drift_is_repaired_and_only_the_drift() {
    let (mut ns, mut host) = converged();
    ns.links[1]
        .addrs
        .push(Cidr::parse("10.100.0.99/24").unwrap()); // extra address
    ns.links[2].up = false; // link down
    ns.routes.clear(); // missing route
    ns.sysctls
        .insert("net/ipv6/conf/all/forwarding".into(), "0".into());
    ns.links.push(link(7, "sneaky", "dummy", &[])); // extra link
    host.get_mut("nx-web").unwrap().addrs.clear();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs).unwrap()),
        [
            "delete link sneaky",
            "add address 10.100.0.1/24 to host link nx-web",
            "remove address 10.100.0.99/24 from link eth0",
            "set link dummy0 up",
            "add route default via 10.100.0.1",
            "set net.ipv6.conf.all.forwarding = 1",
        ]
    );
}

#[test]
fn extra_route_is_removed_and_routes_through_recreated_links_are_readded() {
    let (mut ns, host) = converged();
    ns.routes.push(ObsRoute {
        to: Cidr::parse("10.9.0.0/16").unwrap(),
        via: Some("10.100.0.1".parse().unwrap()),
        oif: Some(2),
        protocol: RouteProtocol::Boot,
    });
    let obs = Observed {
        owner: NsOwner::Ours,
        ns: ns.clone(),
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs).unwrap()),
        ["remove route 10.9.0.0/16 via 10.100.0.1"]
    );

    // eth0 is a dummy now: it is recreated as veth; its routes went with it.
    ns.links[1].kind = Some("dummy".into());
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    let t = texts(&plan(&ctx(), &obs).unwrap());
    assert_eq!(t[0], "delete link eth0");
    assert!(t.contains(&"delete host link nx-web".to_string()), "{t:?}");
    assert!(t.contains(&"create veth eth0 (host side nx-web)".to_string()));
    assert!(t.contains(&"add route default via 10.100.0.1".to_string()));
    assert!(!t.iter().any(|a| a.starts_with("remove route")), "{t:?}");
}

#[test]
fn foreign_objects_are_refused() {
    let (ns, mut host) = converged();
    let obs = Observed {
        owner: NsOwner::Foreign,
        ns: ns.clone(),
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        plan(&ctx(), &obs),
        Err(Refusal::ForeignNamespace("web".into()))
    );

    host.get_mut("nx-web").unwrap().alias = None;
    let obs = Observed {
        owner: NsOwner::Absent,
        ns: NsState::default(),
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        plan(&ctx(), &obs),
        Err(Refusal::ForeignHostLink("nx-web".into()))
    );

    host.get_mut("nx-web").unwrap().alias = Some(alias_for("db"));
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        plan(&ctx(), &obs),
        Err(Refusal::OtherContextsLink {
            name: "nx-web".into(),
            owner: "db".into()
        })
    );
}

#[test]
fn leftover_host_link_of_a_vanished_namespace_is_replaced() {
    let (_, host) = converged();
    let obs = Observed {
        owner: NsOwner::OursMissing,
        ns: NsState::default(),
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    let t = texts(&plan(&ctx(), &obs).unwrap());
    assert_eq!(
        t[..3],
        [
            "create network namespace",
            "delete host link nx-web",
            "create veth eth0 (host side nx-web)"
        ]
    );
}

#[test]
fn undeclared_host_link_of_this_context_is_removed() {
    let (ns, mut host) = converged();
    let mut old = link(12, "nx-web1", "veth", &[]);
    old.alias = Some(alias_for("web"));
    host.insert("nx-web1".into(), old);
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs).unwrap()),
        ["delete host link nx-web1"]
    );
}

#[test]
fn unmounted_namespace_file_of_ours_is_remade() {
    let host = HashMap::new();
    let obs = Observed {
        owner: NsOwner::OursUnmounted,
        ns: NsState::default(),
        host: &HostLinks::from(host.clone()),
        host_nft: &host_live(),
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    let t = texts(&plan(&ctx(), &obs).unwrap());
    assert_eq!(
        t[..2],
        [
            "remove the unmounted namespace file",
            "create network namespace"
        ]
    );
}

/// The host's table as `up` leaves it for `ctx()`.
fn host_live() -> Live {
    let mut chains = host_chains(&ctx());
    let mut ranges = crate::plan::policy::range_sets(&ctx(), &chains);
    ranges.extend(crate::plan::policy::shared_sets(&ctx(), &chains));
    ranges.sort_by(|a, b| a.name.cmp(&b.name));
    chains.extend(crate::kernel::nft::dispatch::dispatch_chains());
    let nat = crate::plan::nat::nat_elems(&ctx(), &host_chains(&ctx()));
    let mut maps: Vec<_> = nat.iter().map(|(k, _)| k.map()).collect();
    maps.sort();
    maps.dedup();
    let mut groups: Vec<_> = maps.iter().map(|m| m.group()).collect();
    groups.dedup();
    for g in &groups {
        maps.extend(g.maps());
        chains.extend(g.chains());
    }
    maps.sort();
    maps.dedup();
    Live {
        exists: true,
        comment: Some(HOST_COMMENT.into()),
        digest: digest_of(&chains, &[]),
        dispatch: Some(crate::plan::rules::dispatch_elems(&ctx(), &host_chains(&ctx())).into()),
        nat: crate::observe::nft::NatLive {
            maps,
            elems: nat.into(),
        },
        set_names: ranges.iter().map(|s| s.name.clone()).collect(),
        ranges: ranges.into_iter().map(|s| (s.name, s.elems)).collect(),
    }
}

#[test]
fn rules_are_replaced_when_they_differ_and_foreign_host_table_is_refused() {
    let (mut ns, host) = converged();
    ns.nft.digest.rules.pop();
    let hl = host_live();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns: ns.clone(),
        host: &HostLinks::from(host.clone()),
        host_nft: &hl,
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs).unwrap()),
        ["replace nftables table inet netctx (15 rules)"]
    );

    let (ns, host) = converged();
    let mut hl = host_live();
    hl.digest.rules.clear();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns: ns.clone(),
        host: &HostLinks::from(host.clone()),
        host_nft: &hl,
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs).unwrap()),
        ["replace host nftables chains web_nx-web, web_forward"]
    );
    hl.comment = Some("someone else".into());
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &hl,
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(plan(&ctx(), &obs), Err(Refusal::ForeignHostTable));
}

#[test]
fn isolation_off_removes_the_rules() {
    let (ns, host) = converged();
    let mut c = ctx();
    c.isolation = crate::model::Isolation::Off;
    let hl = host_live();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &hl,
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    assert_eq!(
        texts(&plan(&c, &obs).unwrap()),
        [
            "delete nftables table inet netctx",
            "remove host nftables chains web_forward, web_nx-web"
        ]
    );
}

#[test]
fn a_domain_in_reach_gets_timed_sets_whatever_their_elements_and_they_go_with_it() {
    use crate::model::{Peer, Reach};
    let mut c = ctx();
    c.reach
        .push(Reach::new(Peer::Domain("*.example.com".into()), None));
    let mut live = host_live();
    let s = super::tables::host_sets(&c, &host_chains(&c), &live);
    let names: Vec<&str> = s.keep.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web_dns4", "web_dns6"]);
    assert!(s.remove.is_empty());
    // Another context's sets are not its own.
    live.set_names = vec!["web2_dns4".into(), "web_dns4".into(), "web_dns6".into()];
    assert!(super::tables::host_sets(&c, &host_chains(&c), &live)
        .remove
        .is_empty());
    let gone = super::tables::host_sets(&ctx(), &host_chains(&ctx()), &live);
    assert!(gone.keep.is_empty());
    assert_eq!(gone.remove, ["web_dns4", "web_dns6"]);
}

#[test]
fn missing_timed_sets_are_planned_with_the_chains_and_shown_by_plan_v() {
    use crate::model::{Peer, Reach};
    let mut c = ctx();
    c.reach
        .push(Reach::new(Peer::Domain("api.example.com".into()), None));
    let (ns, host) = converged();
    let mut chains = host_chains(&c);
    chains.extend(crate::kernel::nft::dispatch::dispatch_chains());
    let mut hl = host_live();
    hl.digest = digest_of(&chains, &[]);
    let host = HostLinks::from(host);
    let sysctls = host_sysctls();
    let acts = |hl: &Live| {
        let obs = Observed {
            owner: NsOwner::Ours,
            ns: ns.clone(),
            host: &host,
            host_nft: hl,
            host_sysctls: &sysctls,
            host_routed: &Default::default(),
        };
        plan(&c, &obs).unwrap()
    };
    let a = acts(&hl);
    let replace = a
        .iter()
        .find(|a| matches!(a, Action::ReplaceHostChains { .. }))
        .expect("the sets are missing");
    let text = replace.rules_text().unwrap();
    assert!(
        text.contains("\tset web_dns4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n"),
        "{text}"
    );
    assert!(text.contains("set web_dns6 {"), "{text}");
    // There (whatever their elements): nothing to do.
    hl.set_names = vec!["web_dns4".into(), "web_dns6".into()];
    assert!(!acts(&hl)
        .iter()
        .any(|a| matches!(a, Action::ReplaceHostChains { .. })));
}

#[test]
fn a_changed_deny_changes_the_shared_sets_in_place_and_a_new_kind_replaces_the_chains() {
    use crate::config::{parse_entry, EntryKind};
    let (ns, host) = converged();
    let hl = host_live();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &HostLinks::from(host.clone()),
        host_nft: &hl,
        host_sysctls: &host_sysctls(),
        host_routed: &Default::default(),
    };
    let mut c = ctx();
    let deny = |list: &[&str]| -> Vec<crate::model::Reach> {
        list.iter()
            .map(|d| parse_entry(d, EntryKind::Deny).unwrap())
            .collect()
    };
    // Only the addresses: the elements, in place, the chains kept.
    c.deny = deny(&["169.254.0.0/16", "fd00:ec2::253/128"]);
    let p = plan(&c, &obs).unwrap();
    assert_eq!(
        texts(&p),
        ["update host nftables sets netctx-deny6 in place (-1 +1 elements)"]
    );
    let v = p[0].rules_text().unwrap();
    assert!(
        v.contains("delete element inet netctx netctx-deny6 { fd00:ec2::254 }")
            && v.contains("add element inet netctx netctx-deny6 { fd00:ec2::253 }"),
        "{v}"
    );
    // Elements deleted behind netctx's back: the same repair.
    let mut tampered = hl.clone();
    tampered.ranges.insert("netctx-deny4".into(), Vec::new());
    let obs2 = Observed {
        host_nft: &tampered,
        ..obs.clone()
    };
    assert_eq!(
        texts(&plan(&ctx(), &obs2).unwrap()),
        ["update host nftables sets netctx-deny4 in place (-0 +1 elements)"]
    );
    // A kind of set the chains did not look up: new rules, the set made.
    c.deny = deny(&["169.254.0.0/16", "fd00:ec2::254/128", "10.9.0.0/16:22"]);
    let p = plan(&c, &obs).unwrap();
    assert_eq!(
        texts(&p),
        ["replace host nftables chains web_nx-web, web_forward"]
    );
    let Action::ReplaceHostChains { sets, .. } = &p[0] else {
        panic!("{p:?}")
    };
    let made: Vec<(&str, bool)> = sets
        .shared
        .iter()
        .map(|r| (r.set.name.as_str(), r.create))
        .collect();
    assert_eq!(made, [("netctx-denyp4", true)]);
}
