//! A hostile guest's attacks (examples/attack.rs), each run by a real guest
//! through `netctx exec`, as root and as nobody: every one must be refused.

use std::time::Duration;

use crate::sandbox::{attack, Run, Sandbox, BIN};

const CFG_TEMPLATE: &str = r#"
[context.a]
hostname = "alpha"
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.31.0.1/24"]
addresses = ["10.31.0.2/24"]

[context.c]
[[context.c.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.32.0.1/24"]
addresses = ["10.32.0.2/24"]
[context.c.guest]
command = ["ATTACK", "daemon", "MARKER-stop"]
"#;

pub const USERS: [Option<&str>; 2] = [None, Some("nobody")];

fn cfg(sb: &Sandbox) -> String {
    let marker = sb.dir.file_name().unwrap().to_string_lossy().into_owned();
    CFG_TEMPLATE
        .replace("ATTACK", &attack())
        .replace("MARKER", &marker)
}

fn setup() -> (Sandbox, String) {
    let sb = Sandbox::new();
    let c = cfg(&sb);
    sb.netctx_with(&c, &["up"]).ok();
    let path = sb.dir.join("netctx.toml").to_string_lossy().into_owned();
    (sb, path)
}

/// `netctx exec [--user U] a -- attack ARGS…`
fn guest(sb: &Sandbox, user: Option<&str>, args: &[&str]) -> Run {
    let mut all = vec!["exec"];
    if let Some(u) = user {
        all.extend(["--user", u]);
    }
    let a = attack();
    all.extend(["a", "--", &a]);
    all.extend_from_slice(args);
    sb.netctx_with(&cfg(sb), &all)
}

#[track_caller]
fn refused(r: &Run, what: &str) {
    assert!(
        r.code == 1 && !r.stdout.contains("ESCAPED") && r.stdout.contains("refused"),
        "{what}: the attack was not refused (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
}

/// A process outside the context, as `uid`: its pid.
fn victim(sb: &Sandbox, uid: u32) -> u32 {
    sb.ok(&format!(
        "{} victim {uid} >/dev/null 2>&1 & echo $!",
        attack()
    ))
    .trim()
    .parse()
    .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn attack_ptrace_and_proc_mem_of_outside_processes_and_the_exec_parent() {
    let (sb, _) = setup();
    let (root_v, nobody_v) = (victim(&sb, 0), victim(&sb, 65534));
    std::thread::sleep(Duration::from_millis(100));
    for user in USERS {
        for target in [root_v.to_string(), nobody_v.to_string()] {
            let r = guest(&sb, user, &["ptrace", &target]);
            refused(&r, &format!("{user:?} ptrace of pid {target}"));
        }
        let r = guest(&sb, user, &["ptrace", "parent", "netctx"]);
        refused(
            &r,
            &format!("{user:?} ptrace of the exec parent and netctx"),
        );
    }
    assert!(alive(root_v) && alive(nobody_v));
}

/// While netctx builds a jail (a copy of netctx, from its clone to the
/// command's exec), a guest of the same context watches for it: its memory
/// holds the caller's environment and command line, and once it has dropped to the
/// context's ids it is the guest root's own user. It must stay out of
/// reach: neither its environment nor a ptrace attach.
#[test]
fn attack_a_guest_snoops_on_the_jails_netctx_builds() {
    let (sb, path) = setup();
    for user in USERS {
        let marker = format!("NXSNOOP{}", sb.pid());
        // The configuration as it is (`guest` would write it again while
        // the execs below read it).
        let a = attack();
        let mut args = vec!["-c", &path, "exec"];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        args.extend(["a", "--", &a, "snoop", "5", &marker]);
        let (r, execs) = std::thread::scope(|s| {
            let snooper = s.spawn(|| sb.netctx(&args));
            let mut execs = 0;
            while !snooper.is_finished() {
                let as_user = if execs % 2 == 0 { "" } else { "--user nobody" };
                sb.ok(&format!(
                    "NXCALLER={marker} {BIN} -c {path} exec {as_user} a -- true {marker}"
                ));
                execs += 1;
            }
            (snooper.join().unwrap(), execs)
        });
        refused(&r, &format!("{user:?} snooping on the jails"));
        let seen: usize = r
            .stdout
            .split("saw ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {}", r.stdout));
        eprintln!("{user:?}: {execs} execs; {}", r.stdout.trim());
        // The race was run: the snooper saw jails being built.
        assert!(
            seen >= 3,
            "{user:?} saw {seen} jails of {execs} execs: {}",
            r.stdout
        );
    }
}

#[test]
fn attack_pidfd_getfd_and_kill_of_outside_processes() {
    let (sb, _) = setup();
    let (root_v, nobody_v) = (victim(&sb, 0), victim(&sb, 65534));
    std::thread::sleep(Duration::from_millis(100));
    for user in USERS {
        for v in [root_v, nobody_v] {
            let r = guest(&sb, user, &["pidfd-getfd", &v.to_string(), "1"]);
            refused(&r, &format!("{user:?} pidfd_getfd of pid {v}"));
            let r = guest(&sb, user, &["kill", &v.to_string()]);
            refused(&r, &format!("{user:?} kill of pid {v}"));
        }
        // The context's own init does not die either.
        let r = guest(&sb, user, &["kill", "1"]);
        refused(&r, &format!("{user:?} kill of the context's init"));
    }
    assert!(alive(root_v) && alive(nobody_v), "a victim was killed");
}

#[test]
fn attack_inherited_socket_and_caller_environment() {
    let (sb, path) = setup();
    sb.ok("ip link set lo up");
    for user in USERS {
        let u = user.map(|u| format!("--user {u}")).unwrap_or_default();
        let o = sb.sh(&format!(
            "{a} wrap-fd 9 -- {BIN} -c {path} exec {u} a -- {a} fd 5",
            a = attack()
        ));
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        };
        refused(&r, &format!("{user:?} inherited fd 5"));
        let o = sb.sh(&format!(
            "SECRET=s3cret SSH_AUTH_SOCK=/tmp/agent {BIN} -c {path} exec {u} --env FOO=bar a -- {} env SECRET SSH_AUTH_SOCK",
            attack()
        ));
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{user:?}: {out}");
        let line = out.lines().next().unwrap();
        let mut names: Vec<&str> = line
            .strip_prefix("environment: ")
            .unwrap()
            .split(' ')
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["FOO", "HOME", "LANG", "LOGNAME", "PATH", "TERM", "USER"]
        );
    }
}

#[test]
fn attack_writes_to_configuration_run_directory_etc_and_devices() {
    let (sb, path) = setup();
    for user in USERS {
        let r = guest(
            &sb,
            user,
            &[
                "write",
                &path,
                "/run/netctx/netns/a",
                "/etc/passwd",
                // The host's / through the context's init.
                "/proc/1/root/etc/passwd",
                "/proc/1/root/run/netctx/netns/a",
            ],
        );
        refused(&r, &format!("{user:?} writes"));
        let r = guest(
            &sb,
            user,
            &["create", "/run/netctx", "/run/netctx/netns", "/"],
        );
        refused(&r, &format!("{user:?} new files"));
        let node = format!("/tmp/nx-attack-node-{}", std::process::id());
        refused(&guest(&sb, user, &["mknod", &node]), "mknod");
        refused(&guest(&sb, user, &["sysctl"]), "net sysctls");
        refused(&guest(&sb, user, &["settime"]), "settimeofday");
        refused(&guest(&sb, user, &["userns"]), "new user namespace");
        let mut args = vec!["exec"];
        args.extend(user.map(|u| ["--user", u]).iter().flatten());
        args.extend(["a", "--", "unshare", "-U", "true"]);
        let r = sb.netctx_with(&cfg(&sb), &args);
        assert_ne!(r.code, 0, "{user:?}: unshare -U worked");
    }
    // The configuration and netctx's state are unchanged.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), cfg(&sb));
    // A configuration the guest could see (not under the private /tmp) is
    // masked: empty and read-only.
    let visible = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}.toml",
        sb.dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(visible.parent().unwrap()).unwrap();
    std::fs::write(&visible, cfg(&sb)).unwrap();
    let v = visible.to_str().unwrap();
    for user in USERS {
        let mut args = vec!["-c", v, "exec"];
        args.extend(user.map(|u| ["--user", u]).iter().flatten());
        let a = attack();
        args.extend(["a", "--", &a, "write", v]);
        refused(&sb.netctx(&args), "writing the configuration");
        // Masked (empty) where the guest reaches it; in a checkout it
        // cannot reach (under a 0700 /root), refused outright; under /tmp
        // (the guest's own private /tmp), not there at all.
        let r = sb.netctx(&["-c", v, "exec", "a", "--", "cat", v]);
        assert!(
            r.stdout.is_empty()
                && (r.code == 0
                    || r.stderr.contains("Permission denied")
                    || r.stderr.contains("No such file or directory")),
            "the guest read the configuration: {} {}\n{}",
            r.code,
            r.stdout,
            r.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&visible).unwrap(), cfg(&sb));
    let _ = std::fs::remove_file(&visible);
    sb.netctx_with(&cfg(&sb), &["status", "a"]).ok();
}

#[test]
fn attack_host_daemon_socket_under_run_and_raw_sockets() {
    let (sb, _) = setup();
    let sock = "/run/nxtest-daemon.sock";
    sb.ok(&format!(
        "{} listen-unix {sock} 30 >/dev/null 2>&1 & sleep 0.3",
        attack()
    ));
    // Reachable from the host side: the daemon is there.
    let up = (0..50).any(|_| {
        sb.sh(&format!("{} unix {sock}", attack())).status.success() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(up, "the daemon did not start");
    for user in USERS {
        refused(&guest(&sb, user, &["unix", sock]), "unix socket");
        refused(&guest(&sb, user, &["raw"]), "raw sockets");
    }
}

/// Every process whose command line holds `marker`.
pub fn with_marker(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(marker) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn wait_for(marker: &str) -> Vec<u32> {
    for _ in 0..500 {
        let v = with_marker(marker);
        if !v.is_empty() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no process {marker}");
}

#[test]
fn attack_daemon_that_double_forks_and_calls_setsid_is_ended_by_stop() {
    let (sb, _) = setup();
    let marker = format!("{}-stop", sb.dir.file_name().unwrap().to_string_lossy());
    sb.netctx_with(&cfg(&sb), &["start", "c"]).ok();
    let pids = wait_for(&marker);
    sb.netctx_with(&cfg(&sb), &["stop", "c", "--timeout", "1"])
        .ok();
    let left = with_marker(&marker);
    assert!(left.is_empty(), "stop left {left:?} (was {pids:?})");
}

#[test]
fn attack_detached_child_of_exec_is_ended_by_down() {
    let (sb, _) = setup();
    for user in USERS {
        let marker = format!(
            "{}-down-{}",
            sb.dir.file_name().unwrap().to_string_lossy(),
            user.unwrap_or("root")
        );
        guest(&sb, user, &["daemon", &marker]);
        wait_for(&marker);
    }
    sb.netctx_with(&cfg(&sb), &["down", "a"]).ok();
    for user in USERS {
        let marker = format!(
            "{}-down-{}",
            sb.dir.file_name().unwrap().to_string_lossy(),
            user.unwrap_or("root")
        );
        assert!(with_marker(&marker).is_empty(), "down left {marker}");
    }
}

#[test]
fn attack_sockets_of_families_no_namespace_confines() {
    let (sb, _) = setup();
    for user in USERS {
        let r = guest(&sb, user, &["families"]);
        refused(
            &r,
            &format!("{user:?} opening an AF_VSOCK (or other) socket"),
        );
        assert!(
            r.stdout.contains("Address family not supported"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn attack_process_names_that_would_hide_or_forge_audit_lines() {
    let (sb, path) = setup();
    // ESC [8m (conceal), a carriage return with a forged total, bytes that
    // are not UTF-8.
    let names = [
        ("1b5b386d", "\\x1b[8m"),
        ("780d3020766961", "x\\x0d0 via"),
        ("fffe41", "\\xff\\xfeA"),
    ];
    for (i, (hex, _)) in names.iter().enumerate() {
        sb.ok(&format!(
            "{BIN} -c {path} exec --user nobody a -- {} named {hex} {} 20 >/dev/null 2>&1 &",
            attack(),
            7700 + i
        ));
    }
    let t = std::time::Instant::now();
    let out = loop {
        let o = sb.netctx(&["-c", &path, "audit", "a"]);
        if names.iter().all(|(_, shown)| o.stdout.contains(shown))
            || t.elapsed() > Duration::from_secs(15)
        {
            break o.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (_, shown) in names {
        assert!(out.contains(shown), "{shown} not in:\n{out}");
    }
    assert!(
        !out.contains('\x1b') && !out.contains('\r') && !out.contains('\u{fffd}'),
        "a raw control character or a lost byte in audit's output:\n{out:?}"
    );
    let json = sb.netctx(&["-c", &path, "audit", "a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v.to_string().contains("x1b[8m"), "{}", json.stdout);
}
