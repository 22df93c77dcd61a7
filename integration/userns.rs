//! Guests in a user namespace of their context (docs/guests.md): a
//! guest's root is nobody on the host, files it makes belong to the
//! context's range, IPC stays in the context, and its world is built by
//! descriptor — attacked by a hostile guest (root and nobody), a hostile
//! tree owner swapping names in a loop, and a hostile tree.
//!
//! Test data a guest must see lives in the sandbox's `SHARED` (the
//! sandbox's own `dir` is under /tmp, which guests have private).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::confine::busybox_root;
use crate::sandbox::{attack, Run, Sandbox, SHARED};

const CFG: &str = r#"
[context.a]
id = 101
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.51.0.1/24"]
addresses = ["10.51.0.2/24"]
[context.a.guest]
command = ["sleep", "60"]
writable = ["SHARED/wa"]

[context.b]
id = 102
[[context.b.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.52.0.1/24"]
addresses = ["10.52.0.2/24"]
[context.b.guest]
command = ["ATTACK", "listen-unix", "SHARED/wb/sock", "60"]
writable = ["SHARED/wb"]

[context.t]
id = 103
[[context.t.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.53.0.1/24"]
addresses = ["10.53.0.2/24"]
[context.t.guest]
command = ["/bin/sh", "-c", "echo started > /run/app/started; exec sleep 60"]
root = "SHARED/tree"
writable = ["/run/app", "/var/data"]

[context.w]
id = 104
[[context.w.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.54.0.1/24"]
addresses = ["10.54.0.2/24"]
[context.w.guest]
command = ["/bin/sh", "-c", "sleep 60"]
root = "SHARED/tree2"
writable = ["/"]

[context.p]
id = 105
[[context.p.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.55.0.1/24"]
addresses = ["10.55.0.2/24"]
[context.p.guest]
command = ["/bin/sh", "-c", "sleep 60"]
root = "SHARED/tree3"
user = "web"
"#;

/// First host id of a context's range (`id` · 65536).
fn base(id: u32) -> u32 {
    id << 16
}

struct T {
    sb: Sandbox,
}

impl T {
    fn new() -> T {
        let sb = Sandbox::new();
        let t = T { sb };
        for d in ["wa", "wb", "decoy", "decoydev", "decoyvar"] {
            std::fs::create_dir(t.host(d)).unwrap();
        }
        std::fs::write(t.host("secret"), "host secret\n").unwrap();
        std::fs::set_permissions(t.host("secret"), PermissionsExt::from_mode(0o600)).unwrap();
        for n in ["null", "tty", "random"] {
            std::fs::write(t.host("decoydev").join(n), "decoy\n").unwrap();
        }
        busybox_root(&t.host("tree"));
        busybox_root(&t.host("tree2"));
        busybox_root(&t.host("tree3"));
        for tree in ["tree", "tree2"] {
            for d in ["run/app", "var/data", "var/tmp", "mnt"] {
                std::fs::create_dir_all(t.host(tree).join(d)).unwrap();
            }
        }
        t.netctx(&["up"]).ok();
        t
    }

    /// A path under `SHARED` as the guests see it.
    fn guest(&self, p: &str) -> String {
        format!("{SHARED}/{p}")
    }

    /// The same path as this test process reaches it.
    fn host(&self, p: &str) -> PathBuf {
        self.sb.inside(&self.guest(p))
    }

    fn cfg(&self) -> String {
        CFG.replace("SHARED", SHARED).replace("ATTACK", &attack())
    }

    fn netctx(&self, args: &[&str]) -> Run {
        self.sb.netctx_with(&self.cfg(), args)
    }

    fn exec(&self, user: Option<&str>, ctx: &str, argv: &[&str]) -> Run {
        let mut all = vec!["exec"];
        if let Some(u) = user {
            all.extend(["--user", u]);
        }
        all.extend([ctx, "--"]);
        all.extend_from_slice(argv);
        self.netctx(&all)
    }

    /// `attack ARGS…` as a guest of `ctx`.
    fn attack(&self, user: Option<&str>, ctx: &str, args: &[&str]) -> Run {
        let a = attack();
        let mut argv = vec![a.as_str()];
        argv.extend_from_slice(args);
        self.exec(user, ctx, &argv)
    }

    /// A background process in the sandbox (ended with the sandbox).
    fn spawn(&self, script: &str) -> Child {
        self.sb
            .enter_joined("sh")
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[track_caller]
fn refused(r: &Run, what: &str) {
    assert!(
        r.code == 1 && !r.stdout.contains("ESCAPED") && r.stdout.contains("refused"),
        "{what}: not refused (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
}

fn owner(p: &std::path::Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn a_guests_root_is_root_inside_and_nobody_on_the_host() {
    let t = T::new();
    // Inside: root, in the context's range.
    let r = t.exec(None, "a", &["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let out = r.ok().stdout.clone();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", &base(101).to_string(), "65536"], "{out}");
    // A 0600 file of host root: refused to the guest's root and to nobody.
    for user in [None, Some("nobody")] {
        let r = t.attack(user, "a", &["read", &t.guest("secret")]);
        refused(&r, &format!("{user:?} reading a 0600 host file"));
    }
    // What it makes on disk is its range's, never a host user's.
    t.netctx(&["shift", "a", &t.guest("wa")]).ok();
    let wa = t.guest("wa");
    t.exec(
        None,
        "a",
        &["sh", "-c", &format!("echo x > {wa}/f && chmod 1777 {wa}")],
    )
    .ok();
    assert_eq!(owner(&t.host("wa/f")), (base(101), base(101)));
    t.exec(
        Some("nobody"),
        "a",
        &["sh", "-c", &format!("echo x > {}", t.guest("wa/g"))],
    )
    .ok();
    assert_eq!(owner(&t.host("wa/g")).0, base(101) + 65534);
    // The context's init (PID 1, holder of its namespaces) is its root
    // too, without a capability.
    let init = std::fs::read_to_string(t.sb.inside("/run/netctx/guests/a.init")).unwrap();
    let pid = init.split_whitespace().next().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        st.lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    let b = base(101).to_string();
    assert_eq!(field("Uid:"), [b.as_str(); 4], "{st}");
    assert_eq!(field("Gid:"), [b.as_str(); 4], "{st}");
    for caps in ["CapEff:", "CapPrm:"] {
        assert_eq!(field(caps), ["0000000000000000"], "{st}");
    }
    // The guests of one context share its user namespace.
    let ns = |ctx: &str| {
        t.exec(None, ctx, &["readlink", "/proc/self/ns/user"])
            .ok()
            .stdout
            .clone()
    };
    assert_eq!(ns("a"), ns("a"));
    assert_ne!(ns("a"), ns("b"));
}

#[test]
fn attack_a_neighbours_private_file_and_unix_socket() {
    let t = T::new();
    t.netctx(&["shift", "b", &t.guest("wb")]).ok();
    t.netctx(&["start", "b"]).ok();
    let private = t.guest("wb/private");
    t.exec(
        None,
        "b",
        &[
            "sh",
            "-c",
            &format!("echo b > {private} && chmod 600 {private}"),
        ],
    )
    .ok();
    assert_eq!(owner(&t.host("wb/private")).0, base(102));
    let sock = t.guest("wb/sock");
    let t0 = Instant::now();
    while !t.host("wb/sock").exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(t.host("wb/sock").exists(), "b's guest did not listen");
    for user in [None, Some("nobody")] {
        refused(
            &t.attack(user, "a", &["read", &private]),
            "reading a neighbour's 0600 file",
        );
        refused(
            &t.attack(user, "a", &["unix", &sock]),
            "connecting to a neighbour's unix socket",
        );
    }
}

#[test]
fn attack_a_setuid_binary_planted_by_a_root_guest() {
    let t = T::new();
    t.netctx(&["shift", "a", &t.guest("wa")]).ok();
    let planted = t.guest("wa/suid");
    t.exec(
        None,
        "a",
        &[
            "sh",
            "-c",
            &format!("cp {} {planted} && chmod 4755 {planted}", attack()),
        ],
    )
    .ok();
    let m = std::fs::metadata(t.host("wa/suid")).unwrap();
    assert_eq!(m.uid(), base(101), "the planted file is not the context's");
    assert_ne!(m.mode() & 0o4000, 0, "the guest could not set the bit");
    // An unprivileged host user runs it: setuid to the context's root,
    // which is nobody on the host.
    let out = t.sb.sh(&format!(
        "{a} as 1000 1000 -- {planted} read {secret}",
        a = attack(),
        secret = t.guest("secret")
    ));
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    refused(&r, "the planted setuid binary reading a 0600 host file");
}

#[test]
fn attack_ipc_between_host_contexts_and_after_stop() {
    let t = T::new();
    const KINDS: [&str; 4] = ["shm", "msg", "sem", "mq"];
    // The host's objects (the sandbox's IPC namespace).
    for k in KINDS {
        t.sb.ok(&format!("{} ipc-make {k} 4242", attack()));
    }
    for user in [None, Some("nobody")] {
        for k in KINDS {
            refused(
                &t.attack(user, "a", &["ipc-find", k, "4242"]),
                &format!("{user:?} reaching the host's {k}"),
            );
        }
    }
    // A guest's objects: its context's other guests reach them, nobody
    // else does, and they end with the context's guests.
    for k in KINDS {
        t.attack(Some("nobody"), "a", &["ipc-make", k, "4343"]).ok();
        let again = t.attack(None, "a", &["ipc-find", k, "4343"]);
        assert!(
            again.stdout.contains("reached"),
            "{k} is not shared in a: {}",
            again.stdout
        );
        refused(
            &t.attack(None, "b", &["ipc-find", k, "4343"]),
            &format!("context b reaching a's {k}"),
        );
        let host = t.sb.sh(&format!("{} ipc-find {k} 4343", attack()));
        assert!(
            !String::from_utf8_lossy(&host.stdout).contains("ESCAPED"),
            "the host sees a's {k}"
        );
    }
    t.netctx(&["stop", "a"]).ok();
    for k in KINDS {
        refused(
            &t.attack(None, "a", &["ipc-find", k, "4343"]),
            &format!("a's {k} outlived stop"),
        );
    }
}

/// Everything under `dir` (names and contents), to compare before and after.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Run `n` execs of `ctx` that write `/run/app/pwned` (where writable)
/// and print their mountinfo; what they printed.
fn execs(t: &T, ctx: &str, n: usize) -> String {
    let mut all = String::new();
    for _ in 0..n {
        let r = t.exec(
            None,
            ctx,
            &[
                "/bin/sh",
                "-c",
                "echo pwned > /run/app/pwned; echo pwned > /var/data/pwned; cat /proc/self/mountinfo",
            ],
        );
        all.push_str(&r.stdout);
    }
    all
}

#[test]
fn attack_a_tree_owner_swaps_mount_points_and_dev_for_symlinks_in_a_loop() {
    let t = T::new();
    let tree = t.host("tree");
    // The tree's owner is an unprivileged host user (1000) with a symlink
    // to a host directory beside each mount point netctx sets up.
    for (link, to) in [
        ("run/evil", t.guest("decoy")),
        ("devlink", t.guest("decoydev")),
        ("var/datalink", t.guest("decoyvar")),
    ] {
        std::os::unix::fs::symlink(to, tree.join(link)).unwrap();
    }
    t.sb.ok(&format!("chown -hR 1000:1000 {}", t.guest("tree")));
    let before = [
        snapshot(&t.host("decoy")),
        snapshot(&t.host("decoydev")),
        snapshot(&t.host("decoyvar")),
    ];
    let tr = t.guest("tree");
    let a = attack();
    let mut swappers: Vec<Child> = [
        ("run/app", "run/evil"),
        ("dev", "devlink"),
        ("var/data", "var/datalink"),
    ]
    .iter()
    .map(|(x, y)| {
        t.spawn(&format!(
            "exec {a} as 1000 1000 -- {a} swap {tr}/{x} {tr}/{y} 60"
        ))
    })
    .collect();
    let out = execs(&t, "t", 150);
    for s in &mut swappers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let after = [
        snapshot(&t.host("decoy")),
        snapshot(&t.host("decoydev")),
        snapshot(&t.host("decoyvar")),
    ];
    assert_eq!(before, after, "a host directory changed");
    assert!(
        !out.contains("decoy"),
        "a host path in a guest's mounts:\n{out}"
    );
}

#[test]
fn attack_a_root_guest_with_its_whole_tree_writable_swaps_names_in_a_loop() {
    let t = T::new();
    let tree = t.host("tree2");
    for (link, to) in [
        ("varlink", t.guest("decoyvar")),
        ("devlink", t.guest("decoydev")),
    ] {
        std::os::unix::fs::symlink(to, tree.join(link)).unwrap();
    }
    t.netctx(&["shift", "w", &t.guest("tree2")]).ok();
    let before = (snapshot(&t.host("decoydev")), snapshot(&t.host("decoyvar")));
    // The attacker: a root guest of w, swapping names inside its own tree
    // with the tree's busybox, a bounded number of times.
    let mut swappers: Vec<Child> = [("/var", "/varlink"), ("/dev", "/devlink")]
        .iter()
        .map(|(x, y)| {
            let script = format!(
                "i=0; while [ $i -lt 20000 ]; do /bin/busybox mv {x} {x}.old; \
                 /bin/busybox mv {y} {x}; /bin/busybox mv {x} {y}; \
                 /bin/busybox mv {x}.old {x}; i=$((i+1)); done"
            );
            t.spawn(&format!(
                "exec {} -c {} exec w -- /bin/sh -c '{script}' >/dev/null 2>&1",
                crate::sandbox::BIN,
                t.sb.dir.join("netctx.toml").display()
            ))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut out = String::new();
    for _ in 0..150 {
        let r = t.exec(
            None,
            "w",
            &[
                "/bin/sh",
                "-c",
                "echo pwned > /var/tmp/pwned; cat /proc/self/mountinfo",
            ],
        );
        out.push_str(&r.stdout);
    }
    for s in &mut swappers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let after = (snapshot(&t.host("decoydev")), snapshot(&t.host("decoyvar")));
    assert_eq!(before, after, "a host directory changed");
    assert!(
        !out.contains("decoy"),
        "a host path in a guest's mounts:\n{out}"
    );
}

#[test]
fn attack_a_hostile_etc_passwd_is_a_clear_error_and_blocks_no_one() {
    let t = T::new();
    let passwd = t.host("tree3").join("etc/passwd");
    let cases: [(&str, &dyn Fn()); 4] = [
        ("not a regular file", &|| {
            std::fs::remove_file(&passwd).unwrap();
            t.sb.ok(&format!("mkfifo {}", t.guest("tree3/etc/passwd")));
        }),
        ("leads out of the guest's tree", &|| {
            std::fs::remove_file(&passwd).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &passwd).unwrap();
        }),
        ("leads out of the guest's tree", &|| {
            std::fs::remove_file(&passwd).unwrap();
            std::os::unix::fs::symlink(t.guest("secret"), &passwd).unwrap();
        }),
        ("larger than", &|| {
            std::fs::remove_file(&passwd).unwrap();
            let line = "web:x:1000:1000:web:/:/bin/sh\n";
            std::fs::write(&passwd, line.repeat((2 << 20) / line.len())).unwrap();
        }),
    ];
    for (want, make) in cases {
        make();
        let t0 = Instant::now();
        let r = t.sb.netctx(&[
            "-c",
            t.sb.write_config("netctx.toml", &t.cfg()).to_str().unwrap(),
            "--wait",
            "5",
            "start",
            "p",
        ]);
        assert_eq!(r.code, 1, "{want}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("etc/passwd") && r.stderr.contains(want),
            "{want}: {}",
            r.stderr
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "start took {:?}",
            t0.elapsed()
        );
        // The lock was never held: another run goes through at once.
        t.netctx(&["--wait", "0", "up"]).ok();
    }
}

#[test]
fn a_busybox_tree_after_shift_runs_its_daemon_and_writes_its_writable_paths() {
    let t = T::new();
    let tree = t.host("tree");
    // Before the shift: up and status say the guest's paths are not its own.
    let s = t.netctx(&["status", "t"]);
    assert!(s.stdout.contains("netctx shift t"), "{}", s.stdout);
    let u = t.netctx(&["up", "t"]);
    assert!(u.ok().stderr.contains("netctx shift t"), "{}", u.stderr);
    // A setuid file and a symlink to a host file in the tree.
    std::fs::write(tree.join("bin/suid"), "x").unwrap();
    std::fs::set_permissions(tree.join("bin/suid"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink(t.guest("secret"), tree.join("etc/hostlink")).unwrap();
    // A host file hard-linked into the tree (same filesystem): never given
    // to the context.
    std::fs::hard_link(t.host("secret"), tree.join("etc/hardlink")).unwrap();
    // Paths it does not declare are refused.
    let r = t.netctx(&["shift", "t", &t.guest("wa")]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("is not a path context t declares"),
        "{}",
        r.stderr
    );
    let r = t.netctx(&["shift", "t", &t.guest("tree")]);
    r.ok();
    assert!(r.stdout.contains("changed"), "{}", r.stdout);
    let b = base(103);
    assert_eq!(owner(&tree), (b, b));
    assert_eq!(owner(&tree.join("bin/busybox")), (b, b));
    assert_eq!(owner(&tree.join("etc/hostlink")), (b, b));
    assert_eq!(
        owner(&t.host("secret")),
        (0, 0),
        "the shift followed a symlink"
    );
    assert!(
        r.stderr
            .contains("1 file(s) with hard links outside the path"),
        "{}",
        r.stderr
    );
    let m = std::fs::metadata(tree.join("bin/suid")).unwrap();
    assert_eq!(m.mode() & 0o6000, 0, "the setuid bit survived the shift");
    // Idempotent.
    let again = t.netctx(&["shift", "t", &t.guest("tree")]);
    assert!(
        again.ok().stdout.contains(": 0 changed"),
        "{}",
        again.stdout
    );
    assert!(!t.netctx(&["status", "t"]).stdout.contains("netctx shift"));
    // The daemon starts and writes its writable path; a tree user writes too.
    t.netctx(&["start", "t"]).ok();
    let started = tree.join("run/app/started");
    let t0 = Instant::now();
    // (Until its line is in: the file exists before the daemon has written
    // it, a window the VM lane's emulation widens.)
    let line = || std::fs::read_to_string(&started).unwrap_or_default();
    while line() != "started\n" && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(line(), "started\n");
    assert_eq!(owner(&started).0, b);
    // The guest's root gives a directory to a tree user (CAP_CHOWN, in its
    // range only).
    t.exec(None, "t", &["/bin/busybox", "chown", "web", "/var/data"])
        .ok();
    let r = t.exec(
        Some("web"),
        "t",
        &["/bin/sh", "-c", "id -u; echo w > /var/data/w"],
    );
    assert_eq!(r.ok().stdout.trim(), "1000");
    assert_eq!(owner(&tree.join("var/data/w")).0, b + 1000);
    // Nothing else of the tree is writable.
    let r = t.exec(None, "t", &["/bin/sh", "-c", "echo x > /etc/x"]);
    assert_ne!(r.code, 0, "the guest wrote its read-only tree");
    t.netctx(&["stop", "t"]).ok();
    // And back.
    t.netctx(&["shift", "--back", "t", &t.guest("tree")]).ok();
    assert_eq!(owner(&tree.join("bin/busybox")), (0, 0));
    assert_eq!(owner(&tree.join("var/data/w")).0, 1000);
}
