//! A CNI attachment whose `reach` names a domain (docs/cni.md, docs/policy.md
//! "Domain names"): the ADD result names netctx's resolver as the
//! container's name server, `watch` serves it at the attachment's host
//! side, and only the addresses it answered for a covered name open. The
//! node is `uplink.rs`'s (LAN namespace `lan` behind `up0`), the upstream a
//! real dnsmasq in the LAN, as in `policy_dns.rs`; the plugin is driven
//! with `CNI_COMMAND` as in `cni.rs`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::cni::Cni;
use crate::policy::settled;
use crate::policy_dns::{lan_serve, watch};
use crate::sandbox::{probe, Sandbox, BIN};
use crate::uplink::{run, seen, NET};

/// `netprobe ARGS` in the pod's namespace with `resolv` as its
/// /etc/resolv.conf (bound in a mount namespace of its own, as the
/// runtime gives the container the file it wrote).
fn in_pod(sb: &Sandbox, resolv: &std::path::Path, args: &str) -> String {
    let o = sb.sh(&format!(
        "unshare -m --propagation private sh -c 'mount --bind {} /etc/resolv.conf && \
         exec ip netns exec pod {} {args}'",
        resolv.display(),
        probe()
    ));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_cni_attachment_with_a_domain_gets_the_resolver_and_only_the_answered_addresses() {
    let t = Cni::new();
    let sb = &t.sb;
    sb.ok(NET);
    sb.ok("ip -n lan addr add 203.0.113.50/24 dev lan0 && ip -n lan addr add 203.0.113.51/24 dev lan0");
    let dnsmasq = sb.ok(
        "ip netns exec lan dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= \
         --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=203.0.113.2 \
         --address=/allowed.example/203.0.113.50 --address=/refused.example/203.0.113.51 \
         --local-ttl=2 >/dev/null 2>&1 & echo $!",
    );
    let upstream = sb.dir.join("upstream.conf");
    std::fs::write(&upstream, "nameserver 203.0.113.2\n").unwrap();
    let allowed = lan_serve(sb, "203.0.113.50", 80, 120);
    lan_serve(sb, "203.0.113.50", 81, 120);
    let refused = lan_serve(sb, "203.0.113.51", 80, 120);

    t.netns("pod");
    let mut conf = t.conf("1.0.0", "nx", "10.89.0.0/24");
    conf["uplink"] = json!("up0");
    conf["egress"] = json!("nat");
    conf["reach"] = json!(["allowed.example:80"]);
    // No input logging: the DENY line is the one `logs` waits for.
    conf["log"] = json!([]);
    let r = t.call("ADD", "pod", &conf).ok();
    // The runtime writes the result's name servers into resolv.conf.
    assert_eq!(r["dns"]["nameservers"], json!(["10.89.0.1"]), "{r}");
    let resolv = sb.dir.join("pod-resolv.conf");
    let servers: Vec<String> = r["dns"]["nameservers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("nameserver {}\n", s.as_str().unwrap()))
        .collect();
    std::fs::write(&resolv, servers.concat()).unwrap();
    settled(sb);
    let sets = sb.ok("nft list sets inet");
    let name = sets
        .split_whitespace()
        .find_map(|w| w.strip_suffix("_dns4"))
        .unwrap_or_else(|| panic!("no timed set: {sets}"))
        .to_string();
    assert!(name.starts_with("cni"), "{name}");

    // The attack first: the address known without asking.
    assert_ne!(run(sb, Some("pod"), "connect 203.0.113.50 80"), "connected");

    // A node that declares no context: no watch runs, and status says the
    // attachment's names resolve to nothing (a detail, not drift).
    let cfg = sb.write_config("netctx.toml", "[defaults]\nuplink = \"up0\"\n");
    let status = |args: &[&str]| {
        let mut all = vec!["-c", cfg.to_str().unwrap(), "status"];
        all.extend_from_slice(args);
        let st = sb.netctx(&all);
        assert_eq!(st.code, 0, "{args:?}: {}{}", st.stdout, st.stderr);
        st.stdout
    };
    for args in [&[][..], &[name.as_str()][..]] {
        let st = status(args);
        assert!(
            st.contains("no `netctx watch` serves its resolver at 10.89.0.1 port 53"),
            "{args:?}: {st}"
        );
    }
    // Watch serves the attachment.
    let (mut w, _) = watch(sb, &upstream);
    let mut logs = sb
        .enter(BIN)
        .args(["logs", &name, "--count", "1", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Asked until watch serves it (it looks at the records every scan)
    // and `logs` has seen the DENY line.
    let until = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let r = in_pod(sb, &resolv, "resolve refused.example");
        assert!(r.starts_with("failed"), "{r}");
        if logs.try_wait().unwrap().is_some() || std::time::Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = logs.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{name} DENY: NAME=refused.example SRC=10.89.0.")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(run(sb, Some("pod"), "connect 203.0.113.51 80"), "connected");
    // Served now: status says nothing of the resolver.
    for args in [&[][..], &[name.as_str()][..]] {
        let st = status(args);
        assert!(!st.contains("resolver"), "{args:?}: {st}");
    }

    // The covered name: answered through the resolver, its address open
    // on port 80 only.
    assert_eq!(
        in_pod(sb, &resolv, "resolve allowed.example"),
        "203.0.113.50"
    );
    let set = sb.ok(&format!("nft list set inet netctx {name}_dns4"));
    assert!(set.contains("203.0.113.50 timeout 30s"), "{set}");
    assert_eq!(run(sb, Some("pod"), "connect 203.0.113.50 80"), "connected");
    assert!(!seen(&allowed).is_empty());
    assert_ne!(run(sb, Some("pod"), "connect 203.0.113.50 81"), "connected");
    assert_ne!(run(sb, Some("pod"), "connect 203.0.113.51 80"), "connected");
    assert_eq!(seen(&refused), "");

    // The pod made anew (DEL, ADD of the same container): its veth comes
    // back under the same name as another device, and the resolver must
    // listen on the new one.
    t.call("DEL", "pod", &conf).ok();
    t.call("ADD", "pod", &conf).ok();
    assert!(sb
        .ok("nft list sets inet")
        .contains(&format!("{name}_dns4")));
    let until = std::time::Instant::now() + Duration::from_secs(25);
    let again = loop {
        let r = in_pod(sb, &resolv, "resolve allowed.example");
        if r == "203.0.113.50" || std::time::Instant::now() > until {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(again, "203.0.113.50", "the resolver of the pod made anew");

    // SIGTERM to the watch and dnsmasq we started, by pid.
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(w.id() as i32, libc::SIGTERM);
    }
    w.wait().unwrap();
    sb.ok(&format!("kill {}", dnsmasq.trim()));
    t.call("DEL", "pod", &conf).ok();
    assert!(!sb.ok("nft list sets").contains("_dns4"));
    assert_eq!(
        sb.ok("ls /run/netctx/resolver 2>/dev/null; true").trim(),
        ""
    );
}
