//! containerd's CRI drives netctx as Kubernetes' kubelet would: Debian's
//! containerd 1.6 with its CRI plugin runs privately in the sandbox
//! (`integration/cri/cri.sh`: its own root, state, socket and CNI
//! directories, the native snapshotter, runc, cgroupfs), a pause image of
//! busybox-static serving HTTP on 8080 is built and imported with `ctr -n
//! k8s.io images import`, and a CRI client (`integration/cri/cri.py`:
//! python3-grpcio with the CRI's api.proto compiled by protoc) runs two pod
//! sandboxes on a netctx network with an uplink to a stand-in LAN; a
//! wrapper in containerd's `bin_dir` records each plugin call. Needs
//! containerd, runc, busybox-static, protobuf-compiler, python3-grpcio and
//! python3-protobuf (`.ci/setup`); not in the VM lane.

use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{probe, Sandbox, BIN};
use crate::uplink::NET;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/cri");
const PY: &str = "/usr/bin/python3";

struct Cri {
    sb: Sandbox,
    dir: String,
    /// The pods' cgroup parent (cgroupfs), removed at the end.
    cgroup: String,
}

impl Cri {
    fn new() -> Cri {
        let sb = Sandbox::new();
        let checks = [
            ("containerd", "command -v containerd", "containerd"),
            ("ctr", "command -v ctr", "containerd"),
            ("runc", "command -v runc", "runc"),
            ("busybox", "command -v busybox", "busybox-static"),
            ("protoc", "command -v protoc", "protobuf-compiler"),
            (
                "python3 with grpc and protobuf",
                "/usr/bin/python3 -c 'import grpc, google.protobuf'",
                "python3-grpcio python3-protobuf",
            ),
        ];
        for (what, test, pkg) in checks {
            assert!(
                sb.sh(test).status.success(),
                "the CRI test needs {what} (.ci/setup installs {pkg})"
            );
        }
        sb.ok(NET);
        let dir = sb.dir.join("cri").to_string_lossy().into_owned();
        let cgroup = format!("nxcri-{}", std::process::id());
        let o = sb
            .enter_joined("sh")
            .args([
                &format!("{DIR}/cri.sh"),
                "setup",
                &dir,
                BIN,
                "10.89.0.0/24",
                "up0",
            ])
            .output()
            .unwrap();
        let cri = Cri { sb, dir, cgroup };
        assert!(
            o.status.success(),
            "containerd did not start in the sandbox:\n{}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            cri.log()
        );
        cri
    }

    fn log(&self) -> String {
        std::fs::read_to_string(format!("{}/containerd.log", self.dir)).unwrap_or_default()
    }

    /// The CRI client: `args` after the socket and generated code.
    fn cri(&self, args: &[&str]) -> String {
        let sock = format!("{}/containerd.sock", self.dir);
        let gen = format!("{}/gen", self.dir);
        let o = self
            .sb
            .enter(PY)
            .arg(format!("{DIR}/cri.py"))
            .args([sock.as_str(), gen.as_str()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "CRI {args:?} failed:\n{}\n--- containerd's log (tail) ---\n{}",
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// RunPodSandbox of pod `ns/name`, with a hostPort to its 8080 if given.
    fn run_pod(&self, name: &str, ns: &str, host_port: Option<u16>) -> String {
        let port = host_port.map_or("-".to_string(), |p| p.to_string());
        let logs = format!("{}/logs/{name}", self.dir);
        let cgroup = format!("/{}", self.cgroup);
        let uid = format!("uid-{name}");
        let args = [
            "run",
            name,
            ns,
            uid.as_str(),
            port.as_str(),
            cgroup.as_str(),
            logs.as_str(),
        ];
        self.cri(&args).trim().to_string()
    }

    fn status(&self, id: &str) -> Value {
        serde_json::from_str(&self.cri(&["status", id])).unwrap()
    }

    fn fetch(&self, ns: Option<&str>, url: &str) -> String {
        let prefix = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let o = self
            .sb
            .sh(&format!("{prefix}timeout 5 busybox wget -qO- {url}"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cri {
    fn drop(&mut self) {
        let _ = self.sb.sh(&format!(
            "sh {DIR}/cri.sh cleanup {} {}",
            self.dir, self.cgroup
        ));
    }
}

#[test]
fn containerd_cri_runs_two_isolated_pods_on_a_netctx_network() {
    let c = Cri::new();
    let a = c.run_pod("web-0", "default", Some(18080));
    let b = c.run_pod("db-0", "shop", None);
    let (sa, sb_) = (c.status(&a), c.status(&b));
    for s in [&sa, &sb_] {
        assert_eq!(s["state"], "SANDBOX_READY", "{s}");
    }
    let (ia, ib) = (
        sa["ip"].as_str().unwrap().to_string(),
        sb_["ip"].as_str().unwrap().to_string(),
    );
    assert!(
        ia.starts_with("10.89.0.") && ib.starts_with("10.89.0.") && ia != ib,
        "addresses from host-local: {ia} {ib}"
    );
    let (na, nb) = (
        sa["netns"].as_str().unwrap().to_string(),
        sb_["netns"].as_str().unwrap().to_string(),
    );
    for (ns, ip) in [(&na, &ia), (&nb, &ib)] {
        let addrs =
            c.sb.ok(&format!("nsenter --net={ns} ip -br addr show eth0"));
        assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    }
    // The pods' cgroups are where cleanup looks for them.
    let groups = c.sb.ok(&format!(
        "find /sys/fs/cgroup -maxdepth 2 -name {} 2>/dev/null",
        c.cgroup
    ));
    assert!(
        !groups.trim().is_empty(),
        "no cgroup {} of the pods",
        c.cgroup
    );
    // containerd passed the pod's names: the attachments carry them.
    let links = c.sb.ok("ip -d link show");
    assert!(
        links.contains(&format!(":{a}:default/web-0"))
            && links.contains(&format!(":{b}:shop/db-0")),
        "{links}"
    );

    // The host reaches both pause servers; web-0's hostPort answers from
    // the LAN through the uplink and on the host.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.fetch(None, &format!("http://{ia}:8080/")), "pod\n");
    assert_eq!(c.fetch(None, &format!("http://{ib}:8080/")), "pod\n");
    assert_eq!(
        c.fetch(Some("lan"), "http://203.0.113.1:18080/"),
        "pod\n",
        "hostPort 18080 from the LAN\n{}",
        c.sb.ok("nft list ruleset")
    );
    assert_eq!(c.fetch(None, "http://203.0.113.1:18080/"), "pod\n");
    // db-0 published nothing: the LAN reaches no port of it.
    assert_eq!(c.fetch(Some("lan"), "http://203.0.113.1:8080/"), "");

    // Strict isolation between them: no connection from one to the other,
    // neither binds the other's address nor sends with it as its source.
    let connect = c.sb.ok(&format!(
        "nsenter --net={na} {} connect {ib} 8080 || true",
        probe()
    ));
    assert_eq!(connect.trim(), "timeout", "web-0 reached db-0");
    let connect = c.sb.ok(&format!(
        "nsenter --net={nb} {} connect {ia} 8080 || true",
        probe()
    ));
    assert_eq!(connect.trim(), "timeout", "db-0 reached web-0");
    let bind =
        c.sb.ok(&format!("nsenter --net={na} {} bind {ib} 81", probe()));
    assert_eq!(bind.trim(), "EADDRNOTAVAIL");
    // A host service the network's `reach` names (`host:9999/udp`): db-0
    // reaches it as itself, web-0 cannot pass as db-0.
    let file = c.sb.dir.join("udp");
    let file = file.display();
    c.sb.ok(&format!(
        "{} recv-udp 0.0.0.0 9999 1.5 {file} >/dev/null 2>&1 & sleep 0.3",
        probe()
    ));
    c.sb.ok(&format!(
        "nsenter --net={na} {} forge {ib} 10.89.0.1 9999 forged",
        probe()
    ));
    c.sb.ok(&format!(
        "nsenter --net={nb} {} send-udp 10.89.0.1 9999 genuine",
        probe()
    ));
    std::thread::sleep(Duration::from_millis(2200));
    let got = c.sb.ok(&format!("cat {file} 2>/dev/null || true"));
    assert!(got.contains(&format!("genuine {ib}")), "{got:?}");
    assert!(!got.contains("forged"), "{got:?}");

    // netctx's views, by pod name.
    let empty = c.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let s = c.sb.netctx(&["-c", cfg, "status", "--json"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    let doc: Value = serde_json::from_str(&s.stdout).unwrap();
    let pods: Vec<&str> = doc["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pod"].as_str())
        .collect();
    assert_eq!(pods.len(), 2, "{doc}");
    assert!(
        pods.contains(&"default/web-0") && pods.contains(&"shop/db-0"),
        "{doc}"
    );
    let s = c.sb.netctx(&["-c", cfg, "status", "default/web-0"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    assert!(
        s.stdout.contains("pod default/web-0") && s.stdout.contains(&format!("container {a}")),
        "{}",
        s.stdout
    );
    let audit = c.sb.netctx(&["-c", cfg, "audit", "shop/db-0"]);
    assert_eq!(audit.code, 0, "{}\n{}", audit.stdout, audit.stderr);
    assert!(
        audit.stdout.contains("(pod shop/db-0)") && audit.stdout.contains("/busybox"),
        "{}",
        audit.stdout
    );
    c.sb.ok(&format!(
        "{BIN} -c {cfg} logs default/web-0 --timeout 5 >/run/logs 2>/run/logs.err & echo $! >/run/logs.pid; \
         for i in $(seq 100); do grep -q reading /run/logs.err && break; sleep 0.05; done; grep -q reading /run/logs.err"
    ));
    assert_eq!(c.fetch(Some("lan"), "http://203.0.113.1:18080/"), "pod\n");
    std::thread::sleep(Duration::from_millis(300));
    let logs =
        c.sb.ok("kill -INT $(cat /run/logs.pid); sleep 0.2; cat /run/logs");
    assert!(
        logs.lines()
            .any(|l| l.contains("(default/web-0) INPUT: IN=eth0")
                && l.contains(&format!("SRC=203.0.113.2 DST={ia}"))
                && l.contains("DPT=8080")),
        "{logs}"
    );

    // StopPodSandbox + RemovePodSandbox (containerd's DELs, the second
    // without a namespace) leave nothing.
    for id in [&a, &b] {
        c.cri(&["stop", id]);
        c.cri(&["remove", id]);
    }
    // What containerd called (the wrapper's record): for each pod one ADD
    // with the pod's names, a DEL with its namespace at StopPodSandbox and
    // one without at RemovePodSandbox; all succeeded (else CRI had failed).
    let calls = std::fs::read_to_string(format!("{}/calls", c.dir)).unwrap_or_default();
    for (id, ns, pod) in [(&a, "default", "web-0"), (&b, "shop", "db-0")] {
        let mine: Vec<&str> = calls
            .lines()
            .filter(|l| l.contains(&format!("K8S_POD_INFRA_CONTAINER_ID={id}")))
            .collect();
        let count = |pre: &str| mine.iter().filter(|l| l.starts_with(pre)).count();
        assert_eq!(count("ADD netns=/"), 1, "{calls}");
        assert_eq!(count("DEL netns=/"), 1, "{calls}");
        assert_eq!(count("DEL netns= "), 1, "{calls}");
        assert_eq!(mine.len(), 3, "{calls}");
        assert!(
            mine[0].contains(&format!("K8S_POD_NAMESPACE={ns}"))
                && mine[0].contains(&format!("K8S_POD_NAME={pod}")),
            "{calls}"
        );
    }
    let left = c.cri(&["list"]);
    assert_eq!(left.trim(), "[]");
    let links = c.sb.ok("ip -d -br link");
    assert!(!links.contains("nxc"), "{links}");
    assert!(!c.sb.sh("nft list table inet netctx").status.success());
    let leases = c.sb.ok(&format!("ls {}/cni/nx", c.dir));
    assert!(!leases.contains("10.89.0."), "{leases}");
    assert_eq!(c.fetch(Some("lan"), "http://203.0.113.1:18080/"), "");
    let s = c.sb.netctx(&["-c", cfg, "status", "default/web-0"]);
    assert_eq!(s.code, 1, "{}", s.stdout);
}
