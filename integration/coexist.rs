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

#[test]
fn certain_drops_on_input_and_output_are_named_and_ufw_like_policies_are_not() {
    let sb = Sandbox::new();
    sb.ok(NET);
    // A strict context alone: no forwarding, but the host side still
    // answers its ICMP echo and the host reaches it.
    let strict = PEER.replace("reach = [\"nat:80\"]\n", "");
    sb.netctx_with(&strict, &["up"]).ok();
    let status = || sb.netctx_with(&strict, &["status"]);
    assert_eq!(status().code, 0);
    // ufw-like: conntrack and port accepts first, then policy drop; what
    // those accepts let through the judgement cannot tell, so it is quiet.
    sb.ok(
        "iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT && \
           iptables -A INPUT -p tcp --dport 22 -j ACCEPT && iptables -P INPUT DROP",
    );
    let st = status();
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    sb.ok("iptables -F INPUT && iptables -P INPUT ACCEPT");
    // A plain policy drop on input, and a drop of what goes out to nx-*:
    // certain, named with their remedies.
    sb.ok("nft add table ip hostfw && \
           nft add chain ip hostfw in '{ type filter hook input priority 0; policy drop; }' && \
           nft add chain ip hostfw out '{ type filter hook output priority 0; }' && \
           nft add rule ip hostfw out oifname \"nx-*\" drop");
    let st = status();
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    for want in [
        "ip hostfw in has policy drop: it drops what contexts send to the host",
        "iifname \"nx-*\" accept",
        "ip hostfw out rule 1 (handle",
        "it drops what the host sends to contexts",
    ] {
        assert!(st.stdout.contains(want), "{want}:\n{}", st.stdout);
    }
    // The remedies clear it.
    sb.ok("nft insert rule ip hostfw in iifname \"nx-*\" accept && \
           nft flush chain ip hostfw out");
    let st = status();
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    sb.ok("nft delete table ip hostfw");
    sb.netctx_with(&strict, &["down", "--all"]).ok();
}

#[test]
fn iptables_legacy_chains_are_judged_by_their_shape() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(&cfg(""), &["up"]).ok();
    let status = || sb.netctx_with(&cfg(""), &["status"]);
    // Listing makes the legacy filter table, every policy accept: harmless.
    sb.ok("iptables-legacy -S >/dev/null && ip6tables-legacy -S >/dev/null");
    assert!(sb.ok("cat /proc/net/ip_tables_names").contains("filter"));
    let st = status();
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    // A policy drop nf_tables cannot see.
    sb.ok("iptables-legacy -P FORWARD DROP");
    let st = status();
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    assert!(
        st.stdout
            .contains("iptables-legacy ip filter FORWARD has policy drop"),
        "{}",
        st.stdout
    );
    // Rules it cannot read: unknown, said so.
    sb.ok("iptables-legacy -A FORWARD -i eth9 -j ACCEPT && ip6tables-legacy -A FORWARD -i eth9 -j ACCEPT");
    let st = status();
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    for want in [
        "iptables-legacy ip filter FORWARD holds 1 rule(s) and policy drop: whether they drop",
        "iptables-legacy ip6 filter FORWARD holds 1 rule(s): whether they drop",
        "iptables-legacy -t filter -I FORWARD -m mark --mark 0x2000/0x2000 -j ACCEPT",
    ] {
        assert!(st.stdout.contains(want), "{want}:\n{}", st.stdout);
    }
    // The remedy it names clears it; a mark rule with more to it does not.
    sb.ok("ip6tables-legacy -I FORWARD -i eth8 -m mark --mark 0x2000/0x2000 -j ACCEPT");
    sb.ok("iptables-legacy -I FORWARD -m mark --mark 0x2000/0x2000 -j ACCEPT");
    let st = status();
    assert!(!st.stdout.contains("ip filter FORWARD"), "{}", st.stdout);
    assert!(
        st.stdout.contains("ip6 filter FORWARD holds 2 rule(s)"),
        "{}",
        st.stdout
    );
    sb.ok("ip6tables-legacy -D FORWARD 1 && ip6tables-legacy -I FORWARD -m mark --mark 0x2000/0x2000 -j ACCEPT");
    let st = status();
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
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

/// A second, strict context beside `nat`, which may reach nat's port 80.
const PEER: &str = r#"
[context.peer]
reach = ["nat:80"]
[[context.peer.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.83.0.1/24"]
addresses = ["10.83.0.2/24"]
[[context.peer.route]]
to = "default"
via = "10.83.0.1"
"#;

#[test]
fn explain_from_traces_a_probe_into_the_context_from_a_context_the_host_and_the_lan() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let c = cfg("") + PEER;
    sb.netctx_with(&c, &["up"]).ok();
    // The host forwards between contexts (reach) only when told to.
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let web = serve(&sb, "nat", "10.81.0.2", 80);
    let web6 = serve(&sb, "nat", "fd81::2", 80);
    settled(&sb);
    // What the LAN namespace receives: nothing of a probe's answer.
    sb.ok("ip netns exec lan nft add table inet seen && \
           ip netns exec lan nft add chain inet seen in '{ type filter hook prerouting priority -500; }' && \
           ip netns exec lan nft add rule inet seen in tcp sport '{ 80, 8080 }' counter");
    let explain = |from: &str| sb.netctx_with(&c, &["explain", "nat", "--from", from]);
    // From another context: traced there, on the host and in nat; the
    // port its reach names passes, another is dropped by its own chain.
    let e = explain("10.83.0.2:80");
    assert_eq!(e.code, 0, "{}\n{}", e.stdout, e.stderr);
    for place in ["context peer:\n", "host:\n", "context nat:\n"] {
        assert!(e.stdout.contains(place), "{place}: {}", e.stdout);
    }
    assert!(
        e.stdout.contains("inet netctx peer_forward: rule handle"),
        "{}",
        e.stdout
    );
    let e = explain("10.83.0.2:81");
    assert_eq!(e.code, 2, "{}\n{}", e.stdout, e.stderr);
    assert!(
        e.stdout
            .contains("verdict: dropped by inet netctx peer_forward rule handle"),
        "{}",
        e.stdout
    );
    // From the host's own address: straight to the context's, accepted.
    let e = explain("203.0.113.1:80");
    assert_eq!(e.code, 0, "{}\n{}", e.stdout, e.stderr);
    assert!(e.stdout.contains("context nat:\n"), "{}", e.stdout);
    assert!(
        e.stdout
            .contains("probe: 203.0.113.1:80 to context nat at 10.81.0.2:80/tcp: connected"),
        "{}",
        e.stdout
    );
    // From the LAN: to the port nat publishes for 80, with the LAN's
    // address as source; the answer stops at the host.
    for (from, at) in [
        ("203.0.113.2:80", "203.0.113.1:8080/tcp"),
        ("[2001:db8:1::2]:80", "[2001:db8:1::1]:8080/tcp"),
    ] {
        let e = explain(from);
        assert_eq!(e.code, 0, "{from}: {}\n{}", e.stdout, e.stderr);
        assert!(
            e.stdout.contains(&format!(
                "to context nat at {at}: answered (the answer was stopped at the host"
            )),
            "{}",
            e.stdout
        );
        assert!(
            e.stdout.contains("note: sent from the host"),
            "{}",
            e.stdout
        );
        assert!(
            e.stdout.contains("inet netctx nat_pre: rule handle"),
            "{}",
            e.stdout
        );
        assert!(e.stdout.contains("context nat:\n"), "{}", e.stdout);
    }
    // The server accepted the context's and the host's connections; the
    // LAN's never completed (its answer went nowhere), and the LAN saw no
    // answer.
    assert_eq!(seen(&web).trim(), "10.83.0.2\n203.0.113.1");
    assert_eq!(seen(&web6).trim(), "");
    let j = sb.netctx_with(
        &c,
        &["explain", "nat", "--from", "203.0.113.2:80", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(
        (v["passed"].as_bool(), v["to"].as_str()),
        (Some(true), Some("203.0.113.1:8080/tcp"))
    );
    assert_eq!(v["from"], "203.0.113.2:80");
    // Its own address, or no direction at all: errors.
    let e = explain("10.81.0.2:80");
    assert_eq!(e.code, 1, "{}", e.stderr);
    assert!(
        e.stderr.contains("is context nat's own address"),
        "{}",
        e.stderr
    );
    assert_eq!(sb.netctx_with(&c, &["explain", "nat"]).code, 1);
    // Nothing of the tracing outlives the runs, and nothing of the LAN
    // probes' answers reached the LAN, retransmissions included (a TCP
    // one would come 1 s and 3 s after the first).
    assert!(!sb
        .ok("nft list tables; for n in nat peer; do ip netns exec $n nft list tables; done")
        .contains("netctx-explain"));
    std::thread::sleep(Duration::from_secs(4));
    let counted = sb.ok("ip netns exec lan nft list table inet seen");
    assert!(counted.contains("packets 0 bytes 0"), "{counted}");
    sb.ok("ip netns exec lan nft delete table inet seen");
    sb.netctx_with(&c, &["down", "--all"]).ok();
}

#[test]
fn explain_killed_mid_probe_leaves_no_tracing_table() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(&cfg(""), &["up"]).ok();
    let tables = || sb.ok("nft list tables; ip netns exec nat nft list tables");
    // A probe nothing answers keeps explain waiting.
    let cfgfile = sb.write_config("netctx.toml", &cfg(""));
    let mut child = sb.spawn_netctx(&[
        "-c",
        cfgfile.to_str().unwrap(),
        "explain",
        "nat",
        "--to",
        "198.51.100.2:7002",
    ]);
    let until = Instant::now() + Duration::from_secs(5);
    while tables().matches("netctx-explain").count() < 2 {
        assert!(Instant::now() < until, "the tracing tables never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    while tables().contains("netctx-explain") {
        assert!(
            Instant::now() < until,
            "a killed explain left its tracing table:\n{}",
            tables()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}

#[test]
fn a_mark_set_in_a_context_or_on_the_lan_does_not_reach_the_hosts_forward_hook() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok(DOCKER);
    sb.netctx_with(&cfg(""), &["up"]).ok();
    assert!(iptables(&sb).contains("-A DOCKER-USER -m mark --mark 0x2000/0x2000"));
    // Every packet carrying netctx's bit as the host receives it, and as
    // the host itself sends it (which shows the counting works).
    sb.ok("nft add table inet marks && \
           nft add chain inet marks pre '{ type filter hook prerouting priority -500; }' && \
           nft add rule inet marks pre meta mark and 0x2000 == 0x2000 counter && \
           nft add chain inet marks out '{ type filter hook output priority -500; }' && \
           nft add rule inet marks out udp dport 7009 meta mark and 0x2000 == 0x2000 counter");
    let other = crate::uplink::recv_udp(&sb, "other", "198.51.100.2", 7002);
    let ctx = crate::uplink::recv_udp(&sb, "nat", "10.81.0.2", 7003);
    sb.ok("ip -n lan route add 10.81.0.0/24 via 203.0.113.1");
    // A guest, root of its context: no CAP_NET_ADMIN over the namespace.
    let g = sb.netctx_with(
        &cfg(""),
        &[
            "exec",
            "nat",
            "--",
            &probe(),
            "mark-udp",
            "198.51.100.2",
            "7002",
            "8192",
        ],
    );
    assert_eq!(g.stdout.trim(), "EPERM", "{}\n{}", g.stdout, g.stderr);
    // The host's root inside the context, and on the LAN: the mark is
    // gone when the packet crosses into the host, and Docker's policy and
    // netctx's chains drop them.
    assert_eq!(
        run(&sb, Some("nat"), "mark-udp 198.51.100.2 7002 8192"),
        "sent"
    );
    assert_eq!(
        run(&sb, Some("lan"), "mark-udp 10.81.0.2 7003 8192"),
        "sent"
    );
    assert_eq!(run(&sb, None, "mark-udp 203.0.113.2 7009 8192"), "sent");
    assert_eq!(seen(&other), "");
    assert_eq!(seen(&ctx), "");
    let counted = sb.ok("nft list table inet marks");
    let packets: Vec<&str> = counted
        .lines()
        .filter(|l| l.contains("counter"))
        .map(|l| l.split("counter ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(packets.len(), 2, "{counted}");
    assert!(packets[0].starts_with("packets 0 "), "{counted}");
    assert!(packets[1].starts_with("packets 1 "), "{counted}");
    sb.ok("nft delete table inet marks");
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}

#[test]
fn watch_on_a_converged_host_repairs_nothing() {
    // Brought up by `up`, or by watch's own first converge (two contexts
    // made at once, each making the forward dispatch from one
    // observation): afterwards, a watch with nothing changing says nothing
    // was repaired, and the dispatch holds its two rules once.
    let two = cfg("") + &PEER.replace("reach = [\"nat:80\"]\n", "");
    for by_up in [true, false] {
        let sb = Sandbox::new();
        sb.ok(NET);
        let path = sb.write_config("netctx.toml", &two);
        let path = path.to_str().unwrap();
        if by_up {
            sb.netctx(&["-c", path, "up"]).ok();
        }
        let w = Watcher::start(&sb, path);
        let said = w.during(Duration::from_secs(5));
        let repaired: Vec<_> = said.iter().filter(|v| v["event"] == "repaired").collect();
        assert!(
            repaired.is_empty(),
            "watch repaired a converged host (up first: {by_up}): {said:?}"
        );
        let dispatch = sb.ok("nft list chain inet netctx netctx-forward");
        assert_eq!(dispatch.matches(" vmap ").count(), 2, "{dispatch}");
    }
}
