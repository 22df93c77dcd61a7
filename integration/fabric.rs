//! Two hosts in one test (docs/cluster.md): two sandboxes, each a host
//! with its own netctx run directory and its own BIRD (bird2, a private
//! configuration and control socket, not a service), joined by a veth
//! underlay `under0` (198.51.100.0/24, 2001:db8::/64) over which they speak
//! eBGP, exporting only routes of protocol netctx. A context on host A
//! opens real TCP connections to a context on host B, at their own
//! addresses both ways, on the port B's `accept_from` admits and no other;
//! a hand-made `proto static` route on A is not
//! exported; `down` on A withdraws A's routes from B.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sandbox::Sandbox;
use crate::uplink::{run, seen, serve};

/// One host of the two: its sandbox and the number of its side.
struct Host {
    sb: Sandbox,
    n: u8,
    bird: Option<u32>,
}

const CTX_A: &str = r#"
[defaults]
uplink = "under0"

[context.a]
announce = true
egress = "routed"
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
"#;

const CTX_B: &str = r#"
[defaults]
uplink = "under0"
announce = true

[context.b]
# Remote contexts are named by their address ranges: A's, on 8080 only.
accept_from = ["10.91.0.0/24:8080", "[fd91::/64]:8080"]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.92.0.1/24", "fd92::1/64"]
addresses = ["10.92.0.2/24", "fd92::2/64"]
[[context.b.route]]
to = "default"
via = "10.92.0.1"
[[context.b.route]]
to = "default"
via = "fd92::1"
"#;

/// BIRD 2 for host `n` (1 or 2) peering with the other: the kernel's
/// routes of protocol netctx (110) and nothing else come in from the
/// kernel; BGP exports what came from the kernel and puts what it learns
/// into the kernel.
fn bird_conf(n: u8) -> String {
    let peer = 3 - n;
    format!(
        r#"router id 198.51.100.{n};
log stderr all;
protocol device {{ scan time 1; }}
filter netctx_only {{ if krt_source = 110 then accept; reject; }}
protocol kernel k4 {{
  learn;
  scan time 1;
  ipv4 {{ import filter netctx_only; export where source = RTS_BGP; }};
}}
protocol kernel k6 {{
  learn;
  scan time 1;
  ipv6 {{ import filter netctx_only; export where source = RTS_BGP; }};
}}
protocol bgp fabric4 {{
  local 198.51.100.{n} as 6500{n};
  neighbor 198.51.100.{peer} as 6500{peer};
  connect delay time 1;
  connect retry time 1;
  ipv4 {{ import all; export where proto = "k4"; }};
}}
protocol bgp fabric6 {{
  local 2001:db8::{n} as 6500{n};
  neighbor 2001:db8::{peer} as 6500{peer};
  connect delay time 1;
  connect retry time 1;
  ipv6 {{ import all; export where proto = "k6"; }};
}}
"#
    )
}

impl Host {
    fn new(n: u8) -> Host {
        let sb = Sandbox::new();
        assert!(
            sb.sh("command -v bird && command -v birdc")
                .status
                .success(),
            "the two-host test needs BIRD 2 (.ci/setup installs bird2)"
        );
        sb.ok("ip link set lo up");
        Host { sb, n, bird: None }
    }

    fn underlay(&self) {
        let n = self.n;
        self.sb.ok(&format!(
            "ip addr add 198.51.100.{n}/24 dev under0 && ip addr add 2001:db8::{n}/64 dev under0 nodad \
             && ip link set under0 up"
        ));
    }

    /// Start BIRD in the host's namespaces and cgroup, in the foreground of
    /// a background job (`-f`), its control socket in the host's own /run;
    /// its pid kept for the end.
    fn start_bird(&mut self) {
        let conf = self.sb.dir.join("bird.conf");
        std::fs::write(&conf, bird_conf(self.n)).unwrap();
        let log = self.sb.dir.join("bird.log");
        let pid = self.sb.ok(&format!(
            "bird -c {} -s /run/bird.ctl -f >{} 2>&1 & echo $!",
            conf.display(),
            log.display()
        ));
        self.bird = Some(pid.trim().parse().unwrap());
    }

    fn birdc(&self, cmd: &str) -> String {
        String::from_utf8_lossy(&self.sb.sh(&format!("birdc -s /run/bird.ctl {cmd}")).stdout)
            .into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.sb.dir.join("bird.log")).unwrap_or_default()
    }

    /// The kernel's route to `dst` (`ip -j route show DST`), if any.
    fn route(&self, dst: &str) -> Option<serde_json::Value> {
        let fam = if dst.contains(':') { "-6" } else { "-4" };
        let v = self.sb.ip(None, &format!("{fam} route show {dst}"));
        v.as_array().unwrap().first().cloned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.bird.take() {
            // The BIRD this test started, by its pid (the sandbox's cgroup
            // ends it too).
            let _ = self.sb.sh(&format!("kill {pid}"));
        }
    }
}

/// Wait until `what` holds, for at most `d`.
fn wait_for(d: Duration, what: &str, mut f: impl FnMut() -> bool, ctx: impl Fn() -> String) {
    let end = Instant::now() + d;
    while !f() {
        assert!(Instant::now() < end, "{what} within {d:?}\n{}", ctx());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config(h: &Host, text: &str) -> PathBuf {
    h.sb.write_config("netctx.toml", text)
}

#[test]
fn contexts_on_two_hosts_reach_each_other_through_bgp_routes_of_protocol_netctx() {
    let (mut a, mut b) = (Host::new(1), Host::new(2));
    a.sb.ok(&format!(
        "ip link add under0 type veth peer name under0 netns {}",
        b.sb.pid()
    ));
    a.underlay();
    b.underlay();
    // The administrator's own route on A, which BIRD must not export.
    a.sb.ok("ip route add 10.93.0.7/32 dev under0 proto static");
    let (ca, cb) = (config(&a, CTX_A), config(&b, CTX_B));
    a.sb.netctx(&["-c", ca.to_str().unwrap(), "up"]).ok();
    b.sb.netctx(&["-c", cb.to_str().unwrap(), "up"]).ok();
    let t0 = Instant::now();
    a.start_bird();
    b.start_bird();
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    wait_for(
        Duration::from_secs(30),
        "both BGP sessions established",
        || {
            let (pa, pb) = (a.birdc("show protocols"), b.birdc("show protocols"));
            pa.matches("Established").count() == 2 && pb.matches("Established").count() == 2
        },
        logs,
    );
    // Each host learns the other's announced addresses, into the kernel.
    for (h, dst, via) in [
        (&b, "10.91.0.2", "198.51.100.1"),
        (&b, "fd91::2", "2001:db8::1"),
        (&a, "10.92.0.2", "198.51.100.2"),
        (&a, "fd92::2", "2001:db8::2"),
    ] {
        wait_for(
            Duration::from_secs(20),
            &format!("{dst} learned over BGP"),
            || h.route(dst).is_some_and(|r| r["protocol"] == "bird"),
            || format!("{:?}\n{}", h.route(dst), logs()),
        );
        let r = h.route(dst).unwrap();
        let gw = r["gateway"].as_str().unwrap_or_default().to_string();
        assert!(gw == via || dst.contains(':'), "{r}");
        assert_eq!(r["dev"], "under0", "{r}");
    }
    eprintln!(
        "routes learned both ways {:?} after BIRD started",
        t0.elapsed()
    );
    // The hand-made route never left A; only netctx's did.
    assert!(b.route("10.93.0.7").is_none(), "{:?}", b.route("10.93.0.7"));
    let exported = a.birdc("show route export fabric4");
    assert!(exported.contains("10.91.0.2/32"), "{exported}");
    assert!(!exported.contains("10.93.0.7"), "{exported}");
    // Real TCP connections from a context on A to one on B, at their own
    // addresses, IPv4 and IPv6 (once no address is tentative).
    for (h, ns) in [(&a, "a"), (&b, "b")] {
        wait_for(
            Duration::from_secs(10),
            "duplicate address detection done",
            || {
                h.sb.ok(&format!(
                    "ip -6 addr show tentative; ip -n {ns} -6 addr show tentative"
                ))
                .trim()
                .is_empty()
            },
            String::new,
        );
    }
    let s4 = serve(&b.sb, "b", "10.92.0.2", 8080);
    let s6 = serve(&b.sb, "b", "fd92::2", 8080);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&a.sb, Some("a"), "connect 10.92.0.2 8080"), "connected");
    assert_eq!(run(&a.sb, Some("a"), "connect fd92::2 8080"), "connected");
    assert_eq!(seen(&s4).trim(), "10.91.0.2");
    assert_eq!(seen(&s6).trim(), "fd91::2");
    // B's accept_from admits A's contexts on 8080 and nothing else: not
    // another port, not host A itself (its underlay address).
    let other4 = serve(&b.sb, "b", "10.92.0.2", 8081);
    let other6 = serve(&b.sb, "b", "fd92::2", 8081);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&a.sb, Some("a"), "connect 10.92.0.2 8081"), "timeout");
    assert_eq!(run(&a.sb, Some("a"), "connect fd92::2 8081"), "timeout");
    assert_eq!(run(&a.sb, None, "connect 10.92.0.2 8080"), "timeout");
    assert_eq!(run(&a.sb, None, "connect fd92::2 8080"), "timeout");
    assert_eq!(seen(&other4).trim(), "");
    assert_eq!(seen(&other6).trim(), "");
    // down on A withdraws its routes from B.
    a.sb.netctx(&["-c", ca.to_str().unwrap(), "down", "a"]).ok();
    let t1 = Instant::now();
    for dst in ["10.91.0.2", "fd91::2"] {
        wait_for(
            Duration::from_secs(20),
            &format!("{dst} withdrawn from B"),
            || b.route(dst).is_none(),
            || format!("{:?}\n{}", b.route(dst), logs()),
        );
    }
    eprintln!("withdrawn from B {:?} after down", t1.elapsed());
    // B's own stays announced, and A still learns it.
    assert!(a.route("10.92.0.2").is_some());
    b.sb.netctx(&["-c", cb.to_str().unwrap(), "down", "--all"])
        .ok();
}
