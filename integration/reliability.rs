//! Reliability: kill -9 anywhere in `up` and `down` (deterministic kill
//! points, and at random moments), concurrent runs, and a hostile
//! environment. After each fault `up` must converge and `down --all` must
//! leave nothing.

use std::time::Duration;

use crate::sandbox::{Sandbox, BIN};

/// `n` contexts, each a veth with an address a side and a default route.
pub fn contexts(n: usize) -> String {
    let mut s = String::from("[defaults]\nlog = [\"input\"]\n");
    for i in 0..n {
        let (a, b) = (100 + i / 60, (i % 60) * 4);
        let id = i + 1;
        s.push_str(&format!(
            "[context.c{i}]\nid = {id}\n[[context.c{i}.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             host_addresses = [\"10.{a}.{b}.1/30\"]\naddresses = [\"10.{a}.{b}.2/30\"]\n\
             [[context.c{i}.route]]\nto = \"default\"\nvia = \"10.{a}.{b}.1\"\n"
        ));
    }
    s
}

/// Nothing of netctx left in the sandbox.
fn assert_clean(sb: &Sandbox, after: &str) {
    assert!(
        sb.netns_list().is_empty(),
        "{after}: namespaces left: {:?}",
        sb.netns_list()
    );
    assert_eq!(sb.nsfs_mounts(), 0, "{after}: nsfs mounts left");
    let links: Vec<String> = sb
        .links(None)
        .into_iter()
        .map(|l| l.0)
        .filter(|l| l != "lo")
        .collect();
    assert!(links.is_empty(), "{after}: host links left: {links:?}");
    assert_eq!(
        sb.ok("nft list tables"),
        "",
        "{after}: nftables tables left"
    );
    assert_eq!(
        sb.ok("ls -A /run/netctx/netns 2>/dev/null || true"),
        "",
        "{after}: markers left"
    );
}

/// Run netctx with a kill point; it must die of SIGKILL there.
fn crash_at(sb: &Sandbox, cfg: &str, args: &str, point: usize) {
    let o = sb.sh(&format!(
        "NETCTX_THREADS=1 NETCTX_CRASH_AFTER={point} {BIN} -c {cfg} {args} >/dev/null 2>&1; echo $?"
    ));
    let code = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(code, "137", "`{args}` did not die at kill point {point}");
}

fn converged(sb: &Sandbox, cfg: &str, n: usize, after: &str) {
    let up = sb.netctx(&["-c", cfg, "up"]);
    assert_eq!(up.code, 0, "{after}: up failed: {}", up.stderr);
    let st = sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(st.code, 0, "{after}: not converged: {}", st.stdout);
    assert_eq!(
        st.stdout.lines().filter(|l| l.ends_with(" up")).count(),
        n,
        "{after}"
    );
}

#[test]
fn kill_9_anywhere_in_up_and_down_then_converge_and_leave_nothing() {
    let n = 60;
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", &contexts(n));
    let c = cfg.to_str().unwrap();
    // The points of one context's creation (see crash.rs): 1 marker
    // written, 2 namespace made but not configured, 3 veth made (host end
    // without addresses), 4 a sysctl, 5-6 addresses and routes, 7 the
    // context's rules in (7 points a context); then further into the run,
    // at other contexts; 420: every context done but no host chain (they go
    // in one transaction at the end), 421: that transaction done.
    let up_points = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 100, 243, 361, 420, 421];
    let mut exercised = 0;
    for p in up_points {
        // Low points hit the first contexts made while the others exist;
        // high ones need a run that makes them all.
        if p <= 10 {
            sb.netctx(&["-c", c, "down", "c0", "c1", "c2"]).ok();
        } else {
            sb.netctx(&["-c", c, "down", "--all"]).ok();
        }
        crash_at(&sb, c, "up", p);
        converged(&sb, c, n, &format!("kill point {p} of up"));
        exercised += 1;
    }
    // Kill points of down (namespaces are unmounted one after the other,
    // then the markers go): after the first namespace removal (marker still
    // there), the second, the third, after the last namespace and the first
    // marker, before the host chains go.
    for p in [1, 2, 3, 61, 120] {
        converged(&sb, c, n, "before a down crash");
        crash_at(&sb, c, "down --all", p);
        let d = sb.netctx(&["-c", c, "down", "--all"]);
        assert_eq!(d.code, 0, "down after kill point {p}: {}", d.stderr);
        assert_clean(&sb, &format!("kill point {p} of down"));
        exercised += 1;
    }
    // Random moments.
    let mut seed = 0x2545_f491u64;
    for _ in 0..5 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let ms = 5 + (seed >> 33) % 150;
        let args = if seed & 1 == 0 { "up" } else { "down --all" };
        sb.sh(&format!(
            "{BIN} -c {c} {args} >/dev/null 2>&1 & sleep 0.{ms:03}; kill -9 $! 2>/dev/null; wait"
        ));
        converged(&sb, c, n, &format!("kill -9 after {ms} ms of {args}"));
        exercised += 1;
    }
    sb.netctx(&["-c", c, "down", "--all"]).ok();
    assert_clean(&sb, "the last down");
    assert!(exercised >= 25);
}

#[test]
fn two_and_three_concurrent_runs_end_converged() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", &contexts(20));
    let c = cfg.to_str().unwrap();
    sb.ok(&format!(
        "{BIN} -c {c} up >/dev/null 2>&1 & {BIN} -c {c} up >/dev/null 2>&1 & wait"
    ));
    converged(&sb, c, 20, "two ups");
    sb.ok(&format!(
        "{BIN} -c {c} down --all >/dev/null 2>&1 & {BIN} -c {c} up >/dev/null 2>&1 & {BIN} -c {c} up >/dev/null 2>&1 & wait"
    ));
    // Whichever order they ran in, one more up converges.
    converged(&sb, c, 20, "down and two ups");
    sb.netctx(&["-c", c, "down", "--all"]).ok();
    assert_clean(&sb, "down");
}

#[test]
fn a_waiting_run_gives_up_naming_the_holder_and_a_dead_holder_blocks_nobody() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", &contexts(2));
    let c = cfg.to_str().unwrap();
    // Hold the lock with flock(1) as another process of root's would, and
    // leave a stale pid in the file: the message names the real holder.
    let holder = sb
        .ok(
            "mkdir -p -m 0700 /run/netctx && echo 99999 >/run/netctx/lock && \
             { flock /run/netctx/lock sleep 2 >/dev/null 2>&1 & echo $!; } ; sleep 0.3",
        )
        .trim()
        .to_string();
    let r = sb.netctx(&["-c", c, "--wait", "0.5", "up"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("waiting for the lock held by pid {holder}")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "another netctx (pid {holder}) holds /run/netctx/lock; gave up after 0.5 s"
        )),
        "{}",
        r.stderr
    );
    assert!(sb.netns_list().is_empty());
    // A netctx killed with -9 while holding the lock blocks nobody.
    std::thread::sleep(Duration::from_secs(2));
    crash_at(&sb, c, "up", 2);
    let r = sb.netctx(&["-c", c, "--wait", "1", "up"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
}

#[test]
fn hostile_environment() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("c.toml", &contexts(3));
    let c = cfg.to_str().unwrap();

    // /run/netns missing, then present but not a mount: up makes it right.
    sb.ok("rmdir /run/netns");
    converged(&sb, c, 3, "/run/netns missing");
    assert!(sb.ok("ip netns exec c0 ip -br addr").contains("10.100.0.2"));

    // A namespace file whose mount was removed behind netctx's back.
    sb.ok("umount /run/netns/c1");
    let s = sb.netctx(&["-c", c, "status"]);
    assert_eq!(s.code, 2);
    assert!(
        s.stdout.contains("namespace file has nothing mounted"),
        "{}",
        s.stdout
    );
    converged(&sb, c, 3, "unmounted namespace file");

    // Deleted with `ip netns del` while a process keeps it (and its host
    // veth) alive: up makes a new one and replaces the lingering veth.
    sb.ok("ip netns exec c2 sleep 3 >/dev/null 2>&1 & sleep 0.2; ip netns del c2");
    assert!(
        sb.links(None).iter().any(|l| l.0 == "nx-c2"),
        "the veth should linger"
    );
    converged(&sb, c, 3, "namespace deleted, veth lingering");
    assert!(sb.ping(None, "10.100.8.2"));

    // An address someone put on a host link of ours: drift, removed.
    sb.ok("ip addr add 192.0.2.1/24 dev nx-c0");
    assert_eq!(sb.netctx(&["-c", c, "status"]).code, 2);
    converged(&sb, c, 3, "foreign address on a host link");
    assert_eq!(sb.addrs(None, "nx-c0"), ["10.100.0.1/30"]);

    sb.netctx(&["-c", c, "down", "--all"]).ok();
    assert_clean(&sb, "down");

    // Foreign objects with netctx's names: untouched, clear messages.
    sb.ok("ip link add nx-c0 type veth peer name foreign0 && ip netns add c1 && nft add table inet netctx");
    let r = sb.netctx(&["-c", c, "up"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("context c0: host link nx-c0 exists and was not made by netctx"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("context c1: namespace /run/netns/c1 exists and was not made by netctx"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("context c2: the host's nftables table inet netctx was not made by netctx"),
        "{}",
        r.stderr
    );
    let d = sb.netctx(&["-c", c, "down", "--all"]);
    assert!(sb.links(None).iter().any(|l| l.0 == "nx-c0"));
    assert_eq!(sb.netns_list(), ["c1"]);
    assert_eq!(sb.ok("nft list tables"), "table inet netctx\n");
    let _ = d;
    // down of the foreign namespace by name is refused.
    let d = sb.netctx(&["down", "c1"]);
    assert_eq!(d.code, 1);
    assert!(d.stderr.contains("not made by netctx"), "{}", d.stderr);
    sb.ok("ip link del nx-c0 && ip netns del c1 && nft delete table inet netctx");
    assert_clean(&sb, "the foreign objects' removal");
}
