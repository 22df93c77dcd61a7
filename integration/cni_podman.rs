//! A real CNI client: Debian's Podman 4.3 on its CNI backend, configured by
//! `integration/podman.sh` privately inside the sandbox, runs two busybox
//! containers on a netctx network. Needs podman, runc and busybox-static
//! (`.ci/setup`); not in the VM lane (its initramfs has no Podman).

use std::time::Duration;

use crate::sandbox::{probe, Sandbox, BIN};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/podman.sh");

struct Podman {
    sb: Sandbox,
    dir: String,
}

impl Podman {
    fn new() -> Podman {
        let sb = Sandbox::new();
        for tool in ["podman", "runc", "busybox"] {
            assert!(
                sb.sh(&format!("command -v {tool}")).status.success(),
                "the Podman test needs {tool} (.ci/setup installs podman, runc, busybox-static)"
            );
        }
        sb.ok("ip link set lo up");
        let dir = sb.dir.join("podman").to_string_lossy().into_owned();
        sb.ok(&format!("sh {SCRIPT} setup {dir} {BIN} 10.89.0.0/24"));
        Podman { sb, dir }
    }

    fn podman(&self, args: &str) -> String {
        self.sb.ok(&format!("{}/podman {args}", self.dir))
    }

    fn ip_of(&self, name: &str) -> String {
        self.podman(&format!(
            "inspect {name} --format '{{{{.NetworkSettings.Networks.nx.IPAddress}}}}'"
        ))
        .trim()
        .to_string()
    }

    fn netns_of(&self, name: &str) -> String {
        self.podman(&format!(
            "inspect {name} --format '{{{{.NetworkSettings.SandboxKey}}}}'"
        ))
        .trim()
        .to_string()
    }

    fn fetch(&self, url: &str) -> String {
        let o = self.sb.sh(&format!("timeout 5 busybox wget -qO- {url}"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.sb.sh(&format!("sh {SCRIPT} cleanup {}", self.dir));
    }
}

#[test]
fn podman_runs_two_isolated_containers_on_a_netctx_network() {
    let p = Podman::new();
    p.podman("run -d --name a localhost/bb httpd -f -p 80 -h /");
    p.podman("run -d --name b -p 18080:80 localhost/bb httpd -f -p 80 -h /");
    let (ia, ib) = (p.ip_of("a"), p.ip_of("b"));
    assert!(
        ia.starts_with("10.89.0.") && ib.starts_with("10.89.0.") && ia != ib,
        "{ia} {ib}"
    );
    let (na, nb) = (p.netns_of("a"), p.netns_of("b"));
    for (ns, ip) in [(&na, &ia), (&nb, &ib)] {
        let addrs =
            p.sb.ok(&format!("nsenter --net={ns} ip -br addr show eth0"));
        assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    }

    // The host reaches both servers, and b through the port netctx
    // published for it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(p
        .fetch(&format!("http://{ia}/etc/passwd"))
        .contains("root:"));
    assert!(p
        .fetch(&format!("http://{ib}/etc/passwd"))
        .contains("root:"));
    assert!(p
        .fetch("http://10.89.0.1:18080/etc/passwd")
        .contains("root:"));

    // netctx sees them: status, logs of their input chains, audit of their
    // sockets (httpd on the wildcard address: listed, no violation).
    let empty = p.sb.write_config("empty.toml", "");
    let cfg = empty.to_str().unwrap();
    let status = p.sb.netctx(&["-c", cfg, "status"]);
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    assert_eq!(
        status.stdout.matches("CNI attachment: network nx").count(),
        2,
        "{}",
        status.stdout
    );
    p.sb.ok(&format!(
        "{BIN} -c {cfg} logs --timeout 5 >/run/logs 2>/run/logs.err & echo $! >/run/logs.pid; \
         for i in $(seq 100); do grep -q reading /run/logs.err && break; sleep 0.05; done; grep -q reading /run/logs.err"
    ));
    assert!(p
        .fetch(&format!("http://{ia}/etc/passwd"))
        .contains("root:"));
    std::thread::sleep(Duration::from_millis(300));
    let logs =
        p.sb.ok("kill -INT $(cat /run/logs.pid); sleep 0.2; cat /run/logs");
    assert!(
        logs.lines().any(
            |l| l.contains(&format!("INPUT: IN=eth0 OUT= SRC=10.89.0.1 DST={ia}"))
                && l.contains("PROTO=TCP")
        ),
        "{logs}"
    );
    let audit = p.sb.netctx(&["-c", cfg, "audit"]);
    assert_eq!(audit.code, 0, "{}\n{}", audit.stdout, audit.stderr);
    assert_eq!(audit.stdout.matches("httpd").count(), 2, "{}", audit.stdout);

    // Neither can bind the other's address nor send with it as source.
    let bind =
        p.sb.ok(&format!("nsenter --net={na} {} bind {ib} 81", probe()));
    assert_eq!(bind.trim(), "EADDRNOTAVAIL");
    let file = p.sb.dir.join("udp");
    let file = file.display();
    p.sb.ok(&format!(
        "{} recv-udp 0.0.0.0 9999 1.5 {file} >/dev/null 2>&1 & sleep 0.3",
        probe()
    ));
    p.sb.ok(&format!(
        "nsenter --net={na} {} forge {ib} 10.89.0.1 9999 forged",
        probe()
    ));
    p.sb.ok(&format!(
        "nsenter --net={nb} {} forge {ia} 10.89.0.1 9999 forged",
        probe()
    ));
    p.sb.ok(&format!(
        "nsenter --net={na} {} send-udp 10.89.0.1 9999 genuine",
        probe()
    ));
    std::thread::sleep(Duration::from_millis(2200));
    let got = p.sb.ok(&format!("cat {file} 2>/dev/null || true"));
    assert!(got.contains(&format!("genuine {ia}")), "{got:?}");
    assert!(!got.contains("forged"), "{got:?}");

    // podman rm -f: no host link, chain or lease is left.
    p.podman("rm -f -t 0 a b");
    let links = p.sb.ok("ip -d -br link");
    assert!(!links.contains("nxc"), "{links}");
    assert!(!p.sb.sh("nft list table inet netctx").status.success());
    let leases = p.sb.ok(&format!("ls {}/cni/nx", p.dir));
    assert!(!leases.contains("10.89.0."), "{leases}");
}
