//! The policy's address ranges as nft sets (docs/policy.md): when only
//! the addresses of `reach` or `accept_from` change, `up` changes the
//! sets' elements in place: the chains and rules keep their handles and
//! counters, a connection allowed before keeps flowing, the new ranges are
//! reached and the old ones no longer. The sandbox is `uplink.rs`'s host
//! (uplink `up0` to the LAN namespace `lan`, 203.0.113.0/24).

use crate::policy::settled;
use crate::sandbox::{probe, Sandbox};
use crate::uplink::{run, serve, NET};

fn config(reach: &str, deny: &str) -> String {
    format!(
        r#"
[defaults]
uplink = "up0"
deny = [{deny}]

[context.n]
egress = "nat"
reach = [{reach}]
[[context.n.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.97.0.1/24"]
addresses = ["10.97.0.2/24"]
[[context.n.route]]
to = "default"
via = "10.97.0.1"
"#
    )
}

/// The handles of the host table's chain `n_forward` and of its rules,
/// in order.
fn handles(sb: &Sandbox) -> (String, Vec<String>) {
    let table = sb.ok("nft -a list table inet netctx");
    let chain = table
        .lines()
        .find(|l| l.contains("chain n_forward {"))
        .unwrap_or_else(|| panic!("no n_forward in {table}"))
        .to_string();
    let chain_text = sb.ok("nft -a list chain inet netctx n_forward");
    let rules = chain_text
        .lines()
        .filter_map(|l| l.split_once("# handle ").map(|(_, h)| h.trim().to_string()))
        .collect();
    (chain, rules)
}

/// The packets counted by the rule of `n_forward` dropping what goes to
/// the `deny` set.
fn deny_drops(sb: &Sandbox) -> u64 {
    let text = sb.ok("nft list chain inet netctx n_forward");
    let line = text
        .lines()
        .find(|l| {
            // The shared set of the floor (a prefix when deny was rules).
            (l.contains("@netctx-deny4") || l.contains("203.0.113.4"))
                && l.contains("counter packets")
                && l.contains("drop")
        })
        .unwrap_or_else(|| panic!("no deny drop in {text}"));
    let after = line.split("counter packets ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// A TCP echo server in `lan` and a client in context `n` that sends a
/// byte every 50 ms over one connection and writes how many came back
/// (netprobe's `echo` and `ticks`, in the sandbox's cgroup: they end with
/// it).
pub(crate) fn long_connection(sb: &Sandbox) -> std::path::PathBuf {
    let count = sb.dir.join("echoed");
    sb.ok(&format!(
        "ip netns exec lan {} echo 203.0.113.3 7001 60 >/dev/null 2>&1 &",
        probe()
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    sb.ok(&format!(
        "ip netns exec n {} ticks 203.0.113.3 7001 {} 120 >/dev/null 2>&1 &",
        probe(),
        count.display()
    ));
    count
}

pub(crate) fn echoed(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn changed_addresses_update_the_sets_in_place_and_keep_chains_rules_counters_and_connections() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok(
        "ip -n lan addr add 203.0.113.3/24 dev lan0 && ip -n lan addr add 203.0.113.4/24 dev lan0 \
         && ip -n lan addr add 203.0.113.5/24 dev lan0",
    );
    let deny = r#""203.0.113.4/32", "169.254.0.0/16""#;
    let before = config(
        r#""203.0.113.2/32:7000", "203.0.113.3/32:7000-7001", "203.0.113.4/32:7000""#,
        deny,
    );
    sb.netctx_with(&before, &["up"]).ok();
    settled(&sb);
    for addr in ["203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5"] {
        serve(&sb, "lan", addr, 7000);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(run(&sb, Some("n"), "connect 203.0.113.2 7000"), "connected");
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.5 7000"), "connected");
    // The floor beats reach.
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.4 7000"), "connected");
    let denied = deny_drops(&sb);
    assert!(denied > 0, "the refusal is not counted");
    let count = long_connection(&sb);
    // Slow to start under the VM lane's emulation: wait for it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while echoed(&count) == 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(echoed(&count) > 0, "the long connection never flowed");
    let (chain, rules) = handles(&sb);

    // Only addresses change: 203.0.113.2 leaves reach, 203.0.113.5 comes.
    let after = config(
        r#""203.0.113.3/32:7000-7001", "203.0.113.4/32:7000", "203.0.113.5/32:7000""#,
        deny,
    );
    let plan = sb.netctx_with(&after, &["plan", "-v"]);
    plan.ok();
    let flowing = echoed(&count);
    sb.netctx_with(&after, &["up"]).ok();
    assert_eq!(
        handles(&sb),
        (chain, rules),
        "chains or rules were replaced"
    );
    assert!(
        deny_drops(&sb) >= denied,
        "the deny rule's counter was reset"
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while echoed(&count) <= flowing && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(echoed(&count) > flowing, "the long connection stopped");
    // What plan -v showed before: the element changes, no chain replaced.
    let p = &plan.stdout;
    assert!(!p.contains("replace host nftables chains"), "{p}");
    assert!(
        p.lines()
            .any(|l| l.contains("delete element inet netctx n_reachp4 {")
                && l.contains("203.0.113.2")),
        "{p}"
    );
    assert!(
        p.lines().any(|l| l.contains("add element inet netctx n_reachp4 {")
            && l.contains("203.0.113.5")),
        "{p}"
    );
    assert!(!p.contains("7001"), "{p}");
    assert_eq!(run(&sb, Some("n"), "connect 203.0.113.5 7000"), "connected");
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.2 7000"), "connected");
    assert_ne!(run(&sb, Some("n"), "connect 203.0.113.4 7000"), "connected");
    assert!(deny_drops(&sb) > denied, "the floor no longer counts");
    // Converged: nothing more to do.
    let again = sb.netctx_with(&after, &["plan", "-v"]);
    assert!(!again.stdout.contains("n_reachp4"), "{}", again.stdout);
    assert!(!again.stdout.contains("host nftables"), "{}", again.stdout);
    sb.netctx_with(&after, &["down", "--all"]).ok();
}

/// `n` strict with egress limited, naming the host's 7001 and `m`'s 80;
/// `m` strict, admitting only a LAN range (not `n`).
const REFUSALS: &str = r#"
[defaults]
uplink = "up0"
deny = ["203.0.113.4/32"]

[context.n]
egress = "nat"
reach = ["203.0.113.2/32:7000", "host:7001", "m:80"]
[[context.n.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.97.0.1/24"]
addresses = ["10.97.0.2/24"]
[[context.n.route]]
to = "default"
via = "10.97.0.1"

[context.m]
accept_from = ["203.0.113.0/24"]
[[context.m.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.96.0.1/24"]
addresses = ["10.96.0.2/24"]
"#;

fn dropped_host(sb: &Sandbox, ctx: &str) -> u64 {
    let stats = sb.netctx_with(REFUSALS, &["stats", ctx, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats.ok().stdout).unwrap();
    v["contexts"][0]["dropped_host"].as_u64().unwrap()
}

#[test]
fn every_policy_refusal_is_dropped_and_counted_in_stats() {
    let sb = Sandbox::new();
    sb.ok(NET);
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    sb.ok("ip -n lan addr add 203.0.113.4/24 dev lan0");
    sb.netctx_with(REFUSALS, &["up"]).ok();
    settled(&sb);
    for addr in ["203.0.113.2", "203.0.113.4"] {
        serve(&sb, "lan", addr, 7000);
        serve(&sb, "lan", addr, 7002);
    }
    serve(&sb, "m", "10.96.0.2", 80);
    serve(&sb, "n", "10.97.0.2", 80);
    for port in [7001, 7002] {
        sb.ok(&format!(
            "{} serve 0.0.0.0 {port} 60 {} >/dev/null 2>&1 &",
            crate::sandbox::probe(),
            sb.dir.join(format!("host-{port}")).display()
        ));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Controls: what the policy allows passes.
    assert_eq!(run(&sb, Some("n"), "connect 203.0.113.2 7000"), "connected");
    assert_eq!(run(&sb, Some("n"), "connect 10.97.0.1 7001"), "connected");
    // Each refusal: dropped, and counted for the context whose chain
    // refused it.
    let refusals = [
        (
            "n",
            Some("n"),
            "connect 203.0.113.2 7002",
            "egress beyond reach",
        ),
        ("n", Some("n"), "connect 203.0.113.4 7000", "deny"),
        ("n", Some("n"), "connect 10.97.0.1 7002", "host input"),
        ("n", Some("n"), "connect 10.96.0.2 80", "accept_from"),
        (
            "n",
            Some("other"),
            "connect 10.97.0.2 80",
            "a non-uplink forward",
        ),
    ];
    for (ctx, from, what, why) in refusals {
        let before = dropped_host(&sb, ctx);
        assert_ne!(run(&sb, from, what), "connected", "{why}");
        let after = dropped_host(&sb, ctx);
        assert!(after > before, "{why}: dropped_host {before} -> {after}");
    }
    sb.netctx_with(REFUSALS, &["down", "--all"]).ok();
}
