//! Policy (docs/policy.md), attacked with real connections: the host's own
//! services only on the ports `reach` names as `host`; `accept_from` on the
//! receiver; nothing else the host forwards opens a connection into a
//! strict context; egress limited to the address ranges `reach` names;
//! `[defaults] deny` beating `reach`. The sandbox is the host of
//! `uplink.rs`: uplink `up0` to the LAN namespace `lan` (203.0.113.0/24,
//! 2001:db8:1::/64) and a second network `other0` (198.51.100.0/24,
//! namespace `other`).

use crate::sandbox::{probe, Sandbox};
use crate::uplink::{run, seen, serve, NET};

/// No address still tentative (duplicate address detection) in any
/// namespace of the sandbox.
pub(crate) fn settled(sb: &Sandbox) {
    for _ in 0..60 {
        let t = sb.ok("ip -6 addr show tentative; ip -all netns exec ip -6 addr show tentative");
        if !t.contains("tentative") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("addresses still tentative");
}

/// Two strict contexts without egress: `a` (IPv4 and IPv6) and `b`.
fn two(reach: &str) -> String {
    format!(
        r#"
[defaults]
uplink = "up0"

[context.a]
reach = [{reach}]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.91.0.1/24", "fd91::1/64"]
addresses = ["10.91.0.2/24", "fd91::2/64"]
[[context.a.route]]
to = "default"
via = "10.91.0.1"
[[context.a.route]]
to = "default"
via = "fd91::1"

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.92.0.1/24"]
addresses = ["10.92.0.2/24"]
"#
    )
}

/// A TCP service of the host itself (no namespace) on a wildcard address.
fn host_serve(sb: &Sandbox, addr: &str, port: u16) {
    let file = sb.dir.join(format!("host-{port}"));
    sb.ok(&format!(
        "{} serve {addr} {port} 300 {} >/dev/null 2>&1 &",
        probe(),
        file.display()
    ));
}

#[test]
fn a_strict_context_reaches_host_services_only_on_the_ports_reach_names_as_host() {
    let sb = Sandbox::new();
    sb.ok(NET);
    host_serve(&sb, "0.0.0.0", 7001);
    host_serve(&sb, "::", 7002);
    host_serve(&sb, "0.0.0.0", 7003);
    host_serve(&sb, "0.0.0.0", 7105);
    sb.netctx_with(&two(""), &["up"]).ok();
    settled(&sb);
    // Its own host side, another context's, the uplink's address, the
    // second network's, the host's IPv6 addresses.
    let v4 = ["10.91.0.1", "10.92.0.1", "203.0.113.1", "198.51.100.1"];
    let v6 = ["fd91::1", "2001:db8:1::1"];
    for to in v4 {
        let r = run(&sb, Some("a"), &format!("connect {to} 7001"));
        assert_ne!(r, "connected", "{to}:7001 reached without host reach");
    }
    for to in v6 {
        let r = run(&sb, Some("a"), &format!("connect {to} 7002"));
        assert_ne!(r, "connected", "[{to}]:7002 reached without host reach");
    }
    // ICMP echo to its host side still passes.
    sb.ok("ip netns exec a ping -c1 -W2 10.91.0.1 && ip netns exec a ping -c1 -W2 fd91::1");
    // Each refusal is counted (and logged CTX:DROP:).
    let stats = sb.netctx_with(&two(""), &["stats", "a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats.ok().stdout).unwrap();
    let dropped = v["contexts"][0]["dropped_host"]
        .as_u64()
        .unwrap_or_default();
    assert!(dropped >= 6, "{}", stats.stdout);

    let cfg = two(r#""host:7001", "host:7002/tcp", "host:7100-7110""#);
    sb.netctx_with(&cfg, &["up"]).ok();
    for to in v4 {
        let r = run(&sb, Some("a"), &format!("connect {to} 7001"));
        assert_eq!(r, "connected", "{to}:7001 with host:7001");
    }
    for to in v6 {
        let r = run(&sb, Some("a"), &format!("connect {to} 7002"));
        assert_eq!(r, "connected", "[{to}]:7002 with host:7002/tcp");
    }
    assert_eq!(run(&sb, Some("a"), "connect 10.91.0.1 7105"), "connected");
    // Not a port it names; and not the other context, which names none.
    assert_ne!(run(&sb, Some("a"), "connect 10.91.0.1 7003"), "connected");
    assert_ne!(run(&sb, Some("b"), "connect 10.92.0.1 7001"), "connected");
    // The host itself still reaches the context.
    let inside = serve(&sb, "a", "10.91.0.2", 80);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(run(&sb, None, "connect 10.91.0.2 80"), "connected");
    assert!(seen(&inside).starts_with("10.91.0.1\n"));
    sb.netctx_with(&cfg, &["down", "--all"]).ok();
}

/// `c` admits `b` on port 80 only; `a` names `c` in its reach too; `c` has
/// an egress through the uplink. `d` and `e` are without isolation, `d`
/// names `c`.
const ADMIT: &str = r#"
[defaults]
uplink = "up0"

[context.a]
reach = ["c:80"]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.94.0.1/24"]
addresses = ["10.94.0.2/24"]
[[context.a.route]]
to = "default"
via = "10.94.0.1"

[context.b]
reach = ["c"]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.95.0.1/24"]
addresses = ["10.95.0.2/24"]
[[context.b.route]]
to = "default"
via = "10.95.0.1"

[context.c]
egress = "nat"
accept_from = ["b:80"]
[[context.c.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.96.0.1/24", "fd96::1/64"]
addresses = ["10.96.0.2/24", "fd96::2/64"]
[[context.c.route]]
to = "default"
via = "10.96.0.1"
[[context.c.route]]
to = "default"
via = "fd96::1"

[context.d]
isolation = "off"
reach = ["c:80"]
[[context.d.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.99.1.1/24"]
addresses = ["10.99.1.2/24"]
[[context.d.route]]
to = "default"
via = "10.99.1.1"

[context.e]
isolation = "off"
[[context.e.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.99.2.1/24"]
addresses = ["10.99.2.2/24"]
[[context.e.route]]
to = "default"
via = "10.99.2.1"
"#;

#[test]
fn accept_from_admits_only_whom_it_names_and_no_other_host_interface_opens_a_connection_in() {
    let sb = Sandbox::new();
    sb.ok(NET);
    // The host forwards, as a Docker or Kubernetes host does.
    sb.ok("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    sb.ok("ip addr add 2001:db8:2::1/64 dev other0 nodad && \
         ip -n other addr add 2001:db8:2::2/64 dev oth0 nodad && \
         ip -n other -6 route add default via 2001:db8:2::1");
    let open = ADMIT.replace("accept_from = [\"b:80\"]\n", "");
    sb.netctx_with(&open, &["up"]).ok();
    let c80 = serve(&sb, "c", "10.96.0.2", 80);
    serve(&sb, "c", "10.96.0.2", 81);
    let lan = serve(&sb, "lan", "203.0.113.2", 7000);
    settled(&sb);
    serve(&sb, "c", "fd96::2", 80);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The second network, forwarded by the host, cannot open a connection
    // into c; the LAN behind the uplink neither.
    sb.ok("ip -n lan route add 10.96.0.0/24 via 203.0.113.1");
    assert_ne!(run(&sb, Some("other"), "connect 10.96.0.2 80"), "connected");
    assert_ne!(run(&sb, Some("other"), "connect fd96::2 80"), "connected");
    assert_ne!(run(&sb, Some("lan"), "connect 10.96.0.2 80"), "connected");
    // The control: the host forwards the second network's packets (the
    // route is there), and the host itself reaches c.
    assert_eq!(run(&sb, None, "connect fd96::2 80"), "connected");
    // A context without isolation is no exception: only with reach.
    assert_ne!(run(&sb, Some("e"), "connect 10.96.0.2 80"), "connected");
    assert_eq!(run(&sb, Some("d"), "connect 10.96.0.2 80"), "connected");
    // Without accept_from, whoever reaches c.
    assert_eq!(run(&sb, Some("a"), "connect 10.96.0.2 80"), "connected");
    sb.netctx_with(ADMIT, &["up"]).ok();
    // b is admitted on 80, not on 81; a names c but c does not admit it.
    assert_eq!(run(&sb, Some("b"), "connect 10.96.0.2 80"), "connected");
    assert_ne!(run(&sb, Some("b"), "connect 10.96.0.2 81"), "connected");
    assert_ne!(run(&sb, Some("a"), "connect 10.96.0.2 80"), "connected");
    assert_ne!(run(&sb, Some("other"), "connect 10.96.0.2 80"), "connected");
    // Replies to c's own connections pass.
    assert_eq!(run(&sb, Some("c"), "connect 203.0.113.2 7000"), "connected");
    assert!(seen(&lan).starts_with("203.0.113.1\n"), "{}", seen(&lan));
    assert!(seen(&c80).contains("10.95.0.2\n"), "{}", seen(&c80));
    let logged = sb.ok("nft list chain inet netctx c_forward");
    assert!(
        logged.contains("oifname \"nx-c\" counter packets"),
        "{logged}"
    );
    assert!(
        !logged.contains("oifname \"nx-c\" counter packets 0 "),
        "{logged}"
    );
    sb.netctx_with(ADMIT, &["down", "--all"]).ok();
}

/// A context whose egress is limited to the LAN's 203.0.113.0/24 on port
/// 7000 and 2001:db8:1::2 on any port, with `deny` naming one LAN host.
const LIMITED: &str = r#"
[defaults]
uplink = "up0"
deny = ["203.0.113.3/32", "169.254.0.0/16"]

[context.n]
egress = "nat"
reach = ["203.0.113.0/24:7000", "2001:db8:1::2"]
[[context.n.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.97.0.1/24", "fd97::1/64"]
addresses = ["10.97.0.2/24", "fd97::2/64"]
[[context.n.route]]
to = "default"
via = "10.97.0.1"
[[context.n.route]]
to = "default"
via = "fd97::1"

[context.w]
egress = "nat"
[[context.w.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.98.0.1/24"]
addresses = ["10.98.0.2/24"]
[[context.w.route]]
to = "default"
via = "10.98.0.1"
"#;

#[test]
fn egress_is_limited_to_the_ranges_reach_names_and_deny_beats_reach() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok("ip -n lan addr add 203.0.113.3/24 dev lan0");
    sb.netctx_with(LIMITED, &["up"]).ok();
    settled(&sb);
    for (addr, port) in [
        ("203.0.113.2", 7000),
        ("203.0.113.2", 7001),
        ("203.0.113.3", 7000),
    ] {
        serve(&sb, "lan", addr, port);
    }
    serve(&sb, "lan", "2001:db8:1::2", 7001);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(run(&sb, Some("n"), "connect 203.0.113.2 7000"), "connected");
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.2 7001"), "connected");
    assert_eq!(
        run(&sb, Some("n"), "connect 2001:db8:1::2 7001"),
        "connected"
    );
    // In reach's range, but the floor denies it.
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.3 7000"), "connected");
    // Without address ranges in reach: the whole world, but the floor.
    assert_eq!(run(&sb, Some("w"), "connect 203.0.113.2 7001"), "connected");
    assert_ne!(run(&sb, Some("w"), "connect 203.0.113.3 7000"), "connected");
    sb.netctx_with(LIMITED, &["down", "--all"]).ok();
}

#[test]
fn a_cni_attachment_reaches_host_services_only_with_host_reach() {
    let t = crate::cni::Cni::new();
    host_serve(&t.sb, "0.0.0.0", 7001);
    host_serve(&t.sb, "0.0.0.0", 7002);
    t.netns("pod");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    t.call("ADD", "pod", &conf).ok();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Its gateway is the host side: no host service without host reach.
    assert_ne!(
        run(&t.sb, Some("pod"), "connect 10.89.0.1 7001"),
        "connected"
    );
    t.sb.ok("ip netns exec pod ping -c1 -W2 10.89.0.1");
    t.call("DEL", "pod", &conf).ok();
    conf["reach"] = serde_json::json!(["host:7001"]);
    t.call("ADD", "pod", &conf).ok();
    assert_eq!(
        run(&t.sb, Some("pod"), "connect 10.89.0.1 7001"),
        "connected"
    );
    assert_ne!(
        run(&t.sb, Some("pod"), "connect 10.89.0.1 7002"),
        "connected"
    );
    t.call("DEL", "pod", &conf).ok();
}
