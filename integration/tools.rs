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
        "./etc/iproute2/rt_protos.d/netctx.conf",
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

// ---------------------------------------------------------------- the docs

/// A Markdown text without its fenced code blocks and inline code spans,
/// line by line (what links and headings are read from).
fn prose(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for line in md.lines() {
        let t = line.trim_start();
        let mark = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, mark) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push(without_code_spans(line)),
            _ => {}
        }
    }
    out
}

/// `line` with every inline code span (a run of backticks up to the same
/// run) left out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i]);
        let run = rest[i..].len() - rest[i..].trim_start_matches('`').len();
        let after = &rest[i + run..];
        match after.find(&"`".repeat(run)) {
            Some(j) => rest = after[j + run..].trim_start_matches('`'),
            None => return out + &rest[i..],
        }
    }
    out + rest
}

/// The anchors of a Markdown file's headings, as GitHub makes them:
/// lowercase, letters, digits, `-` and `_` kept, spaces to `-`, the rest
/// dropped; a repeated anchor gets `-1`, `-2`, ….
fn anchors(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut fence = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        let text = line.trim_start_matches('#');
        if fence || !line.starts_with('#') || !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.get(&slug).copied().unwrap_or(0);
        seen.insert(slug.clone(), n + 1);
        out.push(if n == 0 { slug } else { format!("{slug}-{n}") });
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown text.
fn link_targets(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(md) {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let target = &rest[i + 2..];
            let end = target.find(')').unwrap_or(target.len());
            let t = target[..end].split_whitespace().next().unwrap_or("");
            out.push(t.trim_matches(|c| c == '<' || c == '>').to_string());
            rest = &target[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files.push(root.join("bench/RESULTS.md"));
    let (mut checked, mut broken) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                broken.push(format!("{shown}: {target}: no such file"));
                continue;
            }
            let md = dest.extension().is_some_and(|x| x == "md");
            if let Some(a) = anchor.filter(|_| md) {
                let heads = anchors(&std::fs::read_to_string(&dest).unwrap());
                if !heads.iter().any(|h| h == a) {
                    broken.push(format!("{shown}: {target}: no heading #{a}"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// docs/commands.md's sections: each `## ` heading with the text under it.
fn command_sections(md: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut fence = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with("## ") {
            out.push(String::new());
        }
        if let Some(s) = out.last_mut() {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// Whether a section's heading names the command `path` (`netctx stats`):
/// the words followed by anything but a further letter of a name.
fn names_command(section: &str, path: &str) -> bool {
    let heading = section.lines().next().unwrap_or("");
    heading.match_indices(path).any(|(i, _)| {
        !heading[i + path.len()..].starts_with(|c: char| c.is_ascii_lowercase() || c == '-')
    })
}

/// Every visible subcommand under `cmd` (whose command line is `path`) has
/// a section in docs/commands.md, and each of its own long options is in
/// that section; clap's `help` subcommand is not walked into. Returns how
/// many subcommands it looked at.
fn undocumented(
    cmd: &clap::Command,
    path: &str,
    sections: &[String],
    missing: &mut Vec<String>,
) -> usize {
    let mut walked = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        walked += 1;
        let path = format!("{path} {}", sub.get_name());
        let Some(section) = sections.iter().find(|s| names_command(s, &path)) else {
            missing.push(format!("a section `## {path} …`"));
            continue;
        };
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            // Global options (and clap's own --help) belong to the
            // "Global options" section, checked there.
            if arg.is_hide_set() || arg.is_global_set() || long == "help" {
                continue;
            }
            if !section.contains(&format!("--{long}")) {
                missing.push(format!("{path} --{long}"));
            }
        }
        if sub.get_name() != "help" {
            walked += undocumented(sub, &path, sections, missing);
        }
    }
    walked
}

#[test]
fn every_subcommand_and_long_option_is_in_docs_commands_md() {
    use clap::CommandFactory;
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md");
    let md = std::fs::read_to_string(file).unwrap();
    let sections = command_sections(&md);
    let mut cli = netctx::Cli::command();
    cli.build();
    let mut missing = Vec::new();
    let global = sections
        .iter()
        .find(|s| s.starts_with("## Global options"))
        .expect("docs/commands.md has a section `## Global options`");
    for arg in cli.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(long) = arg.get_long() {
            if !global.contains(&format!("--{long}")) {
                missing.push(format!("global option --{long}"));
            }
        }
    }
    let walked = undocumented(&cli, "netctx", &sections, &mut missing);
    assert!(walked > 15, "only {walked} subcommands walked");
    assert!(
        missing.is_empty(),
        "docs/commands.md lacks (every subcommand of `netctx --help` needs a \
         section, every long option a mention in it):\n{}",
        missing.join("\n")
    );
}
