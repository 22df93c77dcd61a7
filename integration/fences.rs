//! Fences (docs/fences.md): a guest's private tmpfs filled to `limits.tmp`
//! and no further, a fork loop stopped at `limits.processes` (root and
//! nobody), a declared guest's 10 MiB of output capped at `limits.log`
//! kept twice and gone after `down`; and where this host cannot enforce a
//! fence as designed, `up`, `start` and `status` say so.

use std::time::{Duration, Instant};

use crate::attacks::USERS;
use crate::sandbox::{attack, Run, Sandbox, BIN};

const CFG: &str = r#"
[context.fa]
[[context.fa.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.36.0.1/24"]
addresses = ["10.36.0.2/24"]
[context.fa.limits]
processes = 24
tmp = "8M"
memory = "1G"

[context.logcap]
[[context.logcap.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.37.0.1/24"]
addresses = ["10.37.0.2/24"]
[context.logcap.guest]
command = ["ATTACK", "spew", "10485760", "SPEW-END-MARKER", "60"]
"#;

const MIB: u64 = 1 << 20;

fn cfg() -> String {
    CFG.replace("ATTACK", &attack())
}

fn exec(sb: &Sandbox, user: Option<&str>, args: &[&str]) -> Run {
    let mut all = vec!["exec"];
    if let Some(u) = user {
        all.extend(["--user", u]);
    }
    all.extend(["fa", "--"]);
    all.extend_from_slice(args);
    sb.netctx_with(&cfg(), &all)
}

/// Whether the sandbox hands netctx the cgroup v2 pids and memory
/// controllers (the VM lane can; this machine's hybrid cgroups cannot).
fn controllers(sb: &Sandbox) -> (bool, bool) {
    let list =
        std::fs::read_to_string(sb.cgroup.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c: &str| list.split_whitespace().any(|w| w == c);
    (has("pids"), has("memory"))
}

#[test]
fn attack_filling_a_private_tmpfs_stops_at_limits_tmp() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(), &["up", "fa"]).ok();
    for user in USERS {
        // /run is root's (0755): nobody fills the three others.
        let dirs = if user.is_some() {
            "/tmp /var/tmp /dev/shm"
        } else {
            "/tmp /var/tmp /dev/shm /run"
        };
        // A directory the view lacks (a minimal root without /var/tmp) has
        // no tmpfs and cannot be written at all.
        let script = format!(
            "for d in {dirs}; do [ -d $d ] || continue; head -c 33554432 /dev/zero >$d/fill; \
             rc=$?; echo \"$d $(wc -c <$d/fill) $rc\"; done 2>&1"
        );
        let r = exec(&sb, user, &["sh", "-c", &script]);
        let mut seen = Vec::new();
        for l in r.stdout.lines().filter(|l| l.starts_with('/')) {
            let f: Vec<&str> = l.split(' ').collect();
            let size: u64 = f[1].parse().unwrap_or_else(|_| panic!("{l}\n{}", r.stdout));
            assert!(
                (6 * MIB..=8 * MIB).contains(&size),
                "{user:?} wrote {size} bytes into {} (limits.tmp = 8M):\n{}",
                f[0],
                r.stdout
            );
            // The write failed (ENOSPC) rather than ending.
            assert_ne!(f[2], "0", "{}", r.stdout);
            seen.push(f[0].to_string());
        }
        assert!(
            seen.contains(&"/tmp".to_string()) && seen.contains(&"/dev/shm".to_string()),
            "{}{}",
            r.stdout,
            r.stderr
        );
        if user.is_none() {
            assert!(seen.contains(&"/run".to_string()), "{}", r.stdout);
        }
    }
}

/// `forked K processes` from the fork loop's refusal.
fn forked(out: &str) -> usize {
    out.split("forked ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

#[test]
fn attack_a_fork_loop_stops_at_limits_processes() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(), &["up", "fa"]).ok();
    for user in USERS {
        let a = attack();
        let r = exec(&sb, user, &[&a, "forks", "300"]);
        assert!(
            r.code == 1 && !r.stdout.contains("ESCAPED"),
            "{user:?}: the fork loop was not stopped (exit {}):\n{}{}",
            r.code,
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.contains("Resource temporarily unavailable"),
            "{}",
            r.stdout
        );
        // With the loop itself (and, for root, the context's init) the
        // context holds at most 24 tasks; the limit is the configured one.
        let k = forked(&r.stdout);
        assert!((18..24).contains(&k), "{user:?} forked {k}:\n{}", r.stdout);
    }
}

#[test]
fn what_this_host_cannot_enforce_is_said_by_up_start_and_status() {
    let sb = Sandbox::new();
    let up = sb.netctx_with(&cfg(), &["up"]);
    up.ok();
    let s = sb.netctx_with(&cfg(), &["status", "fa"]);
    let json = sb.netctx_with(&cfg(), &["status", "--json", "fa"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let notes = v["contexts"][0]["limits"].clone();
    match controllers(&sb) {
        (false, false) => {
            let line =
                "limits: processes by rlimit, memory not enforced (no cgroup v2 memory controller)";
            assert!(
                up.stderr.contains(&format!("context fa: {line}")),
                "{}",
                up.stderr
            );
            assert_eq!(up.stderr.matches(line).count(), 1, "once: {}", up.stderr);
            assert!(s.stdout.contains(line), "{}", s.stdout);
            assert_eq!(
                notes,
                serde_json::json!([
                    "processes by rlimit",
                    "memory not enforced (no cgroup v2 memory controller)"
                ])
            );
        }
        (true, true) => {
            assert!(!s.stdout.contains("limits:"), "{}", s.stdout);
            assert_eq!(notes, serde_json::json!([]));
        }
        other => panic!("a sandbox with only some controllers: {other:?}"),
    }
    // A context without a guest or limits has nothing to say.
    let other = sb.netctx_with(&cfg(), &["status", "logcap"]);
    let start = sb
        .enter_joined(BIN)
        .args([
            "-c",
            sb.dir.join("netctx.toml").to_str().unwrap(),
            "start",
            "logcap",
        ])
        .output()
        .unwrap();
    let start_err = String::from_utf8_lossy(&start.stderr);
    if controllers(&sb) == (false, false) {
        // logcap declares a guest: its default processes limit is said.
        assert!(
            other.stdout.contains("limits: processes by rlimit"),
            "{}",
            other.stdout
        );
        assert!(
            start_err.contains("limits: processes by rlimit"),
            "{start_err}"
        );
    }
    sb.netctx_with(&cfg(), &["down", "--all"]).ok();
}

fn size(sb: &Sandbox, p: &str) -> Option<u64> {
    std::fs::metadata(sb.inside(p)).ok().map(|m| m.len())
}

/// The log pumps of context `ctx` running in the sandbox's cgroup.
fn pumps(sb: &Sandbox, ctx: &str) -> usize {
    let procs = std::fs::read_to_string(sb.leaf.join("cgroup.procs")).unwrap_or_default();
    procs
        .lines()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0).any(|a| a == b"guest-log")
                    && c.split(|b| *b == 0).any(|a| a == ctx.as_bytes())
            })
        })
        .count()
}

#[test]
fn attack_ten_mib_of_guest_output_is_capped_at_limits_log_and_gone_after_down() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(), &["up", "logcap"]).ok();
    let cfg_path = sb.dir.join("netctx.toml");
    let start = sb
        .enter_joined(BIN)
        .args(["-c", cfg_path.to_str().unwrap(), "start", "logcap"])
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let (log, old) = (
        "/run/netctx/guests/logcap.log",
        "/run/netctx/guests/logcap.log.1",
    );
    let t = Instant::now();
    loop {
        let tail = std::fs::read(sb.inside(log)).unwrap_or_default();
        if tail.ends_with(b"SPEW-END-MARKER\n") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the guest's output did not end up in its log ({:?} bytes)",
            size(&sb, log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The default limits.log (1M), kept twice.
    let (now, before) = (size(&sb, log).unwrap(), size(&sb, old));
    assert!(now <= MIB, "{log} holds {now} bytes");
    assert_eq!(before, Some(MIB), "{old}");
    assert_eq!(pumps(&sb, "logcap"), 1);
    let down = sb.netctx_with(&cfg(), &["down", "logcap"]);
    down.ok();
    assert_eq!(
        (size(&sb, log), size(&sb, old)),
        (None, None),
        "down left the log"
    );
    assert_eq!(pumps(&sb, "logcap"), 0, "down left the log pump");
    assert_eq!(
        std::fs::read_dir(sb.inside("/run/netctx/guests"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "down left files of the guest"
    );
}

#[test]
fn a_changed_process_limit_is_drift_that_up_sets_on_running_guests() {
    let sb = Sandbox::new();
    sb.netctx_with(&cfg(), &["up", "fa"]).ok();
    let path = sb.dir.join("netctx.toml");
    sb.ok(&format!(
        "{BIN} -c {} exec --user nobody fa -- sleep 60 >/dev/null 2>&1 &",
        path.display()
    ));
    let procs = sb.cgroup.join("netctx/fa/cgroup.procs");
    // The guest, once it is `sleep` (the jail sets its limit before exec).
    let t = Instant::now();
    let guest = loop {
        let all = std::fs::read_to_string(&procs).unwrap_or_default();
        let sleeping = all.lines().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        if let Some(p) = sleeping {
            break p.to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no guest in {}",
            procs.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let nproc = || {
        std::fs::read_to_string(format!("/proc/{guest}/limits"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max processes"))
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    let pids_max = || std::fs::read_to_string(sb.cgroup.join("netctx/fa/pids.max")).ok();
    let by_rlimit = !controllers(&sb).0;
    if by_rlimit {
        assert_eq!(nproc(), "24");
    }
    let s = sb.netctx_with(&cfg(), &["status", "fa"]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    // Lowered, then raised: a running guest follows at `up` (raising a
    // hard limit needs CAP_SYS_RESOURCE, which this machine's root lacks:
    // then `up` says so and the drift stays).
    for n in ["20", "77"] {
        let changed = cfg().replace("processes = 24", &format!("processes = {n}"));
        let s = sb.netctx_with(&changed, &["status", "fa"]);
        assert_eq!(s.code, 2, "{}", s.stdout);
        let needs = format!("needs: limits.processes {n}");
        assert!(s.stdout.contains(&needs), "{}", s.stdout);
        let plan = sb.netctx_with(&changed, &["plan", "fa"]);
        assert!(
            plan.stdout.contains(&format!("set limits.processes {n}")),
            "{}",
            plan.stdout
        );
        let up = sb.netctx_with(&changed, &["up", "fa"]);
        up.ok();
        let s = sb.netctx_with(&changed, &["status", "fa"]);
        if !by_rlimit {
            assert_eq!(s.code, 0, "{}", s.stdout);
            assert_eq!(pids_max().as_deref().map(str::trim), Some(n));
        } else if up.stderr.contains("Operation not permitted") {
            assert_eq!(n, "77", "lowering failed: {}", up.stderr);
            assert!(
                up.stderr
                    .contains("limits.processes 77: not set on 1 running process(es)"),
                "{}",
                up.stderr
            );
            assert!(s.code == 2 && s.stdout.contains(&needs), "{}", s.stdout);
            assert_eq!(nproc(), "20");
        } else {
            assert_eq!(s.code, 0, "{}", s.stdout);
            assert_eq!(nproc(), n);
        }
    }
    sb.netctx_with(&cfg(), &["down", "fa"]).ok();
}
