//! Attachments named after their pods: `K8S_POD_NAMESPACE` and
//! `K8S_POD_NAME` in `CNI_ARGS` (as containerd's CRI passes them) go into
//! the attachment's alias, so every later netctx process (nothing is kept
//! in memory: each command below is a fresh one reading the kernel) lists
//! `NAMESPACE/POD` beside `cniXXXXXXXX` and takes either as a name. Hostile
//! names never reach an alias or a terminal.

use std::time::Duration;

use serde_json::Value;

use crate::cni::Cni;
use crate::sandbox::BIN;

fn args(ns: &str, pod: &str, id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={id}"
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn pod_names_through_add_check_del_and_fresh_processes() {
    let t = Cni::new();
    let conf = t.conf("1.1.0", "nx", "10.89.0.0/24");
    let (a1, a2) = (args("default", "web-0", "p1"), args("shop", "db-0", "p2"));
    t.netns("p1");
    t.netns("p2");
    let r1 = t.call_args("ADD", "p1", &a1, &conf).ok();
    let r2 = t.call_args("ADD", "p2", &a2, &conf).ok();
    let addr = r1["ips"][0]["address"].as_str().unwrap();
    let addr = addr.split('/').next().unwrap().to_string();
    // In the kernel: the alias of both veth ends.
    let links = t.host_links();
    assert!(
        links.iter().any(|(_, a)| a.ends_with(":p1:default/web-0")),
        "{links:?}"
    );
    let inside = t.sb.ok("ip -n p1 -d link show eth0");
    assert!(inside.contains(":p1:default/web-0"), "{inside}");
    t.call_args("CHECK", "p1", &a1, &Cni::with_prev(&conf, &r1))
        .ok();

    let empty = t.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let s = t.sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    let row = |pod: &str| {
        s.stdout
            .lines()
            .find(|l| l.starts_with("cni") && l.ends_with(&format!("pod {pod}")))
            .unwrap_or_else(|| panic!("no row of {pod}: {}", s.stdout))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (web, db) = (row("default/web-0"), row("shop/db-0"));
    assert_ne!(web, db);

    // status by pod name, and --json with both fields.
    let s =
        t.sb.netctx(&["-c", cfg, "status", "--json", "default/web-0"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    let doc = json(&s.stdout);
    let rows = doc["contexts"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{doc}");
    assert_eq!(rows[0]["name"], web.as_str());
    assert_eq!(rows[0]["pod"], "default/web-0");
    assert_eq!(rows[0]["state"], "up");
    let s = t.sb.netctx(&["-c", cfg, "status", &db]);
    assert!(s.stdout.contains("pod shop/db-0"), "{}", s.stdout);
    let s = t.sb.netctx(&["-c", cfg, "status", "shop/nope"]);
    assert_eq!(s.code, 1, "{}", s.stdout);
    assert!(
        s.stderr.contains("no CNI attachment shop/nope"),
        "{}",
        s.stderr
    );

    // audit and stats by pod name.
    let a = t.sb.netctx(&["-c", cfg, "audit", "shop/db-0"]);
    assert_eq!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    assert!(
        a.stdout.contains(&format!("context {db} (pod shop/db-0)")),
        "{}",
        a.stdout
    );
    assert!(!a.stdout.contains(&web), "{}", a.stdout);
    let a =
        t.sb.netctx(&["-c", cfg, "audit", "--json", "default/web-0"]);
    let doc = json(&a.stdout);
    assert_eq!(doc["contexts"][0]["name"], web.as_str());
    assert_eq!(doc["contexts"][0]["pod"], "default/web-0");
    assert_eq!(doc["contexts"].as_array().unwrap().len(), 1);
    let st =
        t.sb.netctx(&["-c", cfg, "stats", "--json", "default/web-0"]);
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    let doc = json(&st.stdout);
    assert_eq!(doc["contexts"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["contexts"][0]["name"], web.as_str());
    assert_eq!(doc["contexts"][0]["pod"], "default/web-0");
    let st = t.sb.netctx(&["-c", cfg, "stats", &db]);
    assert!(
        st.stdout.lines().next().unwrap().ends_with(" POD"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("shop/db-0"), "{}", st.stdout);
    let st = t.sb.netctx(&["-c", cfg, "stats", "shop/nope"]);
    assert_eq!(st.code, 1, "{}", st.stdout);

    // logs by pod name: the input chain inside, labelled with the pod.
    t.sb.ok(&format!(
        "{BIN} -c {cfg} logs default/web-0 --json --timeout 4 >/run/logs 2>/run/logs.err & echo $! >/run/logs.pid; \
         for i in $(seq 100); do grep -q reading /run/logs.err && break; sleep 0.05; done; grep -q reading /run/logs.err"
    ));
    assert!(t.sb.ping(None, &addr));
    std::thread::sleep(Duration::from_millis(300));
    let out =
        t.sb.ok("kill -INT $(cat /run/logs.pid); sleep 0.2; cat /run/logs");
    let line = out
        .lines()
        .map(json)
        .find(|l| l["chain"] == "INPUT")
        .unwrap_or_else(|| panic!("no input line: {out}"));
    assert_eq!(line["context"], web.as_str());
    assert_eq!(line["pod"], "default/web-0");
    assert!(
        line["line"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{web} (default/web-0) INPUT: ")),
        "{line}"
    );

    // DEL: gone for every later process.
    t.call_args("DEL", "p1", &a1, &Cni::with_prev(&conf, &r1))
        .ok();
    let s = t.sb.netctx(&["-c", cfg, "status", "default/web-0"]);
    assert_eq!(s.code, 1, "{}", s.stdout);
    let s = t.sb.netctx(&["-c", cfg, "status", "shop/db-0"]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    t.call_args("DEL", "p2", &a2, &Cni::with_prev(&conf, &r2))
        .ok();
    assert!(t.host_links().is_empty());
    assert!(t.leases("nx").is_empty());
    t.sb.ok("ip netns del p1; ip netns del p2");
}

#[test]
fn hostile_pod_names_reach_no_alias_and_no_terminal() {
    let t = Cni::new();
    let conf = t.conf("1.1.0", "nx", "10.89.0.0/24");
    t.netns("h1");
    for bad in [
        args("default", "web\x1b[2J\x1b]0 pwned\x07", "h1"),
        args("default", "web\n0 violation(s)", "h1"),
        args("de:fault", "web", "h1"),
        args("default", &"a".repeat(254), "h1"),
        args(&"n".repeat(64), "web", "h1"),
    ] {
        let a = t.call_args("ADD", "h1", &bad, &conf);
        let stderr = a.stderr.clone();
        let out = a.error(4);
        let msg = format!("{out}{stderr}");
        assert!(msg.contains("K8S_POD_"), "{msg}");
        assert!(
            !msg.contains('\x1b') && !stderr.contains("\n0 violation"),
            "{msg}"
        );
        assert!(msg.len() < 2000, "an overlong name is echoed whole: {msg}");
        // Touching nothing: no link, no lease, no chain.
        assert!(t.host_links().is_empty());
        assert!(t.leases("nx").is_empty());
        assert!(t.host_chains().is_empty());
    }

    // The longest names Kubernetes allows: the alias keeps the container
    // id whole and cuts the pod name, marked, within the kernel's limit.
    let id = "f".repeat(64);
    t.netns(&id);
    let (ns, pod) = ("n".repeat(63), "p".repeat(253));
    let long = args(&ns, &pod, &id);
    let r = t.call_args("ADD", &id, &long, &conf).ok();
    let alias = t.host_links().remove(0).1;
    assert_eq!(alias.len(), 254, "{alias}");
    assert!(
        alias.contains(&format!(":{id}:{ns}/ppp")) && alias.ends_with('~'),
        "{alias}"
    );
    let empty = t.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let s = t.sb.netctx(&["-c", cfg, "status", "--json"]);
    let doc = json(&s.stdout);
    let shown = doc["contexts"][0]["pod"].as_str().unwrap().to_string();
    assert!(
        shown.starts_with(&format!("{ns}/ppp")) && shown.ends_with('~'),
        "{doc}"
    );
    // And by that (cut) name it is found.
    assert_eq!(t.sb.netctx(&["-c", cfg, "status", &shown]).code, 0);

    // A forged alias on the host link (root's doing, or a bug elsewhere):
    // its pod field is not shown, raw or otherwise.
    let host = t.host_links().remove(0).0;
    let forged = alias.replace(&format!("{ns}/"), "x/\x1b[2J");
    let forged = &forged[..forged.len().min(250)];
    let set =
        t.sb.enter("ip")
            .args(["link", "set", &host, "alias", forged])
            .status()
            .unwrap();
    assert!(set.success());
    let s = t.sb.netctx(&["-c", cfg, "status"]);
    assert!(
        !s.stdout.contains('\x1b') && !s.stderr.contains('\x1b'),
        "{:?}",
        s.stdout
    );
    assert!(!s.stdout.contains("pod x/"), "{}", s.stdout);
    t.call_args("DEL", &id, &long, &Cni::with_prev(&conf, &r))
        .ok();
    assert!(t.host_links().is_empty());
    t.sb.ok(&format!("ip netns del h1; ip netns del {id}"));
}
