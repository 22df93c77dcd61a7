//! Every integration test runs in a sandbox of its own: a process holding a
//! fresh network namespace and a fresh mount namespace with private tmpfs
//! over /run (so /run/netns and /run/netctx are the sandbox's own), and a
//! private copy of /etc/iproute2 (where `up` names its route protocol). A fresh
//! network namespace has no route out; nothing here adds one. Each sandbox
//! also has a cgroup of its own (`nxtest-PID-N` under the machine's cgroup2
//! mount), a cgroup namespace rooted there and a fresh cgroup2 mounted where
//! netctx looks, so netctx's `netctx/CTX` groups land inside the test's
//! group; every process the test leaves running in the sandbox joins it.
//! When the sandbox is dropped everything in its group is killed
//! (`cgroup.kill`), the groups are removed bottom-up, and the kernel removes
//! the namespaces.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_netctx");

/// Where every sandbox shows the example programs (cargo builds them with
/// the tests): `target/debug/examples` bound onto a tmpfs of the
/// sandbox's own at /mnt, so that a guest — nobody on the host — reaches
/// them wherever the checkout lives (under a 0700 /root, say).
pub const BIN_DIR: &str = "/mnt/bin";
/// A directory of the sandbox's (0755 tmpfs) that guests see: for test
/// data a guest must reach (the sandbox's `dir` is under /tmp, which every
/// guest has private).
pub const SHARED: &str = "/mnt/data";

fn example_programs() -> PathBuf {
    Path::new(BIN).parent().unwrap().join("examples")
}

/// The probe built from examples/netprobe.rs.
pub fn probe() -> String {
    format!("{BIN_DIR}/netprobe")
}

/// The attack programs built from examples/attack.rs.
pub fn attack() -> String {
    format!("{BIN_DIR}/attack")
}

pub struct Sandbox {
    holder: Child,
    pub dir: PathBuf,
    /// The sandbox's cgroup as the machine sees it.
    pub cgroup: PathBuf,
    /// The group its own processes are in: `cgroup`, or `cgroup/holder`
    /// where the sandbox hands cgroup controllers to netctx's groups.
    pub leaf: PathBuf,
    /// Its cgroup.procs, open for the processes that join it.
    procs: File,
}

/// Where the machine mounts cgroup2 (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts), as netctx looks for it.
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut found: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split(' ').next() == Some("cgroup2"))
                .then(|| pre.split(' ').nth(4).unwrap().to_string())
        })
        .collect();
    found.sort_by_key(|m| (m != "/sys/fs/cgroup", m != "/sys/fs/cgroup/unified"));
    PathBuf::from(
        found
            .into_iter()
            .next()
            .expect("the tests need a cgroup2 mount (mount -t cgroup2 none /sys/fs/cgroup)"),
    )
}

/// End every process of a cgroup tree and remove it, deepest first.
fn remove_cgroup(top: &Path) {
    let _ = std::fs::write(top.join("cgroup.kill"), "1");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let ev = std::fs::read_to_string(top.join("cgroup.events")).unwrap_or_default();
        if !ev.contains("populated 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fn dirs(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs(&e.path(), out);
            }
        }
        out.push(p.to_path_buf());
    }
    let mut all = Vec::new();
    dirs(top, &mut all);
    for d in all {
        let _ = std::fs::remove_dir(&d);
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests create namespaces and links: run them as root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    );
}

impl Sandbox {
    pub fn new() -> Sandbox {
        require_root();
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netctx-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mnt = cgroup2_mount();
        let cgroup = mnt.join(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .replace("netctx-test", "nxtest"),
        );
        std::fs::create_dir(&cgroup).unwrap();
        // Where the machine's cgroup2 root hands down the pids and memory
        // controllers (the VM lane), the sandbox's group hands them on to
        // netctx's: then its processes live in a leaf `holder` (a group
        // with controllers for its children holds no process), which the
        // holder moves itself into once its cgroup namespace is rooted at
        // the sandbox's group.
        let offered = std::fs::read_to_string(mnt.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.contains("pids") && c.contains("memory"));
        let leaf = if offered {
            std::fs::create_dir(cgroup.join("holder")).unwrap();
            cgroup.join("holder")
        } else {
            cgroup.clone()
        };
        let procs = File::options()
            .write(true)
            .open(cgroup.join("cgroup.procs"))
            .unwrap();
        let to_leaf = if offered {
            format!("&& echo $$ >{}/holder/cgroup.procs ", mnt.display())
        } else {
            String::new()
        };
        let inner = format!(
            "mount -t tmpfs -o mode=0755 netctx-test /run && mkdir /run/netns /run/netctx \
             && {{ ! [ -d /etc/iproute2 ] || {{ mkdir /run/iproute2 \
             && cp -a /etc/iproute2/. /run/iproute2/ && mount --bind /run/iproute2 /etc/iproute2; }}; }} \
             && mount -t tmpfs -o mode=0755,size=64m netctx-test /mnt \
             && mkdir {bin} {shared} && mount --bind {ex} {bin} \
             && umount -l {m} && mount -t cgroup2 nxtest {m} {to_leaf}&& echo ready \
             && exec sleep 1000000",
            m = mnt.display(),
            bin = BIN_DIR,
            shared = SHARED,
            ex = example_programs().display(),
        );
        let mut holder = Command::new("unshare");
        holder
            .args([
                "--net",
                "--mount",
                "--cgroup",
                "--ipc",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
            ])
            .arg(inner)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        join(&mut holder, &procs);
        let mut holder = holder
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            remove_cgroup(&cgroup);
            let _ = holder.wait();
            panic!("sandbox did not start");
        }
        let procs = if offered {
            std::fs::write(cgroup.join("cgroup.subtree_control"), "+pids +memory")
                .expect("handing the pids and memory controllers to the sandbox's groups");
            File::options()
                .write(true)
                .open(leaf.join("cgroup.procs"))
                .unwrap()
        } else {
            procs
        };
        Sandbox {
            holder,
            dir,
            cgroup,
            leaf,
            procs,
        }
    }

    /// The pid of the process holding the sandbox's namespaces (`ip link
    /// … netns PID` puts a link into the sandbox).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A path of the sandbox's own mounts (`SHARED`, say) as this test
    /// process reaches it: through the holder's root.
    pub fn inside(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.holder.id()))
    }

    /// A command run inside the sandbox.
    pub fn enter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["--net", "--mount", "--ipc", "--"])
            .arg(program);
        c
    }

    /// A command run inside the sandbox and in its cgroup, so that whatever
    /// it leaves running ends with the sandbox. (Joining a cgroup costs an
    /// RCU grace period, slow under emulation: only for what needs it.)
    pub fn enter_joined(&self, program: &str) -> Command {
        let mut c = self.enter(program);
        join(&mut c, &self.procs);
        c
    }

    /// Run a shell script inside the sandbox; one that starts a background
    /// job (`&`) runs in the sandbox's cgroup.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = if script.contains('&') {
            self.enter_joined("sh")
        } else {
            self.enter("sh")
        };
        c.arg("-c").arg(script).output().unwrap()
    }

    /// Run a shell script that must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "`{script}` failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run netctx inside the sandbox.
    pub fn netctx(&self, args: &[&str]) -> Run {
        let o = self.enter(BIN).args(args).output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Start netctx inside the sandbox without waiting for it: stdout and
    /// stderr piped. nsenter execs netctx (no fork), so the child's pid is
    /// netctx's own.
    pub fn spawn_netctx(&self, args: &[&str]) -> Child {
        self.enter(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run netctx with a configuration file holding `toml`.
    pub fn netctx_with(&self, toml: &str, args: &[&str]) -> Run {
        let cfg = self.write_config("netctx.toml", toml);
        let mut all = vec!["-c", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        self.netctx(&all)
    }

    pub fn write_config(&self, name: &str, toml: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, toml).unwrap();
        p
    }

    /// `ip -j ARGS` in the sandbox (`ns` = None) or in a named namespace.
    pub fn ip(&self, ns: Option<&str>, args: &str) -> Value {
        let script = match ns {
            Some(ns) => format!("ip -n {ns} -j {args}"),
            None => format!("ip -j {args}"),
        };
        let out = self.ok(&script);
        if out.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {out}"))
    }

    /// Links of a namespace: name → (ifindex, up).
    pub fn links(&self, ns: Option<&str>) -> Vec<(String, u64, bool)> {
        let v = self.ip(ns, "link show");
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let flags = l["flags"].as_array().unwrap();
                (
                    l["ifname"].as_str().unwrap().to_string(),
                    l["ifindex"].as_u64().unwrap(),
                    flags.iter().any(|f| f == "UP"),
                )
            })
            .collect()
    }

    /// Global addresses of one link, as `addr/prefix`.
    pub fn addrs(&self, ns: Option<&str>, dev: &str) -> Vec<String> {
        let v = self.ip(ns, &format!("addr show dev {dev}"));
        let mut out: Vec<String> = v[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect();
        out.sort();
        out
    }

    pub fn netns_list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("ls /run/netns")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// nsfs mounts in the sandbox's mount namespace.
    pub fn nsfs_mounts(&self) -> usize {
        self.ok("grep -c ' nsfs ' /proc/self/mountinfo || true")
            .trim()
            .parse()
            .unwrap()
    }

    pub fn ping(&self, ns: Option<&str>, dst: &str) -> bool {
        let prefix = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        self.sh(&format!("{prefix}ping -c1 -W1 -q {dst}"))
            .status
            .success()
    }
}

/// The child joins the cgroup whose cgroup.procs is `procs` before it execs.
fn join(c: &mut Command, procs: &File) {
    let fd = procs.as_raw_fd();
    // SAFETY: write(2) of a static buffer to a descriptor opened before the
    // fork is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Guests are processes that would keep their namespaces alive after
        // the holder is gone: stop them (and everything else) first.
        let _ = self
            .enter(BIN)
            .args(["down", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        remove_cgroup(&self.cgroup);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "netctx failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/contexts"))
}
