//! CNI attachments through an uplink (docs/cni.md, "Port mappings":
//! an attachment's `portMappings` are its `publish`, and work through the
//! `uplink` from the LAN and from the host exactly as a declared
//! context's published ports), with real
//! connections. The sandbox plays a node with the LAN of `uplink.rs`
//! (`up0`, namespace `lan`, 203.0.113.0/24 and 2001:db8:1::/64); the
//! runtime's namespaces are made as in `cni.rs`.

use serde_json::{json, Value};

use crate::cni::Cni;
use crate::uplink::{recv_udp, run, seen, serve, settled, switches, NET};

/// A node with the LAN behind `up0`.
fn node() -> Cni {
    let t = Cni::new();
    t.sb.ok(NET);
    t
}

/// A dual-stack network `name` (10.89.N.0/24 and fd00:89:N::/64, default
/// routes of both families) through uplink `up0` with `egress`.
fn conf(t: &Cni, name: &str, n: u8, egress: &str) -> Value {
    let mut c = t.conf("1.0.0", name, &format!("10.89.{n}.0/24"));
    c["ipam"]["ranges"] = json!([[{ "subnet": format!("10.89.{n}.0/24") }], [{ "subnet": format!("fd00:89:{n}::/64") }]]);
    c["ipam"]["routes"] = json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]);
    c["uplink"] = json!("up0");
    c["egress"] = json!(egress);
    c["capabilities"] = json!({ "portMappings": true });
    c
}

/// The attachment's addresses in the result: (IPv4, IPv6).
fn addrs(r: &Value) -> (String, String) {
    let ips: Vec<String> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().to_string()
        })
        .collect();
    let v4 = ips.iter().find(|a| !a.contains(':'));
    let v6 = ips.iter().find(|a| a.contains(':'));
    match (v4, v6) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => panic!("not dual-stack: {r}"),
    }
}

/// What the host's ruleset and the record of switches say, for messages.
fn host_state(t: &Cni) -> String {
    t.sb.ok("nft list ruleset; cat /run/netctx/host-sysctls 2>&1; true")
}

#[test]
fn port_mappings_work_through_the_uplink_from_the_lan_and_the_host() {
    let t = node();
    let before = switches(&t.sb);
    t.netns("pod");
    let mut c = conf(&t, "nx", 0, "none");
    c["runtimeConfig"] = json!({ "portMappings": [
        { "hostPort": 18080, "containerPort": 80, "protocol": "tcp" },
        { "hostPort": 15353, "containerPort": 53, "protocol": "udp" } ] });
    let r = t.call("ADD", "pod", &c).ok();
    let (v4, v6) = addrs(&r);
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    // Its publish is the engine's: a DNAT chain of its own on the host,
    // reached through the NAT dispatch's map (no `_post`: that is egress's
    // masquerade).
    let chains = t.host_chains();
    let pre = format!("_{host}_pre");
    assert!(
        chains.iter().any(|ch| ch.ends_with(&pre)),
        "no DNAT chain of {host}: {chains:?}"
    );
    // The protocol by name, or by number where there is no /etc/protocols
    // (the VM lane's image).
    let map = t.sb.ok("nft list map inet netctx netctx-publish");
    assert!(
        ["tcp", "6"]
            .iter()
            .any(|p| map.contains(&format!("ipv4 . {p} . 18080 : jump "))),
        "{map}"
    );
    assert!(map.contains(&pre), "{map}");
    assert_eq!(
        t.sb.ok("sysctl -n net.ipv4.conf.up0.forwarding").trim(),
        "1",
        "{}",
        host_state(&t)
    );
    settled(&t.sb);
    let web4 = serve(&t.sb, "pod", &v4, 80);
    let web6 = serve(&t.sb, "pod", &v6, 80);
    let dns4 = recv_udp(&t.sb, "pod", &v4, 53);
    let dns6 = recv_udp(&t.sb, "pod", &v6, 53);
    std::thread::sleep(std::time::Duration::from_millis(300));

    // From the LAN, both families, and from the host itself: the pod sees
    // the client's own address.
    let tcp = [
        (Some("lan"), "203.0.113.1"),
        (Some("lan"), "2001:db8:1::1"),
        (None, "203.0.113.1"),
    ];
    for (ns, to) in tcp {
        assert_eq!(
            run(&t.sb, ns, &format!("connect {to} 18080")),
            "connected",
            "{ns:?} to {to}:18080\n{}",
            host_state(&t)
        );
    }
    assert_eq!(seen(&web4), "203.0.113.2\n203.0.113.1\n");
    assert_eq!(seen(&web6), "2001:db8:1::2\n");
    run(&t.sb, Some("lan"), "send-udp 203.0.113.1 15353 lan4");
    run(&t.sb, Some("lan"), "send-udp 2001:db8:1::1 15353 lan6");
    assert_eq!(seen(&dns4), "lan4 203.0.113.2\n");
    assert_eq!(seen(&dns6), "lan6 2001:db8:1::2\n");
    t.call("CHECK", "pod", &Cni::with_prev(&c, &r)).ok();

    // After DEL nothing is published any more, and the host's switches are
    // as they were before ADD.
    t.call("DEL", "pod", &Cni::with_prev(&c, &r)).ok();
    for (ns, to) in tcp {
        let got = run(&t.sb, ns, &format!("connect {to} 18080"));
        assert!(
            got == "timeout" || got == "errno 111",
            "{ns:?} to {to}:18080 after DEL: {got}"
        );
    }
    run(&t.sb, Some("lan"), "send-udp 203.0.113.1 15353 gone4");
    run(&t.sb, Some("lan"), "send-udp 2001:db8:1::1 15353 gone6");
    assert_eq!(seen(&dns4), "lan4 203.0.113.2\n");
    assert_eq!(seen(&dns6), "lan6 2001:db8:1::2\n");
    assert_eq!(seen(&web4), "203.0.113.2\n203.0.113.1\n");
    assert_eq!(seen(&web6), "2001:db8:1::2\n");
    assert_eq!(switches(&t.sb), before, "{}", host_state(&t));
    assert!(t.sb.ok("nft list tables").trim().is_empty());
    assert!(!t.sb.sh("test -e /run/netctx/host-sysctls").status.success());
    t.sb.ok("ip netns del pod");
}

#[test]
fn egress_nat_of_an_attachment_reaches_the_lan_masqueraded() {
    let t = node();
    let before = switches(&t.sb);
    t.netns("pod");
    t.netns("iso");
    let nat = conf(&t, "nx", 0, "nat");
    let none = conf(&t, "iso", 1, "none");
    let r = t.call("ADD", "pod", &nat).ok();
    let ri = t.call("ADD", "iso", &none).ok();
    let (v4, _) = addrs(&r);
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let chains = t.host_chains();
    assert!(
        chains
            .iter()
            .any(|ch| ch.ends_with(&format!("_{host}_post"))),
        "no masquerade chain of {host}: {chains:?}"
    );
    settled(&t.sb);
    let lan4 = serve(&t.sb, "lan", "203.0.113.2", 7000);
    let lan6 = serve(&t.sb, "lan", "2001:db8:1::2", 7001);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for to in ["203.0.113.2 7000", "2001:db8:1::2 7001"] {
        assert_eq!(
            run(&t.sb, Some("pod"), &format!("connect {to}")),
            "connected",
            "pod to {to}\n{}",
            host_state(&t)
        );
    }
    // The LAN sees the uplink's address.
    assert_eq!(seen(&lan4), "203.0.113.1\n");
    assert_eq!(seen(&lan6), "2001:db8:1::1\n");
    // An attachment without egress reaches nothing of the LAN.
    for to in ["203.0.113.2 7000", "2001:db8:1::2 7001"] {
        assert_eq!(run(&t.sb, Some("iso"), &format!("connect {to}")), "timeout");
    }
    assert_eq!(seen(&lan4), "203.0.113.1\n");
    assert_eq!(seen(&lan6), "2001:db8:1::1\n");
    // Nor does the LAN reach the pod's private address, even routed to it.
    let web = serve(&t.sb, "pod", &v4, 80);
    t.sb.ok("ip -n lan route add 10.89.0.0/16 via 203.0.113.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        run(&t.sb, Some("lan"), &format!("connect {v4} 80")),
        "timeout"
    );
    assert_eq!(seen(&web), "");
    t.call("DEL", "iso", &Cni::with_prev(&none, &ri)).ok();
    t.call("DEL", "pod", &Cni::with_prev(&nat, &r)).ok();
    assert_eq!(switches(&t.sb), before, "{}", host_state(&t));
    assert!(t.sb.ok("nft list tables").trim().is_empty());
    t.sb.ok("ip netns del pod && ip netns del iso");
}

const DECLARED: &str = r#"
[context.decl]
uplink = "up0"
egress = "nat"
publish = ["8080:80"]
[[context.decl.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.81.0.1/24"]
addresses = ["10.81.0.2/24"]
[[context.decl.route]]
to = "default"
via = "10.81.0.1"
"#;

#[test]
fn an_attachment_and_a_declared_context_share_the_uplink() {
    let t = node();
    let before = switches(&t.sb);
    t.sb.netctx_with(DECLARED, &["up"]).ok();
    t.netns("pod");
    let mut c = conf(&t, "nx", 0, "nat");
    c["runtimeConfig"] =
        json!({ "portMappings": [{ "hostPort": 18080, "containerPort": 80, "protocol": "tcp" }] });
    let r = t.call("ADD", "pod", &c).ok();
    let (v4, _) = addrs(&r);
    let (_, alias) = t.host_links().remove(0);
    let name = alias.split(':').nth(1).unwrap().to_string();
    let rec = t.sb.ok("cat /run/netctx/host-sysctls");
    assert!(
        rec.contains("net/ipv4/conf/up0/forwarding") && rec.contains("decl") && rec.contains(&name),
        "{rec}"
    );
    settled(&t.sb);
    let pod = serve(&t.sb, "pod", &v4, 80);
    let decl = serve(&t.sb, "decl", "10.81.0.2", 80);
    let lan = serve(&t.sb, "lan", "203.0.113.2", 7000);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        run(&t.sb, Some("lan"), "connect 203.0.113.1 8080"),
        "connected"
    );
    assert_eq!(
        run(&t.sb, Some("lan"), "connect 203.0.113.1 18080"),
        "connected"
    );
    assert_eq!(seen(&decl), "203.0.113.2\n");
    assert_eq!(seen(&pod), "203.0.113.2\n");

    // `down --all` takes the declared context, not the runtime's
    // attachment, nor the switches and guard it needs.
    t.sb.netctx_with(DECLARED, &["down", "--all"]).ok();
    assert_eq!(
        run(&t.sb, Some("lan"), "connect 203.0.113.1 18080"),
        "connected",
        "the attachment's published port after down --all\n{}",
        host_state(&t)
    );
    assert_eq!(seen(&pod), "203.0.113.2\n203.0.113.2\n");
    assert_eq!(
        run(&t.sb, Some("pod"), "connect 203.0.113.2 7000"),
        "connected",
        "the attachment's egress after down --all\n{}",
        host_state(&t)
    );
    assert_eq!(seen(&lan), "203.0.113.1\n");
    assert_eq!(
        run(&t.sb, Some("lan"), "connect 203.0.113.1 8080"),
        "errno 111"
    );
    let rec = t.sb.ok("cat /run/netctx/host-sysctls 2>&1 || true");
    assert!(rec.contains(&name) && !rec.contains("decl"), "{rec}");

    // DEL of the last user restores the host.
    t.call("DEL", "pod", &Cni::with_prev(&c, &r)).ok();
    assert_eq!(switches(&t.sb), before, "{}", host_state(&t));
    assert!(!t.sb.sh("test -e /run/netctx/host-sysctls").status.success());
    assert!(t.sb.ok("nft list tables").trim().is_empty());
    t.sb.ok("ip netns del pod");
}
