//! netctx's own state against hostile input (design §3 "Integrity"): the run
//! directory is root's alone, nobody else can hold the lock, and a marker
//! that proves nothing makes its context a conflict that no command touches.

use crate::sandbox::Sandbox;

const TWO: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.31.0.1/24"]
addresses = ["10.31.0.2/24"]

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.32.0.1/24"]
addresses = ["10.32.0.2/24"]
"#;

#[test]
fn the_run_directory_is_roots_alone() {
    let sb = Sandbox::new();
    // An older netctx (or an administrator) left it open to everyone.
    sb.ok("chmod 0755 /run/netctx");
    sb.netctx_with(TWO, &["up"]).ok();
    // Every directory 0700, every file 0600, all root's.
    let listing = sb.ok("find /run/netctx -printf '%m %u %y %p\\n'");
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let want = if f[2] == "d" { "700" } else { "600" };
        assert_eq!((f[0], f[1]), (want, "root"), "{line}");
    }
    assert!(listing.contains("/run/netctx/lock"), "{listing}");
    assert!(listing.contains("/run/netctx/netns/a"), "{listing}");
}

#[test]
fn an_unprivileged_user_cannot_hold_the_lock() {
    let sb = Sandbox::new();
    sb.netctx_with(TWO, &["up"]).ok();
    // nobody tries to take it (read-only, as flock -s would) and cannot even
    // open the file.
    let o = sb.sh("setpriv --reuid=65534 --regid=65534 --clear-groups flock -s -n /run/netctx/lock true; echo rc=$?");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("rc=1") || out.contains("rc=66"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    // So a routine run never waits.
    let r = sb.netctx_with(TWO, &["--wait", "1", "up"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
}

/// What a context has on the host and inside: its namespace, its host veth,
/// its host chain.
fn footprint(sb: &Sandbox, ctx: &str) -> (bool, bool, bool) {
    let ns = sb.netns_list().contains(&ctx.to_string());
    let link = sb.links(None).iter().any(|l| l.0 == format!("nx-{ctx}"));
    let chains = sb.ok("nft list table inet netctx 2>/dev/null || true");
    (ns, link, chains.contains(&format!("chain {ctx}_nx-{ctx}")))
}

#[test]
fn an_empty_or_corrupt_marker_is_a_conflict_that_nothing_touches() {
    for (how, forge) in [
        ("empty", ": > /run/netctx/netns/a"),
        ("garbled", "echo 'not an inode' > /run/netctx/netns/a"),
        ("another inode", "echo 12345 > /run/netctx/netns/a"),
        (
            "unreadable",
            "rm /run/netctx/netns/a && mkdir /run/netctx/netns/a",
        ),
    ] {
        let sb = Sandbox::new();
        sb.netctx_with(TWO, &["up"]).ok();
        sb.ok(forge);
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        let s = sb.netctx_with(TWO, &["status", "a"]);
        assert_eq!(s.code, 2, "{how}: {}{}", s.stdout, s.stderr);
        assert!(s.stdout.contains("conflict"), "{how}: {}", s.stdout);
        assert!(
            s.stdout.contains("/run/netctx/netns/a"),
            "{how}: {}",
            s.stdout
        );
        // down refuses, says what to do, and touches nothing of a …
        let d = sb.netctx_with(TWO, &["down", "a", "b"]);
        assert_eq!(d.code, 1, "{how}: {}", d.stderr);
        assert!(
            d.stderr.contains("not touching anything of this context"),
            "{how}: {}",
            d.stderr
        );
        assert!(
            d.stderr.contains("ip netns delete a"),
            "{how}: {}",
            d.stderr
        );
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        assert_eq!(
            sb.links(Some("a")).len(),
            2,
            "{how}: eth0 is still inside a"
        );
        // … while b went.
        assert_eq!(footprint(&sb, "b"), (false, false, false), "{how}");
        // up refuses too, and down --all leaves a alone.
        assert_eq!(sb.netctx_with(TWO, &["up", "a"]).code, 1, "{how}");
        assert_eq!(sb.netctx(&["down", "--all"]).code, 1, "{how}");
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        // The administrator's way out works.
        sb.ok("ip netns delete a; rm -rf /run/netctx/netns/a; sleep 0.2");
        sb.ok("ip link del nx-a 2>/dev/null || true");
        sb.netctx_with(TWO, &["up", "a"]).ok();
        assert_eq!(footprint(&sb, "a"), (true, true, true), "{how}");
        // (the sandbox's own down --all cleans up)
        sb.netctx(&["down", "--all"]).ok();
    }
}
