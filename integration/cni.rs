//! netctx as a CNI plugin, driven exactly as a runtime drives it: `CNI_*`
//! variables and the configuration on stdin, the answer on stdout. The
//! runtime's namespaces are made with `ip netns add` inside the sandbox;
//! host-local keeps its leases in the sandbox's temp dir. Debian's
//! containernetworking-plugins (host-local, portmap, tuning) live in
//! /usr/lib/cni (`.ci/setup` installs them).

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::sandbox::{probe, Sandbox, BIN};

const PLUGINS: &str = "/usr/lib/cni";

pub(crate) struct Answer {
    pub(crate) code: i32,
    pub(crate) out: Value,
    pub(crate) stderr: String,
}

impl Answer {
    #[track_caller]
    pub(crate) fn ok(self) -> Value {
        assert_eq!(self.code, 0, "plugin failed: {}\n{}", self.out, self.stderr);
        self.out
    }
    /// The spec's error object, with the code asserted.
    #[track_caller]
    pub(crate) fn error(self, code: u64) -> Value {
        assert_ne!(self.code, 0, "plugin succeeded: {}", self.out);
        assert_eq!(self.out["code"], code, "{}\n{}", self.out, self.stderr);
        for k in ["cniVersion", "msg", "details"] {
            assert!(self.out[k].is_string(), "no {k} in {}", self.out);
        }
        self.out
    }
}

pub(crate) struct Cni {
    pub(crate) sb: Sandbox,
    data: PathBuf,
}

impl Cni {
    pub(crate) fn new() -> Cni {
        let sb = Sandbox::new();
        assert!(
            std::path::Path::new(PLUGINS).join("host-local").exists(),
            "the CNI tests need Debian's containernetworking-plugins in {PLUGINS} (.ci/setup)"
        );
        sb.ok("ip link set lo up");
        let data = sb.dir.join("cni-data");
        Cni { sb, data }
    }

    /// A network configuration of version `ver` on `subnet`.
    pub(crate) fn conf(&self, ver: &str, name: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": ver, "name": name, "type": "netctx",
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": subnet }]],
                      "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": self.data },
            "isolation": "strict", "log": ["input"], "log_group": 100,
            "reach": [], "egress": "none",
        })
    }

    /// Run `program` as a plugin in the sandbox.
    fn run(&self, program: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Answer {
        let mut c = self.sb.enter(program);
        c.env("CNI_PATH", PLUGINS);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        Answer {
            code: o.status.code().unwrap_or(-1),
            out: if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
            },
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// netctx with command `cmd` for container `id` in `/run/netns/id`.
    pub(crate) fn call(&self, cmd: &str, id: &str, conf: &Value) -> Answer {
        let netns = format!("/run/netns/{id}");
        self.call_env(cmd, id, &netns, conf)
    }

    /// netctx with command `cmd` for container `id` in `/run/netns/id`,
    /// with `CNI_ARGS` `args`; also the plugin's stderr.
    pub(crate) fn call_args(&self, cmd: &str, id: &str, args: &str, conf: &Value) -> Answer {
        let netns = format!("/run/netns/{id}");
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
        ];
        self.run(BIN, &vars, &serde_json::to_vec(conf).unwrap())
    }

    fn call_env(&self, cmd: &str, id: &str, netns: &str, conf: &Value) -> Answer {
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0"),
        ];
        self.run(BIN, &vars, &serde_json::to_vec(conf).unwrap())
    }

    pub(crate) fn netns(&self, id: &str) {
        self.sb.ok(&format!("ip netns add {id}"));
    }

    /// Host links carrying netctx's CNI alias: (name, alias).
    pub(crate) fn host_links(&self) -> Vec<(String, String)> {
        let v = self.sb.ip(None, "-d link show");
        let mut out: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let alias = l["ifalias"].as_str()?;
                alias
                    .starts_with("netctx-cni:")
                    .then(|| (l["ifname"].as_str().unwrap().to_string(), alias.to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// Chains of the host's table `inet netctx`.
    pub(crate) fn host_chains(&self) -> Vec<String> {
        let out = self
            .sb
            .ok("nft -j list table inet netctx 2>/dev/null || true");
        if out.trim().is_empty() {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| {
                o.get("chain")
                    .map(|c| c["name"].as_str().unwrap().to_string())
            })
            // The dispatches (forward and input; the NAT's) are the
            // host's, no attachment's.
            .filter(|c| !c.starts_with("netctx-"))
            .collect()
    }

    /// host-local's leases of network `name`: (address, container id).
    pub(crate) fn leases(&self, name: &str) -> Vec<(String, String)> {
        let dir = self.data.join(name);
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .parse::<std::net::IpAddr>()
                            .is_ok()
                    })
                    .map(|e| {
                        let s = std::fs::read_to_string(e.path()).unwrap();
                        let id = s.lines().next().unwrap_or_default().trim().to_string();
                        (e.file_name().to_string_lossy().into_owned(), id)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub(crate) fn with_prev(conf: &Value, prev: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        c
    }

    /// Wait until no host link carries a CNI alias of container `id`.
    fn wait_links_gone(&self, id: &str) {
        for _ in 0..100 {
            if !self
                .host_links()
                .iter()
                .any(|(_, a)| a.ends_with(&format!(":{id}")))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("host link of {id} still there: {:?}", self.host_links());
    }
}

#[test]
fn version_answers_like_podman_asks() {
    let t = Cni::new();
    let a = t
        .run(
            BIN,
            &[("CNI_COMMAND", "VERSION"), ("CNI_NETNS", "dummy")],
            br#"{"cniVersion":"1.0.0"}"#,
        )
        .ok();
    assert_eq!(a["cniVersion"], "1.0.0");
    assert_eq!(
        a["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn add_check_del_in_each_version() {
    let t = Cni::new();
    for (i, ver) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let id = format!("ctr{i}");
        t.netns(&id);
        let conf = t.conf(ver, "nx", "10.89.0.0/24");
        let r = t.call("ADD", &id, &conf).ok();
        assert_eq!(r["cniVersion"], *ver);
        let ifs = r["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 2, "{r}");
        assert!(ifs[0]["name"].as_str().unwrap().starts_with("nxc"));
        assert!(ifs[0].get("sandbox").is_none());
        assert_eq!(ifs[1]["name"], "eth0");
        assert_eq!(ifs[1]["sandbox"], format!("/run/netns/{id}"));
        assert!(ifs[1]["mac"].as_str().unwrap().len() == 17);
        let ip = &r["ips"][0];
        assert_eq!(ip["interface"], 1);
        assert_eq!(ip["gateway"], "10.89.0.1");
        assert_eq!(ip.get("version").is_some(), ver.starts_with("0."), "{r}");
        let addr = ip["address"].as_str().unwrap().to_string();
        assert!(addr.starts_with("10.89.0.") && addr.ends_with("/24"));
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");

        // What the kernel says: inside, on the host, in nftables.
        assert_eq!(t.sb.addrs(Some(&id), "eth0"), vec![addr.clone()]);
        let host = ifs[0]["name"].as_str().unwrap();
        assert_eq!(t.sb.addrs(None, host), vec!["10.89.0.1/32".to_string()]);
        let routes = t.sb.ok(&format!("ip -n {id} route"));
        assert!(
            routes.contains("default via 10.89.0.1 dev eth0"),
            "{routes}"
        );
        let inside =
            t.sb.ok(&format!("ip netns exec {id} nft list table inet netctx"));
        assert!(
            inside.contains(addr.split('/').next().unwrap()) && inside.contains("CTX:INPUT:"),
            "{inside}"
        );
        assert!(t.host_chains().iter().any(|c| c.ends_with(host)));
        assert!(t.sb.ping(None, addr.split('/').next().unwrap()));

        let with_prev = Cni::with_prev(&conf, &r);
        if *ver == "0.3.1" {
            // No CHECK before 0.4.0.
            t.call("CHECK", &id, &with_prev).error(1);
        } else {
            t.call("CHECK", &id, &with_prev).ok();
        }
        t.call("DEL", &id, &with_prev).ok();
        t.wait_links_gone(&id);
        assert!(t.leases("nx").is_empty(), "{:?}", t.leases("nx"));
        assert!(t.host_chains().is_empty());
        let links = t.sb.ok(&format!("ip -n {id} -br link"));
        assert!(!links.contains("eth0"), "{links}");
        assert!(
            t.sb.sh(&format!("ip netns exec {id} nft list table inet netctx"))
                .status
                .code()
                != Some(0)
        );
        t.sb.ok(&format!("ip netns del {id}"));
    }
    // The host's table went with the last chain.
    assert!(t.sb.ok("nft list tables").trim().is_empty());
}

#[test]
fn check_fails_after_an_address_is_removed() {
    let t = Cni::new();
    t.netns("c1");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r = t.call("ADD", "c1", &conf).ok();
    let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
    let with_prev = Cni::with_prev(&conf, &r);
    t.call("CHECK", "c1", &with_prev).ok();
    t.sb.ok(&format!("ip -n c1 addr del {addr} dev eth0"));
    let e = t.call("CHECK", "c1", &with_prev).error(101);
    assert!(e["details"].as_str().unwrap().contains(&addr), "{e}");
    // The host table flushed is found too.
    t.call("ADD", "c2", &conf).error(4);
    t.netns("c2");
    let r2 = t.call("ADD", "c2", &conf).ok();
    t.sb.ok("nft flush table inet netctx");
    let e = t
        .call("CHECK", "c2", &Cni::with_prev(&conf, &r2))
        .error(101);
    assert!(e["details"].as_str().unwrap().contains("host chain"), "{e}");
    // CHECK without prevResult, and before 0.4.0, is refused.
    t.call("CHECK", "c2", &conf).error(7);
    t.call(
        "CHECK",
        "c2",
        &Cni::with_prev(&t.conf("0.3.1", "nx", "10.89.0.0/24"), &r2),
    )
    .error(1);
}

#[test]
fn del_twice_after_the_namespace_is_gone_and_without_netns() {
    let t = Cni::new();
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    for id in ["a1", "a2", "a3"] {
        t.netns(id);
    }
    let r1 = t.call("ADD", "a1", &conf).ok();
    let r2 = t.call("ADD", "a2", &conf).ok();
    let _r3 = t.call("ADD", "a3", &conf).ok();
    assert_eq!(t.leases("nx").len(), 3);
    assert_eq!(t.host_links().len(), 3);

    // DEL twice.
    t.call("DEL", "a1", &Cni::with_prev(&conf, &r1)).ok();
    t.call("DEL", "a1", &Cni::with_prev(&conf, &r1)).ok();
    t.wait_links_gone("a1");

    // The runtime removed the namespace first.
    t.sb.ok("ip netns del a2");
    t.call("DEL", "a2", &Cni::with_prev(&conf, &r2)).ok();
    t.wait_links_gone("a2");

    // containerd: empty CNI_NETNS, no prevResult (twice).
    t.call_env("DEL", "a3", "", &conf).ok();
    t.call_env("DEL", "a3", "", &conf).ok();
    t.wait_links_gone("a3");
    assert!(t.leases("nx").is_empty(), "{:?}", t.leases("nx"));
    assert!(t.host_chains().is_empty(), "{:?}", t.host_chains());
    // A DEL of something never added is fine too.
    t.call_env("DEL", "never", "", &conf).ok();
    for id in ["a1", "a3"] {
        t.sb.ok(&format!("ip netns del {id}"));
    }
}

#[test]
fn gc_keeps_the_listed_attachments_and_removes_the_others() {
    let t = Cni::new();
    let conf = t.conf("1.1.0", "nx", "10.89.0.0/24");
    let other = t.conf("1.1.0", "other", "10.89.1.0/24");
    for id in ["keep", "stale", "dead", "foreign"] {
        t.netns(id);
    }
    t.call("ADD", "keep", &conf).ok();
    t.call("ADD", "stale", &conf).ok();
    t.call("ADD", "dead", &conf).ok();
    t.call("ADD", "foreign", &other).ok();
    // "dead" lost its namespace without a DEL: only its lease (and, on
    // some kernels, its chain) remain.
    t.sb.ok("ip netns del dead");
    t.wait_links_gone("dead");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "keep", "ifname": "eth0" }]);
    let vars = [("CNI_COMMAND", "GC")];
    let a = t.run(BIN, &vars, &serde_json::to_vec(&gc).unwrap());
    assert_eq!(a.code, 0, "{}\n{}", a.out, a.stderr);
    assert!(a.out.is_null(), "GC prints nothing on success: {}", a.out);

    let links = t.host_links();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.iter().any(|(_, a)| a.ends_with(":nx:eth0:keep")));
    assert!(links
        .iter()
        .any(|(_, a)| a.ends_with(":other:eth0:foreign")));
    let leases: Vec<String> = t.leases("nx").into_iter().map(|l| l.1).collect();
    assert_eq!(leases, vec!["keep"]);
    assert_eq!(t.leases("other").len(), 1);
    // Each kept attachment: its ingress chain and its forward chain.
    let chains = t.host_chains();
    assert_eq!(chains.len(), 4, "{chains:?}");
    for (name, _) in &links {
        assert!(chains.iter().any(|c| c.ends_with(name.as_str())));
    }
    // The forward dispatch sends each kept attachment's host link to its
    // forward chain, and holds nothing of the removed ones.
    let map = t.sb.ok("nft list map inet netctx netctx-forward");
    assert_eq!(map.matches(": jump ").count(), 2, "{map}");
    for (name, _) in &links {
        assert!(map.contains(&format!("\"{name}\" : jump ")), "{map}");
    }
    let links = t.sb.ok("ip -n stale -br link");
    assert!(!links.contains("eth0"), "{links}");
    // A GC with 1.0.0 is refused with code 1.
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    t.run(BIN, &vars, &serde_json::to_vec(&old).unwrap())
        .error(1);
    // GC with nothing valid empties the network.
    gc["cni.dev/valid-attachments"] = json!([]);
    t.run(BIN, &vars, &serde_json::to_vec(&gc).unwrap()).ok();
    assert!(t.leases("nx").is_empty());
    assert_eq!(t.host_links().len(), 1);
    for id in ["keep", "stale", "foreign"] {
        t.sb.ok(&format!("ip netns del {id}"));
    }
}

#[test]
fn status_says_whether_add_can_succeed() {
    let t = Cni::new();
    let conf = serde_json::to_vec(&t.conf("1.1.0", "nx", "10.89.0.0/24")).unwrap();
    let a = t.run(BIN, &[("CNI_COMMAND", "STATUS")], &conf);
    assert_eq!(a.code, 0, "{}\n{}", a.out, a.stderr);
    let a = t.run(
        BIN,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/nonexistent")],
        &conf,
    );
    a.error(50);
    // What this build cannot do (`reach` between attachments) is
    // refused up front; egress, now the engine's, is not.
    let mut c = t.conf("1.1.0", "nx", "10.89.0.0/24");
    c["reach"] = json!(["db"]);
    t.run(
        BIN,
        &[("CNI_COMMAND", "STATUS")],
        &serde_json::to_vec(&c).unwrap(),
    )
    .error(50);
    t.sb.ok("nft add table inet netctx");
    t.run(BIN, &[("CNI_COMMAND", "STATUS")], &conf).error(51);
}

#[test]
fn chained_with_tuning_and_portmap() {
    let t = Cni::new();
    t.netns("web");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r1 = t.call("ADD", "web", &conf).ok();
    let addr = r1["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let tuning = json!({ "cniVersion": "1.0.0", "name": "nx", "type": "tuning", "mtu": 1400, "prevResult": r1 });
    let vars = |cmd: &'static str| {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "web"),
            ("CNI_NETNS", "/run/netns/web"),
            ("CNI_IFNAME", "eth0"),
        ]
    };
    let run = |plugin: &str, cmd: &'static str, c: &Value| {
        t.run(
            &format!("{PLUGINS}/{plugin}"),
            &vars(cmd),
            &serde_json::to_vec(c).unwrap(),
        )
    };
    let r2 = run("tuning", "ADD", &tuning).ok();
    assert!(t.sb.ok("ip -n web link show eth0").contains("mtu 1400"));
    let portmap = json!({ "cniVersion": "1.0.0", "name": "nx", "type": "portmap",
        "capabilities": { "portMappings": true },
        "runtimeConfig": { "portMappings": [{ "hostPort": 18080, "containerPort": 80, "protocol": "udp" }] },
        "prevResult": r2 });
    let r3 = run("portmap", "ADD", &portmap).ok();
    assert_eq!(r3["ips"], r1["ips"]);
    // netctx's CHECK with the chain's final result still passes.
    t.call("CHECK", "web", &Cni::with_prev(&conf, &r3)).ok();

    // A datagram to the host port reaches the container's server.
    let file = t.sb.dir.join("received");
    t.sb.ok(&format!(
        "ip netns exec web {} recv-udp {addr} 80 2 {} >/dev/null 2>&1 & sleep 0.3",
        probe(),
        file.display()
    ));
    t.sb.ok(&format!("{} send-udp 10.89.0.1 18080 hello", probe()));
    std::thread::sleep(Duration::from_millis(500));
    let got = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        got.starts_with("hello "),
        "nothing through portmap: {got:?}"
    );

    // DEL in reverse order, with the cached result.
    let mut p = portmap.clone();
    p["prevResult"] = r3.clone();
    run("portmap", "DEL", &p).ok();
    let mut tu = tuning.clone();
    tu["prevResult"] = r3.clone();
    run("tuning", "DEL", &tu).ok();
    t.call("DEL", "web", &Cni::with_prev(&conf, &r3)).ok();
    t.wait_links_gone("web");
    assert!(t.leases("nx").is_empty());
    t.sb.ok("ip netns del web");
}

#[test]
fn failed_add_leaves_nothing() {
    let t = Cni::new();
    t.netns("busy");
    t.sb.ok("ip -n busy link add eth0 type veth peer name other0");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let e = t.call("ADD", "busy", &conf).error(100);
    assert!(e["details"].as_str().unwrap().contains("eth0"), "{e}");
    assert!(t.leases("nx").is_empty(), "{:?}", t.leases("nx"));
    assert!(t.host_links().is_empty());
    assert!(t.host_chains().is_empty());
    // The runtime's own link is untouched.
    assert!(t.sb.ok("ip -n busy -br link").contains("eth0"));
    t.sb.ok("ip netns del busy");
}

#[test]
fn malformed_configurations_get_spec_error_objects() {
    let t = Cni::new();
    t.netns("m");
    let good = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let raw = |stdin: &[u8], code: u64| {
        let vars = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "m"),
            ("CNI_NETNS", "/run/netns/m"),
            ("CNI_IFNAME", "eth0"),
        ];
        t.run(BIN, &vars, stdin).error(code)
    };
    raw(b"{ not json", 6);
    raw(b"", 6);
    let mut c = good.clone();
    c["cniVersion"] = json!("0.2.0");
    assert_eq!(
        raw(&serde_json::to_vec(&c).unwrap(), 1)["cniVersion"],
        "1.1.0"
    );
    let cases: Vec<(&str, Value, u64)> = vec![
        ("name", json!("no spaces allowed"), 7),
        ("isolation", json!("sometimes"), 7),
        ("log", json!(["sideways"]), 7),
        ("egress", json!("nat"), 7),
        ("ipam", json!({ "ranges": [] }), 7),
        ("reach", json!(["db"]), 2),
        (
            "runtimeConfig",
            json!({ "portMappings": [{ "hostPort": 1, "containerPort": 2, "protocol": "sctp" }] }),
            2,
        ),
    ];
    for (key, value, code) in cases {
        let mut c = good.clone();
        c[key] = value;
        let e = raw(&serde_json::to_vec(&c).unwrap(), code);
        assert_eq!(e["cniVersion"], "1.0.0");
        assert!(e["details"].as_str().unwrap().contains(key), "{key}: {e}");
    }
    let mut c = good.clone();
    c["ipam"]["type"] = json!("no-such-ipam");
    raw(&serde_json::to_vec(&c).unwrap(), 4);
    // Bad environment: named in the error.
    let e = t.call_env("ADD", "-bad-id", "/run/netns/m", &good).error(4);
    assert!(e["details"].as_str().unwrap().contains("CNI_CONTAINERID"));
    let e = t.call_env("ADD", "m", "", &good).error(4);
    assert!(e["details"].as_str().unwrap().contains("CNI_NETNS"));
    let e = t.run(BIN, &[("CNI_COMMAND", "FROB")], b"{}").error(4);
    assert!(e["details"].as_str().unwrap().contains("CNI_COMMAND"));
    // Nothing was made by any of these.
    assert!(t.leases("nx").is_empty() && t.host_links().is_empty());
    t.sb.ok("ip netns del m");
}

#[test]
fn dual_stack_attachment_answers_on_both_families() {
    let t = Cni::new();
    t.netns("ds");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    conf["ipam"]["ranges"] =
        json!([[{ "subnet": "10.89.0.0/24" }], [{ "subnet": "2001:db8:89::/64" }]]);
    conf["ipam"]["routes"] = json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]);
    let r = t.call("ADD", "ds", &conf).ok();
    let ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "{r}");
    let v6 = ips
        .iter()
        .find(|a| a.contains(':'))
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let host = r["interfaces"][0]["name"].as_str().unwrap();
    assert!(t
        .sb
        .addrs(None, host)
        .contains(&"2001:db8:89::1/128".to_string()));
    assert!(t
        .sb
        .ok("ip -n ds -6 route")
        .contains("default via 2001:db8:89::1"));
    // Neighbour discovery may take a moment under emulation (the VM lane).
    let answered = (0..5).any(|_| t.sb.ping(None, v6));
    assert!(answered, "no IPv6 answer from {v6}");
    t.call("CHECK", "ds", &Cni::with_prev(&conf, &r)).ok();
    t.call("DEL", "ds", &Cni::with_prev(&conf, &r)).ok();
    assert!(t.leases("nx").is_empty());
    t.sb.ok("ip netns del ds");
}

#[test]
fn attachments_show_in_status_and_survive_down_all() {
    let t = Cni::new();
    t.netns("st");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r = t.call("ADD", "st", &conf).ok();
    let empty = t.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let s = t.sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    let line = s
        .stdout
        .lines()
        .find(|l| l.starts_with("cni"))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with("up"), "{}", s.stdout);
    assert!(s
        .stdout
        .contains("network nx, container st, interface eth0, namespace /run/netns/st"));
    // A declared context comes and goes beside it, and `down --all` is about
    // declared contexts: the runtime's attachment stays.
    let web = t.sb.write_config(
        "web.toml",
        "[context.web]\n[[context.web.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
         host_addresses = [\"10.100.0.1/24\"]\naddresses = [\"10.100.0.2/24\"]\n",
    );
    let web = web.to_str().unwrap();
    t.sb.netctx(&["-c", web, "up"]).ok();
    assert_eq!(t.host_chains().len(), 4);
    let s = t.sb.netctx(&["-c", web, "status"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    t.sb.netctx(&["-c", web, "down", "web"]).ok();
    t.sb.netctx(&["-c", cfg, "down", "--all"]).ok();
    assert_eq!(t.host_links().len(), 1);
    assert_eq!(t.host_chains().len(), 2);
    // Drift inside the namespace shows.
    t.sb.ok("ip netns exec st nft delete table inet netctx");
    let s = t.sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(s.code, 2, "{}", s.stdout);
    assert!(
        s.stdout.contains("drifted") && s.stdout.contains("table inet netctx is missing"),
        "{}",
        s.stdout
    );
    t.call("DEL", "st", &Cni::with_prev(&conf, &r)).ok();
    let s = t.sb.netctx(&["-c", cfg, "status"]);
    assert!(!s.stdout.contains("cni"), "{}", s.stdout);
    t.sb.ok("ip netns del st");
}

#[test]
fn attachments_in_logs_and_audit() {
    let t = Cni::new();
    t.netns("lg");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r = t.call("ADD", "lg", &conf).ok();
    let addr = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let ctx = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let empty = t.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let name =
        t.sb.netctx(&["-c", cfg, "status"])
            .stdout
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
    assert!(name.starts_with("cni"), "{name}");

    // logs: the input chain inside, and the host's drop of a forged source.
    t.sb.ok(&format!(
        "{BIN} -c {cfg} logs --timeout 4 >/run/logs 2>/run/logs.err & echo $! >/run/logs.pid; \
         for i in $(seq 100); do grep -q reading /run/logs.err && break; sleep 0.05; done; grep -q reading /run/logs.err"
    ));
    assert!(t.sb.ping(None, &addr));
    t.sb.ok("ip netns exec lg nft flush chain inet netctx output");
    t.sb.ok(&format!(
        "ip netns exec lg {} forge 10.89.0.77 10.89.0.1 9 x",
        probe()
    ));
    std::thread::sleep(Duration::from_millis(300));
    let out =
        t.sb.ok("kill -INT $(cat /run/logs.pid); sleep 0.2; cat /run/logs");
    let want =
        format!("{name} INPUT: IN=eth0 OUT= SRC=10.89.0.1 DST={addr} LEN=84 PROTO=ICMP TYPE=8");
    assert!(out.lines().any(|l| l.contains(&want)), "{want}\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("{name} DROP: IN={ctx}")) && l.contains("SRC=10.89.0.77")),
        "{out}"
    );

    // audit: a socket on its address is fine, one on another address is not.
    t.sb.ok(&format!(
        "ip netns exec lg {p} listen {addr} 7000 --tcp --secs 5 >/dev/null 2>&1 & \
         ip netns exec lg {p} listen 10.89.0.99 7001 --tcp --freebind --secs 5 >/dev/null 2>&1 & sleep 0.5",
        p = probe()
    ));
    let a = t.sb.netctx(&["-c", cfg, "audit", &name]);
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert!(
        a.stdout.contains(&format!("context {name}")),
        "{}",
        a.stdout
    );
    assert!(a.stdout.contains(&format!("{addr}:7000")), "{}", a.stdout);
    assert!(
        a.stdout.contains("VIOLATION") && a.stdout.contains("10.89.0.99:7001"),
        "{}",
        a.stdout
    );
    // Unnamed, audit looks for attachments itself (only where a host link
    // carries one's alias): the foreign bind is not hidden there either.
    let all = t.sb.netctx(&["-c", cfg, "audit", "--json"]);
    assert_eq!(all.code, 2, "{}\n{}", all.stdout, all.stderr);
    let doc: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    let mine = doc["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not audited: {}", all.stdout));
    assert!(
        mine["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().contains("10.89.0.99")),
        "{mine}"
    );
    t.call("DEL", "lg", &Cni::with_prev(&conf, &r)).ok();
    t.sb.ok("ip netns del lg");
}

#[test]
fn attachments_in_stats() {
    let t = Cni::new();
    t.netns("sa");
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r = t.call("ADD", "sa", &conf).ok();
    let addr = r["ips"][0]["address"].as_str().unwrap();
    let addr = addr.split('/').next().unwrap().to_string();
    // Another link in the runtime's namespace is not the attachment's.
    t.sb.ok("ip -n sa link add other type veth peer name other-peer");
    let empty = t.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let stats = || -> Value {
        let s = t.sb.netctx(&["-c", cfg, "stats", "--json"]);
        assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
        let v: Value = serde_json::from_str(&s.stdout).unwrap();
        v["contexts"][0].clone()
    };
    let before = stats();
    assert!(
        before["name"].as_str().unwrap().starts_with("cni"),
        "{before}"
    );
    t.sb.ok(&format!("ping -c 3 -i 0.2 -W 1 -q {addr}"));
    let after = stats();
    let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(d("rx_packets") >= 3 && d("tx_packets") >= 3, "{after}");
    assert!(d("logged") >= 3, "input logging: {after}");
    // A forged source: dropped inside (output), and with the rules inside
    // gone, on the host.
    let forge = format!(
        "ip netns exec sa {} forge 10.89.0.77 10.89.0.1 9 x",
        probe()
    );
    assert_eq!(t.sb.ok(&forge).trim(), "EPERM");
    let mid = stats();
    let inside = |v: &Value| v["dropped_inside"].as_u64().unwrap();
    assert!(inside(&mid) > inside(&after), "{mid}");
    t.sb.ok("ip netns exec sa nft delete table inet netctx");
    assert_eq!(t.sb.ok(&forge).trim(), "sent");
    let end = stats();
    let host = |v: &Value| v["dropped_host"].as_u64().unwrap();
    assert!(host(&end) > host(&mid), "{end}");
    t.call("DEL", "sa", &Cni::with_prev(&conf, &r)).ok();
    t.sb.ok("ip netns del sa");
}

#[test]
fn parallel_adds_and_dels_do_not_interleave() {
    let t = Cni::new();
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let ids: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    for id in &ids {
        t.netns(id);
    }
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| t.call("ADD", id, &conf).ok()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6);
    assert_eq!(t.host_links().len(), 6);
    assert_eq!(t.host_chains().len(), 12);
    for (id, r) in ids.iter().zip(&results) {
        let a = r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        assert!(t.sb.ping(None, a), "{id} {a}");
    }
    std::thread::scope(|s| {
        for (id, r) in ids.iter().zip(&results) {
            let c = Cni::with_prev(&conf, r);
            let t = &t;
            s.spawn(move || t.call("DEL", id, &c).ok());
        }
    });
    for id in &ids {
        t.wait_links_gone(id);
        t.sb.ok(&format!("ip netns del {id}"));
    }
    assert!(t.host_chains().is_empty() && t.leases("nx").is_empty());
    assert!(t.sb.ok("nft list tables").trim().is_empty());
}

#[test]
fn port_mappings_published_by_netctx_itself() {
    let t = Cni::new();
    t.netns("pub");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    conf["runtimeConfig"] = json!({ "portMappings": [
        { "hostPort": 18081, "containerPort": 80, "protocol": "udp" },
        { "HostPort": 18082, "ContainerPort": 81, "Protocol": "udp", "HostIP": "10.89.0.1" },
        { "hostPort": 18083, "containerPort": 82, "protocol": "tcp", "hostIP": "127.0.0.1" } ] });
    let a = t.call("ADD", "pub", &conf);
    assert!(a.stderr.contains("127.0.0.1:18083:82/tcp"), "{}", a.stderr);
    let r = a.ok();
    let addr = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let chains = t.host_chains();
    assert!(
        chains.contains(&format!(
            "{}_{host}_pre",
            chains[0].split('_').next().unwrap()
        )),
        "{chains:?}"
    );
    // Ingress, forward and the DNAT chain (reached from prerouting and
    // output through the NAT dispatch's maps: an element a port).
    assert_eq!(chains.len(), 3, "{chains:?}");
    // The protocol by name, or by number where there is no /etc/protocols
    // (the VM lane's image).
    let has = |text: &str, before: &str, after: &str| {
        ["udp", "17"]
            .iter()
            .any(|p| text.contains(&format!("{before} . {p} . {after}")))
    };
    let publish = t.sb.ok("nft list map inet netctx netctx-publish");
    assert!(has(&publish, "ipv4", "18081 : jump"), "{publish}");
    let publish4 = t.sb.ok("nft list map inet netctx netctx-publish4");
    assert!(has(&publish4, "10.89.0.1", "18082 : jump"), "{publish4}");
    let file = t.sb.dir.join("published");
    for port in [80, 81] {
        t.sb.ok(&format!(
            "ip netns exec pub {} recv-udp {addr} {port} 1.5 {} >/dev/null 2>&1 & sleep 0.3",
            probe(),
            file.display()
        ));
    }
    t.sb.ok(&format!("{} send-udp 10.89.0.1 18081 wildcard", probe()));
    t.sb.ok(&format!("{} send-udp 10.89.0.1 18082 explicit", probe()));
    std::thread::sleep(Duration::from_millis(500));
    let got = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(got.contains("wildcard 10.89.0.1"), "{got:?}");
    assert!(got.contains("explicit 10.89.0.1"), "{got:?}");
    let with_prev = Cni::with_prev(&conf, &r);
    t.call("CHECK", "pub", &with_prev).ok();
    t.sb.ok(&format!(
        "nft flush chain inet netctx {}_{host}_pre",
        chains[0].split('_').next().unwrap()
    ));
    t.call("CHECK", "pub", &with_prev).error(101);
    t.call("DEL", "pub", &with_prev).ok();
    assert!(t.host_chains().is_empty());
    // The NAT dispatch went with its last user.
    assert!(
        t.sb.sh("nft list map inet netctx netctx-publish")
            .status
            .code()
            != Some(0)
    );
    t.sb.ok("ip netns del pub");
}

#[test]
fn hostile_namespaces_are_refused_touching_nothing() {
    let t = Cni::new();
    let decl = "[context.decl]\n[[context.decl.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
                host_addresses = [\"10.77.0.1/24\"]\naddresses = [\"10.77.0.2/24\"]\n";
    t.sb.netctx_with(decl, &["up"]).ok();
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    t.netns("pod");
    t.call("ADD", "pod", &conf).ok();
    // What ADD could change: rules, links, addresses (not the link-local
    // ones and link states the kernel settles on its own meanwhile), leases.
    let state = || {
        (
            t.sb.ok("nft list ruleset"),
            t.sb.ok(
                "ip -o link | cut -d: -f2; ip -n decl -o link | cut -d: -f2; \
                 ip -n pod -o link | cut -d: -f2; \
                 for n in decl pod; do ip -n $n -o addr | grep -v ' fe80::' | awk '{print $2, $4}'; done",
            ),
            t.leases("nx"),
        )
    };
    let before = state();
    let add = |id: &str, netns: &str, ifname: &str| {
        let vars = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
        ];
        t.run(BIN, &vars, &serde_json::to_vec(&conf).unwrap())
    };
    for (id, netns, why) in [
        ("h", "/proc/self/ns/net", "the host's own network namespace"),
        ("d", "/run/netns/decl", "netctx context decl's"),
        ("other", "/run/netns/pod", "an attachment of container pod"),
    ] {
        let e = add(id, netns, "eth1").error(4);
        assert!(e["details"].as_str().unwrap().contains(why), "{e}");
        assert_eq!(state(), before, "ADD into {netns} changed something");
    }
    // A second interface of the same container (Multus: another network)
    // is fine.
    let mut second = t.conf("1.0.0", "nx2", "10.90.0.0/24");
    second["ipam"].as_object_mut().unwrap().remove("routes");
    let vars = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "pod"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth1"),
    ];
    t.run(BIN, &vars, &serde_json::to_vec(&second).unwrap())
        .ok();
    assert!(t.sb.ok("ip -n pod -br link").contains("eth1"));
}

#[test]
fn a_node_without_configuration_lists_its_attachments() {
    let t = Cni::new();
    // Nothing declared at the default place, whatever this machine has.
    t.sb.ok("if [ -d /etc/netctx ]; then mount -t tmpfs -o mode=0755 none /etc/netctx; fi");
    t.netns("pod");
    t.call("ADD", "pod", &t.conf("1.0.0", "nx", "10.89.0.0/24"))
        .ok();
    let (_, alias) = t.host_links().remove(0);
    let name = alias.split(':').nth(1).unwrap().to_string();
    let run = |args: &[&str]| {
        let o =
            t.sb.enter(BIN)
                .env_remove("NETCTX_CONFIG")
                .args(args)
                .output()
                .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    for args in [
        vec!["status"],
        vec!["status", &name],
        vec!["audit"],
        vec!["audit", &name],
        vec!["stats"],
        vec!["stats", &name],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {out}\n{err}");
        assert!(out.contains(&name), "{args:?} does not list {name}: {out}");
    }
    let (code, out, err) = run(&["logs", "--timeout", "0.5"]);
    assert_eq!(code, 0, "logs: {out}\n{err}");
    let (code, _, err) = run(&["status", "cni00000000"]);
    assert_eq!(code, 1);
    assert!(err.contains("no CNI attachment cni00000000"), "{err}");
    t.call("DEL", "pod", &t.conf("1.0.0", "nx", "10.89.0.0/24"))
        .ok();
}

/// What an ADD may change on the host and in namespace `ns`: the ruleset,
/// links, addresses (not link-local), routes, leases.
fn kernel_state(t: &Cni, ns: &str) -> (String, String, Vec<(String, String)>) {
    (
        t.sb.ok("nft list ruleset"),
        t.sb.ok(&format!(
            "ip -o link | cut -d: -f2; ip -n {ns} -o link | cut -d: -f2; \
             ip -o addr | grep -v ' fe80::' | awk '{{print $2, $4}}'; \
             ip -n {ns} -o addr | grep -v ' fe80::' | awk '{{print $2, $4}}'; \
             ip route; ip -6 route | grep -v '^fe80'; ip -n {ns} route; ip -n {ns} -6 route"
        )),
        t.leases("nx"),
    )
}

#[test]
fn an_add_that_fails_half_way_is_rolled_back_by_the_journal() {
    let t = Cni::new();
    t.netns("half");
    // IPv6 is off in the runtime's namespace: the veth, its host side's
    // addresses and the IPv4 address inside are made before the IPv6
    // address inside is refused; all of it must go again.
    t.sb.ok("ip netns exec half sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    // As runtimes do before calling plugins (loopback's own address stays
    // when lo goes down again).
    t.sb.ok("ip -n half link set lo up");
    let before = kernel_state(&t, "half");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    conf["ipam"]["ranges"] =
        json!([[{ "subnet": "10.89.0.0/24" }], [{ "subnet": "2001:db8:89::/64" }]]);
    conf["ipam"]["routes"] = json!([{ "dst": "0.0.0.0/0" }]);
    let a = t.call("ADD", "half", &conf);
    let e = a.error(100);
    let details = e["details"].as_str().unwrap();
    assert!(details.contains("address 2001:db8:89::"), "{e}");
    assert_eq!(
        kernel_state(&t, "half"),
        before,
        "a failed ADD left something"
    );
    // The same ADD with IPv6 on succeeds: the rollback left nothing in
    // the way.
    t.sb.ok("ip netns exec half sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0");
    let r = t.call("ADD", "half", &conf).ok();
    t.call("DEL", "half", &Cni::with_prev(&conf, &r)).ok();
    t.sb.ok("ip netns del half");
}

#[test]
fn check_names_a_deleted_host_chain_and_a_changed_address() {
    let t = Cni::new();
    t.netns("chk");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    conf["uplink"] = json!("lo");
    conf["runtimeConfig"] = json!({ "portMappings": [{ "hostPort": 18090, "containerPort": 80 }] });
    let r = t.call("ADD", "chk", &conf).ok();
    let prev = Cni::with_prev(&conf, &r);
    t.call("CHECK", "chk", &prev).ok();
    // A host chain deleted (the published port's).
    let pre = t
        .host_chains()
        .into_iter()
        .find(|c| c.ends_with("_pre"))
        .expect("a DNAT chain for the port mapping");
    // (A map element jumps to it: the element first.)
    t.sb.ok(&format!(
        "nft delete element inet netctx netctx-publish '{{ ipv4 . tcp . 18090 }}' && \
         nft delete chain inet netctx {pre}"
    ));
    let e = t.call("CHECK", "chk", &prev).error(101);
    let d = e["details"].as_str().unwrap();
    assert!(
        d.contains("host chain: replace host nftables chains") && d.contains(&pre),
        "{e}"
    );
    // And the address changed behind netctx's back.
    let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
    t.sb.ok(&format!(
        "ip -n chk addr del {addr} dev eth0 && ip -n chk addr add 10.89.0.250/24 dev eth0"
    ));
    let e = t.call("CHECK", "chk", &prev).error(101);
    let d = e["details"].as_str().unwrap();
    assert!(
        d.contains(&format!("address: add address {addr} to link eth0")),
        "{e}"
    );
    assert!(
        d.contains("address: remove address 10.89.0.250/24 from link eth0"),
        "{e}"
    );
    assert!(d.contains(&pre), "{e}");
    t.call("DEL", "chk", &prev).ok();
    assert!(t.host_chains().is_empty());
    t.sb.ok("ip netns del chk");
}

#[test]
fn an_attachment_leaves_the_runtimes_loopback_alone() {
    let t = Cni::new();
    t.netns("lo-down");
    let lo_up = || {
        t.sb.ip(Some("lo-down"), "link show lo")[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP")
    };
    assert!(!lo_up());
    let conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    let r = t.call("ADD", "lo-down", &conf).ok();
    // The runtime's lo is the runtime's: netctx neither sets it up nor
    // counts it as drift.
    assert!(!lo_up(), "ADD set the runtime's lo up");
    t.call("CHECK", "lo-down", &Cni::with_prev(&conf, &r)).ok();
    t.call("DEL", "lo-down", &Cni::with_prev(&conf, &r)).ok();
    t.sb.ok("ip netns del lo-down");
}
