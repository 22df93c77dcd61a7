//! netctx's own state against hostile input (docs/design.md, "Integrity"): the run
//! directory is root's alone, nobody else can hold the lock, and a marker
//! that proves nothing makes its context a conflict that no command touches.

use crate::sandbox::Sandbox;

const TWO: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.31.0.1/24"]
addresses = ["10.31.0.2/24"]

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.32.0.1/24"]
addresses = ["10.32.0.2/24"]
"#;

#[test]
fn the_run_directory_is_roots_alone() {
    let sb = Sandbox::new();
    // An older netctx (or an administrator) left it open to everyone.
    sb.ok("chmod 0755 /run/netctx");
    sb.netctx_with(TWO, &["up"]).ok();
    // Every directory 0700, every file 0600, all root's.
    // (stat, not find -printf: the VM lane has busybox's find.)
    let listing =
        sb.ok("find /run/netctx | while read -r p; do stat -c '%a %U %F %n' \"$p\"; done");
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let want = if f[2] == "directory" { "700" } else { "600" };
        assert_eq!((f[0], f[1]), (want, "root"), "{line}");
    }
    assert!(listing.contains("/run/netctx/lock"), "{listing}");
    assert!(listing.contains("/run/netctx/netns/a"), "{listing}");
}

#[test]
fn an_unprivileged_user_cannot_hold_the_lock() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    // nobody tries to take it (read-only, as flock -s would) and cannot even
    // open the file.
    // util-linux's setpriv here, su where busybox's has no --reuid (VM lane).
    let o = sb.sh("if setpriv --help 2>&1 | grep -q reuid; then \
           setpriv --reuid=65534 --regid=65534 --clear-groups flock -s -n /run/netctx/lock true; \
         else su -s /bin/sh nobody -c 'flock -s -n /run/netctx/lock true'; fi; echo rc=$?");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("rc=1") || out.contains("rc=66"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    // So a routine run never waits.
    let r = sb.netctx_with(TWO, &["--wait", "1", "up"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
}

/// What a context has on the host and inside: its namespace, its host veth,
/// its host chain.
fn footprint(sb: &Sandbox, ctx: &str) -> (bool, bool, bool) {
    let ns = sb.netns_list().contains(&ctx.to_string());
    let link = sb.links(None).iter().any(|l| l.0 == format!("nx-{ctx}"));
    let chains = sb.ok("nft list table inet netctx 2>/dev/null || true");
    (ns, link, chains.contains(&format!("chain {ctx}_nx-{ctx}")))
}

#[test]
fn an_empty_or_corrupt_marker_is_a_conflict_that_nothing_touches() {
    for (how, forge) in [
        ("empty", ": > /run/netctx/netns/a"),
        ("garbled", "echo 'not an inode' > /run/netctx/netns/a"),
        ("another inode", "echo 12345 > /run/netctx/netns/a"),
        (
            "unreadable",
            "rm /run/netctx/netns/a && mkdir /run/netctx/netns/a",
        ),
    ] {
        let sb = Sandbox::new();
        sb.netctx_with(TWO, &["up"]).ok();
        sb.ok(forge);
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        let s = sb.netctx_with(TWO, &["status", "a"]);
        assert_eq!(s.code, 2, "{how}: {}{}", s.stdout, s.stderr);
        assert!(s.stdout.contains("conflict"), "{how}: {}", s.stdout);
        assert!(
            s.stdout.contains("/run/netctx/netns/a"),
            "{how}: {}",
            s.stdout
        );
        // down refuses, says what to do, and touches nothing of a …
        let d = sb.netctx_with(TWO, &["down", "a", "b"]);
        assert_eq!(d.code, 1, "{how}: {}", d.stderr);
        assert!(
            d.stderr.contains("not touching anything of this context"),
            "{how}: {}",
            d.stderr
        );
        assert!(
            d.stderr.contains("ip netns delete a"),
            "{how}: {}",
            d.stderr
        );
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        assert_eq!(
            sb.links(Some("a")).len(),
            2,
            "{how}: eth0 is still inside a"
        );
        // … while b went.
        assert_eq!(footprint(&sb, "b"), (false, false, false), "{how}");
        // up refuses too, and down --all leaves a alone.
        assert_eq!(sb.netctx_with(TWO, &["up", "a"]).code, 1, "{how}");
        assert_eq!(sb.netctx(&["down", "--all"]).code, 1, "{how}");
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        // The administrator's way out works.
        sb.ok("ip netns delete a; rm -rf /run/netctx/netns/a; sleep 0.2");
        sb.ok("ip link del nx-a 2>/dev/null || true");
        sb.netctx_with(TWO, &["up", "a"]).ok();
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        // (the sandbox's own down --all cleans up)
        sb.netctx(&["down", "--all"]).ok();
    }
}

const FWD: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.41.0.1/24", "fd00:41::1/64"]
addresses = ["10.41.0.2/24", "fd00:41::2/64"]
[[context.a.route]]
to = "default"
via = "10.41.0.1"

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.42.0.1/24"]
addresses = ["10.42.0.2/24"]
[[context.b.route]]
to = "default"
via = "10.42.0.1"
"#;

#[test]
fn every_owned_switch_changed_from_outside_is_drift_and_restored() {
    let sb = Sandbox::new();
    sb.netctx_with(FWD, &["up"]).ok();
    let inside = [
        ("net.ipv6.conf.eth0.forwarding", "1", "0"),
        ("net.ipv6.conf.default.forwarding", "1", "0"),
        ("net.ipv6.conf.eth0.accept_ra", "1", "0"),
        ("net.ipv4.conf.all.accept_redirects", "1", "0"),
        ("net.ipv6.conf.eth0.accept_redirects", "1", "0"),
        ("net.ipv4.conf.default.accept_source_route", "1", "0"),
        ("net.ipv6.conf.all.accept_source_route", "1", "0"),
        ("net.ipv4.conf.eth0.proxy_arp", "1", "0"),
        ("net.ipv4.conf.lo.route_localnet", "1", "0"),
        ("net.ipv4.ip_nonlocal_bind", "1", "0"),
        ("net.ipv6.ip_nonlocal_bind", "1", "0"),
        ("net.ipv4.ping_group_range", "1 0", "0 4294967294"),
        ("net.ipv4.ip_unprivileged_port_start", "1024", "0"),
    ];
    // What up leaves: every switch as netctx owns it.
    let get = |ns: Option<&str>, k: &str| {
        let p = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let v = sb.ok(&format!("{p}sysctl -n {k}"));
        v.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    for (k, _, want) in inside {
        assert_eq!(get(Some("a"), k), want, "{k} after up");
    }
    let host = [
        ("net.ipv6.conf.nx-a.accept_ra", "2", "0"),
        ("net.ipv6.conf.nx-a.autoconf", "1", "0"),
        ("net.ipv6.conf.nx-a.accept_redirects", "1", "0"),
        ("net.ipv4.conf.nx-a.accept_redirects", "1", "0"),
    ];
    for (k, _, want) in host {
        assert_eq!(get(None, k), want, "{k} after up");
    }
    // Changed behind netctx's back, one at a time: status says so.
    for (ns, (k, bad, _)) in inside
        .iter()
        .map(|s| (Some("a"), s))
        .chain(host.iter().map(|s| (None, s)))
    {
        let p = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        sb.ok(&format!("{p}sysctl -qw '{k}={bad}'"));
        let s = sb.netctx_with(FWD, &["status", "a"]);
        assert_eq!(s.code, 2, "{k}: {}", s.stdout);
        assert!(s.stdout.contains(k), "{k} not reported: {}", s.stdout);
        sb.netctx_with(FWD, &["up", "a"]).ok();
        assert_eq!(
            sb.netctx_with(FWD, &["status", "a"]).code,
            0,
            "{k} not restored"
        );
    }
    for (k, _, want) in inside {
        assert_eq!(get(Some("a"), k), want, "{k} after the repairs");
    }
}

/// Wait until the context's link-local address is usable (DAD done).
/// Until eth0 in `ns` has its link-local address and it is no longer
/// tentative (the kernel adds it a moment after the link comes up).
fn wait_link_local(sb: &Sandbox, ns: &str) {
    sb.ok(&format!(
        "for i in $(seq 200); do a=$(ip -n {ns} -6 addr show dev eth0 scope link); \
         case \"$a\" in *fe80::*) echo \"$a\" | grep -q tentative || exit 0;; esac; sleep 0.05; done; exit 1"
    ));
}

#[test]
fn router_advertisements_from_a_context_change_nothing_on_the_host() {
    let sb = Sandbox::new();
    sb.netctx_with(FWD, &["up"]).ok();
    // An administrator turned the host side back on to learn routes.
    sb.ok("sysctl -qw net.ipv6.conf.nx-a.accept_ra=2 net.ipv6.conf.nx-a.autoconf=1");
    wait_link_local(&sb, "a");
    let probe = crate::sandbox::probe();
    let rogue = format!("ip netns exec a {probe} ra eth0 2001:db8:77::");
    assert_eq!(sb.ok(&rogue).trim(), "sent");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let routes = || sb.ok("ip -6 route show default");
    let addrs = || sb.ok("ip -6 addr show dev nx-a");
    assert_eq!(routes(), "", "the host took a default route");
    assert!(!addrs().contains("2001:db8:77"), "{}", addrs());
    let chain = sb.ok("nft list chain inet netctx a_nx-a");
    let ra = chain
        .lines()
        .find(|l| l.contains("nd-router-advert counter"))
        .unwrap();
    assert!(!ra.contains("packets 0 "), "not counted: {ra}");
    // Control: without netctx's rules (the ingress chain, and the input
    // dispatch to a's chain, which takes no advertisement either) the same
    // advertisement reroutes the host.
    sb.ok("nft delete chain inet netctx a_nx-a && nft delete chain inet netctx netctx-input");
    assert_eq!(sb.ok(&rogue).trim(), "sent");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        routes().contains("default via fe80::"),
        "control failed: {}",
        routes()
    );
}

#[test]
fn contexts_are_kept_apart_on_a_forwarding_host() {
    let sb = Sandbox::new();
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let probe = crate::sandbox::probe();
    let listen = |ns: &str, addr: &str, port: u16| {
        sb.ok(&format!(
            "ip netns exec {ns} {probe} listen {addr} {port} --tcp --secs 20 >/dev/null 2>&1 &"
        ));
    };
    let connect = |ns: &str, addr: &str, port: u16| {
        let o = sb.sh(&format!("ip netns exec {ns} {probe} connect {addr} {port}"));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    sb.netctx_with(FWD, &["up"]).ok();
    listen("a", "10.41.0.2", 8080);
    listen("b", "10.42.0.2", 8080);
    listen("b", "10.42.0.2", 8081);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The host reaches both; neither reaches the other.
    assert_eq!(
        sb.ok(&format!("{probe} connect 10.42.0.2 8080")).trim(),
        "connected"
    );
    assert_eq!(connect("a", "10.42.0.2", 8080), "timeout");
    assert_eq!(connect("b", "10.41.0.2", 8080), "timeout");
    let drops = sb.ok("nft list chain inet netctx a_forward");
    assert!(
        drops.contains("iifname \"nx-a\" counter packets"),
        "{drops}"
    );
    let own = drops
        .lines()
        .find(|l| l.contains("iifname \"nx-a\" counter packets"))
        .unwrap_or_default();
    assert!(
        !own.contains("counter packets 0 "),
        "a's drop not counted: {drops}"
    );
    // reach = ["b:8080"]: that port, replies included; not 8081; b still
    // cannot open connections to a.
    let cfg = FWD.replace("[context.a]\n", "[context.a]\nreach = [\"b:8080/tcp\"]\n");
    sb.netctx_with(&cfg, &["up"]).ok();
    assert_eq!(connect("a", "10.42.0.2", 8080), "connected");
    assert_eq!(connect("a", "10.42.0.2", 8081), "timeout");
    assert_eq!(connect("b", "10.41.0.2", 8080), "timeout");
    // reach = ["b"]: any port.
    let cfg = FWD.replace("[context.a]\n", "[context.a]\nreach = [\"b\"]\n");
    sb.netctx_with(&cfg, &["up"]).ok();
    assert_eq!(connect("a", "10.42.0.2", 8081), "connected");
    assert_eq!(connect("b", "10.41.0.2", 8080), "timeout");
    // The drops are logged as CTX:DROP: (the rule is there; it counts what
    // it logs, for `netctx stats`).
    let b_fwd = sb.ok("nft list chain inet netctx b_forward");
    assert!(
        b_fwd.lines().any(|l| l
            .contains("iifname \"nx-b\" limit rate 100/second burst 100 packets counter packets")
            && l.contains("log prefix \"CTX:DROP:\"")),
        "{b_fwd}"
    );
}

/// The forward chains hang off one base chain and a verdict map: an
/// administrator's (or an attacker's) edit of either opens the path between
/// contexts; that is drift, reported for the contexts it concerns, and `up`
/// closes the path again.
#[test]
fn tampering_with_the_forward_dispatch_is_drift_and_up_closes_the_path() {
    let sb = Sandbox::new();
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let probe = crate::sandbox::probe();
    sb.netctx_with(FWD, &["up"]).ok();
    sb.ok(&format!(
        "ip netns exec b {probe} listen 10.42.0.2 8080 --tcp --secs 30 >/dev/null 2>&1 &"
    ));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let connect = || {
        let o = sb.sh(&format!("ip netns exec a {probe} connect 10.42.0.2 8080"));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(connect(), "timeout");
    for tamper in [
        // a's element: its packets are no longer sent to its chain (b's
        // element still catches them on the way out... so both go).
        "nft delete element inet netctx netctx-forward '{ \"nx-a\", \"nx-b\" }'",
        // The base chain's rules.
        "nft flush chain inet netctx netctx-forward",
        // The base chain itself.
        "nft delete chain inet netctx netctx-forward",
    ] {
        sb.ok(tamper);
        assert_eq!(connect(), "connected", "after `{tamper}` the path is open");
        let st = sb.netctx_with(FWD, &["status"]);
        assert_eq!(st.code, 2, "{tamper}: {}", st.stdout);
        assert!(
            st.stdout
                .lines()
                .any(|l| l.starts_with('a') && l.contains("drifted")),
            "{tamper}: {}",
            st.stdout
        );
        sb.netctx_with(FWD, &["up"]).ok();
        sb.netctx_with(FWD, &["status"]).ok();
        assert_eq!(connect(), "timeout", "after `{tamper}` and up");
    }
    // An element made to jump elsewhere (a's veth to b's chain, which
    // accepts nothing from nx-a's side but drops nothing either).
    sb.ok(
        "nft delete element inet netctx netctx-forward '{ \"nx-a\" }' && \
           nft add element inet netctx netctx-forward '{ \"nx-a\" : jump b_forward }'",
    );
    assert_eq!(sb.netctx_with(FWD, &["status"]).code, 2);
    sb.netctx_with(FWD, &["up"]).ok();
    assert!(sb
        .ok("nft list map inet netctx netctx-forward")
        .contains("\"nx-a\" : jump a_forward"));
    assert_eq!(connect(), "timeout");
    sb.netctx_with(FWD, &["down", "--all"]).ok();
    assert_eq!(sb.ok("nft list tables").trim(), "");
}

/// `status` and `up` keep the host's table with the nf_tables generation
/// it was read at (/run/netctx/host-table.json) and do not dump it again
/// while the generation holds: an edit of a context's host chain made
/// after that (any commit moves the generation) is still drift, and `up`
/// repairs it.
#[test]
fn an_edit_after_the_host_table_was_kept_is_still_drift() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    // Read whole and kept, then read from what was kept.
    sb.netctx_with(TWO, &["status"]).ok();
    assert!(sb.ok("ls /run/netctx").contains("host-table.json"));
    sb.netctx_with(TWO, &["status"]).ok();
    let listing = sb.ok("nft -a list chain inet netctx a_forward");
    let handle = listing
        .lines()
        .filter(|l| l.contains("comment \"netctx:"))
        .find_map(|l| l.split("# handle ").nth(1))
        .unwrap_or_else(|| panic!("no rule in a_forward: {listing}"))
        .trim()
        .to_string();
    sb.ok(&format!(
        "nft delete rule inet netctx a_forward handle {handle}"
    ));
    let st = sb.netctx_with(TWO, &["status"]);
    assert_eq!(st.code, 2, "{}", st.stdout);
    assert!(
        st.stdout
            .lines()
            .any(|l| l.starts_with('a') && l.contains("drifted")),
        "{}",
        st.stdout
    );
    sb.netctx_with(TWO, &["up"]).ok();
    sb.netctx_with(TWO, &["status"]).ok();
    sb.netctx_with(TWO, &["status"]).ok();
    let rules = |t: &str| {
        t.lines()
            .filter(|l| l.contains("comment \"netctx:"))
            .count()
    };
    assert_eq!(
        rules(&sb.ok("nft list chain inet netctx a_forward")),
        rules(&listing)
    );
}

#[test]
fn a_host_address_on_a_foreign_interface_is_refused_naming_it() {
    let sb = Sandbox::new();
    sb.ok("ip link add lan0 type veth peer name lan1 && ip addr add 10.41.0.1/24 dev lan0 && ip addr add 10.42.0.200/24 dev lan0");
    let before = sb.ok("ip -j addr show dev lan0; ip -j link show dev lan0");
    let r = sb.netctx_with(FWD, &["up"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // The same address, and another address of the same subnet.
    assert!(
        r.stderr.contains("context a: host address 10.41.0.1/24 is taken: host interface lan0 (not made by netctx) has 10.41.0.1/24"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("context b: host address 10.42.0.1/24 is taken: host interface lan0 (not made by netctx) has 10.42.0.200/24"),
        "{}",
        r.stderr
    );
    assert_eq!(
        sb.ok("ip -j addr show dev lan0; ip -j link show dev lan0"),
        before
    );
    assert!(sb.netns_list().is_empty());
    assert!(!sb.links(None).iter().any(|l| l.0.starts_with("nx-")));
}

#[test]
fn extra_addresses_on_lo_and_extra_link_local_addresses_are_drift() {
    let sb = Sandbox::new();
    sb.netctx_with(FWD, &["up"]).ok();
    wait_link_local(&sb, "a");
    let own_ll = sb.ok("ip -n a -6 -br addr show dev eth0 scope link");
    // b's address on a's lo, and a second link-local address.
    sb.ok("ip -n a addr add 10.42.0.2/32 dev lo && ip -n a addr add fe80::dead/64 dev eth0 nodad");
    let s = sb.netctx_with(FWD, &["status", "a"]);
    assert_eq!(s.code, 2, "{}", s.stdout);
    assert!(
        s.stdout
            .contains("remove address 10.42.0.2/32 from link lo"),
        "{}",
        s.stdout
    );
    assert!(
        s.stdout
            .contains("remove address fe80::dead/64 from link eth0"),
        "{}",
        s.stdout
    );
    let a = sb.netctx_with(FWD, &["audit", "a"]);
    assert_eq!(a.code, 2, "{}", a.stdout);
    assert!(a.stdout.contains("10.42.0.2"), "{}", a.stdout);
    sb.netctx_with(FWD, &["up", "a"]).ok();
    assert!(!sb.ok("ip -n a addr show dev lo").contains("10.42.0.2"));
    assert_eq!(
        sb.ok("ip -n a -6 -br addr show dev eth0 scope link"),
        own_ll
    );
    assert_eq!(sb.netctx_with(FWD, &["status", "a"]).code, 0);
}
