//! Guests and audit: `exec`, `start`/`stop` without escape capabilities, and
//! `netctx audit` through sock_diag, checked with real processes and sockets.

use crate::sandbox::{probe, Sandbox};

const CFG_TEMPLATE: &str = r#"
[context.a]
hostname = "alpha"
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.21.0.1/24"]
addresses = ["10.21.0.2/24", "fd00:21::2/64"]
[context.a.guest]
# A guest that ignores SIGTERM.
command = ["PROBE", "listen", "10.21.0.2", "8080", "--tcp", "--ignore-term"]

[context.b]
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.22.0.1/24"]
addresses = ["10.22.0.2/24"]
[context.b.guest]
command = ["sleep", "60"]
"#;

fn cfg() -> String {
    CFG_TEMPLATE.replace("PROBE", &probe())
}

fn up(sb: &Sandbox) {
    sb.netctx_with(&cfg(), &["up"]).ok();
}

fn exec(sb: &Sandbox, args: &[&str]) -> crate::sandbox::Run {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    sb.netctx_with(&cfg(), &all)
}

#[test]
fn exec_sees_the_context_its_hostname_and_passes_exit_status() {
    let sb = Sandbox::new();
    up(&sb);
    let r = exec(
        &sb,
        &[
            "a",
            "--",
            "sh",
            "-c",
            "hostname; ip -o link | cut -d: -f2; ls /sys/class/net",
        ],
    );
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[0], "alpha");
    let names: Vec<&str> = lines[1..3]
        .iter()
        .map(|l| l.split('@').next().unwrap())
        .collect();
    assert_eq!(names, ["lo", "eth0"]);
    assert_eq!(lines[3..], ["eth0", "lo"]);
    // The context name is the default hostname.
    assert_eq!(exec(&sb, &["b", "--", "hostname"]).stdout.trim(), "b");
    // The sandbox's own hostname is untouched.
    assert_ne!(sb.ok("hostname").trim(), "alpha");
    assert_eq!(exec(&sb, &["a", "--", "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(exec(&sb, &["a", "--", "sh", "-c", "kill -9 $$"]).code, 137);
    assert_eq!(exec(&sb, &["a", "--", "true"]).code, 0);
    let missing = exec(&sb, &["a", "--", "/nonexistent/program"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("netctx: error: context a: running"),
        "{}",
        missing.stderr
    );
    // Only when the context is up.
    sb.netctx_with(&cfg(), &["down", "b"]).ok();
    let r = exec(&sb, &["b", "--", "true"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("context b is not up"), "{}", r.stderr);
}

#[test]
fn exec_cannot_change_the_network_or_escape() {
    let sb = Sandbox::new();
    up(&sb);
    let caps = exec(
        &sb,
        &[
            "a",
            "--",
            "grep",
            "-E",
            "^(CapBnd|CapEff|CapPrm|CapAmb|NoNewPrivs)",
            "/proc/self/status",
        ],
    );
    for line in caps.ok().stdout.lines() {
        let (k, v) = line.split_once(':').unwrap();
        let v = v.trim();
        if k == "NoNewPrivs" {
            assert_eq!(v, "1");
            continue;
        }
        let bits = u64::from_str_radix(v, 16).unwrap();
        for cap in [12, 13, 21] {
            assert_eq!(bits & (1 << cap), 0, "{k} still has capability {cap}");
        }
    }
    let fails = |args: &[&str]| {
        let r = exec(&sb, args);
        assert_ne!(
            r.code, 0,
            "{args:?} succeeded inside the context: {}",
            r.stdout
        );
    };
    fails(&[
        "a",
        "--",
        "ip",
        "addr",
        "add",
        "10.21.0.50/24",
        "dev",
        "eth0",
    ]);
    fails(&[
        "a",
        "--",
        "ip",
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        "10.21.0.1",
    ]);
    fails(&["a", "--", "nft", "flush", "ruleset"]);
    fails(&["a", "--", "nsenter", "--net=/proc/1/ns/net", "true"]);
    fails(&["a", "--", &probe(), "raw"]);
    assert_eq!(
        sb.addrs(Some("a"), "eth0"),
        ["10.21.0.2/24", "fd00:21::2/64"]
    );

    // --privileged keeps them (documented as dangerous).
    exec(
        &sb,
        &[
            "--privileged",
            "a",
            "--",
            "ip",
            "addr",
            "add",
            "10.21.0.50/24",
            "dev",
            "eth0",
        ],
    )
    .ok();
    assert!(sb
        .addrs(Some("a"), "eth0")
        .contains(&"10.21.0.50/24".to_string()));
    // --user drops to a user.
    assert_eq!(
        exec(&sb, &["--user", "nobody", "a", "--", "id", "-u"])
            .ok()
            .stdout
            .trim(),
        "65534"
    );
}

fn status_json(sb: &Sandbox) -> serde_json::Value {
    let r = sb.netctx_with(&cfg(), &["status", "--json"]);
    serde_json::from_str(&r.stdout).unwrap()
}

fn alive(sb: &Sandbox, pid: u64) -> bool {
    sb.sh(&format!(
        "test -d /proc/{pid} && ! grep -q '^State:.*Z' /proc/{pid}/status"
    ))
    .status
    .success()
}

#[test]
fn start_stop_status_lifecycle_with_a_guest_ignoring_sigterm() {
    let sb = Sandbox::new();
    up(&sb);
    let r = sb.netctx_with(&cfg(), &["start", "a"]);
    r.ok();
    assert!(r.stdout.contains("a: guest started (pid"), "{}", r.stdout);
    let again = sb.netctx_with(&cfg(), &["start", "a"]);
    again.ok();
    assert!(again.stdout.contains("already running"), "{}", again.stdout);

    let s = status_json(&sb);
    let pid = s["contexts"][0]["guest_pid"]
        .as_u64()
        .expect("guest pid in status");
    assert!(alive(&sb, pid));
    assert_eq!(s["contexts"][1]["guest_pid"], serde_json::Value::Null);
    // The guest is in the context's namespace, in its own session.
    let ns = sb
        .ok(&format!("readlink /proc/{pid}/ns/net"))
        .trim()
        .to_string();
    let want = format!("net:[{}]", sb.ok("stat -L -c %i /run/netns/a").trim());
    assert_eq!(ns, want);
    let sid = sb.ok(&format!("ps -o sid= -p {pid}")).trim().to_string();
    assert_eq!(sid, pid.to_string());
    // Its output goes to the log file.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(sb.ok("cat /run/netctx/guests/a.log").contains("listening"));

    let t = std::time::Instant::now();
    let r = sb.netctx_with(&cfg(), &["stop", "a", "--timeout", "1"]);
    r.ok();
    assert!(
        r.stdout.contains(&format!("a: guest stopped (pid {pid})")),
        "{}",
        r.stdout
    );
    assert!(
        t.elapsed().as_secs_f64() >= 1.0,
        "SIGKILL came before the grace period"
    );
    assert!(!alive(&sb, pid));
    let r = sb.netctx_with(&cfg(), &["stop", "a"]);
    r.ok();
    assert!(r.stdout.contains("a: guest not running"));
    assert_eq!(
        status_json(&sb)["contexts"][0]["guest_pid"],
        serde_json::Value::Null
    );
}

#[test]
fn down_stops_running_guests() {
    let sb = Sandbox::new();
    up(&sb);
    sb.netctx_with(&cfg(), &["start", "b"]).ok();
    let pid = status_json(&sb)["contexts"][1]["guest_pid"]
        .as_u64()
        .unwrap();
    // Its output log is kept by stop and goes with down.
    let log = sb.inside("/run/netctx/guests/b.log");
    assert!(log.exists(), "no guest log at {}", log.display());
    let r = sb.netctx_with(&cfg(), &["down", "--all"]);
    r.ok();
    assert!(!log.exists(), "down left the guest's log behind");
    assert!(
        r.stdout.contains(&format!("b: guest stopped (pid {pid})")),
        "{}",
        r.stdout
    );
    assert!(!alive(&sb, pid));
    assert!(sb.netns_list().is_empty());
}

fn audit(sb: &Sandbox) -> (i32, serde_json::Value) {
    let r = sb.netctx_with(&cfg(), &["audit", "--json"]);
    (
        r.code,
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr)),
    )
}

#[test]
fn audit_lists_legitimate_listeners_with_their_processes() {
    let sb = Sandbox::new();
    up(&sb);
    sb.netctx_with(&cfg(), &["start", "a"]).ok();
    // A wildcard UDP socket in b: listed and marked, not a violation.
    sb.ok(&format!(
        "ip netns exec b {} listen :: 5353 --secs 5 >/dev/null 2>&1 & sleep 0.5",
        probe()
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, v) = audit(&sb);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["violations"], 0);
    let a = &v["contexts"][0]["sockets"];
    let listener = a
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == 8080)
        .expect("guest listener listed");
    assert_eq!(listener["local"], "10.21.0.2");
    assert_eq!(listener["state"], "LISTEN");
    assert_eq!(listener["command"], "netprobe");
    assert_eq!(listener["verdict"], "assigned");
    let guest = status_json(&sb)["contexts"][0]["guest_pid"].clone();
    assert_eq!(listener["pid"], guest);
    let b = &v["contexts"][1]["sockets"];
    let wild = b
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == 5353)
        .expect("wildcard listed");
    assert_eq!(
        (wild["proto"].as_str(), wild["verdict"].as_str()),
        (Some("udp"), Some("wildcard"))
    );
    let text = sb.netctx_with(&cfg(), &["audit"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("10.21.0.2:8080"), "{}", text.stdout);
    assert!(text.stdout.contains("/netprobe"), "{}", text.stdout);
}

#[test]
fn audit_flags_freebind_of_another_contexts_address() {
    let sb = Sandbox::new();
    up(&sb);
    // With IP_FREEBIND, b binds a's address although b does not have it.
    sb.ok(&format!(
        "ip netns exec b {} listen 10.21.0.2 9999 --tcp --freebind --secs 5 >/dev/null 2>&1 & sleep 0.5",
        probe()
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, v) = audit(&sb);
    assert_eq!(code, 2, "{v}");
    let b = &v["contexts"][1];
    assert_eq!(b["name"], "b");
    let msg = b["violations"][0].as_str().unwrap();
    assert!(
        msg.contains("10.21.0.2") && msg.contains("not assigned to b"),
        "{msg}"
    );
    let text = sb.netctx_with(&cfg(), &["audit", "b"]);
    assert_eq!(text.code, 2);
    assert!(
        text.stdout
            .contains("VIOLATION: tcp socket on 10.21.0.2:9999"),
        "{}",
        text.stdout
    );
}

#[test]
fn audit_lists_ping_sockets_and_flags_one_on_another_contexts_address() {
    let sb = Sandbox::new();
    up(&sb);
    sb.ok(&format!(
        "ip netns exec b {p} listen 10.21.0.2 4242 --ping --freebind --secs 5 >/dev/null 2>&1 & \
         ip netns exec a {p} listen 10.21.0.2 4343 --ping --secs 5 >/dev/null 2>&1 & sleep 0.5",
        p = probe()
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, v) = audit(&sb);
    assert_eq!(code, 2, "{v}");
    let b = &v["contexts"][1];
    assert!(
        b["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("ping socket on 10.21.0.2")),
        "{b}"
    );
    let a = &v["contexts"][0];
    let own = a["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["proto"] == "ping")
        .unwrap_or_else(|| panic!("a's ping socket is not listed: {a}"));
    assert_eq!(own["verdict"], "assigned", "{own}");
}

#[test]
fn audit_flags_an_address_added_behind_netctx() {
    let sb = Sandbox::new();
    up(&sb);
    assert_eq!(audit(&sb).0, 0);
    sb.ok("ip -n a addr add 10.21.0.77/24 dev eth0");
    let (code, v) = audit(&sb);
    assert_eq!(code, 2, "{v}");
    let msg = v["contexts"][0]["violations"][0].as_str().unwrap();
    assert_eq!(
        msg,
        "address 10.21.0.77/24 on link eth0 is not declared for a"
    );
}

#[test]
fn audit_flags_a_guest_that_left_its_namespace() {
    let sb = Sandbox::new();
    let cfg = cfg().replace(
        r#"command = ["sleep", "60"]"#,
        r#"command = ["nsenter", "--net=/run/netns/a", "sleep", "60"]"#,
    );
    sb.netctx_with(&cfg, &["up"]).ok();
    sb.netctx_with(&cfg, &["start", "--privileged", "b"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = sb.netctx_with(&cfg, &["audit", "--json"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let msg = v["contexts"][1]["violations"][0].as_str().unwrap();
    assert!(
        msg.starts_with("guest pid ") && msg.ends_with("is not in the network namespace of b"),
        "{msg}"
    );
}

#[test]
fn status_tells_a_guest_that_exited() {
    let sb = Sandbox::new();
    let cfg = cfg().replace(
        r#"command = ["sleep", "60"]"#,
        r#"command = ["sleep", "0.2"]"#,
    );
    sb.netctx_with(&cfg, &["up"]).ok();
    sb.netctx_with(&cfg, &["start", "b"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let s = sb.netctx_with(&cfg, &["status"]);
    assert!(s.stdout.contains("guest exited (was pid"), "{}", s.stdout);
    let j: serde_json::Value =
        serde_json::from_str(&sb.netctx_with(&cfg, &["status", "--json"]).stdout).unwrap();
    assert_eq!(j["contexts"][1]["guest"], "exited");
    assert_eq!(j["contexts"][1]["guest_pid"], serde_json::Value::Null);
    // Starting it again works: the old pid file is not a running guest.
    let r = sb.netctx_with(&cfg, &["start", "b"]);
    assert!(r.stdout.contains("guest started"), "{}", r.stdout);
}

/// `exec` of one context reads what `up` compiled into the run directory,
/// not the configuration, while every file it came from is what it was;
/// an edit (even one that puts the modification time back), a new `up`,
/// compiled files another user could write: each is seen.
#[test]
fn exec_reads_the_compiled_configuration_only_while_it_holds() {
    use crate::sandbox::BIN;
    let sb = Sandbox::new();
    let path = sb.write_config("netctx.toml", &cfg());
    let p = path.to_str().unwrap();
    sb.netctx(&["-c", p, "up"]).ok();
    // How many times exec opened the configuration file.
    let opens = || {
        sb.ok(&format!(
            "strace -e trace=openat -o /run/opens {BIN} -c {p} exec a -- true >/dev/null 2>&1; \
             grep -c 'netctx.toml' /run/opens || true"
        ))
        .trim()
        .to_string()
    };
    let hostname = || {
        let r = sb.netctx(&["-c", p, "exec", "a", "--", "hostname"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_string()
    };
    assert_eq!(opens(), "0");
    assert_eq!(hostname(), "alpha");
    // Rewritten in place (one inode, one size), its modification time put
    // back: the change time still tells.
    sb.ok(&format!(
        "touch -r {p} /run/stamp && sed 's/alpha/gamma/' {p} >/run/new && cat /run/new >{p} && \
         touch -r /run/stamp {p}"
    ));
    assert_eq!(hostname(), "gamma");
    assert_ne!(opens(), "0");
    // `up` compiles it again.
    sb.netctx(&["-c", p, "up"]).ok();
    assert_eq!(opens(), "0");
    assert_eq!(hostname(), "gamma");
    // Compiled files someone else could have written are not trusted.
    sb.ok("chmod 0777 /run/netctx/compiled");
    assert_ne!(opens(), "0");
    sb.ok("chmod 0700 /run/netctx/compiled && chmod 0666 /run/netctx/compiled/contexts.jsonl");
    assert_ne!(opens(), "0");
    sb.ok("chmod 0600 /run/netctx/compiled/contexts.jsonl");
    assert_eq!(opens(), "0");
    // An undeclared context: the full load, and its error.
    let r = sb.netctx(&["-c", p, "exec", "nope", "--", "true"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    sb.netctx(&["-c", p, "down", "--all"]).ok();
}
