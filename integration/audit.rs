//! `netctx audit` against real sockets and processes: every socket kind
//! (UDP-Lite, raw, MPTCP), a context's own link-local and multicast binds
//! (not violations) beside a foreign FREEBIND bind (one), a host socket
//! carried into a context by its process, an `ip netns exec` process
//! (unconfined), and a process of a context's cgroup outside its namespace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{probe, Sandbox, BIN};

const CFG: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.41.0.1/24"]
addresses = ["10.41.0.2/24", "fd00:41::2/64"]

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.42.0.1/24"]
addresses = ["10.42.0.2/24"]
"#;

fn up(sb: &Sandbox) {
    sb.netctx_with(CFG, &["up"]).ok();
}

fn audit(sb: &Sandbox, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let r = sb.netctx_with(CFG, &all);
    let v =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    (r.code, v)
}

/// Start `netprobe listen ARGS` (in context `ns`, or the sandbox's host)
/// for 12 s in the background; returns once its socket is open, with its pid.
fn hold(sb: &Sandbox, ns: Option<&str>, args: &str) -> u32 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let out = format!("/run/probe-{}.out", N.fetch_add(1, Ordering::Relaxed));
    let prefix = ns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    let pid = sb.ok(&format!(
        "{prefix}{} listen {args} --secs 12 >{out} 2>&1 & echo $!",
        probe()
    ));
    sb.ok(&format!(
        "for i in $(seq 100); do grep -q listening {out} && exit 0; \
         grep -q netprobe: {out} && break; sleep 0.05; done; cat {out}; exit 1"
    ));
    pid.trim().parse().unwrap()
}

fn sockets(v: &Value, ctx: usize) -> &[Value] {
    v["contexts"][ctx]["sockets"].as_array().unwrap()
}

fn find<'a>(socks: &'a [Value], proto: &str, local: &str, port: u64) -> &'a Value {
    socks
        .iter()
        .find(|s| s["proto"] == proto && s["local"] == local && s["port"] == port)
        .unwrap_or_else(|| panic!("no {proto} {local}:{port} in {socks:#?}"))
}

/// The kernel's link-local address of eth0 in `ns`, once DAD is done.
fn link_local(sb: &Sandbox, ns: &str) -> String {
    for _ in 0..60 {
        let v = sb.ip(Some(ns), "-6 addr show dev eth0 scope link");
        let found = v[0]["addr_info"].as_array().and_then(|infos| {
            // iproute2 leaves an empty object for each address filtered out.
            infos.iter().find(|a| a["local"].is_string())
        });
        if let Some(a) = found.filter(|a| a.get("tentative").is_none()) {
            return a["local"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("eth0 in {ns} has no usable link-local address");
}

#[test]
fn audit_lists_every_socket_kind_and_judges_link_local_and_multicast() {
    let sb = Sandbox::new();
    up(&sb);
    let ll = link_local(&sb, "a");
    let pid = hold(&sb, Some("a"), "10.41.0.2 7001 --udplite");
    hold(&sb, Some("a"), "fd00:41::2 7001 --udplite");
    hold(&sb, Some("a"), "0.0.0.0 1 --raw");
    hold(&sb, Some("a"), ":: 58 --raw");
    hold(&sb, Some("a"), "224.0.0.251 5353");
    hold(&sb, Some("a"), "ff05::fb 5353");
    hold(&sb, Some("a"), &format!("{ll} 7002 --dev eth0"));
    // MPTCP where the kernel lists it (mptcp_diag): `ss -M` is the oracle.
    let mptcp = sb
        .sh("test -e /proc/sys/net/mptcp/enabled")
        .status
        .success()
        && hold(&sb, Some("a"), "10.41.0.2 7003 --mptcp") > 0
        && sb.sh("command -v ss").status.success()
        && sb.ok("ip netns exec a ss -Mln").contains("10.41.0.2:7003");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["violations"], 0);
    let a = sockets(&v, 0);
    let lite = find(a, "udplite", "10.41.0.2", 7001);
    assert_eq!(
        (
            &lite["verdict"],
            &lite["state"],
            &lite["pid"],
            &lite["namespace"]
        ),
        (
            &"assigned".into(),
            &"UNCONN".into(),
            &pid.into(),
            &"a".into()
        )
    );
    assert_eq!(lite["command"], "netprobe");
    assert_eq!(
        find(a, "udplite", "fd00:41::2", 7001)["verdict"],
        "assigned"
    );
    // Raw sockets: the "port" is the IP protocol, as ss shows it.
    assert_eq!(find(a, "raw", "0.0.0.0", 1)["verdict"], "wildcard");
    assert_eq!(find(a, "raw", "::", 58)["verdict"], "wildcard");
    assert_eq!(find(a, "udp", "224.0.0.251", 5353)["verdict"], "multicast");
    assert_eq!(find(a, "udp", "ff05::fb", 5353)["verdict"], "multicast");
    let own = find(a, "udp", &ll, 7002);
    assert_eq!(own["verdict"], "link-local");
    assert_ne!(own["ifindex"], 0, "bound to eth0 by its scope");
    if mptcp {
        let m = find(a, "mptcp", "10.41.0.2", 7003);
        assert_eq!(
            (&m["state"], &m["verdict"]),
            (&"LISTEN".into(), &"assigned".into())
        );
    }
    let text = sb.netctx_with(CFG, &["audit", "a"]);
    assert_eq!(text.code, 0, "{}", text.stdout);
    for s in [
        "udplite",
        "10.41.0.2:7001",
        "multicast",
        "link-local",
        "raw",
    ] {
        assert!(text.stdout.contains(s), "{s} in {}", text.stdout);
    }

    // With IP_FREEBIND, b binds a UDP-Lite socket to a's address.
    hold(&sb, Some("b"), "10.41.0.2 7004 --udplite --freebind");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 2, "{v:#}");
    // One socket, one violation: b's (a, whose address it is, and the host
    // have none).
    assert_eq!(v["violations"], 1, "{v:#}");
    assert_eq!(
        v["contexts"][0]["violations"],
        serde_json::json!([]),
        "{v:#}"
    );
    assert_eq!(
        find(sockets(&v, 1), "udplite", "10.41.0.2", 7004)["verdict"],
        "VIOLATION"
    );
    let msg = v["contexts"][1]["violations"][0].as_str().unwrap();
    assert!(
        msg.starts_with(
            "udplite socket on 10.41.0.2:7004 is bound to 10.41.0.2, which is not assigned to b"
        ),
        "{msg}"
    );
}

#[test]
fn audit_flags_a_contexts_process_holding_a_host_socket() {
    let sb = Sandbox::new();
    up(&sb);
    // Opened in the (sandbox's) host namespace, then carried into a.
    let pid = hold(&sb, None, "0.0.0.0 7777 --enter a");
    assert_eq!(
        sb.ok(&format!("readlink /proc/{pid}/ns/net")),
        sb.ok("ip netns exec a readlink /proc/self/ns/net"),
        "the probe is in a's namespace"
    );
    for args in [&[][..], &["a"][..]] {
        let (code, v) = audit(&sb, args);
        assert_eq!(code, 2, "{v:#}");
        let a = &v["contexts"][0];
        let msg = a["violations"][0].as_str().unwrap();
        assert_eq!(
            msg,
            format!(
                "pid {pid} (netprobe) holds a udp socket on *:7777 of the host's namespace, not of context a"
            )
        );
        let held = find(sockets(&v, 0), "udp", "0.0.0.0", 7777);
        assert_eq!(
            (&held["namespace"], &held["verdict"]),
            (&"host".into(), &"VIOLATION".into())
        );
        assert_eq!(held["pid"], pid);
    }
    // The host's own listing still has it, as the host's socket.
    let (_, v) = audit(&sb, &[]);
    let host = v["host"]["sockets"].as_array().unwrap();
    assert_eq!(find(host, "udp", "0.0.0.0", 7777)["namespace"], "host");
    let text = sb.netctx_with(CFG, &["audit", "a"]);
    assert!(
        text.stdout
            .contains("VIOLATION (socket of the host's namespace)"),
        "{}",
        text.stdout
    );

    // A socket of context b carried into a: b's own, a's violation.
    let other = hold(&sb, Some("b"), "10.42.0.2 7778 --enter a");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 2, "{v:#}");
    let want = format!(
        "pid {other} (netprobe) holds a udp socket on 10.42.0.2:7778 of the namespace of context b, not of context a"
    );
    assert!(
        v["contexts"][0]["violations"]
            .as_array()
            .unwrap()
            .contains(&want.into()),
        "{v:#}"
    );
    assert_eq!(
        find(sockets(&v, 0), "udp", "10.42.0.2", 7778)["namespace"],
        "b"
    );
    assert_eq!(
        find(sockets(&v, 1), "udp", "10.42.0.2", 7778)["verdict"],
        "assigned"
    );
    assert_eq!(v["violations"], 2, "{v:#}");
}

#[test]
fn audit_lists_ip_netns_exec_processes_as_unconfined() {
    let sb = Sandbox::new();
    up(&sb);
    let pid: u64 = sb
        .ok("ip netns exec a sleep 20 >/dev/null 2>&1 & echo $!")
        .trim()
        .parse()
        .unwrap();
    sb.ok(&format!(
        "for i in $(seq 100); do [ \"$(cat /proc/{pid}/comm)\" = sleep ] && exit 0; sleep 0.05; done; exit 1"
    ));
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 0, "{v:#}");
    let un = v["contexts"][0]["unconfined"].as_array().unwrap();
    let me = un
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not unconfined: {v:#}"));
    assert_eq!(me["command"], "sleep");
    assert!(!me["cgroup"].as_str().unwrap().starts_with("/netctx/a"));
    assert!(v["contexts"][1]["unconfined"]
        .as_array()
        .unwrap()
        .is_empty());
    let text = sb.netctx_with(CFG, &["audit"]);
    assert!(
        text.stdout
            .contains(&format!("unconfined: pid {pid} (sleep) in cgroup")),
        "{}",
        text.stdout
    );
    sb.ok(&format!("kill {pid}"));
}

/// A cgroup of the test's own, `nxtest-audit-PID-N` under the cgroup2
/// mount (the host's hierarchy: nothing else there is touched). Dropping
#[test]
fn audit_flags_a_process_of_a_contexts_cgroup_outside_its_namespace() {
    let sb = Sandbox::new();
    up(&sb);
    // b's cgroup as the guest sandbox makes it, under the sandbox's own
    // cgroup2 mount (the sandbox removes it, and ends what is in it).
    let leaf = format!("{}/netctx/b", crate::sandbox::cgroup2_mount().display());
    sb.ok(&format!("mkdir -p {leaf}"));
    // b's cgroup holds a process of the (sandbox's) host namespace...
    let stray: u64 = sb
        .ok(&format!(
            "sleep 20 >/dev/null 2>&1 & echo $! >{leaf}/cgroup.procs; echo $!"
        ))
        .trim()
        .parse()
        .unwrap();
    // ... and one of b's namespace: confined.
    let confined: u64 = sb
        .ok(&format!(
            "ip netns exec b sleep 20 >/dev/null 2>&1 & echo $! >{leaf}/cgroup.procs; echo $!"
        ))
        .trim()
        .parse()
        .unwrap();
    // Both have become `sleep`, the second in b's namespace.
    let b_ns = sb.ok("ip netns exec b readlink /proc/self/ns/net");
    sb.ok(&format!(
        "for i in $(seq 100); do [ \"$(cat /proc/{stray}/comm)\" = sleep ] \
         && [ \"$(cat /proc/{confined}/comm)\" = sleep ] \
         && [ \"$(readlink /proc/{confined}/ns/net)\" = '{}' ] && exit 0; sleep 0.05; done; exit 1",
        b_ns.trim()
    ));
    let cfg = sb.write_config("netctx.toml", CFG);
    let o = sb.sh(&format!("{BIN} -c {} audit --json", cfg.display()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let b = &v["contexts"][1];
    // The cgroup was made by hand, so b's bind restriction is missing too.
    let mut cg = crate::sandbox::cgroup2_mount();
    cg.push("netctx/b");
    assert_eq!(
        b["violations"],
        serde_json::json!([
            format!("pid {stray} (sleep) is in the cgroup of b but not in its network namespace"),
            format!(
                "the bind restriction of b is missing on {}: bind4, bind6, connect4, connect6, sendmsg4, sendmsg6",
                cg.display()
            ),
        ]),
        "{v:#}"
    );
    let unconfined = b["unconfined"].as_array().unwrap();
    assert!(!unconfined.iter().any(|p| p["pid"] == confined), "{v:#}");
    assert_eq!(v["violations"], 2, "{v:#}");
}

#[test]
fn audit_flags_addresses_on_lo_and_extra_link_local_addresses() {
    let sb = Sandbox::new();
    up(&sb);
    link_local(&sb, "a");
    assert_eq!(audit(&sb, &[]).0, 0, "the kernel's own link-local is a's");
    // b's address on a's lo, and a link-local address the kernel did not make.
    sb.ok("ip -n a addr add 10.42.0.2/32 dev lo && ip -n a addr add fe80::1/64 dev eth0");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 2, "{v:#}");
    let mut got: Vec<&str> = v["contexts"][0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "address 10.42.0.2/32 on link lo is not declared for a",
            "address fe80::1/64 on link eth0 is not declared for a",
        ]
    );
}

#[test]
fn audit_lists_ping_sockets_and_flags_one_on_a_neighbours_address() {
    let sb = Sandbox::new();
    up(&sb);
    // ICMP datagram sockets bind through their own bind, which no cgroup
    // hook sees: only audit can tell. The "port" is the echo identifier.
    let pid = hold(&sb, Some("a"), "10.41.0.2 4711 --ping");
    hold(&sb, Some("a"), "fd00:41::2 4712 --ping");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 0, "{v:#}");
    let own = find(sockets(&v, 0), "ping", "10.41.0.2", 4711);
    assert_eq!(
        (&own["verdict"], &own["pid"], &own["command"]),
        (&"assigned".into(), &pid.into(), &"netprobe".into()),
        "{v:#}"
    );
    assert_eq!(
        find(sockets(&v, 0), "ping", "fd00:41::2", 4712)["verdict"],
        "assigned"
    );
    // b binds a ping socket to a's address (IP_FREEBIND).
    hold(&sb, Some("b"), "10.41.0.2 4713 --ping --freebind");
    let (code, v) = audit(&sb, &[]);
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["violations"], 1, "{v:#}");
    assert_eq!(
        find(sockets(&v, 1), "ping", "10.41.0.2", 4713)["verdict"],
        "VIOLATION"
    );
    let msg = v["contexts"][1]["violations"][0].as_str().unwrap();
    assert!(
        msg.starts_with("ping socket on 10.41.0.2:4713 is bound to 10.41.0.2"),
        "{msg}"
    );
    let text = sb.netctx_with(CFG, &["audit", "b"]);
    assert_eq!(text.code, 2, "{}", text.stdout);
    assert!(
        text.stdout.contains("ping") && text.stdout.contains("VIOLATION"),
        "{}",
        text.stdout
    );
}
