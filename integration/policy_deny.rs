//! The administrator's floor (`[defaults] deny`) as a few sets shared by
//! every context (docs/policy.md): when only its addresses change, `up`
//! changes their elements in place — every context's chains and rules
//! keep their handles, a connection open before keeps flowing, the newly
//! denied address is refused and logged, the one no longer denied is
//! reached (IPv4, IPv6, an entry with a port); elements deleted by hand are
//! drift that `up` repairs; the sets go with the last context. The sandbox
//! is `uplink.rs`'s host (uplink `up0` to the LAN namespace `lan`,
//! 203.0.113.0/24 and 2001:db8:1::/64).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::policy_sets::{echoed, long_connection};
use crate::sandbox::{probe, Sandbox, BIN};
use crate::uplink::{run, NET};

/// Two strict contexts going out to the LAN through NAT, reach naming no
/// range (the whole world), under the floor `deny`.
fn config(deny: &str) -> String {
    let ctx = |name: &str, net: u8| {
        format!(
            r#"
[context.{name}]
egress = "nat"
[[context.{name}.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.{net}.0.1/24", "fd{net}::1/64"]
addresses = ["10.{net}.0.2/24", "fd{net}::2/64"]
[[context.{name}.route]]
to = "default"
via = "10.{net}.0.1"
[[context.{name}.route]]
to = "default"
via = "fd{net}::1"
"#
        )
    };
    format!(
        "[defaults]\nuplink = \"up0\"\ndeny = [{deny}]\n{}{}",
        ctx("n", 97),
        ctx("m", 98)
    )
}

const BEFORE: &str = r#""203.0.113.4/32", "2001:db8:1::4/128", "203.0.113.2/32:7001""#;
const AFTER: &str = r#""203.0.113.5/32", "2001:db8:1::5/128", "203.0.113.2/32:7002""#;

/// Every chain of the host's table with its handle and its rules' handles
/// (counters left out: they count on).
fn chains(sb: &Sandbox) -> Vec<String> {
    let table = sb.ok("nft -a list table inet netctx");
    let mut out = Vec::new();
    let mut inside = false;
    for l in table.lines().map(str::trim) {
        if l.starts_with("chain ") {
            inside = true;
        } else if l.starts_with("set ") || l.starts_with("map ") {
            inside = false;
        }
        if inside && l.contains("# handle ") {
            let kept: Vec<&str> = l.split(" counter packets ").take(1).collect();
            let handle = l.rsplit("# handle ").next().unwrap_or_default();
            out.push(format!("{} # {handle}", kept[0]));
        }
    }
    assert!(
        out.iter().any(|l| l.starts_with("chain n_forward")),
        "{table}"
    );
    assert!(
        out.iter().any(|l| l.starts_with("chain m_forward")),
        "{table}"
    );
    out
}

/// No global address still tentative in any namespace of the sandbox (the
/// link-local ones may stay so for long on a machine busy removing
/// namespaces; the connections here go from and to global ones).
fn settled(sb: &Sandbox) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let t = sb.ok("ip -6 addr show tentative scope global; \
             ip -all netns exec ip -6 addr show tentative scope global");
        if !t.contains("tentative") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("addresses still tentative");
}

/// A TCP server on `addr` `port` in the namespace `ns` for two minutes
/// (longer than this file's tests; the sandbox ends it with them).
fn serve(sb: &Sandbox, ns: &str, addr: &str, port: u16) {
    sb.ok(&format!(
        "ip netns exec {ns} {} serve {addr} {port} 120 /dev/null >/dev/null 2>&1 &",
        probe()
    ));
}

/// A TCP connect from the context (1 s): connected or not.
fn connects(sb: &Sandbox, ctx: &str, to: &str) -> bool {
    run(sb, Some(ctx), &format!("connect {to}")) == "connected"
}

/// `connects`, tried once more after a timeout, for what must connect: a
/// loaded machine can miss the second. (Not for what must be refused: a
/// second try there would only slow the test.)
fn reaches(sb: &Sandbox, ctx: &str, to: &str) -> bool {
    let once = || run(sb, Some(ctx), &format!("connect {to}"));
    match once().as_str() {
        "timeout" => once() == "connected",
        r => r == "connected",
    }
}

/// `netctx logs CTX` for a few seconds, while `f` runs.
fn logged(sb: &Sandbox, cfg: &str, ctx: &str, f: impl FnOnce()) -> String {
    let logs = sb
        .enter(BIN)
        .args(["-c", cfg, "logs", ctx, "--count", "100", "--timeout", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    f();
    let out = logs.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_changed_deny_changes_the_shared_sets_in_place_for_every_context() {
    let sb = Sandbox::new();
    sb.ok(NET);
    for a in ["203.0.113.3", "203.0.113.4", "203.0.113.5"] {
        sb.ok(&format!("ip -n lan addr add {a}/24 dev lan0"));
    }
    for a in ["2001:db8:1::4", "2001:db8:1::5"] {
        sb.ok(&format!("ip -n lan addr add {a}/64 dev lan0 nodad"));
    }
    let before = config(BEFORE);
    sb.netctx_with(&before, &["up"]).ok();
    settled(&sb);
    for (addr, port) in [
        ("203.0.113.4", 7000),
        ("203.0.113.5", 7000),
        ("2001:db8:1::4", 7000),
        ("2001:db8:1::5", 7000),
        ("203.0.113.2", 7001),
        ("203.0.113.2", 7002),
    ] {
        serve(&sb, "lan", addr, port);
    }
    // All six listening before the first connect (a refusal must be the
    // floor's, not a server still starting).
    let until = Instant::now() + Duration::from_secs(10);
    let listening = || {
        // Sockets in state LISTEN (0A) in the LAN namespace (no `ss` in
        // the VM lane's image).
        sb.ok("ip netns exec lan cat /proc/net/tcp /proc/net/tcp6")
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
            .count()
    };
    while listening() < 6 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    for ctx in ["n", "m"] {
        assert!(!connects(&sb, ctx, "203.0.113.4 7000"), "{ctx}");
        assert!(reaches(&sb, ctx, "203.0.113.5 7000"), "{ctx}");
        assert!(!connects(&sb, ctx, "2001:db8:1::4 7000"), "{ctx}");
        assert!(reaches(&sb, ctx, "2001:db8:1::5 7000"), "{ctx}");
        assert!(!connects(&sb, ctx, "203.0.113.2 7001"), "{ctx}");
        assert!(reaches(&sb, ctx, "203.0.113.2 7002"), "{ctx}");
    }
    // The floor is the shared sets, not an entry a context.
    let table = sb.ok("nft list table inet netctx");
    for set in ["netctx-deny4", "netctx-deny6", "netctx-denyp4"] {
        assert!(table.contains(&format!("set {set} {{")), "{table}");
    }
    assert!(!table.contains("ip daddr 203.0.113.4"), "{table}");
    let count = long_connection(&sb);
    let until = Instant::now() + Duration::from_secs(20);
    while echoed(&count) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(echoed(&count) > 0, "the long connection never flowed");
    let handles = chains(&sb);

    // Only the floor's addresses change.
    let after = config(AFTER);
    let plan = sb.netctx_with(&after, &["plan", "-v"]);
    plan.ok();
    let p = &plan.stdout;
    assert!(!p.contains("replace host nftables chains"), "{p}");
    assert_eq!(
        p.matches("update host nftables sets netctx-deny4, netctx-deny6, netctx-denyp4 in place (-3 +3 elements)")
            .count(),
        2,
        "{p}"
    );
    for (verb, set, addr) in [
        ("delete", "netctx-deny4", "203.0.113.4"),
        ("add", "netctx-deny4", "203.0.113.5"),
        ("delete", "netctx-deny6", "2001:db8:1::4"),
        ("add", "netctx-deny6", "2001:db8:1::5"),
        ("delete", "netctx-denyp4", "203.0.113.2 . tcp . 7001"),
        ("add", "netctx-denyp4", "203.0.113.2 . tcp . 7002"),
    ] {
        let line = format!("{verb} element inet netctx {set} {{ {addr} }}");
        assert!(p.contains(&line), "{line} in {p}");
    }
    let flowing = echoed(&count);
    let up = sb.netctx_with(&after, &["up"]);
    up.ok();
    assert_eq!(chains(&sb), handles, "chains or rules were replaced");
    let until = Instant::now() + Duration::from_secs(10);
    while echoed(&count) <= flowing && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(echoed(&count) > flowing, "the long connection stopped");
    let cfg = sb.dir.join("netctx.toml");
    let logs = logged(&sb, cfg.to_str().unwrap(), "n", || {
        assert!(!connects(&sb, "n", "203.0.113.5 7000"));
    });
    assert!(
        logs.lines()
            .any(|l| l.starts_with("n DROP:") && l.contains("DST=203.0.113.5")),
        "{logs}"
    );
    for ctx in ["n", "m"] {
        assert!(reaches(&sb, ctx, "203.0.113.4 7000"), "{ctx}");
        assert!(!connects(&sb, ctx, "203.0.113.5 7000"), "{ctx}");
        assert!(reaches(&sb, ctx, "2001:db8:1::4 7000"), "{ctx}");
        assert!(!connects(&sb, ctx, "2001:db8:1::5 7000"), "{ctx}");
        assert!(reaches(&sb, ctx, "203.0.113.2 7001"), "{ctx}");
        assert!(!connects(&sb, ctx, "203.0.113.2 7002"), "{ctx}");
    }
    let st = sb.netctx_with(&after, &["status"]);
    assert_eq!(st.code, 0, "{}", st.stdout);

    // An element deleted behind netctx's back: every context's drift,
    // repaired by `up` in place.
    sb.ok("nft delete element inet netctx netctx-deny4 { 203.0.113.5 }");
    assert!(reaches(&sb, "m", "203.0.113.5 7000"), "the tampering took");
    let st = sb.netctx_with(&after, &["status"]);
    assert_eq!(st.code, 2, "{}", st.stdout);
    assert!(st.stdout.contains("netctx-deny4"), "{}", st.stdout);
    sb.netctx_with(&after, &["up"]).ok();
    assert_eq!(chains(&sb), handles, "the repair replaced chains");
    assert!(!connects(&sb, "m", "203.0.113.5 7000"));
    assert_eq!(sb.netctx_with(&after, &["status"]).code, 0);

    // The sets stay while a context looks them up, and go with the last
    // (here removed from the configuration first).
    sb.netctx_with(&after, &["down", "n"]).ok();
    sb.ok("nft list set inet netctx netctx-deny4");
    assert!(!connects(&sb, "m", "203.0.113.5 7000"));
    sb.netctx_with("[defaults]\n", &["down", "m"]).ok();
    assert_eq!(sb.ok("nft list ruleset").trim(), "");
}

#[test]
fn watch_repairs_a_shared_deny_set_changed_by_hand_in_place() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let cfg = sb.write_config("deny.toml", &config(BEFORE));
    let w = crate::ops::Watcher::start(&sb, cfg.to_str().unwrap());
    let handles = chains(&sb);
    sb.ok("nft delete element inet netctx netctx-deny4 { 203.0.113.4 }");
    // Repaired in place: a context's repair puts the element back (the
    // other context, examined after, may find nothing left to do), and no
    // repair makes a chain anew. (Watched for up to 20 s: a loaded machine
    // may take more than a second.)
    let in_place = |v: &serde_json::Value| {
        v["event"] == "repaired"
            && v["actions"].as_array().is_some_and(|a| {
                a.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| a.contains("netctx-deny4 in place (-0 +1 elements)"))
                })
            })
    };
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while !lines.iter().any(in_place) && Instant::now() < until {
        lines.extend(w.during(Duration::from_millis(500)));
    }
    // What else it prints about the repair, within a second more.
    lines.extend(w.during(Duration::from_secs(1)));
    let set = sb.ok("nft list set inet netctx netctx-deny4");
    assert!(set.contains("203.0.113.4"), "not repaired: {set}");
    assert!(lines.iter().any(in_place), "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|v| v.to_string().contains("replace host nftables chains")
                && v["event"] == "repaired"),
        "{lines:?}"
    );
    assert_eq!(chains(&sb), handles, "the repair replaced chains");
    assert!(w.term().success());
    sb.netctx(&["-c", cfg.to_str().unwrap(), "down", "--all"])
        .ok();
    assert_eq!(sb.ok("nft list ruleset").trim(), "");
}

/// One strict context declared with its own floor.
const DECLARED: &str = r#"
[defaults]
deny = ["203.0.113.9/32"]

[context.d]
[[context.d.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.95.0.1/24"]
addresses = ["10.95.0.2/24"]
"#;

#[test]
fn cni_attachments_keep_their_default_floor_apart_from_the_declared_one() {
    let t = crate::cni::Cni::new();
    t.sb.netctx_with(DECLARED, &["up"]).ok();
    t.netns("pod");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let added = t.call("ADD", "pod", &conf).ok();
    let check = crate::cni::Cni::with_prev(&conf, &added);
    let set = |name: &str| t.sb.ok(&format!("nft list set inet netctx {name}"));
    // Neither front end rewrites the other's floor.
    let declared = set("netctx-deny4");
    assert!(
        declared.contains("203.0.113.9") && !declared.contains("169.254"),
        "{declared}"
    );
    let cni = set("netctx-cni-deny4");
    assert!(
        cni.contains("169.254.0.0/16") && !cni.contains("203.0.113.9"),
        "{cni}"
    );
    assert!(set("netctx-cni-deny6").contains("fd00:ec2::254"));
    assert_eq!(t.sb.netctx_with(DECLARED, &["status", "d"]).code, 0);
    t.call("CHECK", "pod", &check).ok();
    t.sb.netctx_with(DECLARED, &["up"]).ok();
    t.call("CHECK", "pod", &check).ok();
    // The last attachment takes its sets along, the declared ones stay.
    t.call("DEL", "pod", &conf).ok();
    let o = t.sb.sh("nft list set inet netctx netctx-cni-deny4");
    assert!(!o.status.success(), "the attachments' set outlived them");
    assert!(set("netctx-deny4").contains("203.0.113.9"));
    assert_eq!(t.sb.netctx_with(DECLARED, &["status", "d"]).code, 0);
    t.sb.netctx_with(DECLARED, &["down", "d"]).ok();
    assert_eq!(t.sb.ok("nft list ruleset").trim(), "");
}
