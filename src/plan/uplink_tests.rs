use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::config::load_sources;
use crate::kernel::nft::table::render_chain;

fn ctx(extra: &str) -> Context {
    let text = format!(
        "[context.web]\nuplink = \"up0\"\n{extra}\n[[context.web.link]]\nkind = \"veth\"\nname = \"eth0\"\naddresses = [\"10.70.0.2/24\"]\n"
    );
    load_sources(&[(PathBuf::from("t.toml"), text)])
        .unwrap()
        .contexts[0]
        .clone()
}

fn host(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn per_interface_forwarding_where_the_kernel_has_it() {
    let c = ctx("egress = \"nat\"");
    let h618 = host(&[
        (FORCE_FORWARDING_PROBE, "0"),
        ("net/ipv6/conf/up0/accept_ra", "1"),
    ]);
    let w: Vec<String> = switches(&c, &h618)
        .into_iter()
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    assert_eq!(
        w,
        [
            "net/ipv4/conf/up0/forwarding=1",
            "net/ipv6/conf/up0/force_forwarding=1",
            "net/ipv6/conf/up0/accept_ra=2"
        ]
    );
    // 6.1: the global IPv6 switch; accept_ra 0 stays 0.
    let h61 = host(&[("net/ipv6/conf/up0/accept_ra", "0")]);
    let w: Vec<String> = switches(&c, &h61).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        w,
        [
            "net/ipv4/conf/up0/forwarding",
            "net/ipv6/conf/all/forwarding"
        ]
    );
    // Routed: NDP proxy entries need proxy_ndp.
    let r = ctx("egress = \"routed\"");
    assert!(switches(&r, &h61)
        .iter()
        .any(|(p, _)| p.ends_with("up0/proxy_ndp")));
    // ... and, with force_forwarding, the uplink's own IPv6 `forwarding`
    // (which the kernel's NDP proxy checks; all.forwarding sets it on 6.1).
    let fwd = |h| {
        switches(&r, h)
            .iter()
            .any(|(p, _)| p == "net/ipv6/conf/up0/forwarding")
    };
    assert!(fwd(&h618) && !fwd(&h61));
    // No egress, no published port: nothing.
    assert!(switches(&ctx(""), &h618).is_empty());
}

#[test]
fn the_guard_drops_only_what_netctx_turned_on() {
    let veths = vec!["nx-web".to_string()];
    assert!(guard(&[], &veths).is_none());
    assert!(guard(&["net/ipv6/conf/up0/accept_ra"], &veths).is_none());
    let (g, set) = guard(
        &[
            "net/ipv4/conf/up0/forwarding",
            "net/ipv6/conf/all/forwarding",
        ],
        &veths,
    )
    .unwrap();
    assert_eq!(set.elems, veths);
    let text = render_chain(&g);
    let lines: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.trim().split(" comment").next())
        .filter(|l| !l.is_empty() && *l != "}")
        .collect();
    assert_eq!(
        lines,
        [
            "iifname @netctx-guard accept",
            "oifname @netctx-guard accept",
            "meta nfproto ipv4 iifname \"up0\" limit rate 100/second burst 100 packets counter log prefix \"CTX:DROP:\" group 100",
            "meta nfproto ipv4 iifname \"up0\" counter drop",
            "meta nfproto ipv6 limit rate 100/second burst 100 packets counter log prefix \"CTX:DROP:\" group 100",
            "meta nfproto ipv6 counter drop",
        ]
    );
}

#[test]
fn drift_of_the_uplinks_switches_is_planned() {
    let c = ctx("publish = [\"8080:80\"]");
    let mut acts = Vec::new();
    let h = host(&[
        ("net/ipv4/conf/up0/forwarding", "1"),
        ("net/ipv6/conf/all/forwarding", "0"),
    ]);
    plan(&c, &h, &mut acts);
    assert_eq!(
        acts,
        [Action::UplinkSysctl {
            path: "net/ipv6/conf/all/forwarding".into(),
            value: "1".into()
        }]
    );
    assert_eq!(
        acts[0].to_string(),
        "set host net.ipv6.conf.all.forwarding = 1 (for the uplink)"
    );
}

#[test]
fn a_routed_contexts_missing_proxy_entry_or_route_is_drift() {
    use crate::observe::links::{ObsLink, RoutedObs};
    use crate::observe::nft::Live;
    use crate::observe::owner::NsOwner;
    let c = ctx("egress = \"routed\"");
    let link = |index: u32, name: &str, addrs: Vec<Cidr>| ObsLink {
        index,
        name: name.into(),
        kind: Some("veth".into()),
        up: true,
        alias: None,
        addrs,
        link_local: vec![],
        mac: None,
        qdisc: None,
        tbf: None,
    };
    let links: crate::observe::links::HostLinks = [
        link(2, "up0", vec![Cidr::parse("10.70.0.1/24").unwrap()]),
        link(7, "nx-web", vec![]),
    ]
    .into_iter()
    .map(|l| (l.name.clone(), l))
    .collect::<std::collections::HashMap<_, _>>()
    .into();
    let addr: IpAddr = "10.70.0.2".parse().unwrap();
    let (nft, sysctls) = (Live::default(), BTreeMap::new());
    let acts_with = |obs_routed: &RoutedObs| {
        let obs = crate::plan::Observed {
            owner: NsOwner::Ours,
            ns: Default::default(),
            host: &links,
            host_nft: &nft,
            host_sysctls: &sysctls,
            host_routed: obs_routed,
        };
        let mut acts = Vec::new();
        routed(&c, &obs, &mut acts);
        acts.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let both = RoutedObs {
        proxies: [(2, addr)].into(),
        routes: [(addr, 7)].into(),
        ..Default::default()
    };
    assert!(acts_with(&both).is_empty());
    let no_proxy = RoutedObs {
        proxies: [(3, addr)].into(),
        ..both.clone()
    };
    assert_eq!(
        acts_with(&no_proxy),
        ["add host proxy neighbour entry for routed 10.70.0.2 (proxy on up0, route to nx-web)"]
    );
    let wrong_route = RoutedObs {
        routes: [(addr, 9)].into(),
        ..both.clone()
    };
    assert_eq!(
        acts_with(&wrong_route),
        ["add host route for routed 10.70.0.2 (proxy on up0, route to nx-web)"]
    );
    assert_eq!(acts_with(&RoutedObs::default()).len(), 1);
}
