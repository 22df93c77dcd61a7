//! Domain names in `reach` (docs/policy.md, "Domain names"), attacked with
//! real names and connections: netctx's resolver served by `watch` at the
//! context's host side, its upstream a real name server (Debian's dnsmasq)
//! in the LAN namespace of `uplink.rs` named by `NETCTX_RESOLV_CONF`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::policy::settled;
use crate::sandbox::{probe, Sandbox, BIN};
use crate::uplink::{run, seen, NET};

const CFG: &str = r#"
[defaults]
uplink = "up0"

[context.d]
egress = "nat"
reach = ["allowed.example:80"]
[[context.d.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.88.0.1/24", "fd88::1/64"]
addresses = ["10.88.0.2/24", "fd88::2/64"]
[[context.d.route]]
to = "default"
via = "10.88.0.1"
[[context.d.route]]
to = "default"
via = "fd88::1"
"#;

/// A TCP server in the LAN for `secs`; the file of its clients.
pub(crate) fn lan_serve(sb: &Sandbox, addr: &str, port: u16, secs: u32) -> std::path::PathBuf {
    let file = sb.dir.join(format!("lan-{addr}-{port}"));
    sb.ok(&format!(
        "ip netns exec lan {} serve {addr} {port} {secs} {} >/dev/null 2>&1 &",
        probe(),
        file.display()
    ));
    file
}

/// `netctx exec d -- netprobe ARGS…`: a real guest, with its resolv.conf.
fn guest(sb: &Sandbox, args: &str) -> String {
    let cfg = sb.dir.join("netctx.toml");
    let o = sb.sh(&format!(
        "{BIN} -c {} exec d -- {} {args}",
        cfg.display(),
        probe()
    ));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `watch --json` with the upstream file given, once it follows every
/// context; and its lines.
pub(crate) fn watch(sb: &Sandbox, resolv: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let cfg = sb.dir.join("netctx.toml");
    // In the sandbox's cgroup: a test that fails before it ends the watch
    // leaves nothing running.
    let mut child = sb
        .enter_joined(BIN)
        .env("NETCTX_RESOLV_CONF", resolv)
        .args(["-c", cfg.to_str().unwrap(), "watch", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ltx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = ltx.send(l);
        }
    });
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("watch stderr: {l}");
            if l.starts_with("netctx: watching") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("watch did not say it is watching");
    (child, lines)
}

fn set(sb: &Sandbox) -> String {
    sb.ok("nft list set inet netctx d_dns4; nft list set inet netctx d_dns6")
}

#[test]
fn a_domain_in_reach_opens_exactly_the_addresses_the_resolver_answered_for_their_time() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok(
        "ip -n lan addr add 203.0.113.50/24 dev lan0 && ip -n lan addr add 203.0.113.51/24 dev lan0 && \
         ip -n lan addr add 2001:db8:1::50/64 dev lan0 nodad",
    );
    let dnsmasq = sb.ok(
        "ip netns exec lan dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= \
         --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=203.0.113.2 \
         --address=/allowed.example/203.0.113.50 --address=/allowed.example/2001:db8:1::50 \
         --address=/refused.example/203.0.113.51 \
         --local-ttl=2 >/dev/null 2>&1 & echo $!",
    );
    let resolv = sb.dir.join("upstream.conf");
    std::fs::write(&resolv, "nameserver 203.0.113.2\n").unwrap();
    let allowed = lan_serve(&sb, "203.0.113.50", 80, 120);
    lan_serve(&sb, "203.0.113.50", 81, 120);
    let refused = lan_serve(&sb, "203.0.113.51", 80, 120);
    let allowed6 = lan_serve(&sb, "2001:db8:1::50", 80, 120);
    sb.netctx_with(CFG, &["up"]).ok();
    settled(&sb);
    std::thread::sleep(Duration::from_millis(300));

    // The attack: the address, known without asking the resolver.
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.50 80"), "connected");
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.51 80"), "connected");
    assert_ne!(
        run(&sb, Some("d"), "connect 2001:db8:1::50 80"),
        "connected"
    );
    // No watch: status says the resolver is missing (no drift).
    let st = sb.netctx_with(CFG, &["status", "d"]);
    assert_eq!(st.code, 0, "{}{}", st.stdout, st.stderr);
    assert!(
        st.stdout
            .contains("no `netctx watch` serves its resolver at 10.88.0.1"),
        "{}",
        st.stdout
    );

    let (mut w, events) = watch(&sb, &resolv);
    let st = sb.netctx_with(CFG, &["status", "d"]).ok().stdout.clone();
    assert!(!st.contains("resolver"), "{st}");
    let mut logs = follow_logs(&sb);

    // A name its reach does not cover: refused, logged; its address stays
    // shut. (Asked again until `logs`, which follows from its start and may
    // start slowly under the VM lane's emulation, has seen a line.)
    let until = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let r = guest(&sb, "resolve refused.example");
        assert!(r.starts_with("failed"), "{r}");
        if logs.try_wait().unwrap().is_some() || std::time::Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = logs.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("d DENY: NAME=refused.example SRC=10.88.0.2"),
        "{out}"
    );
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.51 80"), "connected");

    // The name it covers: answered, and its address open on port 80 only.
    let r = guest(&sb, "resolve allowed.example");
    let mut got: Vec<&str> = r.lines().collect();
    got.sort();
    assert_eq!(got, ["2001:db8:1::50", "203.0.113.50"], "{r}");
    let now = set(&sb);
    assert!(now.contains("203.0.113.50 timeout 30s"), "{now}");
    assert!(now.contains("2001:db8:1::50 timeout 30s"), "{now}");
    assert_eq!(guest(&sb, "connect 203.0.113.50 80"), "connected");
    assert_eq!(guest(&sb, "connect 2001:db8:1::50 80"), "connected");
    assert!(
        seen(&allowed6).starts_with("2001:db8:1::1\n"),
        "{}",
        seen(&allowed6)
    );
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.50 81"), "connected");
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.51 80"), "connected");
    assert!(
        seen(&allowed).starts_with("203.0.113.1\n"),
        "{}",
        seen(&allowed)
    );
    assert_eq!(seen(&refused), "");

    // The resolver's elements are no drift, and a replacement of the
    // context's chains keeps them.
    let plan = sb.netctx_with(CFG, &["plan", "d"]);
    assert!(!plan.stdout.contains("host nftables"), "{}", plan.stdout);
    let more = CFG.replace(
        r#"reach = ["allowed.example:80"]"#,
        r#"reach = ["allowed.example:80", "203.0.113.99/32:1"]"#,
    );
    sb.netctx_with(&more, &["up"]).ok();
    assert!(set(&sb).contains("203.0.113.50"), "{}", set(&sb));
    sb.netctx_with(CFG, &["up"]).ok();

    // After its time (the answer's TTL of 2 s, at least 30 s) it is shut.
    let start = Instant::now();
    while set(&sb).contains("203.0.113.50") {
        assert!(start.elapsed() < Duration::from_secs(40), "{}", set(&sb));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(start.elapsed() > Duration::from_secs(15));
    assert_ne!(run(&sb, Some("d"), "connect 203.0.113.50 80"), "connected");
    assert_ne!(
        run(&sb, Some("d"), "connect 2001:db8:1::50 80"),
        "connected"
    );
    // The resolver's elements woke no repair.
    let said: Vec<String> = events.try_iter().collect();
    assert!(!said.iter().any(|l| l.contains("\"repaired\"")), "{said:?}");

    // SIGTERM to the watch and dnsmasq we started, by pid.
    // SAFETY: kill(2) of our own children.
    unsafe {
        libc::kill(w.id() as i32, libc::SIGTERM);
    }
    w.wait().unwrap();
    sb.ok(&format!("kill {}", dnsmasq.trim()));
    sb.netctx_with(CFG, &["down", "--all"]).ok();
    assert!(!sb.ok("nft list sets").contains("d_dns"));
}

/// `netctx logs d` waiting for one line (30 s at most).
fn follow_logs(sb: &Sandbox) -> Child {
    sb.enter(BIN)
        .args(["-c", sb.dir.join("netctx.toml").to_str().unwrap()])
        .args(["logs", "d", "--count", "1", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn over_ipv6_the_resolver_answers_at_the_host_side_and_opens_only_the_aaaa_it_answered() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok("ip -n lan addr add 203.0.113.60/24 dev lan0 && \
         ip -n lan addr add 2001:db8:1::60/64 dev lan0 nodad && \
         ip -n lan addr add 2001:db8:1::61/64 dev lan0 nodad");
    // The upstream over IPv6 alone: the resolver forwards over IPv6 too.
    let dnsmasq = sb.ok(
        "ip netns exec lan dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= \
         --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=2001:db8:1::2 \
         --address=/allowed.example/2001:db8:1::60 --address=/allowed.example/203.0.113.60 \
         --address=/refused.example/2001:db8:1::61 \
         --local-ttl=2 >/dev/null 2>&1 & echo $!",
    );
    let resolv = sb.dir.join("upstream.conf");
    std::fs::write(&resolv, "nameserver 2001:db8:1::2\n").unwrap();
    let allowed = lan_serve(&sb, "2001:db8:1::60", 80, 150);
    let other_port = lan_serve(&sb, "2001:db8:1::60", 81, 150);
    let refused = lan_serve(&sb, "2001:db8:1::61", 80, 150);
    sb.netctx_with(CFG, &["up"]).ok();
    settled(&sb);
    std::thread::sleep(Duration::from_millis(300));

    // The attack: the addresses, known without asking.
    assert_ne!(
        run(&sb, Some("d"), "connect 2001:db8:1::60 80"),
        "connected"
    );
    assert_ne!(
        run(&sb, Some("d"), "connect 2001:db8:1::61 80"),
        "connected"
    );

    let (mut w, _) = watch(&sb, &resolv);
    // The guest's resolv.conf names the resolver at both host addresses.
    let cfg = sb.dir.join("netctx.toml");
    let conf = sb.ok(&format!(
        "{BIN} -c {} exec d -- cat /etc/resolv.conf",
        cfg.display()
    ));
    let servers: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        servers,
        ["nameserver 10.88.0.1", "nameserver fd88::1"],
        "{conf}"
    );

    // A name its reach does not cover, asked at the IPv6 host side:
    // refused, logged with the guest's IPv6 address; the address it names
    // stays shut.
    let mut logs = follow_logs(&sb);
    let until = Instant::now() + Duration::from_secs(25);
    loop {
        assert_eq!(guest(&sb, "dns fd88::1 refused.example AAAA"), "Refused");
        if logs.try_wait().unwrap().is_some() || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = logs.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("d DENY: NAME=refused.example SRC=fd88::2"),
        "{out}"
    );
    assert_eq!(
        guest(&sb, "dns fd88::1 refused.example AAAA --tcp"),
        "Refused"
    );
    assert_ne!(guest(&sb, "connect 2001:db8:1::61 80"), "connected");

    // The covered name's AAAA, over UDP at the IPv6 host side: answered,
    // that address alone allowed (the A record was not asked), reached on
    // the entry's port only, masqueraded to the uplink's IPv6 address.
    let asked = Instant::now();
    assert_eq!(
        guest(&sb, "dns fd88::1 allowed.example AAAA"),
        "2001:db8:1::60"
    );
    let now = set(&sb);
    assert!(now.contains("2001:db8:1::60 timeout 30s"), "{now}");
    assert!(!now.contains("203.0.113.60"), "{now}");
    assert_eq!(guest(&sb, "connect 2001:db8:1::60 80"), "connected");
    assert_eq!(seen(&allowed), "2001:db8:1::1\n");
    assert_ne!(guest(&sb, "connect 2001:db8:1::60 81"), "connected");
    assert_ne!(guest(&sb, "connect 2001:db8:1::61 80"), "connected");
    assert_eq!(seen(&other_port), "");
    assert_eq!(seen(&refused), "");
    // Over TCP at the IPv6 host side too.
    assert_eq!(
        guest(&sb, "dns fd88::1 allowed.example AAAA --tcp"),
        "2001:db8:1::60"
    );

    // After its time (the answer's TTL of 2 s, at least 30 s) it is shut.
    while set(&sb).contains("2001:db8:1::60") {
        assert!(asked.elapsed() < Duration::from_secs(60), "{}", set(&sb));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(asked.elapsed() > Duration::from_secs(25));
    assert_ne!(guest(&sb, "connect 2001:db8:1::60 80"), "connected");
    assert_eq!(seen(&allowed), "2001:db8:1::1\n");

    // SIGTERM to the watch and dnsmasq we started, by pid.
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(w.id() as i32, libc::SIGTERM);
    }
    w.wait().unwrap();
    sb.ok(&format!("kill {}", dnsmasq.trim()));
    sb.netctx_with(CFG, &["down", "--all"]).ok();
}
