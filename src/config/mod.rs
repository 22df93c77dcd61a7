//! Loading the configuration: finding the files (`-c`, `$NETCTX_CONFIG`,
//! `/etc/netctx/contexts.d/`), parsing each, validating the whole, and
//! reporting every problem as `FILE:LINE:COL: message`. Never touches the
//! kernel.

mod addr;
#[cfg(test)]
mod fuzz;
mod ids;
mod names;
mod parse;
mod policy;
mod ports;
mod uplink;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use names::{check_context_name, check_ifname};
pub use ports::{parse_entry, EntryKind};

use crate::model::Config;

pub const DEFAULT_DIR: &str = "/etc/netctx/contexts.d/";

/// A position in a configuration file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

/// Where each line of a text starts, to turn byte offsets into line and
/// column without rescanning the text (a large file has many locations).
pub struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    pub fn loc(&self, file: &Path, offset: usize) -> Loc {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        Loc {
            file: file.to_path_buf(),
            line,
            col: self.text[start..offset].chars().count() + 1,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One located problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration directory {0} holds no *.toml file")]
    Empty(PathBuf),
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diag>),
}

/// Where the configuration comes from: the flag, else `$NETCTX_CONFIG`
/// (clap fills that in), else the default directory.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| PathBuf::from(DEFAULT_DIR), Path::to_path_buf)
}

/// The files a path names: the file itself, or the `*.toml` files of a
/// directory in lexical order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let p = entry.map_err(read_err)?.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ConfigError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// Load and validate the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut sources = Vec::new();
    for f in files(path)? {
        let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::Read {
            path: f.clone(),
            source,
        })?;
        sources.push((f, text));
    }
    load_sources(&sources)
}

/// Validate already-read sources `(file name, text)`; pure.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<Config, ConfigError> {
    let mut diags = Vec::new();
    let decls: Vec<_> = sources
        .iter()
        .map(|(f, text)| parse::parse_file(f, text, &mut diags))
        .collect();
    let config = validate::validate(decls, &mut diags);
    if diags.is_empty() {
        Ok(config)
    } else {
        diags.sort_by(|a, b| a.loc.cmp(&b.loc));
        diags.dedup();
        Err(ConfigError::Invalid(diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hook, Isolation, LinkKind};

    fn load_str(files: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let sources: Vec<_> = files
            .iter()
            .map(|(f, t)| (PathBuf::from(f), t.to_string()))
            .collect();
        load_sources(&sources).map_err(|e| match e {
            ConfigError::Invalid(d) => d.iter().map(|d| d.to_string()).collect(),
            other => vec![other.to_string()],
        })
    }

    /// Every sample in contexts/invalid/ is rejected with exactly the
    /// messages of its `.expected` file.
    #[test]
    fn invalid_samples_give_their_messages() {
        let dir = Path::new("contexts/invalid");
        let mut n = 0;
        for f in files(dir).unwrap() {
            let expected = std::fs::read_to_string(f.with_extension("expected"))
                .unwrap_or_else(|_| panic!("{} has no .expected file", f.display()));
            let got = match load(&f) {
                Ok(_) => panic!("{} was accepted", f.display()),
                Err(e) => format!("{e}\n"),
            };
            assert_eq!(got, expected, "messages for {}", f.display());
            n += 1;
        }
        assert!(n >= 12, "only {n} invalid samples");
    }

    #[test]
    fn examples_are_valid() {
        let c = load(Path::new("contexts")).unwrap();
        let names: Vec<_> = c.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["dual", "leaf1", "leaf2", "router", "web"]);
        let router = c.get("router").unwrap();
        assert!(router.ip_forward);
        let hosts: Vec<_> = router
            .links
            .iter()
            .map(|l| l.host.clone().unwrap())
            .collect();
        assert_eq!(hosts, ["nx-router", "nx-router1"]);
        // [defaults] of vserver-mail.toml applies to every context.
        assert_eq!(
            c.get("web").unwrap().log,
            [Hook::Input, Hook::Forward, Hook::Output]
        );
    }

    #[test]
    fn defaults_merge_and_context_overrides() {
        let c = load_str(&[(
            "a.toml",
            r#"
[defaults]
ip_forward = true
log_group = 7
isolation = "off"
[context.a]
log_group = 9
[context.b]
hostname = "bee.example"
[[context.b.link]]
kind = "dummy"
name = "d0"
"#,
        )])
        .unwrap();
        let a = c.get("a").unwrap();
        assert!(a.ip_forward);
        assert_eq!(
            (a.log_group, a.isolation, a.hostname.as_str()),
            (9, Isolation::Off, "a")
        );
        assert!(a.log.is_empty());
        let b = c.get("b").unwrap();
        assert_eq!((b.log_group, b.hostname.as_str()), (7, "bee.example"));
        assert_eq!(b.links[0].kind, LinkKind::Dummy);
        assert_eq!(b.links[0].host, None);
    }

    #[test]
    fn without_anything_set_isolation_is_strict_and_forwarding_off() {
        let c = load_str(&[("a.toml", "[context.a]\n")]).unwrap();
        let a = c.get("a").unwrap();
        assert_eq!(
            (a.ip_forward, a.isolation, a.log_group),
            (false, Isolation::Strict, 100)
        );
    }

    #[test]
    fn a_context_is_declared_once_over_all_files() {
        let e =
            load_str(&[("a.toml", "[context.x]\n"), ("b.toml", "\n[context.x]\n")]).unwrap_err();
        assert_eq!(
            e,
            ["b.toml:2:10: context x already declared at a.toml:1:10"]
        );
        let e = load_str(&[("a.toml", "[defaults]\n"), ("b.toml", "[defaults]\n")]).unwrap_err();
        assert_eq!(e, ["b.toml:1:2: [defaults] already declared at a.toml:1:2"]);
    }

    #[test]
    fn default_host_names_and_their_collisions() {
        let veth = "[[context.web.link]]\nkind = \"veth\"\nname = \"e{}\"\n";
        let mut text = String::from("[context.web]\n");
        for i in 0..11 {
            text.push_str(&veth.replace("{}", &i.to_string()));
        }
        let e = load_str(&[("a.toml", &text)]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("more than 10 veth links need explicit host names"),
            "{e:?}"
        );

        let e = load_str(&[(
            "a.toml",
            "[context.web]\n[[context.web.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             [context.db]\n[[context.db.link]]\nkind = \"veth\"\nname = \"eth0\"\nhost = \"nx-web\"\n",
        )])
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("host-side name nx-web already used"), "{e:?}");
    }

    #[test]
    fn errors_from_several_files_are_all_reported_in_order() {
        let e = load_str(&[
            ("a.toml", "[context.a]\nfoo = 1\n"),
            ("b.toml", "[context.b]\nbar = 2\nid = -1\n"),
        ])
        .unwrap_err();
        assert_eq!(e.len(), 3);
        assert!(e[0].starts_with("a.toml:2:1: unknown key \"foo\""));
        assert!(e[1].starts_with("b.toml:2:1: unknown key \"bar\""));
        assert!(e[2].starts_with("b.toml:3:6: id must be"));
    }

    #[test]
    fn gateway_must_be_on_a_link_subnet_and_family_follows_gateway() {
        let c = load_str(&[(
            "a.toml",
            r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
addresses = ["fd00::2/64"]
[[context.a.route]]
to = "default"
via = "fd00::1"
"#,
        )])
        .unwrap();
        assert_eq!(c.get("a").unwrap().routes[0].to.to_string(), "::/0");
    }

    #[test]
    fn user_id_ranges_are_each_contexts_own() {
        // Two names whose derived ranges clash.
        let mut seen = std::collections::HashMap::new();
        let (x, y) = (0..)
            .map(|i| format!("c{i}"))
            .find_map(|n| {
                let d = crate::model::derived_idmap(&n);
                seen.insert(d, n.clone()).map(|other| (other, n))
            })
            .unwrap();
        let text = format!("[context.{x}]\n[context.{y}]\n");
        let bad = load_str(&[("r.toml", &text)]).unwrap_err();
        assert_eq!(bad.len(), 1, "{bad:?}");
        // Contexts are checked in name order: the later name is the one
        // refused, naming the other.
        let ((first, fl), (second, sl)) = if x < y {
            ((&x, 1), (&y, 2))
        } else {
            ((&y, 2), (&x, 1))
        };
        assert!(
            bad[0].starts_with(&format!("r.toml:{sl}:10: context {second}: user ids "))
                && bad[0].contains("derived from its name")
                && bad[0].contains(&format!("already context {first}'s (at r.toml:{fl}:10)")),
            "{bad:?}"
        );
        // An `id` resolves it.
        load_str(&[("r.toml", &format!("[context.{x}]\n[context.{y}]\nid = 9\n"))]).unwrap();
        // A range of /etc/subuid is refused, naming the line.
        let mut diags = Vec::new();
        let decls = |t: &str| parse::parse_file(Path::new("s.toml"), t, &mut Vec::new()).contexts;
        let d = decls("[context.a]\nid = 1\n[context.b]\nid = 3\n");
        let sub = [(
            "/etc/subuid".to_string(),
            "alice:100000:65536\nbob:300000:10\n".to_string(),
        )];
        ids::id_ranges(&d, &sub, &mut diags);
        let msgs: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(
            msgs[0].starts_with("s.toml:2:6: context a: user ids 65536-131071 (id 1) overlap /etc/subuid line 1 (alice: 100000-165535)"),
            "{msgs:?}"
        );
    }

    #[test]
    fn guest_keys_are_read_and_checked() {
        let ok = load_str(&[(
            "g.toml",
            "[context.a]\n[context.a.guest]\ncommand = [\"sleep\", \"1\"]\n\
             root = \"/srv/a\"\nwritable = [\"/var/lib/a\"]\n\
             capabilities = [\"net_bind_service\", \"CAP_SETUID\"]\nenv = { LANG = \"C\" }\n",
        )])
        .unwrap();
        let g = ok.get("a").unwrap().guest.clone().unwrap();
        assert_eq!(g.root, Some(PathBuf::from("/srv/a")));
        assert_eq!(g.writable, [PathBuf::from("/var/lib/a")]);
        assert_eq!(g.capabilities, Some(vec![10, 7]));
        assert_eq!(g.env, [("LANG".to_string(), "C".to_string())]);
        let bad = load_str(&[(
            "g.toml",
            "[context.a]\n[context.a.guest]\ncommand = [\"x\"]\n\
             capabilities = [\"sys_admin\"]\nwritable = [\"var\"]\nroot = \"/a/../b\"\nfoo = 1\n",
        )])
        .unwrap_err();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(
            bad[0].starts_with(
                "g.toml:4:17: capability \"sys_admin\" is not in the guest's default set"
            ),
            "{bad:?}"
        );
        assert!(
            bad[1].contains("writable: \"var\" must be an absolute path"),
            "{bad:?}"
        );
        assert!(
            bad[2].contains("root: \"/a/../b\" must be an absolute path"),
            "{bad:?}"
        );
        assert!(bad[3].contains("unknown key \"foo\" in guest"), "{bad:?}");
    }
}
