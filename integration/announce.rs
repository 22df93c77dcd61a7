//! `announce = true` (docs/cluster.md): host routes of protocol netctx to
//! each announced address, planned, drift-checked, repaired and removed
//! like every other object; the uplink's forwarding turned on and
//! restored. The sandbox plays a host whose uplink `under0` leads to a
//! fabric (namespace `fabric`, 198.51.100.0/24 and 2001:db8::/64).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ops::Watcher;
use crate::sandbox::Sandbox;

pub(crate) const NET: &str = "\
ip link set lo up && ip netns add fabric && \
ip link add under0 type veth peer name fab0 netns fabric && \
ip addr add 198.51.100.1/24 dev under0 && ip addr add 2001:db8::1/64 dev under0 nodad && \
ip link set under0 up && ip -n fabric addr add 198.51.100.2/24 dev fab0 && \
ip -n fabric addr add 2001:db8::2/64 dev fab0 nodad && ip -n fabric link set fab0 up";

/// `announce` from `[defaults]`, one context opting out.
pub(crate) const CFG: &str = r#"
[defaults]
uplink = "under0"
announce = true

[context.web]
[[context.web.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.91.0.1/24", "fd91::1/64"]
addresses = ["10.91.0.2/24", "fd91::2/64"]

[context.quiet]
announce = false
[[context.quiet.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.92.0.1/24"]
addresses = ["10.92.0.2/24"]
"#;

/// The host's routes of protocol netctx: (destination, device).
fn netctx_routes(sb: &Sandbox) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let v = sb.ip(None, &format!("{fam} route show proto netctx"));
        for r in v.as_array().unwrap() {
            out.push((
                r["dst"].as_str().unwrap().to_string(),
                r["dev"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.sort();
    out
}

/// The host switches an uplink may change, as `sysctl` prints them.
fn switches(sb: &Sandbox) -> String {
    let mut keys = vec![
        "net.ipv4.ip_forward",
        "net.ipv4.conf.under0.forwarding",
        "net.ipv6.conf.all.forwarding",
        "net.ipv6.conf.under0.forwarding",
        "net.ipv6.conf.under0.accept_ra",
    ];
    if std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists() {
        keys.push("net.ipv6.conf.under0.force_forwarding");
    }
    sb.ok(&format!("sysctl {}", keys.join(" ")))
}

fn forwarding(sb: &Sandbox) -> String {
    sb.ok("sysctl -n net.ipv4.conf.under0.forwarding")
        .trim()
        .to_string()
}

#[test]
fn announced_addresses_get_host_routes_of_protocol_netctx_that_up_repairs_and_down_removes() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let before = switches(&sb);
    // Planned, with the protocol: one route per address of `web`, none
    // for `quiet`.
    let plan = sb.netctx_with(CFG, &["plan", "-v"]);
    plan.ok();
    for line in [
        "add host route 10.91.0.2/32 dev nx-web proto netctx (announce)",
        "add host route fd91::2/128 dev nx-web proto netctx (announce)",
    ] {
        assert!(plan.stdout.contains(line), "{line}:\n{}", plan.stdout);
    }
    assert!(!plan.stdout.contains("10.92.0.2/32"), "{}", plan.stdout);
    sb.netctx_with(CFG, &["up"]).ok();
    let want = pairs(&[("10.91.0.2", "nx-web"), ("fd91::2", "nx-web")]);
    assert_eq!(netctx_routes(&sb), want);
    // iproute2 knows the name: written by `up` into the sandbox's own
    // /etc/iproute2.
    let conf = sb.ok("cat /etc/iproute2/rt_protos.d/netctx.conf");
    assert!(conf.lines().any(|l| l == "110\tnetctx"), "{conf}");
    let v = sb.ip(None, "route show 10.91.0.2");
    assert_eq!(v[0]["protocol"], "netctx", "{v}");
    assert_eq!(v[0]["scope"], "link", "{v}");
    // The fabric's packets are forwarded to the context: the uplink's
    // switch is on, recorded.
    assert_eq!(forwarding(&sb), "1");
    assert!(sb
        .ok("cat /run/netctx/host-sysctls")
        .contains("net/ipv4/conf/under0/forwarding 0 1 web"));
    sb.netctx_with(CFG, &["status"]).ok();
    // A deleted route is drift; up puts it back.
    sb.ok("ip route del 10.91.0.2/32 dev nx-web proto netctx");
    let st = sb.netctx_with(CFG, &["status"]);
    assert_eq!(st.code, 2, "{}{}", st.stdout, st.stderr);
    assert!(
        st.stdout.contains("drifted")
            && st
                .stdout
                .contains("add host route 10.91.0.2/32 dev nx-web proto netctx"),
        "{}",
        st.stdout
    );
    sb.netctx_with(CFG, &["up"]).ok();
    assert_eq!(netctx_routes(&sb), want);
    sb.netctx_with(CFG, &["status"]).ok();
    // Gone after down, the switch as it was.
    sb.netctx_with(CFG, &["down", "web"]).ok();
    assert_eq!(netctx_routes(&sb), vec![]);
    assert_eq!(switches(&sb), before);
    sb.netctx_with(CFG, &["down", "--all"]).ok();
}

#[test]
fn turning_announce_off_removes_netctxs_routes_and_only_those() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(CFG, &["up", "web"]).ok();
    // The administrator's own route over the context's veth.
    sb.ok("ip route add 10.91.0.77/32 dev nx-web proto static");
    let off = CFG.replace("announce = true", "announce = false");
    let plan = sb.netctx_with(&off, &["plan", "web"]);
    assert!(
        plan.stdout.contains(
            "remove host route 10.91.0.2/32 dev nx-web proto netctx (no longer announced)"
        ),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("10.91.0.77"), "{}", plan.stdout);
    sb.netctx_with(&off, &["up", "web"]).ok();
    assert_eq!(netctx_routes(&sb), vec![]);
    let kept = sb.ip(None, "route show 10.91.0.77");
    assert_eq!(kept[0]["protocol"], "static", "{kept}");
    // Nothing announced, no uplink use: the switch goes back.
    assert_eq!(forwarding(&sb), "0");
    sb.netctx_with(&off, &["status", "web"]).ok();
    sb.netctx_with(&off, &["down", "--all"]).ok();
}

#[test]
fn watch_puts_a_deleted_announced_route_back() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let cfg = sb.write_config("netctx.toml", CFG);
    let w = Watcher::start(&sb, cfg.to_str().unwrap());
    // What watch's own first converge stirred up has passed, and the IPv6
    // addresses' duplicate detection (whose end is an event of the veth)
    // too; lines before the deletion are skipped below.
    std::thread::sleep(Duration::from_millis(3000));
    sb.ok("ip route del 10.91.0.2/32 dev nx-web proto netctx");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let v: Value = w.next("repaired", "web", left);
        if v["actions"]
            .to_string()
            .contains("add host route 10.91.0.2/32 dev nx-web proto netctx")
        {
            break;
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    while !netctx_routes(&sb).contains(&("10.91.0.2".into(), "nx-web".into())) {
        assert!(Instant::now() < end, "the route did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.term().success());
    sb.netctx(&["-c", cfg.to_str().unwrap(), "down", "--all"])
        .ok();
}

#[test]
fn announce_must_be_a_boolean() {
    let sb = Sandbox::new();
    let bad = CFG.replace("announce = false", "announce = \"no\"");
    let r = sb.netctx_with(&bad, &["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("netctx.toml:14:12: announce must be true or false, not string"),
        "{}",
        r.stderr
    );
}

/// A routed address (docs/uplink.md) that is also announced.
const ROUTED: &str = r#"
[context.routed]
uplink = "under0"
egress = "routed"
announce = true
[[context.routed.link]]
kind = "veth"
name = "eth0"
addresses = ["198.51.100.10/24"]
"#;

#[test]
fn a_routed_address_that_is_announced_has_one_route_the_announces() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(ROUTED, &["up"]).ok();
    let routes = |sb: &Sandbox| sb.ip(None, "route show 198.51.100.10");
    let r = routes(&sb);
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["protocol"], "netctx", "{r}");
    assert_eq!(r[0]["dev"], "nx-routed", "{r}");
    assert!(sb
        .ok("ip neigh show proxy dev under0")
        .contains("198.51.100.10"));
    // Converged: a second run changes nothing, status sees no drift.
    let again = sb.netctx_with(ROUTED, &["up"]);
    assert!(
        again.ok().stdout.contains("routed: unchanged"),
        "{}",
        again.stdout
    );
    sb.netctx_with(ROUTED, &["status"]).ok();
    // No longer announced: the route stays, routed's (proto static).
    let off = ROUTED.replace("announce = true", "announce = false");
    sb.netctx_with(&off, &["up"]).ok();
    let r = routes(&sb);
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["protocol"], "static", "{r}");
    sb.netctx_with(&off, &["status"]).ok();
    sb.netctx_with(&off, &["down", "--all"]).ok();
    assert!(routes(&sb).as_array().unwrap().is_empty());
}
