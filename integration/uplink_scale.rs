//! The NAT dispatch (docs/uplink.md#the-chains): more uplink contexts than
//! one hook point holds base chains, real connections through masquerade
//! and a published port of a context past the 1,024th; the maps as drift;
//! the dispatch's groups come and go with the contexts that use them.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{Sandbox, BIN};
use crate::uplink::{run, seen, serve, NET};

/// `n` contexts `u0…`, each masqueraded through `up0` with one published
/// port (`10000 + i` to its port 80), IPv4 only, no guests.
fn many(n: usize) -> String {
    let mut cfg = String::from("[defaults]\nuplink = \"up0\"\n");
    for i in 0..n {
        let (a, b) = (i / 256, i % 256);
        cfg.push_str(&format!(
            "[context.u{i}]\negress = \"nat\"\npublish = [\"{}:80\"]\n\
             [[context.u{i}.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             host_addresses = [\"10.{}.{b}.1/24\"]\naddresses = [\"10.{}.{b}.2/24\"]\n\
             [[context.u{i}.route]]\nto = \"default\"\nvia = \"10.{}.{b}.1\"\n",
            10000 + i,
            100 + a,
            100 + a,
            100 + a
        ));
    }
    cfg
}

/// The number of elements of map `name` in netctx's host table.
fn elems(sb: &Sandbox, name: &str) -> usize {
    let out = sb.ok(&format!("nft -j list map inet netctx {name}"));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("map"))
        .and_then(|m| m["elem"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn base_chains_on(sb: &Sandbox, hook: &str) -> usize {
    sb.ok(&format!(
        "nft list table inet netctx | grep -c 'hook {hook} ' || true"
    ))
    .trim()
    .parse()
    .unwrap()
}

/// More contexts with `egress = "nat"` and a published port than the
/// kernel holds base chains on one hook (1,024): `up` works (it failed with
/// E2BIG at the 1,025th when each had NAT base chains of its own), one base
/// chain a hook, and a context past the 1,024th masquerades and is reached
/// on its published port from the LAN and from the host; a second look
/// finds nothing to do; `down --all` leaves nothing.
#[test]
fn more_uplink_contexts_than_one_hook_holds_base_chains() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let n = 1100;
    let cfg = many(n);
    let t = Instant::now();
    let up = sb.netctx_with(&cfg, &["up"]);
    let took = t.elapsed();
    assert_eq!(up.code, 0, "{}", up.stderr);
    eprintln!(
        "up of {n} uplink contexts: {:.2} s, {:.2} ms/ctx",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
    for hook in ["postrouting", "prerouting", "output"] {
        assert_eq!(base_chains_on(&sb, hook), 1, "{hook}");
    }
    assert_eq!(elems(&sb, "netctx-masquerade"), n);
    assert_eq!(elems(&sb, "netctx-publish"), n);
    // Context u1050: out masqueraded, in on its published port.
    let lan = serve(&sb, "lan", "203.0.113.2", 7000);
    let web = serve(&sb, "u1050", "10.104.26.2", 80);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        run(&sb, Some("u1050"), "connect 203.0.113.2 7000"),
        "connected"
    );
    assert_eq!(seen(&lan).trim(), "203.0.113.1");
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 11050"),
        "connected"
    );
    assert_eq!(run(&sb, None, "connect 203.0.113.1 11050"), "connected");
    // Another context's port is that context's (nothing listens there).
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 11049"),
        "errno 111"
    );
    assert_eq!(seen(&web), "203.0.113.2\n203.0.113.1\n");
    // The maps as they must be: nothing to do.
    let t = Instant::now();
    let st = sb.netctx_with(&cfg, &["status"]);
    eprintln!("status: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(st.code, 0, "{}", st.stdout);
    let t = Instant::now();
    sb.netctx_with(&cfg, &["down", "--all"]).ok();
    eprintln!("down --all: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(sb.ok("nft list tables").trim(), "");
    assert_eq!(sb.ok("ip netns list | grep -c '^u' || true").trim(), "0");
}

const TWO: &str = r#"
[defaults]
uplink = "up0"

[context.a]
egress = "nat"
publish = ["8080:80", "203.0.113.1:8443:443", "[::]:8053:53/udp"]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.91.0.1/24", "fd91::1/64"]
addresses = ["10.91.0.2/24", "fd91::2/64"]
[[context.a.route]]
to = "default"
via = "10.91.0.1"

[context.b]
egress = "nat"
publish = ["9090:80"]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.92.0.1/24"]
addresses = ["10.92.0.2/24"]
[[context.b.route]]
to = "default"
via = "10.92.0.1"
"#;

/// The NAT dispatch's maps and base chains are observed: an element or a
/// base chain taken away, or another context's element put in, is the
/// context's drift (`status` exits 2, `plan` names it), and `up` puts it
/// back, the connection working again.
#[test]
fn tampering_with_the_nat_dispatch_is_drift_that_up_repairs() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(TWO, &["up"]).ok();
    // A server that outlives the repairs below.
    let web = sb.dir.join("web-a");
    sb.ok(&format!(
        "ip netns exec a {} serve 10.91.0.2 80 300 {} >/dev/null 2>&1 &",
        crate::sandbox::probe(),
        web.display()
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 8080"),
        "connected"
    );
    let tampering = [
        "nft delete element inet netctx netctx-publish '{ ipv4 . tcp . 8080 }'",
        "nft delete element inet netctx netctx-publish4 '{ 203.0.113.1 . tcp . 8443 }'",
        "nft delete element inet netctx netctx-masquerade '{ \"nx-a\" }'",
        "nft delete element inet netctx netctx-publish '{ ipv4 . tcp . 8080 }' && \
         nft add element inet netctx netctx-publish '{ ipv4 . tcp . 8080 : jump b_pre }'",
        "nft flush chain inet netctx netctx-prerouting",
        "nft flush chain inet netctx netctx-postrouting",
        "nft delete chain inet netctx netctx-output",
    ];
    for t in tampering {
        sb.ok(t);
        let st = sb.netctx_with(TWO, &["status"]);
        assert_eq!(st.code, 2, "{t}: {}", st.stdout);
        let plan = sb.netctx_with(TWO, &["plan", "-v", "a"]);
        assert!(
            plan.stdout.contains("replace host nftables chains a_")
                && plan.stdout.contains("ipv4 . tcp . 8080 : jump a_pre")
                && plan.stdout.contains("\"nx-a\" : jump a_post"),
            "{t}: {}",
            plan.stdout
        );
        sb.netctx_with(TWO, &["up"]).ok();
        assert_eq!(sb.netctx_with(TWO, &["status"]).code, 0, "{t}");
        let again = sb.netctx_with(TWO, &["up"]);
        assert!(
            again.stdout.contains("a: unchanged") && again.stdout.contains("b: unchanged"),
            "{t}: {}",
            again.stdout
        );
    }
    for hook in ["postrouting", "prerouting", "output"] {
        assert_eq!(base_chains_on(&sb, hook), 1, "{hook}");
    }
    assert_eq!(
        run(&sb, Some("lan"), "connect 203.0.113.1 8080"),
        "connected"
    );
    assert_eq!(run(&sb, None, "connect 203.0.113.1 8080"), "connected");
    assert_eq!(seen(&web), "203.0.113.2\n203.0.113.2\n203.0.113.1\n");
    let lan = serve(&sb, "lan", "203.0.113.2", 7000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&sb, Some("a"), "connect 203.0.113.2 7000"), "connected");
    assert_eq!(seen(&lan).trim(), "203.0.113.1");
    sb.netctx_with(TWO, &["down", "--all"]).ok();
    assert_eq!(sb.ok("nft list tables").trim(), "");
}

/// A group (its maps and base chains) goes with the last context using
/// it, in `up` (a context no longer masquerading or publishing) and in
/// `down`; the other contexts keep theirs.
#[test]
fn the_nat_dispatch_goes_with_the_last_context_using_it() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.netctx_with(TWO, &["up"]).ok();
    let maps = |sb: &Sandbox| {
        sb.ok("nft list table inet netctx | grep -o 'map netctx-[a-z0-9]*' | sort | tr '\\n' ' '")
    };
    assert_eq!(
        maps(&sb),
        "map netctx-forward map netctx-masquerade map netctx-publish map netctx-publish4 map netctx-publish6 "
    );
    // b stops publishing: a keeps the publish group.
    let no_b_publish = TWO.replace("publish = [\"9090:80\"]\n", "");
    sb.netctx_with(&no_b_publish, &["up"]).ok();
    assert_eq!(elems(&sb, "netctx-publish"), 3);
    assert_eq!(base_chains_on(&sb, "prerouting"), 1);
    // a stops too: the publish group goes, the masquerade stays.
    let none_publish = no_b_publish.replace(
        "publish = [\"8080:80\", \"203.0.113.1:8443:443\", \"[::]:8053:53/udp\"]\n",
        "",
    );
    sb.netctx_with(&none_publish, &["up"]).ok();
    assert_eq!(maps(&sb), "map netctx-forward map netctx-masquerade ");
    assert_eq!(base_chains_on(&sb, "prerouting"), 0);
    assert_eq!(base_chains_on(&sb, "output"), 0);
    assert_eq!(base_chains_on(&sb, "postrouting"), 1);
    assert_eq!(sb.netctx_with(&none_publish, &["status"]).code, 0);
    // Both stop masquerading in one run: the masquerade group goes too.
    let plain = none_publish.replace("egress = \"nat\"\n", "");
    sb.netctx_with(&plain, &["up"]).ok();
    assert_eq!(maps(&sb), "map netctx-forward ");
    assert_eq!(base_chains_on(&sb, "postrouting"), 0);
    assert_eq!(sb.netctx_with(&plain, &["status"]).code, 0);
    // Back; then `down` of one keeps the other's; of both, nothing left.
    sb.netctx_with(TWO, &["up"]).ok();
    sb.netctx_with(TWO, &["down", "a"]).ok();
    assert_eq!(elems(&sb, "netctx-masquerade"), 1);
    assert_eq!(elems(&sb, "netctx-publish"), 1);
    assert_eq!(base_chains_on(&sb, "prerouting"), 1);
    sb.netctx_with(TWO, &["down", "b"]).ok();
    assert_eq!(sb.ok("nft list tables").trim(), "");
}

/// The number of kill points `netctx ARGS` passes (crash.rs).
fn kill_points(sb: &Sandbox, cfg: &str, args: &str) -> usize {
    let o = sb.sh(&format!(
        "NETCTX_THREADS=1 NETCTX_CRASH_TRACE=1 {BIN} -c {cfg} {args} 2>&1 >/dev/null"
    ));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("netctx: crash point "))
        .count()
}

fn crash_at(sb: &Sandbox, cfg: &str, args: &str, point: usize) {
    let o = sb.sh(&format!(
        "NETCTX_THREADS=1 NETCTX_CRASH_AFTER={point} {BIN} -c {cfg} {args} >/dev/null 2>&1; echo $?"
    ));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "137",
        "`{args}` did not die at kill point {point}"
    );
}

/// kill -9 at every point of an `up` that makes the NAT dispatch, and of
/// one that leaves it (no context masquerades or publishes any more): the
/// next `up` converges (status 0; no group left that no context uses) and
/// `down --all` leaves no table.
#[test]
fn kill_9_anywhere_in_up_leaves_the_nat_dispatch_to_converge_or_go() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let two = sb.write_config("two.toml", TWO);
    let plain = TWO
        .replace("egress = \"nat\"\n", "")
        .replace(
            "publish = [\"8080:80\", \"203.0.113.1:8443:443\", \"[::]:8053:53/udp\"]\n",
            "",
        )
        .replace("publish = [\"9090:80\"]\n", "");
    let plain = sb.write_config("plain.toml", &plain);
    let (two, plain) = (two.to_str().unwrap(), plain.to_str().unwrap());
    let making = kill_points(&sb, two, "up");
    let leaving = kill_points(&sb, plain, "up");
    sb.netctx(&["-c", two, "down", "--all"]).ok();
    assert!(making > 10 && leaving > 0, "{making} {leaving}");
    eprintln!("kill points: {making} making, {leaving} leaving");
    for p in 1..=making {
        crash_at(&sb, two, "up", p);
        sb.netctx(&["-c", two, "up"]).ok();
        let st = sb.netctx(&["-c", two, "status"]);
        assert_eq!(st.code, 0, "after kill point {p}: {}", st.stdout);
        assert_eq!(elems(&sb, "netctx-masquerade"), 2, "kill point {p}");
        sb.netctx(&["-c", two, "down", "--all"]).ok();
        assert_eq!(sb.ok("nft list tables").trim(), "", "kill point {p}");
    }
    for p in 1..=leaving {
        sb.netctx(&["-c", two, "up"]).ok();
        crash_at(&sb, plain, "up", p);
        sb.netctx(&["-c", plain, "up"]).ok();
        assert_eq!(
            sb.netctx(&["-c", plain, "status"]).code,
            0,
            "kill point {p}"
        );
        let t = sb.ok("nft list table inet netctx");
        assert!(
            !t.contains("netctx-masquerade") && !t.contains("netctx-prerouting"),
            "kill point {p}: {t}"
        );
        sb.netctx(&["-c", plain, "down", "--all"]).ok();
        assert_eq!(sb.ok("nft list tables").trim(), "", "kill point {p}");
    }
}
