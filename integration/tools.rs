//! Operations (issue 17) checked with tools of the host: the systemd units
//! by `systemd-analyze verify`, the bash completion script sourced by bash,
//! the man page rendered by groff, `stats --prometheus` parsed by promtool,
//! and progress on a terminal (script(1) gives netctx one). A test target of
//! its own: `integration/vm/run` runs the `integration` binary in a VM whose
//! minimal userland has none of these tools, and none of these checks
//! depends on the kernel. Tests that bring contexts up use the same sandbox
//! as the integration tests (and need root).

#[allow(dead_code)]
#[path = "sandbox.rs"]
mod sandbox;

use std::process::Command;

use sandbox::{Sandbox, BIN};

const ONE: &str = r#"
[context.a]
log = ["input"]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.51.0.1/24"]
addresses = ["10.51.0.2/24"]
"#;

#[test]
fn prometheus_output_passes_promtool() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("s.toml", ONE);
    let cfg = cfg.to_str().unwrap();
    sb.netctx(&["-c", cfg, "up"]).ok();
    sb.ok("ping -c 3 -i 0.2 -W 1 -q 10.51.0.2");
    let r = sb.netctx(&["-c", cfg, "stats", "--prometheus"]);
    r.ok();
    assert!(
        r.stdout.contains("netctx_rx_packets_total{context=\"a\"}"),
        "{}",
        r.stdout
    );
    let file = sb.dir.join("netctx.prom");
    std::fs::write(&file, &r.stdout).unwrap();
    let o = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (Debian package prometheus, see .ci/setup) must be installed");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        r.stdout
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    // verify checks that ExecStart= binaries exist: the units name
    // /usr/local/bin/netctx (where docs/operations.md installs it); the copies
    // checked here name the binary under test instead, nothing else changed.
    let dir = std::env::temp_dir().join(format!("netctx-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/systemd");
    let mut paths = Vec::new();
    for unit in ["netctx.service", "netctx-watch.service"] {
        let text = std::fs::read_to_string(format!("{src}/{unit}")).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/netctx "), "{unit}");
        let p = dir.join(unit);
        std::fs::write(&p, text.replace("/usr/local/bin/netctx", BIN)).unwrap();
        paths.push(p);
    }
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze (Debian package systemd, see .ci/setup) must be installed");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bash_sources_the_completion_script() {
    let script = format!("source <({BIN} completions bash) && complete -p netctx");
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("complete") && out.trim_end().ends_with("netctx"),
        "{out}"
    );
    // The other shells' scripts name the commands too.
    for (shell, marker) in [("zsh", "#compdef netctx"), ("fish", "complete -c netctx")] {
        let o = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && s.contains(marker), "{shell}: {s}");
        assert!(s.contains("watch") && s.contains("prometheus"), "{shell}");
    }
}

#[test]
fn the_man_page_renders_without_warnings() {
    let page = Command::new(BIN).arg("man").output().unwrap();
    assert!(page.status.success());
    let text = String::from_utf8(page.stdout.clone()).unwrap();
    for cmd in ["up", "down", "watch", "stats", "completions", "man"] {
        assert!(text.contains(&format!(".SS \"netctx {cmd}\"")), "{cmd}");
    }
    let mut groff = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff (Debian package groff-base, see .ci/setup) must be installed");
    use std::io::Write;
    groff.stdin.take().unwrap().write_all(&page.stdout).unwrap();
    let o = groff.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn long_work_shows_progress_on_a_terminal_only() {
    let sb = Sandbox::new();
    let mut three = String::new();
    for i in 1..=3 {
        three.push_str(&format!(
            "[context.p{i}]\n[[context.p{i}.link]]\nkind = \"veth\"\nname = \"eth0\"\naddresses = [\"10.6{i}.0.2/24\"]\n"
        ));
    }
    let cfg = sb.write_config("p.toml", &three);
    let cfg = cfg.to_str().unwrap();
    // script(1) gives netctx a terminal; what it wrote comes back on stdout.
    let on_tty = |cmd: &str| sb.ok(&format!("script -qec '{cmd}' /dev/null"));
    let up = on_tty(&format!("{BIN} -c {cfg} up"));
    assert!(up.contains("\rup: 3/3"), "{up:?}");
    let watch = on_tty(&format!("timeout -s TERM 3 {BIN} -c {cfg} watch; true"));
    assert!(watch.contains("\rwatch: up: 3/3"), "{watch:?}");
    let down = on_tty(&format!("{BIN} down --all"));
    assert!(down.contains("\rdown: 3/3"), "{down:?}");
    // Not on a pipe.
    let piped = sb.netctx(&["-c", cfg, "up"]);
    assert!(!piped.stderr.contains("up: "), "{}", piped.stderr);
}

#[test]
fn the_debian_package_holds_the_binary_units_man_page_and_completions() {
    let root = env!("CARGO_MANIFEST_DIR");
    let o = Command::new(format!("{root}/dist/deb/build"))
        .output()
        .expect("dist/deb/build");
    assert!(
        o.status.success(),
        "dist/deb/build: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let deb = std::path::Path::new(root).join(out.lines().last().unwrap().trim());
    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let d = deb.to_str().unwrap();
    let list = run(&["dpkg-deb", "-c", d]);
    for want in [
        "./usr/bin/netctx",
        "./lib/systemd/system/netctx.service",
        "./lib/systemd/system/netctx-watch.service",
        "./usr/share/man/man1/netctx.1.gz",
        "./usr/share/bash-completion/completions/netctx",
        "./usr/share/zsh/vendor-completions/_netctx",
        "./usr/share/fish/vendor_completions.d/netctx.fish",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(want)),
            "no {want} in:\n{list}"
        );
    }
    let dir = std::env::temp_dir().join(format!("netctx-deb-{}", std::process::id()));
    let x = dir.to_str().unwrap();
    run(&["dpkg-deb", "-x", d, x]);
    run(&["dpkg-deb", "-e", d, &format!("{x}/DEBIAN")]);
    let units = format!("{x}/lib/systemd/system");
    for u in ["netctx.service", "netctx-watch.service"] {
        let text = std::fs::read_to_string(format!("{units}/{u}")).unwrap();
        assert!(text.contains("ExecStart=/usr/bin/netctx "), "{u}:\n{text}");
        assert!(!text.contains("/usr/local"), "{u}:\n{text}");
    }
    // Verify against the unpacked package as the root (so /usr/bin/netctx
    // is the packaged binary), with the host's own units beside it
    // (sysinit.target and the others the defaults name).
    run(&[
        "sh",
        "-c",
        &format!("mkdir -p {x}/usr/lib/systemd/system && cp -rn /usr/lib/systemd/system/. {x}/usr/lib/systemd/system/"),
    ]);
    let o = Command::new("systemd-analyze")
        .args(["verify", &format!("--root={x}")])
        .arg(format!("{units}/netctx.service"))
        .arg(format!("{units}/netctx-watch.service"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify of the packaged units: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let man = run(&[
        "sh",
        "-c",
        &format!("zcat {x}/usr/share/man/man1/netctx.1.gz"),
    ]);
    assert!(man.contains("shift"), "the man page lacks shift");
    let bash = std::fs::read_to_string(format!("{x}/usr/share/bash-completion/completions/netctx"))
        .unwrap();
    assert!(bash.contains("shift"), "the bash completion lacks shift");
    let postinst = std::fs::read_to_string(format!("{x}/DEBIAN/postinst")).unwrap();
    assert!(
        postinst.contains("mkdir -p /etc/netctx/contexts.d"),
        "{postinst}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
