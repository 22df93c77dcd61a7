//! Uplinks (docs/uplink.md): NAT egress, published ports, routed
//! addresses, the host's switches and the guard, with real connections.
//! The sandbox plays a host with an uplink `up0` to a LAN (namespace `lan`,
//! 203.0.113.0/24 and 2001:db8:1::/64) and an unrelated network `other0`
//! (198.51.100.0/24, namespace `other`); nothing routes out of the sandbox.

use std::time::Duration;

use crate::sandbox::{probe, Sandbox, BIN};

pub(crate) const NET: &str = "\
ip link set lo up && ip netns add lan && ip link add up0 type veth peer name lan0 netns lan && \
ip addr add 203.0.113.1/24 dev up0 && ip addr add 2001:db8:1::1/64 dev up0 nodad && ip link set up0 up && \
ip -n lan addr add 203.0.113.2/24 dev lan0 && ip -n lan addr add 2001:db8:1::2/64 dev lan0 nodad && \
ip -n lan link set lan0 up && ip -n lan link set lo up && \
ip netns add other && ip link add other0 type veth peer name oth0 netns other && \
ip addr add 198.51.100.1/24 dev other0 && ip link set other0 up && \
ip -n other addr add 198.51.100.2/24 dev oth0 && ip -n other link set oth0 up && \
ip -n other link set lo up && ip -n other route add default via 198.51.100.1";

const CFG: &str = r#"
[defaults]
uplink = "up0"

[context.nat]
egress = "nat"
publish = ["8080:80", "5353:53/udp", "203.0.113.1:8443:443"]
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

[context.iso]
[[context.iso.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.82.0.1/24"]
addresses = ["10.82.0.2/24"]
[[context.iso.route]]
to = "default"
via = "10.82.0.1"
"#;

fn setup() -> Sandbox {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb
}

/// Host switches this test cares about, as `sysctl` prints them.
pub(crate) fn switches(sb: &Sandbox) -> String {
    let keys = [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.up0.forwarding",
        "net.ipv4.conf.other0.forwarding",
        "net.ipv6.conf.all.forwarding",
        "net.ipv6.conf.up0.forwarding",
        "net.ipv6.conf.up0.accept_ra",
        "net.ipv6.conf.up0.proxy_ndp",
    ];
    let mut s = sb.ok(&format!("sysctl {}", keys.join(" ")));
    if std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists() {
        s += &sb
            .ok("sysctl net.ipv6.conf.up0.force_forwarding net.ipv6.conf.other0.force_forwarding");
    }
    s
}

/// Connect, a few times: proxy ARP answers after a random delay of up to
/// `proxy_delay` (0.8 s), longer than one attempt waits.
fn connect_retrying(sb: &Sandbox, ns: &str, to: &str) -> String {
    let mut last = String::new();
    for _ in 0..4 {
        last = run(sb, Some(ns), &format!("connect {to}"));
        if last == "connected" {
            break;
        }
    }
    last
}

pub(crate) fn run(sb: &Sandbox, ns: Option<&str>, cmd: &str) -> String {
    let prefix = ns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    // A failed connect exits 1; what it printed is the answer.
    let o = sb.sh(&format!("{prefix}{} {cmd}", probe()));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A TCP server in `ns` writing its clients' addresses to a file; returns
/// the file.
pub(crate) fn serve(sb: &Sandbox, ns: &str, addr: &str, port: u16) -> std::path::PathBuf {
    let file = sb
        .dir
        .join(format!("tcp-{ns}-{port}-{}", addr.replace(':', "_")));
    sb.ok(&format!(
        "ip netns exec {ns} {} serve {addr} {port} 30 {} >/dev/null 2>&1 &",
        probe(),
        file.display()
    ));
    file
}

pub(crate) fn recv_udp(sb: &Sandbox, ns: &str, addr: &str, port: u16) -> std::path::PathBuf {
    let file = sb
        .dir
        .join(format!("udp-{ns}-{port}-{}", addr.replace(':', "_")));
    sb.ok(&format!(
        "ip netns exec {ns} {} recv-udp {addr} {port} 30 {} >/dev/null 2>&1 &",
        probe(),
        file.display()
    ));
    file
}

/// No address still tentative (duplicate address detection) on the host,
/// in the LAN or in the contexts.
pub(crate) fn settled(sb: &Sandbox) {
    for _ in 0..60 {
        let t = sb.ok(
            "for n in '' lan nat iso routed; do ip ${n:+-n $n} -6 addr show tentative 2>/dev/null; done; true",
        );
        if t.trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("addresses still tentative");
}

pub(crate) fn seen(file: &std::path::Path) -> String {
    std::thread::sleep(Duration::from_millis(300));
    std::fs::read_to_string(file).unwrap_or_default()
}

#[test]
fn nat_egress_and_published_ports_over_ipv4_and_ipv6() {
    let sb = setup();
    let before = switches(&sb);
    sb.netctx_with(CFG, &["up"]).ok();
    settled(&sb);
    // The LAN's servers see the uplink's address.
    let lan4 = serve(&sb, "lan", "203.0.113.2", 7000);
    let lan6 = serve(&sb, "lan", "2001:db8:1::2", 7001);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        run(&sb, Some("nat"), "connect 203.0.113.2 7000"),
        "connected"
    );
    assert_eq!(
        run(&sb, Some("nat"), "connect 2001:db8:1::2 7001"),
        "connected"
    );
    assert_eq!(seen(&lan4).trim(), "203.0.113.1");
    assert_eq!(seen(&lan6).trim(), "2001:db8:1::1");
    // A context without egress reaches nothing.
    assert_eq!(run(&sb, Some("iso"), "connect 203.0.113.2 7000"), "timeout");
    // Published ports, from the LAN and from the host, TCP and UDP, v4 and
    // v6: the context sees the client's own address.
    let web4 = serve(&sb, "nat", "10.81.0.2", 80);
    let web6 = serve(&sb, "nat", "fd81::2", 80);
    let tls = serve(&sb, "nat", "10.81.0.2", 443);
    let dns4 = recv_udp(&sb, "nat", "10.81.0.2", 53);
    let dns6 = recv_udp(&sb, "nat", "fd81::2", 53);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 8080"),
        "connected"
    );
    assert_eq!(
        run(&sb, Some("lan"), "connect 2001:db8:1::1 8080"),
        "connected"
    );
    assert_eq!(run(&sb, None, "connect 198.51.100.1 8080"), "connected");
    assert_eq!(run(&sb, None, "connect 2001:db8:1::1 8080"), "connected");
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 8443"),
        "connected"
    );
    assert_eq!(seen(&web4), "203.0.113.2\n198.51.100.1\n");
    assert_eq!(seen(&web6), "2001:db8:1::2\n2001:db8:1::1\n");
    assert_eq!(seen(&tls), "203.0.113.2\n");
    run(&sb, Some("lan"), "send-udp 203.0.113.1 5353 lan4");
    run(&sb, Some("lan"), "send-udp 2001:db8:1::1 5353 lan6");
    run(&sb, None, "send-udp 203.0.113.1 5353 host4");
    assert_eq!(seen(&dns4), "lan4 203.0.113.2\nhost4 203.0.113.1\n");
    assert_eq!(seen(&dns6), "lan6 2001:db8:1::2\n");
    // Loopback is not published (no route_localnet).
    assert_eq!(run(&sb, None, "connect 127.0.0.1 8080"), "errno 111");
    // Nothing else from the LAN reaches the contexts, even routed to their
    // private addresses; nor the unrelated network.
    sb.ok("ip -n lan route add 10.80.0.0/12 via 203.0.113.1 && ip -n lan route add 198.51.100.0/24 via 203.0.113.1");
    assert_eq!(run(&sb, Some("lan"), "connect 10.81.0.2 80"), "timeout");
    assert_eq!(run(&sb, Some("lan"), "connect 10.82.0.2 80"), "timeout");
    let other = serve(&sb, "other", "198.51.100.2", 7002);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        run(&sb, Some("lan"), "connect 198.51.100.2 7002"),
        "timeout"
    );
    assert_eq!(seen(&other), "");
    // One context does not reach the other through the host.
    assert_eq!(run(&sb, Some("nat"), "connect 10.82.0.2 80"), "timeout");
    assert_eq!(run(&sb, Some("iso"), "connect 10.81.0.2 80"), "timeout");
    // The drops are counted on the host's forward path.
    let fwd = sb.ok("nft list chain inet netctx nat_forward");
    assert!(
        fwd.contains("iifname \"up0\" oifname \"nx-nat\" counter packets"),
        "{fwd}"
    );
    // Idempotent, and status sees it up.
    let again = sb.netctx_with(CFG, &["up"]);
    assert!(again.stdout.contains("nat: unchanged"), "{}", again.stdout);
    assert_eq!(sb.netctx_with(CFG, &["status"]).code, 0);
    // Drift of the uplink's forwarding switch is reported.
    sb.ok("sysctl -qw net.ipv4.conf.up0.forwarding=0");
    let st = sb.netctx_with(CFG, &["status", "--json"]);
    assert_eq!(st.code, 2, "{}", st.stdout);
    assert!(
        st.stdout.contains("net.ipv4.conf.up0.forwarding = 1"),
        "{}",
        st.stdout
    );
    sb.netctx_with(CFG, &["up"]).ok();
    // The guard is there; deleted, it is the host's drift, and `up`
    // puts it back.
    assert!(sb
        .ok("nft list chain inet netctx netctx-guard")
        .contains("iifname @netctx-guard accept"));
    sb.ok("nft delete chain inet netctx netctx-guard");
    let st = sb.netctx_with(CFG, &["status"]);
    assert_eq!(st.code, 2, "{}", st.stdout);
    assert!(
        st.stdout.contains("host") && st.stdout.contains("netctx-guard"),
        "{}",
        st.stdout
    );
    sb.netctx_with(CFG, &["up"]).ok();
    assert_eq!(sb.netctx_with(CFG, &["status"]).code, 0);
    assert_eq!(
        run(&sb, Some("lan"), "connect 198.51.100.2 7002"),
        "timeout"
    );
    // After down: every switch as before, no table, no record.
    sb.netctx_with(CFG, &["down", "--all"]).ok();
    assert_eq!(switches(&sb), before);
    assert!(sb.sh("nft list table inet netctx").status.code() != Some(0));
    assert!(!sb.sh("test -e /run/netctx/host-sysctls").status.success());
}

#[test]
fn a_router_advertisement_still_installs_the_hosts_default_route() {
    let sb = setup();
    assert_eq!(sb.ok("sysctl -n net.ipv6.conf.up0.accept_ra").trim(), "1");
    sb.netctx_with(CFG, &["up"]).ok();
    assert_eq!(sb.ok("sysctl -n net.ipv6.conf.up0.accept_ra").trim(), "2");
    // Once lan0 has its link-local address (the RA's source).
    settled(&sb);
    let mut sent = String::new();
    for _ in 0..50 {
        sent = run(&sb, Some("lan"), "ra lan0 2001:db8:1::");
        if sent == "sent" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sent, "sent");
    let mut route = String::new();
    for _ in 0..30 {
        route = sb.ok("ip -6 route show default");
        if route.contains("dev up0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        route.contains("via fe80::") && route.contains("dev up0"),
        "{route}"
    );
    sb.netctx_with(CFG, &["down", "--all"]).ok();
    assert_eq!(sb.ok("sysctl -n net.ipv6.conf.up0.accept_ra").trim(), "1");
}

#[test]
fn kill_9_during_up_then_down_all_restores_the_hosts_switches() {
    let sb = setup();
    let before = switches(&sb);
    let cfg = sb.write_config("netctx.toml", CFG);
    // Count the kill points of a whole `up`, then die at the one right
    // after the record is written and before the switches are.
    let trace = sb.sh(&format!(
        "NETCTX_THREADS=1 NETCTX_CRASH_TRACE=1 {BIN} -c {} up 2>&1 >/dev/null",
        cfg.display()
    ));
    let text = String::from_utf8_lossy(&trace.stdout).into_owned();
    let n = text
        .lines()
        .find(|l| l.contains("host switches recorded, not written"))
        .and_then(|l| {
            l.split("crash point ")
                .nth(1)?
                .split(':')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no such kill point: {text}"));
    sb.netctx(&["down", "--all"]).ok();
    assert_eq!(switches(&sb), before);
    // Also in the middle of the contexts' creation, before any switch.
    for point in [n, 3] {
        let o = sb.sh(&format!(
            "NETCTX_THREADS=1 NETCTX_CRASH_AFTER={point} {BIN} -c {} up >/dev/null 2>&1; echo $?",
            cfg.display()
        ));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "137");
        if point == n {
            let rec = sb.ok("cat /run/netctx/host-sysctls");
            assert!(
                rec.contains("net/ipv4/conf/up0/forwarding 0 1 nat"),
                "{rec}"
            );
        }
        sb.netctx(&["down", "--all"]).ok();
        assert_eq!(switches(&sb), before, "after a kill at point {point}");
        assert!(sb.sh("nft list table inet netctx").status.code() != Some(0));
    }
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
fn a_routed_context_is_reached_at_its_own_address_untranslated() {
    routed_both_ways(ROUTED, "203.0.113.10", "203.0.113.2");
}

/// A routed context at `addr` with a LAN host at `lan_addr`: the host
/// answers for it on the uplink and routes it to its veth; the LAN reaches
/// it at its own address (neighbour resolution through the host's proxy
/// entry) and it reaches the LAN, untranslated both ways; after `down` no
/// proxy entry, no route, the host's switches as before.
fn routed_both_ways(cfg: &str, addr: &str, lan_addr: &str) {
    let sb = setup();
    let before = switches(&sb);
    sb.netctx_with(cfg, &["up"]).ok();
    let v6 = addr.contains(':');
    let fam = if v6 { "-6" } else { "-4" };
    let proxies = sb.ok(&format!("ip {fam} neigh show proxy dev up0"));
    assert!(proxies.contains(addr), "{proxies}");
    if v6 {
        assert_eq!(sb.ok("sysctl -n net.ipv6.conf.up0.proxy_ndp").trim(), "1");
    }
    let route = sb.ok(&format!("ip {fam} route show {addr}"));
    assert!(
        route.contains("dev nx-routed") && route.contains("proto static"),
        "{route}"
    );
    settled(&sb);
    let inside = serve(&sb, "routed", addr, 80);
    let lan = serve(&sb, "lan", lan_addr, 7000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        connect_retrying(&sb, "lan", &format!("{addr} 80")),
        "connected"
    );
    assert!(seen(&inside).starts_with(&format!("{lan_addr}\n")));
    let neigh = sb.ok(&format!("ip -n lan {fam} neigh show {addr}"));
    assert!(!neigh.trim().is_empty(), "no neighbour entry in the LAN");
    assert_eq!(
        connect_retrying(&sb, "routed", &format!("{lan_addr} 7000")),
        "connected"
    );
    assert!(
        seen(&lan).starts_with(&format!("{addr}\n")),
        "{}",
        seen(&lan)
    );
    sb.netctx_with(cfg, &["status"]).ok();
    sb.netctx_with(cfg, &["down", "routed"]).ok();
    assert_eq!(
        sb.ok(&format!("ip {fam} neigh show proxy dev up0")).trim(),
        ""
    );
    assert_eq!(sb.ok(&format!("ip {fam} route show {addr}")).trim(), "");
    assert_eq!(switches(&sb), before);
    assert!(!sb.sh("test -e /run/netctx/host-proxies").status.success());
}

#[test]
fn a_routed_contexts_missing_proxy_entry_or_host_route_is_drift_that_up_repairs() {
    let sb = setup();
    sb.netctx_with(ROUTED, &["up"]).ok();
    sb.netctx_with(ROUTED, &["status"]).ok();
    for (what, breaks) in [
        (
            "proxy neighbour entry",
            "ip neigh del proxy 203.0.113.10 dev up0",
        ),
        ("route", "ip route del 203.0.113.10/32 dev nx-routed"),
    ] {
        sb.ok(breaks);
        let st = sb.netctx_with(ROUTED, &["status"]);
        assert_eq!(st.code, 2, "{what}: {}{}", st.stdout, st.stderr);
        assert!(
            st.stdout.contains("drifted")
                && st
                    .stdout
                    .contains(&format!("add host {what} for routed 203.0.113.10")),
            "{what}: {}",
            st.stdout
        );
        let json = sb.netctx_with(ROUTED, &["status", "--json"]);
        assert!(json.stdout.contains(what), "{}", json.stdout);
        let plan = sb.netctx_with(ROUTED, &["plan"]);
        assert!(plan.stdout.contains(what), "{}", plan.stdout);
        sb.netctx_with(ROUTED, &["up"]).ok();
        sb.netctx_with(ROUTED, &["status"]).ok();
        assert!(sb
            .ok("ip neigh show proxy dev up0")
            .contains("203.0.113.10"));
        assert!(sb
            .ok("ip route show 203.0.113.10")
            .contains("dev nx-routed"));
    }
    sb.netctx_with(ROUTED, &["down", "--all"]).ok();
}

/// IPv6 has no proxy ARP for every neighbour: the kernel's NDP proxy
/// answers only for the addresses listed. So the LAN reaches a routed IPv6
/// address through the host's proxy entry, and the context reaches the LAN
/// through a route via its host veth (the address as /128, as Incus's
/// routed NICs have it).
const ROUTED6: &str = r#"
[context.routed]
uplink = "up0"
egress = "routed"
[[context.routed.link]]
kind = "veth"
name = "eth0"
host_addresses = ["fd83::1/64"]
addresses = ["2001:db8:1::10/128", "fd83::2/64"]
[[context.routed.route]]
to = "default"
via = "fd83::1"
"#;

#[test]
fn a_routed_context_is_reached_over_ipv6_through_the_hosts_ndp_proxy() {
    routed_both_ways(ROUTED6, "2001:db8:1::10", "2001:db8:1::2");
}
