//! What confined guests can still do: ping, serve, write where allowed, see
//! their own processes; a `root` tree as `/`; `--privileged`; and the error
//! when there is no cgroup2.

use crate::attacks::USERS;
use crate::sandbox::{probe, Run, Sandbox};

const CFG_TEMPLATE: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.35.0.1/24"]
addresses = ["10.35.0.2/24"]
[context.a.guest]
command = ["sleep", "60"]
writable = ["WDIR"]
capabilities = ["net_bind_service", "setuid", "setgid"]
env = { GREETING = "hello" }

[context.r]
[[context.r.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.36.0.1/24"]
addresses = ["10.36.0.2/24"]
[context.r.guest]
command = ["/bin/sh", "-c", "sleep 60"]
root = "ROOT"
"#;

fn cfg(sb: &Sandbox) -> String {
    CFG_TEMPLATE
        .replace("WDIR", sb.dir.join("w").to_str().unwrap())
        .replace("ROOT", sb.dir.join("root").to_str().unwrap())
}

fn setup() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.dir.join("w")).unwrap();
    std::fs::set_permissions(
        sb.dir.join("w"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    busybox_root(&sb.dir.join("root"));
    sb.netctx_with(&cfg(&sb), &["up"]).ok();
    sb
}

/// A root tree from the static busybox, as docs/guests.md describes.
pub fn busybox_root(root: &std::path::Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .or_else(|_| std::fs::copy("/bin/busybox", root.join("bin/busybox")))
        .expect("busybox (busybox-static) must be installed");
    for a in ["sh", "ls", "id", "cat", "sleep", "ps"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/tree-marker"), "busybox tree\n").unwrap();
}

fn exec(sb: &Sandbox, user: Option<&str>, ctx: &str, argv: &[&str]) -> Run {
    let mut all = vec!["exec"];
    if let Some(u) = user {
        all.extend(["--user", u]);
    }
    all.extend([ctx, "--"]);
    all.extend_from_slice(argv);
    sb.netctx_with(&cfg(sb), &all)
}

#[test]
fn guests_ping_as_root_and_as_nobody() {
    let sb = setup();
    for user in USERS {
        let r = exec(&sb, user, "a", &["ping", "-c1", "-W2", "10.35.0.1"]);
        assert_eq!(r.code, 0, "{user:?} cannot ping: {}{}", r.stdout, r.stderr);
    }
}

#[test]
fn root_guest_serves_port_80_nobody_a_high_port() {
    let sb = setup();
    for (user, port) in [(None, "80"), (Some("nobody"), "8080")] {
        let u = user.map(|u| format!("--user {u}")).unwrap_or_default();
        sb.ok(&format!(
            "{} -c {} exec {u} a -- {} listen 10.35.0.2 {port} --tcp --secs 20 >/dev/null 2>&1 &",
            crate::sandbox::BIN,
            sb.dir.join("netctx.toml").display(),
            probe()
        ));
        // Slow machines (the VM lane) take a while to start the guest.
        let served = (0..50).any(|_| {
            let c = sb.sh(&format!("{} connect 10.35.0.2 {port}", probe()));
            c.status.success() || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                false
            }
        });
        assert!(served, "{user:?} does not serve on {port}");
    }
    // Guests' root is nobody on the host: ports below 1024 are open by the
    // context's own switch (docs/guests.md), and the bind hook keeps them
    // for the context's root.
    let port = sb.ok("ip netns exec a sysctl -n net.ipv4.ip_unprivileged_port_start");
    assert_eq!(port.trim(), "0");
    let r = exec(
        &sb,
        Some("nobody"),
        "a",
        &[&probe(), "bind", "10.35.0.2", "81"],
    );
    assert_eq!(r.stdout.trim(), "EACCES", "nobody bound a low port");
}

#[test]
fn writable_paths_environment_and_capabilities_of_the_guest_config() {
    let sb = setup();
    let w = sb.dir.join("w");
    for user in USERS {
        let f = w.join(format!("f-{}", user.unwrap_or("root")));
        let r = exec(
            &sb,
            user,
            "a",
            &["sh", "-c", &format!("echo hi > {}", f.display())],
        );
        assert_eq!(r.code, 0, "{user:?}: {}", r.stderr);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "hi\n");
        let outside = sb.dir.join("outside");
        exec(
            &sb,
            user,
            "a",
            &["sh", "-c", &format!("echo x > {}", outside.display())],
        );
        assert!(!outside.exists());
        let r = exec(&sb, user, "a", &["sh", "-c", "echo x >> /etc/hostname"]);
        assert_ne!(r.code, 0, "{user:?} wrote /etc");
        // Private and writable, but nosuid and nodev: not the host's.
        exec(
            &sb,
            user,
            "a",
            &["sh", "-c", "echo x > /tmp/t && test -f /tmp/t"],
        )
        .ok();
    }
    let r = exec(
        &sb,
        None,
        "a",
        &["sh", "-c", "echo $GREETING; grep CapEff /proc/self/status"],
    );
    let out = r.ok().stdout.clone();
    assert!(out.starts_with("hello\n"), "{out}");
    let eff = u64::from_str_radix(
        out.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap(),
        16,
    );
    assert_eq!(eff.unwrap(), (1 << 10) | (1 << 7) | (1 << 6));
    // No host file under /run or /tmp, no netctx state.
    let r = exec(
        &sb,
        None,
        "a",
        &["sh", "-c", "ls -A /run /tmp /var/tmp; ls /run/netctx"],
    );
    assert_ne!(r.code, 0);
    assert!(!r.stdout.contains("netns"), "{}", r.stdout);
}

#[test]
fn ps_shows_only_the_contexts_processes_and_status_counts_them() {
    let sb = setup();
    sb.netctx_with(&cfg(&sb), &["start", "a"]).ok();
    let r = exec(&sb, None, "a", &["ps", "-e", "-o", "pid=,comm="]);
    let lines: Vec<(u32, String)> = r
        .ok()
        .stdout
        .lines()
        .map(|l| {
            let (p, c) = l.trim().split_once(' ').unwrap();
            (p.parse().unwrap(), c.trim().to_string())
        })
        .collect();
    assert_eq!(lines[0], (1, "netctx".to_string()), "{lines:?}");
    let comms: Vec<&str> = lines[1..].iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(comms, ["sleep", "ps"], "{lines:?}");
    let s: serde_json::Value =
        serde_json::from_str(&sb.netctx_with(&cfg(&sb), &["status", "--json"]).stdout).unwrap();
    assert_eq!(s["contexts"][0]["processes"], 1);
    let text = sb.netctx_with(&cfg(&sb), &["status", "a"]).stdout;
    assert!(text.contains("1 process(es)"), "{text}");
}

#[test]
fn a_root_tree_is_the_guests_slash() {
    let sb = setup();
    let r = exec(&sb, None, "r", &["/bin/cat", "/etc/tree-marker"]);
    assert_eq!(r.ok().stdout, "busybox tree\n");
    let r = exec(&sb, Some("web"), "r", &["/bin/id", "-u"]);
    assert_eq!(r.ok().stdout.trim(), "1000");
    sb.netctx_with(&cfg(&sb), &["start", "r"]).ok();
    sb.netctx_with(&cfg(&sb), &["stop", "r"]).ok();
}

#[test]
fn privileged_exec_warns_and_stays_in_the_contexts_pid_namespace() {
    let sb = setup();
    let r = sb.netctx_with(
        &cfg(&sb),
        &[
            "exec",
            "--privileged",
            "a",
            "--",
            "sh",
            "-c",
            "echo $$; grep CapEff /proc/self/status",
        ],
    );
    r.ok();
    assert!(r.stderr.contains("warning: --privileged"), "{}", r.stderr);
    let mut l = r.stdout.lines();
    assert_eq!(l.next(), Some("2"), "{}", r.stdout);
    let eff = l.next().unwrap().split_whitespace().nth(1).unwrap();
    let eff = u64::from_str_radix(eff, 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "no CAP_SYS_ADMIN: {}", r.stdout);
}

#[test]
fn without_cgroup2_exec_says_what_is_missing() {
    let sb = setup();
    let mnt = crate::sandbox::cgroup2_mount();
    sb.ok(&format!("umount -l {}", mnt.display()));
    let r = exec(&sb, None, "a", &["true"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no cgroup2 filesystem is mounted"),
        "{}",
        r.stderr
    );
}

#[test]
fn audit_finds_a_context_process_that_left_its_namespace_through_the_cgroup() {
    let sb = setup();
    let script = "nsenter --net=/proc/1/ns/net sleep 20 >/dev/null 2>&1 &";
    let r = sb.netctx_with(
        &cfg(&sb),
        &["exec", "--privileged", "a", "--", "sh", "-c", script],
    );
    r.ok();
    // The background process may take a moment to leave (slow VM lane).
    let mut r = sb.netctx_with(&cfg(&sb), &["audit", "a", "--json"]);
    for _ in 0..50 {
        if r.code == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = sb.netctx_with(&cfg(&sb), &["audit", "a", "--json"]);
    }
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let msg = v["contexts"][0]["violations"][0].as_str().unwrap();
    assert!(
        msg.starts_with("pid ")
            && msg.ends_with("(sleep) is in the cgroup of a but not in its network namespace"),
        "{msg}"
    );
    // stop ends it.
    sb.netctx_with(&cfg(&sb), &["stop", "a"]).ok();
    assert_eq!(sb.netctx_with(&cfg(&sb), &["audit", "a"]).code, 0);
}
