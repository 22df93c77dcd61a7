use super::*;
use crate::kernel::nft::table as ruleset;
use crate::model::{Hook, Isolation};
use crate::plan::rules;
use std::collections::HashMap;

fn conf(extra: &str) -> NetConf {
    let mut v: serde_json::Value = serde_json::from_str(
        r#"{"cniVersion":"1.0.0","name":"nx","type":"netctx","log":["input"],"log_group":7,
            "ipam":{"type":"host-local"}}"#,
    )
    .unwrap();
    let e: serde_json::Value = serde_json::from_str(extra).unwrap();
    for (k, x) in e.as_object().unwrap() {
        v[k] = x.clone();
    }
    NetConf::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn env() -> Env {
    let m: HashMap<String, String> = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Env::from_map(&m).unwrap()
}

fn ipam(s: &str) -> CniResult {
    CniResult::parse(&serde_json::from_str(s).unwrap(), "ipam").unwrap()
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

#[test]
fn host_local_v4_becomes_a_point_to_point_context() {
    let r = ipam(
        r#"{"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#,
    );
    let a = build(&conf("{}"), &env(), &r, 0).unwrap();
    assert_eq!(a.ctx.name, naming::context_name("c0ffee", "eth0"));
    assert_eq!(a.host(), naming::host_veth("c0ffee", "eth0"));
    assert_eq!(a.ifname(), "eth0");
    assert_eq!(a.addresses(), &[cidr("10.89.0.2/24")]);
    assert_eq!(a.ctx.links[0].host_addresses, vec![cidr("10.89.0.1/32")]);
    // Point to point: the gateway on the link inside, a host route to the
    // address (both planned from `ptp`), the subnet and the rest via the
    // gateway.
    assert!(a.ctx.links[0].ptp);
    let gw: IpAddr = "10.89.0.1".parse().unwrap();
    assert_eq!(
        a.ctx.routes,
        vec![
            Route {
                to: cidr("10.89.0.0/24"),
                via: gw
            },
            Route {
                to: cidr("0.0.0.0/0"),
                via: gw
            },
        ]
    );
    assert_eq!(a.ctx.log, vec![Hook::Input]);
    assert_eq!(a.ctx.log_group, 7);
    assert_eq!(a.ctx.isolation, Isolation::Strict);
    let alias = naming::Alias::parse(&a.ctx.link_alias()).unwrap();
    assert_eq!(alias.network, "nx");
    assert_eq!(alias.container_id, "c0ffee");
    assert_eq!(
        a.ctx.netns,
        crate::model::Netns::Runtime {
            path: "/run/netns/cni-1".into(),
            alias: alias.render(),
            held: None
        }
    );
}

#[test]
fn the_engines_rulesets_fit_the_attachment() {
    let r = ipam(
        r#"{"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"},{"address":"2001:db8:89::2/64"}]}"#,
    );
    let a = build(&conf("{}"), &env(), &r, 0).unwrap();
    let t = rules::context_table(&a.ctx).unwrap();
    let text = t.render();
    assert!(text.contains("10.89.0.2") && text.contains("2001:db8:89::2"));
    assert!(text.contains("CTX:INPUT:"));
    // The ingress chain of its host veth, and its forward chain.
    let chains = rules::host_chains(&a.ctx);
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[1].name, format!("{}_forward", a.ctx.name));
    assert_eq!(chains[0].device.as_deref(), Some(a.host()));
    assert!(chains[0].name.starts_with(&format!("{}_", a.ctx.name)));
    let rendered = ruleset::render_chain(&chains[0]);
    assert!(rendered.contains("10.89.0.2") && rendered.contains("2001:db8:89::2"));
    // The IPv6 gateway defaults to the subnet's first address.
    assert!(a.gateways().contains(&"2001:db8:89::1".parse().unwrap()));
    let off = build(&conf(r#"{"isolation":"off","log":[]}"#), &env(), &r, 0).unwrap();
    assert!(rules::context_table(&off.ctx).is_none());
    assert!(rules::host_chains(&off.ctx).is_empty());
}

#[test]
fn routes_with_their_own_gateway_and_duplicates() {
    let r = ipam(
        r#"{"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"},{"address":"10.89.0.2/24","gateway":"10.89.0.1"}],
            "routes":[{"dst":"198.51.100.0/24","gw":"10.89.0.254"},{"dst":"10.89.0.0/24"}]}"#,
    );
    let a = build(&conf("{}"), &env(), &r, 0).unwrap();
    assert_eq!(a.addresses().len(), 1);
    assert!(a.ctx.routes.contains(&Route {
        to: cidr("198.51.100.0/24"),
        via: "10.89.0.254".parse().unwrap()
    }));
    assert_eq!(a.ctx.routes.len(), 2);
    assert_eq!(a.result_routes.len(), 2);
}

#[test]
fn publish_reach_egress_are_carried() {
    let c = conf(
        r#"{"reach":["db:5432/tcp"],"egress":"nat","uplink":"eth0",
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
    );
    let r = ipam(r#"{"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"}]}"#);
    let a = build(&c, &env(), &r, 0).unwrap();
    let p: Vec<String> = a.ctx.publish.iter().map(|p| p.to_string()).collect();
    assert_eq!(p, vec!["8080:80/tcp"]);
    assert_eq!(c.reach, vec!["db:5432/tcp"]);
    assert_eq!(a.ctx.egress, crate::model::Egress::Nat);
    assert_eq!(a.ctx.uplink.as_deref(), Some("eth0"));
    // A loopback host address is the portmap plugin's.
    let c = conf(
        r#"{"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"hostIP":"127.0.0.1"}]}}"#,
    );
    let a = build(&c, &env(), &r, 0).unwrap();
    assert!(a.ctx.publish.is_empty());
    assert_eq!(a.unpublished.len(), 1);
}

#[test]
fn bad_ipam_answers_are_refused() {
    let c = conf("{}");
    for bad in [
        r#"{"ips":[]}"#,
        r#"{"ips":[{"address":"10.89.0.1/24","gateway":"10.89.0.1"}]}"#,
        r#"{"ips":[{"address":"10.89.0.2/24","gateway":"10.90.0.1"}]}"#,
        r#"{"ips":[{"address":"10.89.0.2/32"}]}"#,
        r#"{"ips":[{"address":"10.89.0.2/24"}],"routes":[{"dst":"::/0"}]}"#,
    ] {
        let e = build(&c, &env(), &ipam(bad), 0).unwrap_err();
        assert_eq!(e.code(), 7, "{bad}: {e}");
    }
}

#[test]
fn check_uses_the_container_interfaces_ips() {
    let prev = ipam(
        r#"{"interfaces":[{"name":"nxc1"},{"name":"eth0","sandbox":"/x"}],
            "ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1","interface":1},
                   {"address":"203.0.113.5/24","gateway":"203.0.113.1","interface":0}]}"#,
    );
    let a = build(&conf("{}"), &env(), &prev, 1).unwrap();
    assert_eq!(a.addresses(), &[cidr("10.89.0.2/24")]);
}
