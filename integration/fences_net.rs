//! The network's fences (docs/fences.md), with real packets: a veth's rate
//! capped both ways at `limits.bandwidth` (measured by a real transfer,
//! far faster without it), changed in place by `up` and out of a root
//! guest's reach; `limits.connections` refusing the connection past the
//! cap, `limits.new_connections` the ones over the rate; `stats` counting
//! them and `netctx logs` showing `CTX:LIMIT:`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{attack, probe, Sandbox, BIN};

const CFG: &str = r#"
[context.bw]
reach = ["host:5201/tcp"]
[[context.bw.link]]
kind = "veth"
name = "eth0"
host = "nx-bw"
host_addresses = ["10.38.0.1/24"]
addresses = ["10.38.0.2/24"]
[context.bw.limits]
LIMITS

[context.cn]
reach = ["host:5301/tcp"]
[[context.cn.link]]
kind = "veth"
name = "eth0"
host = "nx-cn"
host_addresses = ["10.39.0.1/24"]
addresses = ["10.39.0.2/24"]
[context.cn.limits]
connections = 10

[context.nc]
reach = ["host:5401/tcp"]
[[context.nc.link]]
kind = "veth"
name = "eth0"
host = "nx-nc"
host_addresses = ["10.40.0.1/24"]
addresses = ["10.40.0.2/24"]
[context.nc.limits]
new_connections = "5/second"
"#;

/// 20 mbit in bytes a second.
const CAP: f64 = 2_500_000.0;

fn cfg(limits: &str) -> String {
    CFG.replace("LIMITS", limits)
}

/// A process in context `ns` (or the sandbox), stdout piped.
fn spawn(sb: &Sandbox, ns: Option<&str>, args: &[&str]) -> Child {
    let mut c = match ns {
        Some(n) => {
            let mut c = sb.enter_joined("ip");
            c.args(["netns", "exec", n]).arg(probe());
            c
        }
        None => sb.enter_joined(&probe()),
    };
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The next line of a child's stdout.
fn line(c: &mut Child) -> (BufReader<std::process::ChildStdout>, String) {
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    (r, l.trim().to_string())
}

/// Bytes a second of a 3 s TCP transfer to `sink` (an address of the
/// sandbox, `None`, or of context `ns`) from the other side, as the
/// receiver counts them (first byte to last: what the rate let through).
fn transfer(
    sb: &Sandbox,
    sink_ns: Option<&str>,
    from_ns: Option<&str>,
    addr: &str,
    port: &str,
) -> f64 {
    let mut s = spawn(sb, sink_ns, &["sink", addr, port, "60"]);
    let (mut out, first) = line(&mut s);
    assert_eq!(first, "listening");
    let mut p = spawn(sb, from_ns, &["pour", addr, port, "3"]);
    let status = p.wait().unwrap();
    assert!(status.success(), "pour failed");
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    s.wait().unwrap();
    let f: Vec<f64> = l
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(f.len() == 2 && f[1] > 0.5, "sink said {l:?}");
    eprintln!(
        "transfer to {addr}: {} bytes in {} s: {:.0} B/s",
        f[0],
        f[1],
        f[0] / f[1]
    );
    f[0] / f[1]
}

/// Both ways: host → context (the host end's bucket), context → host (the
/// context end's).
fn both_ways(sb: &Sandbox) -> (f64, f64) {
    let down = transfer(sb, Some("bw"), None, "10.38.0.2", "5202");
    let up = transfer(sb, None, Some("bw"), "10.38.0.1", "5201");
    (down, up)
}

fn within(rate: f64, cap: f64) -> bool {
    (0.75 * cap..=1.25 * cap).contains(&rate)
}

/// The root qdisc of a link (`ip -j link`'s `qdisc`).
fn qdisc(sb: &Sandbox, ns: Option<&str>, dev: &str) -> String {
    let v = sb.ip(ns, &format!("link show {dev}"));
    v[0]["qdisc"].as_str().unwrap_or_default().to_string()
}

/// The namespace's inode and both ends' ifindexes.
fn identity(sb: &Sandbox) -> (String, u64, u64) {
    let inode = sb.ok("stat -L -c %i /run/netns/bw").trim().to_string();
    let index = |ns: Option<&str>, dev: &str| {
        sb.links(ns)
            .into_iter()
            .find(|(n, _, _)| n == dev)
            .map(|(_, i, _)| i)
            .unwrap()
    };
    (inode, index(Some("bw"), "eth0"), index(None, "nx-bw"))
}

#[test]
fn a_bandwidth_cap_holds_both_ways_and_changes_in_place() {
    let sb = Sandbox::new();
    let capped = cfg("bandwidth = \"20mbit\"");
    sb.netctx_with(&capped, &["up", "bw"]).ok();
    assert_eq!(qdisc(&sb, Some("bw"), "eth0"), "tbf");
    assert_eq!(qdisc(&sb, None, "nx-bw"), "tbf");
    let (down, up) = both_ways(&sb);
    assert!(
        within(down, CAP) && within(up, CAP),
        "20mbit = {CAP} B/s: host → context {down:.0} B/s, context → host {up:.0} B/s"
    );
    let before = identity(&sb);

    // A changed limit is drift, and `up` changes it in place.
    let faster = cfg("bandwidth = \"40mbit\"");
    let plan = sb.netctx_with(&faster, &["plan", "bw"]);
    assert!(
        plan.stdout
            .contains("set the rate of host link nx-bw to 40mbit")
            && plan.stdout.contains("set the rate of link eth0 to 40mbit"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    let st = sb.netctx_with(&faster, &["status", "bw"]);
    assert_ne!(st.code, 0, "{}", st.stdout);
    sb.netctx_with(&faster, &["up", "bw"]).ok();
    assert_eq!(identity(&sb), before, "the context was made anew");
    let plan = sb.netctx_with(&faster, &["plan", "bw"]).ok().stdout.clone();
    assert!(!plan.contains("set the rate"), "{plan}");
    let down = transfer(&sb, Some("bw"), None, "10.38.0.2", "5202");
    assert!(
        within(down, 2.0 * CAP),
        "40mbit: host → context {down:.0} B/s"
    );

    // Without the limit: no bucket, and far faster.
    let free = cfg("");
    sb.netctx_with(&free, &["up", "bw"]).ok();
    assert_eq!(identity(&sb), before, "the context was made anew");
    assert_eq!(qdisc(&sb, Some("bw"), "eth0"), "noqueue");
    assert_eq!(qdisc(&sb, None, "nx-bw"), "noqueue");
    let (down, up) = both_ways(&sb);
    assert!(
        down > 3.0 * CAP && up > 3.0 * CAP,
        "without a limit: host → context {down:.0} B/s, context → host {up:.0} B/s"
    );
    let st = sb.netctx_with(&free, &["status", "bw"]);
    assert!(!st.stdout.contains("not enforced"), "{}", st.stdout);
    sb.netctx_with(&free, &["down", "--all"]).ok();
}

#[test]
fn attack_a_root_guest_cannot_remove_or_replace_the_guest_side_qdisc() {
    let sb = Sandbox::new();
    let capped = cfg("bandwidth = \"20mbit\"");
    sb.netctx_with(&capped, &["up", "bw"]).ok();
    let r = sb.netctx_with(&capped, &["exec", "bw", "--", &attack(), "qdisc", "eth0"]);
    assert!(
        r.code == 1 && !r.stdout.contains("ESCAPED") && r.stdout.contains("refused"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(qdisc(&sb, Some("bw"), "eth0"), "tbf");
    let plan = sb.netctx_with(&capped, &["plan", "bw"]).ok().stdout.clone();
    assert!(!plan.contains("set the rate"), "{plan}");
    sb.netctx_with(&capped, &["down", "--all"]).ok();
}

/// The context's figures in `stats --json`.
fn stats(sb: &Sandbox, ctx: &str) -> serde_json::Value {
    let r = sb.netctx_with(&cfg(""), &["stats", ctx, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.ok().stdout).unwrap();
    v["contexts"][0].clone()
}

/// `netctx logs cn` until its first line, while `refuse` runs again and
/// again (logs follows from its start, which may be slow under emulation).
fn limit_line(sb: &Sandbox, mut refuse: impl FnMut()) -> String {
    let mut logs = sb
        .enter(BIN)
        .args(["-c", sb.dir.join("netctx.toml").to_str().unwrap()])
        .args(["logs", "cn", "--count", "1", "--timeout", "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(35);
    while logs.try_wait().unwrap().is_none() && Instant::now() < until {
        refuse();
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = logs.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn connections_past_the_cap_are_refused_counted_and_logged() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(""), &["up", "cn"]).ok();
    // A listener on the host that never accepts: the connections stay.
    let mut l = spawn(
        &sb,
        None,
        &["listen", "10.39.0.1", "5301", "--tcp", "--secs", "120"],
    );
    let (_lo, first) = line(&mut l);
    assert_eq!(first, "listening");
    // 13 connections one after another, held: exactly 10 are made.
    let mut c = spawn(&sb, Some("cn"), &["conns", "10.39.0.1", "5301", "13", "60"]);
    let (_co, opened) = line(&mut c);
    assert_eq!(opened, "opened 10");
    let f = stats(&sb, "cn");
    assert!(f["limit_connections_refused"].as_u64().unwrap() >= 3, "{f}");
    assert!(f["conntrack_entries"].as_u64().unwrap() >= 10, "{f}");
    let out = limit_line(&sb, || {
        let r = sb.sh(&format!(
            "ip netns exec cn {} connect 10.39.0.1 5301",
            probe()
        ));
        assert!(!String::from_utf8_lossy(&r.stdout).contains("connected"));
    });
    assert!(
        out.contains("cn LIMIT: IN= OUT=eth0 SRC=10.39.0.2 DST=10.39.0.1"),
        "{out}"
    );
    for p in [&mut c, &mut l] {
        p.kill().unwrap();
        p.wait().unwrap();
    }
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}

#[test]
fn new_connections_over_the_rate_are_refused_and_counted() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(""), &["up", "nc"]).ok();
    let mut l = spawn(
        &sb,
        None,
        &["listen", "10.40.0.1", "5401", "--tcp", "--secs", "120"],
    );
    let (_lo, first) = line(&mut l);
    assert_eq!(first, "listening");
    // 8 connects at once at 5 a second (a burst of 5): at most a few
    // more than 5 are made within 0.8 s, the rest are dropped.
    let r = sb.ok(&format!(
        "ip netns exec nc {} burst 10.40.0.1 5401 8",
        probe()
    ));
    let opened: u64 = r.trim().trim_start_matches("opened ").parse().unwrap();
    assert!((1..=6).contains(&opened), "{r}");
    let f = stats(&sb, "nc");
    assert!(
        f["limit_new_connections_refused"].as_u64().unwrap() >= 2,
        "{f}"
    );
    assert_eq!(f["limit_connections_refused"], 0, "{f}");
    l.kill().unwrap();
    l.wait().unwrap();
    sb.netctx_with(&cfg(""), &["down", "--all"]).ok();
}
