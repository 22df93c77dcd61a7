//! Strict isolation and logging chains, proved with real packets: the
//! tables netctx loads (read back with `nft -j`), anti-spoofing in the
//! context and on the host, wildcard sockets, binds of foreign addresses,
//! the VServer mail's three pings in `netctx logs`, and convergence of rules.

use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{examples, probe, Sandbox, BIN};

const TWO: &str = r#"
[defaults]
log = ["input", "forward", "output"]

[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.31.0.1/24"]
addresses = ["10.31.0.2/24", "fd00:31::2/64"]
[[context.a.route]]
to = "default"
via = "10.31.0.1"

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.32.0.1/24"]
addresses = ["10.32.0.2/24"]
[[context.b.route]]
to = "default"
via = "10.32.0.1"
"#;

fn nft_json(sb: &Sandbox, ns: Option<&str>) -> Vec<Value> {
    let prefix = ns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    let out = sb.ok(&format!("{prefix}nft -j list table inet netctx"));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

fn objects<'a>(v: &'a [Value], kind: &str) -> Vec<&'a Value> {
    v.iter().filter_map(|o| o.get(kind)).collect()
}

fn in_ns(ns: Option<&str>) -> String {
    ns.map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default()
}

/// A UDP receiver in `ns` (None: the sandbox host) on `port`, writing what
/// it receives to `file`, until `secs` pass without a datagram.
fn udp_receiver(sb: &Sandbox, ns: Option<&str>, port: u16, file: &str, secs: f64) {
    sb.ok(&format!(
        "{}{} recv-udp 0.0.0.0 {port} {secs} {file} >/dev/null 2>&1 & sleep 0.3",
        in_ns(ns),
        probe()
    ));
}

fn send_udp(sb: &Sandbox, ns: Option<&str>, dst: &str, port: u16, text: &str) {
    sb.ok(&format!(
        "{}{} send-udp {dst} {port} {text}",
        in_ns(ns),
        probe()
    ));
}

/// Send a UDP datagram from `ns` with a forged IPv4 source, through a raw
/// socket (the sender is privileged: `ip netns exec` runs as root). A drop
/// on output shows as EPERM, which is fine here.
fn forge(sb: &Sandbox, ns: &str, src: &str, dst: &str, port: u16, text: &str) {
    sb.ok(&format!(
        "ip netns exec {ns} {} forge {src} {dst} {port} {text}",
        probe()
    ));
}

fn received(sb: &Sandbox, file: &str, secs: f64) -> String {
    std::thread::sleep(Duration::from_secs_f64(secs));
    sb.ok(&format!("cat {file} 2>/dev/null || true"))
}

#[test]
fn tables_inside_and_on_the_host_read_back_with_nft() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    let a = nft_json(&sb, Some("a"));
    let chains: Vec<&str> = objects(&a, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(chains, ["input", "forward", "output"]);
    let sets = objects(&a, "set");
    assert_eq!(sets[0]["name"], "assigned4");
    assert_eq!(sets[0]["elem"], serde_json::json!(["10.31.0.2"]));
    assert_eq!(sets[1]["elem"], serde_json::json!(["fd00:31::2"]));
    let rules = objects(&a, "rule");
    assert_eq!(rules.len(), 18, "{rules:?}");
    let text = sb.ok("ip netns exec a nft list table inet netctx");
    for want in [
        "log prefix \"CTX:INPUT:\" group 100",
        "log prefix \"CTX:FORWARD:\" group 100",
        "log prefix \"CTX:OUTPUT:\" group 100",
        "ip daddr @assigned4 accept",
        "ip6 saddr @assigned6 accept",
        "log prefix \"CTX:DROP:\" group 100",
        "limit rate 100/second burst 100 packets",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let host = nft_json(&sb, None);
    let mut hc: Vec<&str> = objects(&host, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    hc.sort();
    assert_eq!(
        hc,
        [
            "a_forward",
            "a_nx-a",
            "b_forward",
            "b_nx-b",
            "netctx-forward",
            "netctx-input"
        ]
    );
    let hook = |name: &str| {
        objects(&host, "chain")
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["hook"].clone())
            .unwrap()
    };
    assert_eq!(hook("a_nx-a"), "ingress");
    // The contexts' forward chains are reached through one base chain on
    // the forward hook and its verdict map (the kernel allows 1,024 base
    // chains a hook).
    assert_eq!(hook("a_forward"), serde_json::Value::Null);
    assert_eq!(hook("netctx-forward"), "forward");
    // And what a context sends to the host's own addresses, through the
    // same map from the input hook.
    assert_eq!(hook("netctx-input"), "input");
    let map = sb.ok("nft list map inet netctx netctx-forward");
    assert!(
        map.contains("\"nx-a\" : jump a_forward") && map.contains("\"nx-b\" : jump b_forward"),
        "{map}"
    );
    let base = sb.ok("nft list chain inet netctx netctx-forward");
    assert!(
        base.contains("iifname vmap @netctx-forward")
            && base.contains("oifname vmap @netctx-forward"),
        "{base}"
    );
    assert!(sb
        .ok("nft list chain inet netctx a_nx-a")
        .contains("hook ingress device \"nx-a\""));
    assert!(sb
        .ok("nft list table inet netctx")
        .contains("comment \"netctx\""));
    // Router advertisements are refused on the context's links.
    assert_eq!(
        sb.ok("ip netns exec a sysctl -n net.ipv6.conf.eth0.accept_ra"),
        "0\n"
    );

    // Isolation off and no logging: no table, no host chain.
    let off = TWO.replace("[context.b]", "[context.b]\nisolation = \"off\"\nlog = []");
    sb.netctx_with(&off, &["up"]).ok();
    assert!(!sb
        .sh("ip netns exec b nft list table inet netctx")
        .status
        .success());
    let hc: Vec<String> = objects(&nft_json(&sb, None), "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hc,
        ["a_nx-a", "a_forward", "netctx-forward", "netctx-input"]
    );
    let map = sb.ok("nft list map inet netctx netctx-forward");
    assert!(!map.contains("nx-b"), "b's element is left: {map}");
}

#[test]
fn second_up_sends_no_nftables_message_and_drift_is_replaced() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", TWO);
    let c = cfg.to_str().unwrap();
    // nf_tables messages that change something (NEW*/DEL*), as strace shows
    // them: by name when it knows the socket's family, else by number.
    let count = |args: &str| -> usize {
        let out = sb.ok(&format!(
            "strace -f -e trace=sendto,sendmsg -o /run/trace {BIN} -v -c {c} {args} >/run/trace.out 2>&1; \
             grep -o 'NFT_MSG_NEW[A-Z]*\\|NFT_MSG_DEL[A-Z]*\\|nlmsg_type=0xa0[0235689bce][ ,]' /run/trace | wc -l"
        ));
        out.trim().parse().unwrap()
    };
    sb.netctx(&["-c", c, "down", "--all"]).ok();
    let first = count("up");
    assert!(
        first > 0,
        "the first up sent no nf_tables message; trace:\n{}",
        sb.ok("head -c 3000 /run/trace; strace -V 2>&1 | head -2")
    );
    assert_eq!(
        count("up"),
        0,
        "a second up sent nf_tables messages:\n{}",
        sb.ok("cat /run/trace.out; grep 'NFT_MSG_NEW\\|NFT_MSG_DEL\\|nlmsg_type=0xa0[0235689bce][ ,]' /run/trace | cut -c1-300")
    );
    // Someone flushes a chain inside: status says so, up replaces the table.
    sb.ok("ip netns exec a nft flush chain inet netctx output");
    let s = sb.netctx(&["-c", c, "status"]);
    assert_eq!(s.code, 2);
    assert!(
        s.stdout.contains("replace nftables table inet netctx"),
        "{}",
        s.stdout
    );
    sb.netctx(&["-c", c, "up"]).ok();
    assert_eq!(sb.netctx(&["-c", c, "status"]).code, 0);
    assert_eq!(objects(&nft_json(&sb, Some("a")), "rule").len(), 18);
}

#[test]
fn down_leaves_no_netctx_table_anywhere() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    sb.netctx_with(TWO, &["down", "a"]).ok();
    let hc: Vec<String> = objects(&nft_json(&sb, None), "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hc,
        ["netctx-forward", "netctx-input", "b_nx-b", "b_forward"],
        "a's host chains left behind"
    );
    // ... and its element of the forward dispatch.
    let map = sb.ok("nft list map inet netctx netctx-forward");
    assert!(
        map.contains("\"nx-b\" : jump b_forward") && !map.contains("nx-a"),
        "{map}"
    );
    sb.netctx_with(TWO, &["down", "--all"]).ok();
    assert_eq!(sb.ok("nft list tables"), "");
}

#[test]
fn wildcard_socket_receives_only_for_declared_addresses() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    sb.ok("ip -n a addr add 10.31.0.99/24 dev eth0");
    udp_receiver(&sb, Some("a"), 5000, "/run/rx-a", 1.5);
    send_udp(&sb, None, "10.31.0.2", 5000, "declared");
    send_udp(&sb, None, "10.31.0.99", 5000, "sneaked");
    let got = received(&sb, "/run/rx-a", 1.0);
    assert!(got.contains("declared 10.31.0.1"), "{got:?}");
    assert!(!got.contains("sneaked"), "{got:?}");
}

#[test]
fn binding_another_contexts_address_fails() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    let r = sb.netctx_with(
        TWO,
        &["exec", "a", "--", &probe(), "bind", "10.32.0.2", "80"],
    );
    assert_eq!(r.ok().stdout.trim(), "EADDRNOTAVAIL");
}

#[test]
fn forged_source_reaches_neither_host_nor_other_context() {
    let sb = Sandbox::new();
    // a may reach b through the host, and the host's UDP 6000 (the
    // control below needs both).
    let cfg = TWO.replace(
        "[context.a]\n",
        "[context.a]\nreach = [\"b\", \"host:6000/udp\"]\n",
    );
    sb.netctx_with(&cfg, &["up"]).ok();
    // The sandbox host routes between contexts for this test, so that
    // without the rules a forged packet would get through to b.
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    udp_receiver(&sb, None, 6000, "/run/rx-host", 2.5);
    udp_receiver(&sb, Some("b"), 6000, "/run/rx-b", 2.5);
    // Control: a's own source gets through to both.
    forge(&sb, "a", "10.31.0.2", "10.31.0.1", 6000, "own-to-host");
    forge(&sb, "a", "10.31.0.2", "10.32.0.2", 6000, "own-to-b");
    // Forged with b's source: dropped in a's output chain.
    forge(&sb, "a", "10.32.0.2", "10.31.0.1", 6000, "forged-to-host");
    forge(&sb, "a", "10.32.0.2", "10.32.0.2", 6000, "forged-to-b");
    assert_eq!(
        drops(&sb, Some("a"), "output"),
        2,
        "a's output chain did not drop the forgeries"
    );
    // A context that got its rules out of the way (a privileged guest):
    // the host's chain on nx-a still drops the forgery.
    sb.ok("ip netns exec a nft delete table inet netctx");
    forge(&sb, "a", "10.32.0.2", "10.31.0.1", 6000, "unruled-to-host");
    forge(&sb, "a", "10.32.0.2", "10.32.0.2", 6000, "unruled-to-b");
    let host = received(&sb, "/run/rx-host", 0.5);
    let b = received(&sb, "/run/rx-b", 0.0);
    assert!(host.contains("own-to-host"), "control failed: {host:?}");
    assert!(b.contains("own-to-b"), "control failed: {b:?}");
    for (who, got) in [("host", &host), ("b", &b)] {
        assert!(
            !got.contains("forged") && !got.contains("unruled"),
            "{who} got a forgery: {got:?}"
        );
    }
    assert_eq!(
        drops(&sb, None, "a_nx-a"),
        2,
        "the host's chain did not drop the forgeries"
    );
}

/// A privileged guest (its context's own rules deleted) forging a source
/// that belongs to no context (a LAN address, and one of the host's own):
/// the host's chain on its veth drops it, towards the host and towards a
/// context it may reach, and logs it as `CTX:DROP:`.
#[test]
fn forged_outside_source_is_dropped_and_logged_by_the_host() {
    let sb = Sandbox::new();
    let cfg = TWO.replace(
        "[context.a]\n",
        "[context.a]\nreach = [\"b\", \"host:6000/udp\"]\n",
    );
    let file = sb.write_config("c.toml", &cfg);
    let c = file.to_str().unwrap();
    sb.netctx(&["-c", c, "up"]).ok();
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    sb.ok("ip netns exec a nft delete table inet netctx");
    udp_receiver(&sb, None, 6000, "/run/rx-host", 2.5);
    udp_receiver(&sb, Some("b"), 6000, "/run/rx-b", 2.5);
    start_logs(&sb, c, "a --timeout 3", "/run/logs");
    // Control: a's own source gets through to both.
    forge(&sb, "a", "10.31.0.2", "10.31.0.1", 6000, "own-to-host");
    forge(&sb, "a", "10.31.0.2", "10.32.0.2", 6000, "own-to-b");
    for src in ["198.51.100.7", "10.32.0.1"] {
        forge(&sb, "a", src, "10.31.0.1", 6000, "forged-to-host");
        forge(&sb, "a", src, "10.32.0.2", 6000, "forged-to-b");
    }
    let logs = stop_logs(&sb, "/run/logs");
    let host = received(&sb, "/run/rx-host", 0.5);
    let b = received(&sb, "/run/rx-b", 0.0);
    assert!(host.contains("own-to-host"), "control failed: {host:?}");
    assert!(b.contains("own-to-b"), "control failed: {b:?}");
    assert!(!host.contains("forged"), "the host got a forgery: {host:?}");
    assert!(!b.contains("forged"), "b got a forgery: {b:?}");
    assert_eq!(
        drops(&sb, None, "a_nx-a"),
        4,
        "the host's chain did not drop the forgeries"
    );
    for (src, dst) in [
        ("198.51.100.7", "10.31.0.1"),
        ("198.51.100.7", "10.32.0.2"),
        ("10.32.0.1", "10.31.0.1"),
        ("10.32.0.1", "10.32.0.2"),
    ] {
        let line = format!("a DROP: IN=nx-a OUT= SRC={src} DST={dst}");
        assert!(logs.lines().any(|l| l.starts_with(&line)), "{line}: {logs}");
    }
}

/// Packets counted by the last drop rule of a chain (the one that drops
/// what nothing accepted).
fn drops(sb: &Sandbox, ns: Option<&str>, chain: &str) -> u64 {
    let prefix = ns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    let v: Value =
        serde_json::from_str(&sb.ok(&format!("{prefix}nft -j list chain inet netctx {chain}")))
            .unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["rule"]["expr"].as_array())
        // The drop rule's counter (logging rules have counters too).
        .filter(|exprs| exprs.iter().any(|e| e.get("drop").is_some()))
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .next_back()
        .expect("a drop counter")
}

/// Start `netctx logs` in the background; wait until it reads.
fn start_logs(sb: &Sandbox, cfg: &str, args: &str, out: &str) {
    sb.ok(&format!(
        "{BIN} -c {cfg} logs {args} >{out} 2>{out}.err & echo $! >{out}.pid; \
         for i in $(seq 100); do grep -q reading {out}.err && break; sleep 0.05; done; grep -q reading {out}.err"
    ));
}

/// Stop it (as ^C would) and return what it printed.
fn stop_logs(sb: &Sandbox, out: &str) -> String {
    std::thread::sleep(Duration::from_millis(300));
    sb.ok(&format!("kill -INT $(cat {out}.pid); cat {out}"))
}

#[test]
fn the_mails_three_pings_appear_in_logs() {
    let sb = Sandbox::new();
    let cfg = examples().join("vserver-mail.toml");
    let c = cfg.to_str().unwrap();
    sb.netctx(&["-c", c, "up"]).ok();
    sb.ok("ip netns add far && ip link set nx-router1 netns far \
         && ip -n far addr add 10.4.0.9/24 dev nx-router1 && ip -n far link set nx-router1 up \
         && ip -n far route add default via 10.4.0.1 && ip route add 10.4.0.0/24 via 10.3.0.2");
    start_logs(&sb, c, "--timeout 4", "/run/logs");
    assert!(sb.ping(None, "10.1.0.2"), "terminating ping");
    assert!(sb.ping(Some("leaf1"), "10.1.0.1"), "originating ping");
    assert!(sb.ping(None, "10.4.0.9"), "routed ping");
    let out = stop_logs(&sb, "/run/logs");
    let has = |pat: &[&str]| out.lines().any(|l| pat.iter().all(|p| l.contains(p)));
    // Terminating: the echo request in INPUT, the reply in OUTPUT.
    assert!(
        has(&["leaf1 INPUT: IN=eth0 OUT= SRC=10.1.0.1 DST=10.1.0.2 LEN=84 PROTO=ICMP TYPE=8"]),
        "{out}"
    );
    assert!(
        has(&["leaf1 OUTPUT: IN= OUT=eth0 SRC=10.1.0.2 DST=10.1.0.1 LEN=84 PROTO=ICMP TYPE=0"]),
        "{out}"
    );
    // Originating: the request in OUTPUT, the reply in INPUT.
    assert!(
        has(&["leaf1 OUTPUT: IN= OUT=eth0 SRC=10.1.0.2 DST=10.1.0.1 LEN=84 PROTO=ICMP TYPE=8"]),
        "{out}"
    );
    assert!(
        has(&["leaf1 INPUT: IN=eth0 OUT= SRC=10.1.0.1 DST=10.1.0.2 LEN=84 PROTO=ICMP TYPE=0"]),
        "{out}"
    );
    // Routed: FORWARD from eth0 to eth1, and no INPUT of it in the router.
    assert!(
        has(&[
            "router FORWARD: IN=eth0 OUT=eth1 SRC=10.3.0.1 DST=10.4.0.9 LEN=84 PROTO=ICMP TYPE=8"
        ]),
        "{out}"
    );
    assert!(!has(&["router INPUT:", "DST=10.4.0.9"]), "{out}");
}

#[test]
fn logs_json_and_a_second_reader_is_refused() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", TWO);
    let c = cfg.to_str().unwrap();
    sb.netctx(&["-c", c, "up"]).ok();
    start_logs(&sb, c, "a --json --timeout 3", "/run/logs");
    let second = sb.netctx(&["-c", c, "logs", "a", "--timeout", "1"]);
    assert_eq!(second.code, 1);
    assert!(
        second
            .stderr
            .contains("another reader holds group 100 in context a"),
        "{}",
        second.stderr
    );
    assert!(sb.ping(None, "10.31.0.2"));
    let out = stop_logs(&sb, "/run/logs");
    let req = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["chain"] == "INPUT" && v["proto"] == "ICMP" && v["icmp_type"] == 8)
        .unwrap_or_else(|| panic!("no echo request in {out}"));
    assert_eq!(req["context"], "a");
    assert_eq!(req["in"], "eth0");
    assert_eq!(req["src"], "10.31.0.1");
    assert_eq!(req["dst"], "10.31.0.2");
    assert_eq!(req["len"], 84);
}

#[test]
fn host_drops_of_forged_packets_are_logged() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", TWO);
    let c = cfg.to_str().unwrap();
    sb.netctx(&["-c", c, "up"]).ok();
    sb.ok("ip netns exec a nft delete table inet netctx");
    start_logs(&sb, c, "a --timeout 3", "/run/logs");
    forge(&sb, "a", "10.32.0.2", "10.31.0.1", 6000, "x");
    let out = stop_logs(&sb, "/run/logs");
    assert!(
        out.lines().any(
            |l| l.starts_with("a DROP: IN=nx-a OUT= SRC=10.32.0.2 DST=10.31.0.1")
                && l.contains("PROTO=UDP SPT=40000 DPT=6000")
        ),
        "{out}"
    );
}

/// The mail's own setup, with its dummy leg: on a kernel with dummy links
/// (the VM lane), addresses and routes on the dummy, and the routed ping
/// leaving through it in the FORWARD log; on a kernel without, the clear
/// error and nothing left of the context.
#[test]
fn the_mails_dummy_leg_forwards_or_fails_clearly() {
    let sb = Sandbox::new();
    let cfg = examples().join("dummy/vserver-mail.toml");
    let c = cfg.to_str().unwrap();
    let has_dummy = sb
        .sh("ip link add probe0 type dummy && ip link del probe0")
        .status
        .success();
    let r = sb.netctx(&["-c", c, "up"]);
    if !has_dummy {
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(
                "context client: link dummy0: this kernel cannot create dummy links (CONFIG_DUMMY)"
            ),
            "{}",
            r.stderr
        );
        assert!(sb.netns_list().is_empty());
        assert!(sb.links(None).iter().all(|l| l.0 == "lo"));
        return;
    }
    r.ok();
    assert_eq!(sb.addrs(Some("client"), "dummy0"), ["10.200.0.1/24"]);
    let routes = sb.ip(Some("client"), "route show 10.201.0.0/16");
    assert_eq!(routes[0]["gateway"], "10.200.0.254");
    assert_eq!(routes[0]["dev"], "dummy0");
    assert_eq!(sb.netctx(&["-c", c, "status"]).code, 0);
    sb.ok("ip route add 10.200.0.0/24 via 10.0.0.2");
    start_logs(&sb, c, "--timeout 4", "/run/logs");
    assert!(
        sb.ping(None, "10.200.0.1"),
        "the dummy's own address answers"
    );
    assert!(!sb.ping(None, "10.200.0.9"), "nobody lives behind a dummy");
    let out = stop_logs(&sb, "/run/logs");
    let has = |pat: &str| out.lines().any(|l| l.contains(pat));
    assert!(
        has("client FORWARD: IN=eth0 OUT=dummy0 SRC=10.0.0.1 DST=10.200.0.9 LEN=84 PROTO=ICMP TYPE=8"),
        "{out}"
    );
    assert!(
        has("client INPUT: IN=eth0 OUT= SRC=10.0.0.1 DST=10.200.0.1 LEN=84 PROTO=ICMP TYPE=8"),
        "{out}"
    );
    sb.netctx(&["-c", c, "down", "--all"]).ok();
    assert!(sb.netns_list().is_empty());
}

/// Each shape of ruleset netctx builds, loaded by netctx and read back with
/// `nft -j`: strict without logging, logging without isolation, strict with
/// forwarding (host chain accepting the subnets).
#[test]
fn every_ruleset_shape_reads_back() {
    let sb = Sandbox::new();
    let cfg = r#"
[context.s]
[[context.s.link]]
kind = "veth"
name = "eth0"
addresses = ["10.41.0.2/24"]
[context.l]
isolation = "off"
log = ["forward"]
[[context.l.link]]
kind = "veth"
name = "eth0"
addresses = ["10.42.0.2/24"]
[context.f]
ip_forward = true
[[context.f.link]]
kind = "veth"
name = "eth0"
addresses = ["10.43.0.2/24"]
"#;
    sb.netctx_with(cfg, &["up"]).ok();
    let chains = |ns: &str| -> Vec<(String, usize)> {
        let v = nft_json(&sb, Some(ns));
        objects(&v, "chain")
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap().to_string();
                let n = objects(&v, "rule")
                    .iter()
                    .filter(|r| r["chain"] == name.as_str())
                    .count();
                (name, n)
            })
            .collect()
    };
    let owned = |v: &[(&str, usize)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), *b))
            .collect::<Vec<_>>()
    };
    assert_eq!(chains("s"), owned(&[("input", 8), ("output", 7)]));
    assert_eq!(chains("l"), owned(&[("forward", 1)]));
    assert!(objects(&nft_json(&sb, Some("l")), "set").is_empty());
    assert_eq!(chains("f"), owned(&[("input", 8), ("output", 7)]));
    let host = sb.ok("nft list table inet netctx");
    assert!(host.contains("chain s_nx-s"), "{host}");
    assert!(!host.contains("chain l_nx-l"), "{host}");
    assert!(host.contains("ip saddr 10.43.0.0/24 accept"), "{host}");
    assert!(host.contains("ip saddr 10.41.0.2 accept"), "{host}");
    assert_eq!(sb.netctx_with(cfg, &["status"]).code, 0);
}

/// More strict contexts than the kernel allows base chains on one hook
/// (1,024): each context's forward chain is reached through the one
/// dispatch chain, so `up` works (it failed with E2BIG at the 1,025th), and
/// every context is kept apart.
#[test]
fn more_strict_contexts_than_one_hook_holds_base_chains() {
    let sb = Sandbox::new();
    let n = 1100;
    let mut cfg = String::new();
    for i in 0..n {
        let (a, b) = (i / 256, i % 256);
        cfg.push_str(&format!(
            "[context.s{i}]\n[[context.s{i}.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             host_addresses = [\"10.{}.{b}.1/24\"]\naddresses = [\"10.{}.{b}.2/24\"]\n",
            100 + a,
            100 + a
        ));
    }
    let up = sb.netctx_with(&cfg, &["up"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let base = sb.ok("nft list table inet netctx | grep -c 'hook forward'");
    assert_eq!(base.trim(), "1");
    let elems = sb.ok("nft -j list map inet netctx netctx-forward");
    let v: Value = serde_json::from_str(&elems).unwrap();
    let all = v["nftables"].as_array().unwrap().clone();
    let n_elems = objects(&all, "map")[0]["elem"].as_array().unwrap().len();
    assert_eq!(n_elems, n);
    sb.netctx_with(&cfg, &["status"]).ok();
    sb.netctx_with(&cfg, &["down", "--all"]).ok();
    assert_eq!(sb.ok("nft list tables").trim(), "");
    assert_eq!(sb.ok("ip netns list").trim(), "");
}
