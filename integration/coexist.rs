//! Living with the host's own firewall (docs/coexistence.md): an
//! nftables `accept` is final only in its own table, so Docker's policy
//! drop in `ip filter FORWARD`, a firewalld-like table that rejects what it
//! forwards, or a policy drop without Docker each stop netctx's forwarded
//! traffic. Docker's chains are built here by hand with iptables-nft, as
//! Docker builds them; the LAN is uplink.rs's.

use std::time::{Duration, Instant};

use crate::ops::Watcher;
use crate::sandbox::{probe, Sandbox};
use crate::uplink::{run, seen, serve, settled, NET};

const CFG: &str = r#"
[defaults]
uplink = "up0"
HOSTFW

[context.nat]
egress = "nat"
publish = ["8080:80"]
[[context.nat.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.81.0.1/24", "fd81::1/64"]
addresses = ["10.81.0.2/24", "fd81::2/64"]
[[context.nat.route]]
to = "default"
via = "10.81.0.1"
[[context.nat.route]]
to = "default"
via = "fd81::1"
"#;

fn cfg(host_firewall: &str) -> String {
    CFG.replace("HOSTFW", host_firewall)
}

/// Docker's forward layout, by hand: its user chain first, policy drop.
const DOCKER: &str = "\
iptables -N DOCKER-USER && iptables -I FORWARD -j DOCKER-USER && iptables -P FORWARD DROP && \
ip6tables -N DOCKER-USER && ip6tables -I FORWARD -j DOCKER-USER && ip6tables -P FORWARD DROP";

fn iptables(sb: &Sandbox) -> String {
    sb.ok("iptables -S; ip6tables -S")
}

/// Egress to the LAN and the published port from the LAN, both families:
/// what each attempt answered.
fn traffic(sb: &Sandbox) -> Vec<String> {
    let lan4 = serve(sb, "lan", "203.0.113.2", 7000);
    let lan6 = serve(sb, "lan", "2001:db8:1::2", 7001);
    let web4 = serve(sb, "nat", "10.81.0.2", 80);
    let web6 = serve(sb, "nat", "fd81::2", 80);
    settled(sb);
    let out = vec![
        run(sb, Some("nat"), "connect 203.0.113.2 7000"),
        run(sb, Some("nat"), "connect 2001:db8:1::2 7001"),
        run(sb, Some("lan"), "connect 203.0.113.1 8080"),
        run(sb, Some("lan"), "connect 2001:db8:1::1 8080"),
    ];
    // The servers saw the masqueraded and the LAN's own addresses.
    if out.iter().all(|o| o == "connected") {
        assert_eq!(seen(&lan4).trim(), "203.0.113.1");
        assert_eq!(seen(&lan6).trim(), "2001:db8:1::1");
        assert_eq!(seen(&web4).trim(), "203.0.113.2");
        assert_eq!(seen(&web6).trim(), "2001:db8:1::2");
    }
    out
}

#[test]
fn with_dockers_chains_egress_and_publish_work_and_down_leaves_them_as_they_were() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok(DOCKER);
    let before = iptables(&sb);
    // Left alone (host_firewall = "none"), Docker's policy drops netctx's
    // forwarded traffic, and status says so.
    let up = sb.netctx_with(&cfg(r#"host_firewall = "none""#), &["up"]);
    up.ok();
    assert!(
        up.stderr
            .contains("warning: host firewall: ip filter FORWARD has policy drop"),
        "{}",
        up.stderr
    );
    let blocked = traffic(&sb);
    assert!(blocked.iter().all(|o| o != "connected"), "{blocked:?}");
    let st = sb.netctx_with(&cfg(r#"host_firewall = "none""#), &["status"]);
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    assert!(
        st.stdout.contains("ip filter FORWARD has policy drop"),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains("ip6 filter FORWARD has policy drop"),
        "{}",
        st.stdout
    );
    assert_eq!(
        iptables(&sb),
        before,
        "host_firewall = none touched Docker's chains"
    );
    // `down`, which may run without the configuration, never adds the
    // rule either (here while nat still forwards).
    sb.netctx_with(&cfg(r#"host_firewall = "none""#), &["down", "gone"])
        .ok();
    assert_eq!(iptables(&sb), before, "down added netctx's rule");
    // With "auto" (the default), netctx keeps its rule in DOCKER-USER.
    let up = sb.netctx_with(&cfg(""), &["up"]);
    up.ok();
    assert!(
        up.stdout
            .contains("ip filter DOCKER-USER: netctx's rule added"),
        "{}",
        up.stdout
    );
    let rule = "-A DOCKER-USER -m mark --mark 0x2000/0x2000 -m comment --comment netctx -j ACCEPT";
    assert!(sb.ok("iptables -S DOCKER-USER").contains(rule));
    assert!(sb.ok("ip6tables -S DOCKER-USER").contains(rule));
    assert_eq!(traffic(&sb), vec!["connected"; 4]);
    let st = sb.netctx_with(&cfg(""), &["status"]);
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
    assert_eq!(
        iptables(&sb),
        before,
        "down --all left Docker's chains changed"
    );
}

#[test]
fn watch_puts_the_rule_back_when_docker_rewrites_its_chains() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok(DOCKER);
    let path = sb.write_config("netctx.toml", &cfg(""));
    let path = path.to_str().unwrap();
    sb.netctx(&["-c", path, "up"]).ok();
    let w = Watcher::start(&sb, path);
    // Docker restarting flushes its chains.
    let t = Instant::now();
    sb.ok("iptables -F DOCKER-USER");
    let v = w.next("repaired", "host", Duration::from_secs(10));
    eprintln!("DOCKER-USER repaired in {:?}", t.elapsed());
    assert!(v["actions"][0]
        .as_str()
        .unwrap()
        .contains("ip filter DOCKER-USER"));
    assert!(sb
        .ok("iptables -S DOCKER-USER")
        .contains("--comment netctx -j ACCEPT"));
    // A table that drops what netctx forwards is said when it comes, and
    // when it goes.
    sb.ok("nft add table inet firewalld && \
           nft add chain inet firewalld filter_FORWARD '{ type filter hook forward priority filter + 10; policy drop; }'");
    let v = w.next("firewall conflict", "host", Duration::from_secs(10));
    let said = v["actions"].to_string();
    assert!(
        said.contains("inet firewalld filter_FORWARD has policy drop"),
        "{said}"
    );
    sb.ok("nft delete table inet firewalld");
    w.next("firewall cleared", "host", Duration::from_secs(10));
    assert!(w.term().success());
    sb.netctx(&["-c", path, "down", "--all"]).ok();
    assert!(!sb.ok("iptables -S DOCKER-USER").contains("netctx"));
}

#[test]
fn a_firewalld_like_table_and_a_plain_policy_drop_are_named() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(&cfg(""), &["up"]).ok();
    assert_eq!(sb.netctx_with(&cfg(""), &["status"]).code, 0);
    // firewalld's layout: its own inet table, rejecting what it forwards.
    sb.ok("nft add table inet firewalld && \
           nft add chain inet firewalld filter_FORWARD '{ type filter hook forward priority filter + 10; policy accept; }' && \
           nft add rule inet firewalld filter_FORWARD ct state established,related accept && \
           nft add rule inet firewalld filter_FORWARD iifname \"lo\" accept && \
           nft add rule inet firewalld filter_FORWARD reject with icmpx admin-prohibited");
    let st = sb.netctx_with(&cfg(""), &["status"]);
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    assert!(
        st.stdout
            .contains("inet firewalld filter_FORWARD rule 3 (handle"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("rejects"), "{}", st.stdout);
    let json = sb.netctx_with(&cfg(""), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let host = v["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "host")
        .expect("a host row");
    assert_eq!(host["state"], "conflict");
    sb.ok("nft delete table inet firewalld");
    // A policy drop without Docker's user chain: nothing netctx may change.
    sb.ok("iptables -P FORWARD DROP");
    let st = sb.netctx_with(&cfg(""), &["status"]);
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    assert!(
        st.stdout.contains("ip filter FORWARD has policy drop"),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains("nft insert rule ip filter FORWARD"),
        "{}",
        st.stdout
    );
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}

#[test]
fn up_refuses_a_published_port_a_host_service_listens_on() {
    let sb = Sandbox::new();
    sb.ok(NET);
    // The host's own service on the port the context would publish.
    let ssh = sb.dir.join("host-8080");
    sb.ok(&format!(
        "{} serve 0.0.0.0 8080 30 {} >/dev/null 2>&1 &",
        probe(),
        ssh.display()
    ));
    settled(&sb);
    std::thread::sleep(Duration::from_millis(200));
    let state = || {
        (
            sb.ok("nft list ruleset"),
            sb.ok("ip netns list; ip -o link | cut -d: -f2"),
        )
    };
    let before = state();
    let up = sb.netctx_with(&cfg(""), &["up"]);
    assert_eq!(up.code, 1, "{}\n{}", up.stdout, up.stderr);
    assert!(
        up.stderr
            .contains("publish 8080:80/tcp: host port 8080/tcp is taken by netprobe (pid"),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains("refused, nothing of them changed: nat"),
        "{}",
        up.stderr
    );
    assert_eq!(state(), before, "a refused up changed something");
    // The LAN still reaches the host's service, not a context.
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 8080"),
        "connected"
    );
    assert_eq!(seen(&ssh).trim(), "203.0.113.2");
}

#[test]
fn explain_names_every_chain_that_judged_a_probe() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(&cfg(""), &["up"]).ok();
    let _lan = serve(&sb, "lan", "203.0.113.2", 7000);
    settled(&sb);
    let explain = |to: &str| sb.netctx_with(&cfg(""), &["explain", "nat", "--to", to]);
    // A clean host: netctx's own chains, and the probe passes.
    let e = explain("203.0.113.2:7000");
    assert_eq!(e.code, 0, "{}\n{}", e.stdout, e.stderr);
    assert!(e.stdout.contains("host:"), "{}", e.stdout);
    assert!(
        e.stdout.contains("inet netctx netctx-forward: rule handle"),
        "{}",
        e.stdout
    );
    assert!(e.stdout.contains("jump nat_forward"), "{}", e.stdout);
    assert!(
        e.stdout.contains("inet netctx nat_forward: rule handle"),
        "{}",
        e.stdout
    );
    assert!(
        e.stdout
            .contains("probe: 203.0.113.2:7000 from context nat: connected"),
        "{}",
        e.stdout
    );
    assert!(e.stdout.contains("verdict: passed"), "{}", e.stdout);
    // The context's strict isolation keeps it from the other network.
    let e = explain("198.51.100.2:7002");
    assert_eq!(e.code, 2, "{}\n{}", e.stdout, e.stderr);
    assert!(
        e.stdout
            .contains("verdict: dropped by inet netctx nat_forward rule handle"),
        "{}",
        e.stdout
    );
    // A foreign table that rejects forwarded traffic is named in the path.
    sb.ok("nft add table inet firewalld && \
           nft add chain inet firewalld filter_FORWARD '{ type filter hook forward priority filter + 10; policy accept; }' && \
           nft add rule inet firewalld filter_FORWARD reject with icmpx admin-prohibited");
    let e = explain("203.0.113.2:7000");
    eprintln!("{}", e.stdout);
    assert_eq!(e.code, 2, "{}\n{}", e.stdout, e.stderr);
    assert!(
        e.stdout
            .contains("inet firewalld filter_FORWARD: rule handle"),
        "{}",
        e.stdout
    );
    assert!(
        e.stdout
            .contains("verdict: dropped by inet firewalld filter_FORWARD rule handle"),
        "{}",
        e.stdout
    );
    let j = sb.netctx_with(
        &cfg(""),
        &["explain", "nat", "--to", "203.0.113.2:7000", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert!(v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["table"] == "firewalld"));
    // Nothing of the tracing outlives the run.
    assert!(!sb
        .ok("nft list tables; ip netns exec nat nft list tables")
        .contains("netctx-explain"));
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}

const ROUTED: &str = r#"
[context.routed]
uplink = "up0"
egress = "routed"
[[context.routed.link]]
kind = "veth"
name = "eth0"
addresses = ["203.0.113.10/24"]
"#;

#[test]
fn up_refuses_a_routed_address_a_lan_host_already_has() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok("ip -n lan addr add 203.0.113.10/24 dev lan0");
    let mac = sb.ip(Some("lan"), "link show lan0")[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let state = || {
        (
            sb.ok("nft list ruleset"),
            sb.ok("ip netns list; ip -o link | cut -d: -f2; ip route; ip neigh show proxy"),
        )
    };
    let before = state();
    let up = sb.netctx_with(ROUTED, &["up"]);
    assert_eq!(up.code, 1, "{}\n{}", up.stdout, up.stderr);
    assert!(
        up.stderr.contains(&format!(
            "address 203.0.113.10 is already answered for on up0's LAN by {mac}"
        )),
        "{}",
        up.stderr
    );
    assert_eq!(state(), before, "a refused up changed something");
    // Once the address is free (and the host has forgotten its owner), the
    // context comes up and the host answers for it.
    sb.ok("ip -n lan addr del 203.0.113.10/24 dev lan0 && ip neigh flush dev up0");
    sb.netctx_with(ROUTED, &["up"]).ok();
    assert!(sb.ok("ip neigh show proxy").contains("203.0.113.10"));
    sb.netctx_with(ROUTED, &["down", "--all"]).ok();
}
