//! The engine (issue: namespaces, links, addresses, routes, ip_forward,
//! convergence, ownership, rollback, teardown), checked with `ip -j`, the
//! mount table and real pings.

use crate::sandbox::{examples, Sandbox};

const TWO: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.11.0.1/24", "fd00:11::1/64"]
addresses = ["10.11.0.2/24", "fd00:11::2/64"]
[[context.a.route]]
to = "default"
via = "10.11.0.1"

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.12.0.1/24"]
addresses = ["10.12.0.2/24"]
[[context.b.route]]
to = "default"
via = "10.12.0.1"
"#;

fn names(v: &[(String, u64, bool)]) -> Vec<&str> {
    let mut n: Vec<&str> = v.iter().map(|l| l.0.as_str()).collect();
    n.sort();
    n
}

#[test]
fn up_of_every_example_builds_what_is_declared() {
    let sb = Sandbox::new();
    let cfg = examples().to_str().unwrap();
    let r = sb.netctx(&["-c", cfg, "up"]);
    r.ok();
    assert_eq!(sb.netns_list(), ["dual", "leaf1", "leaf2", "router", "web"]);

    // Host side: one veth end per declared veth, up, with its addresses.
    let host = sb.links(None);
    for h in [
        "nx-web",
        "nx-dual",
        "nx-leaf1",
        "nx-leaf2",
        "nx-router",
        "nx-router1",
    ] {
        let l = host
            .iter()
            .find(|l| l.0 == h)
            .unwrap_or_else(|| panic!("no host link {h}"));
        assert!(l.2, "{h} is not up");
    }
    assert_eq!(
        sb.addrs(None, "nx-web"),
        ["10.100.0.1/24", "fd00:100::1/64"]
    );
    assert_eq!(sb.addrs(None, "nx-router1"), Vec::<String>::new());
    let alias = sb.ip(None, "link show dev nx-web");
    assert_eq!(alias[0]["ifalias"], "netctx:web");

    // Inside: lo and the declared links, up, with addresses and routes.
    let web = sb.links(Some("web"));
    assert_eq!(names(&web), ["eth0", "lo"]);
    assert!(web.iter().all(|l| l.2), "{web:?}");
    assert_eq!(
        sb.addrs(Some("web"), "eth0"),
        ["10.100.0.2/24", "fd00:100::2/64"]
    );
    let routes = sb.ip(Some("web"), "route show default");
    assert_eq!(routes[0]["gateway"], "10.100.0.1");
    let routes6 = sb.ip(Some("dual"), "-6 route show");
    let dsts: Vec<&str> = routes6
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["gateway"] == "fd00:30::1")
        .map(|r| r["dst"].as_str().unwrap())
        .collect();
    assert_eq!(dsts, ["fd00:31::/64", "default"]);
    assert_eq!(names(&sb.links(Some("router"))), ["eth0", "eth1", "lo"]);
    assert_eq!(sb.addrs(Some("router"), "eth1"), ["10.4.0.1/24"]);

    // Forwarding inside the router only; the sandbox's own value untouched.
    let fwd = |ns: &str| {
        sb.ok(&format!(
            "ip netns exec {ns} sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding"
        ))
    };
    assert_eq!(fwd("router"), "1\n1\n");
    assert_eq!(fwd("web"), "0\n0\n");
    assert_eq!(sb.ok("sysctl -n net.ipv4.ip_forward"), "0\n");

    // `ip netns exec` works as users expect: the namespaces are real.
    assert!(sb
        .ok("ip netns exec web hostname -I || ip netns exec web ip -br addr")
        .contains("10.100.0.2"));
}

#[test]
fn host_and_context_ping_each_other_over_v4_and_v6() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    assert!(sb.ping(None, "10.11.0.2"));
    assert!(sb.ping(None, "fd00:11::2"));
    assert!(sb.ping(Some("a"), "10.11.0.1"));
    assert!(sb.ping(Some("a"), "fd00:11::1"));
    assert!(sb.ping(Some("b"), "10.12.0.1"));
    // The sandbox host does not route between contexts (its ip_forward is 0
    // and netctx never changes it).
    assert!(!sb.ping(Some("a"), "10.12.0.2"));
}

/// The mail's routed ping: host → router eth0 → forwarded out eth1 → a far
/// end the test attaches to the router's second leg. Only with ip_forward.
#[test]
fn router_context_forwards_only_with_ip_forward() {
    for forward in [true, false] {
        let sb = Sandbox::new();
        let text = std::fs::read_to_string(examples().join("vserver-mail.toml")).unwrap();
        let text = if forward {
            text
        } else {
            text.replace("ip_forward = true", "ip_forward = false")
        };
        sb.netctx_with(&text, &["up", "router"]).ok();
        sb.ok("ip netns add far && ip link set nx-router1 netns far \
             && ip -n far addr add 10.4.0.9/24 dev nx-router1 && ip -n far link set nx-router1 up \
             && ip -n far route add default via 10.4.0.1 \
             && ip route add 10.4.0.0/24 via 10.3.0.2");
        assert!(sb.ping(None, "10.3.0.2"), "the router itself answers");
        assert_eq!(
            sb.ping(None, "10.4.0.9"),
            forward,
            "ping across the router with ip_forward = {forward}"
        );
    }
}

#[test]
fn second_up_changes_nothing() {
    let sb = Sandbox::new();
    let cfg = examples().to_str().unwrap();
    sb.netctx(&["-c", cfg, "up"]).ok();
    let before_host = sb.links(None);
    let before_web = sb.links(Some("web"));
    let inode = sb.ok("stat -L -c %i /run/netns/web");
    let r = sb.netctx(&["-c", cfg, "up"]);
    r.ok();
    assert_eq!(r.stdout.matches(": unchanged").count(), 5, "{}", r.stdout);
    assert_eq!(sb.links(None), before_host);
    assert_eq!(sb.links(Some("web")), before_web);
    assert_eq!(sb.ok("stat -L -c %i /run/netns/web"), inode);
    let s = sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(s.code, 0, "{}{}", s.stdout, s.stderr);
    let p = sb.netctx(&["-c", cfg, "plan"]);
    assert_eq!(p.stdout.matches("up to date").count(), 5, "{}", p.stdout);
}

#[test]
fn drift_is_reported_and_repaired() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    sb.ok(
        "ip -n a addr add 10.11.0.99/24 dev eth0 && ip -n a route del default \
         && ip -n b link set eth0 down && ip netns exec a sysctl -qw net.ipv4.ip_forward=1",
    );
    let s = sb.netctx_with(TWO, &["status"]);
    assert_eq!(s.code, 2, "{}{}", s.stdout, s.stderr);
    assert!(
        s.stdout
            .contains("remove address 10.11.0.99/24 from link eth0"),
        "{}",
        s.stdout
    );
    assert!(
        s.stdout.contains("add route default via 10.11.0.1"),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains("set link eth0 up"), "{}", s.stdout);
    assert!(
        s.stdout.contains("set net.ipv4.ip_forward = 0"),
        "{}",
        s.stdout
    );
    let j = sb.netctx_with(TWO, &["status", "--json"]);
    assert_eq!(j.code, 2);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["contexts"][0]["state"], "drifted");
    assert_eq!(v["contexts"][1]["state"], "drifted");

    let before = sb.links(Some("a"));
    sb.netctx_with(TWO, &["up"]).ok();
    assert_eq!(
        sb.addrs(Some("a"), "eth0"),
        ["10.11.0.2/24", "fd00:11::2/64"]
    );
    assert_eq!(
        sb.ip(Some("a"), "route show default")[0]["gateway"],
        "10.11.0.1"
    );
    assert!(sb.links(Some("b")).iter().all(|l| l.2));
    assert_eq!(
        sb.ok("ip netns exec a sysctl -n net.ipv4.ip_forward"),
        "0\n"
    );
    assert_eq!(sb.links(Some("a")), before, "repair recreated links");
    assert_eq!(sb.netctx_with(TWO, &["status"]).code, 0);
}

#[test]
fn changing_one_context_touches_only_it() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    let b_links = sb.links(Some("b"));
    let host_b = sb.links(None).into_iter().find(|l| l.0 == "nx-b").unwrap();
    let b_inode = sb.ok("stat -L -c %i /run/netns/b");
    let changed = TWO.replace(
        r#"addresses = ["10.11.0.2/24", "fd00:11::2/64"]"#,
        r#"addresses = ["10.11.0.3/24", "fd00:11::2/64"]"#,
    );
    let r = sb.netctx_with(&changed, &["up"]);
    r.ok();
    assert!(r.stdout.contains("a: converged"), "{}", r.stdout);
    assert!(r.stdout.contains("b: unchanged"), "{}", r.stdout);
    assert_eq!(
        sb.addrs(Some("a"), "eth0"),
        ["10.11.0.3/24", "fd00:11::2/64"]
    );
    assert_eq!(sb.links(Some("b")), b_links);
    assert_eq!(
        sb.links(None).into_iter().find(|l| l.0 == "nx-b").unwrap(),
        host_b
    );
    assert_eq!(sb.ok("stat -L -c %i /run/netns/b"), b_inode);
}

#[test]
fn foreign_namespace_is_refused_and_left_alone() {
    let sb = Sandbox::new();
    sb.ok("ip netns add a && ip -n a link set lo up");
    let r = sb.netctx_with(TWO, &["up"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("context a: namespace /run/netns/a exists and was not made by netctx"),
        "{}",
        r.stderr
    );
    // b converged anyway; a's namespace is as it was, with no netctx link.
    assert!(sb.ping(None, "10.12.0.2"));
    assert_eq!(names(&sb.links(Some("a"))), ["lo"]);
    assert!(!sb.links(None).iter().any(|l| l.0 == "nx-a"));
    // down refuses it too, and leaves it.
    let d = sb.netctx(&["down", "a"]);
    assert_eq!(d.code, 1, "{}", d.stderr);
    assert!(sb.netns_list().contains(&"a".to_string()));
    let s = sb.netctx_with(TWO, &["status"]);
    assert_eq!(s.code, 2);
    assert!(s.stdout.contains("conflict"), "{}", s.stdout);
}

#[test]
fn failure_mid_context_rolls_it_back_and_others_converge() {
    let sb = Sandbox::new();
    // The second veth's host name is taken by a link netctx did not make:
    // nothing of context a may remain, b must converge.
    let cfg = TWO.replace(
        "[context.b]",
        "[[context.a.link]]\nkind = \"veth\"\nname = \"eth1\"\nhost = \"taken0\"\n\n[context.b]",
    );
    sb.ok("ip link add taken0 type veth peer name taken1");
    let before = sb.links(None);
    let r = sb.netctx_with(&cfg, &["up"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("context a: host link taken0 exists and was not made by netctx"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.netns_list(), ["b"]);
    assert!(sb.ping(None, "10.12.0.2"));
    let host: Vec<_> = sb
        .links(None)
        .into_iter()
        .filter(|l| l.0 != "nx-b")
        .collect();
    assert_eq!(host, before, "taken0/taken1 untouched, no nx-a");
    assert_eq!(sb.ok("ls /run/netctx/netns"), "b\n");
    assert_eq!(sb.nsfs_mounts(), 1);
}

/// A real kernel refusal after the namespace and the veth were made: the
/// sandbox host has IPv6 disabled on new links, so the host-side IPv6 address
/// of context a fails.
#[test]
fn kernel_failure_part_way_rolls_back_a_new_context() {
    let sb = Sandbox::new();
    sb.ok("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    let before = sb.links(None);
    let r = sb.netctx_with(TWO, &["up"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("context a: address fd00:11::1/64 on host link nx-a: Permission denied"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("1 of 2 context(s) failed"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.netns_list(), ["b"]);
    let host: Vec<_> = sb
        .links(None)
        .into_iter()
        .filter(|l| l.0 != "nx-b")
        .collect();
    assert_eq!(host, before, "nx-a left behind");
    assert_eq!(sb.ok("ls /run/netctx/netns"), "b\n");
    assert_eq!(sb.nsfs_mounts(), 1);
}

/// The same refusal while changing an existing context: what was applied of
/// the change is undone, the rest of the context is as it was.
#[test]
fn kernel_failure_part_way_rolls_back_a_change() {
    let sb = Sandbox::new();
    let v4_only = TWO.replace(
        r#"["10.11.0.1/24", "fd00:11::1/64"]"#,
        r#"["10.11.0.1/24"]"#,
    );
    sb.netctx_with(&v4_only, &["up"]).ok();
    sb.ok("sysctl -qw net.ipv6.conf.nx-a.disable_ipv6=1");
    let links = sb.links(Some("a"));
    let host_before = sb.addrs(None, "nx-a");
    // The change: a new host IPv4 address (applied first), then the IPv6 one
    // the kernel refuses.
    let change = TWO.replace(
        r#"["10.11.0.1/24", "fd00:11::1/64"]"#,
        r#"["10.11.0.1/24", "10.11.0.5/24", "fd00:11::1/64"]"#,
    );
    let r = sb.netctx_with(&change, &["up"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("context a: address fd00:11::1/64 on host link nx-a"),
        "{}",
        r.stderr
    );
    assert_eq!(
        sb.addrs(None, "nx-a"),
        host_before,
        "10.11.0.5 not rolled back"
    );
    assert_eq!(sb.links(Some("a")), links);
    assert_eq!(
        sb.addrs(Some("a"), "eth0"),
        ["10.11.0.2/24", "fd00:11::2/64"]
    );
    assert!(sb.ping(None, "10.11.0.2"));
    assert_eq!(sb.netctx_with(&v4_only, &["status"]).code, 0);
}

#[test]
fn dummy_links_work_or_fail_clearly_with_rollback() {
    let sb = Sandbox::new();
    let cfg = format!(
        "{TWO}\n[[context.a.link]]\nkind = \"dummy\"\nname = \"dummy0\"\naddresses = [\"10.200.0.1/32\"]\n"
    );
    let kernel_has_dummy = sb
        .sh("ip link add probe0 type dummy && ip link del probe0")
        .status
        .success();
    let r = sb.netctx_with(&cfg, &["up"]);
    if kernel_has_dummy {
        r.ok();
        assert_eq!(sb.addrs(Some("a"), "dummy0"), ["10.200.0.1/32"]);
    } else {
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(
                "context a: link dummy0: this kernel cannot create dummy links (CONFIG_DUMMY)"
            ),
            "{}",
            r.stderr
        );
        assert_eq!(sb.netns_list(), ["b"], "a rolled back, b converged");
        assert!(!sb.links(None).iter().any(|l| l.0 == "nx-a"));
        assert!(sb.ping(None, "10.12.0.2"));
    }
}

#[test]
fn down_all_leaves_nothing_even_without_configuration() {
    let sb = Sandbox::new();
    let cfg = examples().to_str().unwrap();
    let before = sb.links(None);
    sb.netctx(&["-c", cfg, "up"]).ok();
    assert_eq!(sb.nsfs_mounts(), 5);
    // No -c and no /etc/netctx in the sandbox's view of what netctx made:
    // down --all works from the markers and aliases alone.
    let r = sb.netctx(&["-c", "/nonexistent", "down", "--all"]);
    r.ok();
    assert_eq!(r.stdout.matches(": removed").count(), 5, "{}", r.stdout);
    assert!(sb.netns_list().is_empty());
    assert_eq!(sb.nsfs_mounts(), 0);
    assert_eq!(sb.links(None), before);
    assert_eq!(sb.ok("ls /run/netctx/netns"), "");
    // Right away up again: host names freed by the vanished namespaces.
    sb.netctx(&["-c", cfg, "up"]).ok();
    sb.netctx(&["-c", cfg, "down", "web", "dual"]).ok();
    assert_eq!(sb.netns_list(), ["leaf1", "leaf2", "router"]);
}

#[test]
fn namespace_deleted_behind_our_back_is_drift_and_is_remade() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    sb.ok("ip netns del a");
    let s = sb.netctx_with(TWO, &["status"]);
    assert_eq!(s.code, 2);
    assert!(s.stdout.contains("namespace is missing"), "{}", s.stdout);
    sb.netctx_with(TWO, &["up"]).ok();
    assert!(sb.ping(None, "10.11.0.2"));
    assert_eq!(sb.netctx_with(TWO, &["status"]).code, 0);
}

#[test]
fn concurrent_runs_wait_for_each_other_and_converge() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", TWO);
    let c = cfg.to_str().unwrap();
    let bin = crate::sandbox::BIN;
    sb.ok(&format!(
        "{bin} -c {c} up >/dev/null & {bin} -c {c} up >/dev/null & {bin} -c {c} up >/dev/null & wait"
    ));
    assert_eq!(sb.netctx(&["-c", c, "status"]).code, 0);
    assert_eq!(sb.netns_list(), ["a", "b"]);
}

#[test]
fn validate_prints_every_error_located_and_exits_1() {
    let sb = Sandbox::new();
    let bad = examples().join("invalid/04-bad-route.toml");
    let r = sb.netctx(&["validate", "-c", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let expected = std::fs::read_to_string(bad.with_extension("expected")).unwrap();
    let located: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("netctx: error:"))
        .collect();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(located.len(), expected.len(), "{}", r.stderr);
    assert!(r
        .stderr
        .lines()
        .last()
        .unwrap()
        .starts_with("netctx: error: 4 error(s)"));
    // NETCTX_CONFIG is honoured.
    let ok = sb.sh(&format!(
        "NETCTX_CONFIG={} {} validate",
        examples().display(),
        crate::sandbox::BIN
    ));
    assert!(ok.status.success());
    // Nothing touched the kernel.
    assert!(sb.netns_list().is_empty());
}

#[test]
fn plan_and_status_speak_json() {
    let sb = Sandbox::new();
    let p = sb.netctx_with(TWO, &["plan", "--json", "a"]);
    p.ok();
    let v: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(v["contexts"][0]["name"], "a");
    assert_eq!(v["contexts"][0]["actions"][0], "create network namespace");
    assert!(sb.netns_list().is_empty(), "plan touched the kernel");
    // With -v, the rules it would load, in nft syntax.
    let v = sb.netctx_with(TWO, &["plan", "-v", "a"]);
    assert!(
        v.stdout.contains("replace nftables table inet netctx"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains("meta nfproto ipv4 ip daddr @assigned4 accept"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains("type filter hook ingress device \"nx-a\""),
        "{}",
        v.stdout
    );
    sb.netctx_with(TWO, &["up"]).ok();
    let p = sb.netctx_with(TWO, &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(v["contexts"][1]["actions"], serde_json::json!([]));
    let s = sb.netctx_with(TWO, &["-v", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["contexts"][0]["state"], "up");
    assert_eq!(v["drift"], false);
}

/// `down --no-wait` returns once the namespaces are unmounted; an `up`
/// right after it must not trip over host veths the kernel is still
/// destroying.
#[test]
fn up_right_after_down_no_wait() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", &crate::reliability::contexts(30));
    let c = cfg.to_str().unwrap();
    for _ in 0..3 {
        sb.netctx(&["-c", c, "up"]).ok();
        sb.netctx(&["-c", c, "down", "--all", "--no-wait"]).ok();
    }
    sb.netctx(&["-c", c, "up"]).ok();
    assert_eq!(sb.netctx(&["-c", c, "status"]).code, 0);
    assert_eq!(sb.netns_list().len(), 30);
    sb.netctx(&["-c", c, "down", "--all"]).ok();
    assert!(sb.links(None).iter().all(|l| l.0 == "lo"));
}
