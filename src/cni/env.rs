//! The `CNI_*` environment of one invocation, read from a map so it can be
//! tested without touching the process environment.

use std::collections::HashMap;
use std::path::PathBuf;

use super::error::{CniError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime gave none (DEL may come without).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs, in order.
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
    /// `NAMESPACE/POD` of `K8S_POD_NAMESPACE` and `K8S_POD_NAME` in
    /// `CNI_ARGS`, when both are there (checked for ADD and CHECK).
    pub pod: Option<String>,
}

/// Container ids: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
pub fn valid_container_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// Interface names Linux accepts: 1-15 bytes, no `/`, `:` or whitespace,
/// not `.` or `..`.
pub fn valid_ifname(s: &str) -> bool {
    crate::config::check_ifname(s).is_ok()
}

/// The pod of `K8S_POD_NAMESPACE` and `K8S_POD_NAME` (the last of each),
/// when both are there: `NAMESPACE/POD`, or why it cannot be.
pub fn pod_of(args: &[(String, String)]) -> Option<std::result::Result<String, String>> {
    let last = |k: &str| args.iter().rev().find(|a| a.0 == k).map(|a| a.1.as_str());
    let (ns, pod) = (last("K8S_POD_NAMESPACE")?, last("K8S_POD_NAME")?);
    Some(crate::model::pod::check(ns, pod).map(|()| format!("{ns}/{pod}")))
}

/// `K=V;K=V`; an empty string is no arguments.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| CniError::InvalidEnv {
            var: "CNI_ARGS",
            why: format!("{part:?} is not KEY=VALUE"),
        })?;
        if k.is_empty() {
            return Err(CniError::InvalidEnv {
                var: "CNI_ARGS",
                why: format!("{part:?} has an empty key"),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

impl Env {
    /// Read and check what `CNI_COMMAND` needs (the spec's "required
    /// environment parameters" of each command).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Env> {
        let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
        let raw = get("CNI_COMMAND");
        let command = Command::parse(&raw).ok_or_else(|| CniError::InvalidEnv {
            var: "CNI_COMMAND",
            why: format!("{raw:?} is none of ADD, DEL, CHECK, GC, STATUS, VERSION"),
        })?;
        let args = parse_args(&get("CNI_ARGS"))?;
        let pod = match pod_of(&args) {
            // A pod name goes into the attachment's alias: ADD and CHECK
            // refuse one that is not; DEL and GC go by the context name.
            Some(Err(why)) if matches!(command, Command::Add | Command::Check) => {
                return Err(CniError::InvalidEnv {
                    var: "CNI_ARGS",
                    why,
                })
            }
            Some(p) => p.ok(),
            None => None,
        };
        let env = Env {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args,
            pod,
            path: std::env::split_paths(&get("CNI_PATH"))
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
        };
        let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        if attachment {
            if !valid_container_id(&env.container_id) {
                return Err(CniError::InvalidEnv {
                    var: "CNI_CONTAINERID",
                    why: format!(
                        "{:?} is not a container id (an alphanumeric, then alphanumerics, _, . or -)",
                        env.container_id
                    ),
                });
            }
            if !valid_ifname(&env.ifname) {
                return Err(CniError::InvalidEnv {
                    var: "CNI_IFNAME",
                    why: format!(
                        "{:?} is not an interface name (1-15 bytes, no /, : or spaces)",
                        env.ifname
                    ),
                });
            }
        }
        if matches!(command, Command::Add | Command::Check) && env.netns.is_empty() {
            return Err(CniError::InvalidEnv {
                var: "CNI_NETNS",
                why: format!(
                    "{} needs the container's network namespace",
                    command.as_str()
                ),
            });
        }
        Ok(env)
    }

    /// The variables a delegated plugin gets: the same as ours.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path = std::env::join_paths(&self.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![
            ("CNI_COMMAND", self.command.as_str().to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", args.join(";")),
            ("CNI_PATH", path),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn add() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "4f2a9c.x_y-1"),
            ("CNI_NETNS", "/run/netns/cni-1234"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default",
            ),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]
    }

    #[test]
    fn full_add_environment() {
        let e = Env::from_map(&map(&add())).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.netns, "/run/netns/cni-1234");
        assert_eq!(e.args.len(), 3);
        assert_eq!(e.args[1], ("K8S_POD_NAME".into(), "web-0".into()));
        assert_eq!(e.pod.as_deref(), Some("default/web-0"));
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        let vars = e.vars();
        assert!(vars.contains(&("CNI_PATH", "/opt/cni/bin:/usr/lib/cni".into())));
        assert!(vars.contains(&(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default".into()
        )));
    }

    fn err_var(pairs: &[(&str, &str)]) -> &'static str {
        match Env::from_map(&map(pairs)) {
            Err(CniError::InvalidEnv { var, .. }) => var,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_variables_are_named() {
        let mut v = add();
        v[0].1 = "FROB";
        assert_eq!(err_var(&v), "CNI_COMMAND");
        let mut v = add();
        v[1].1 = "";
        assert_eq!(err_var(&v), "CNI_CONTAINERID");
        let mut v = add();
        v[1].1 = "-abc";
        assert_eq!(err_var(&v), "CNI_CONTAINERID");
        let mut v = add();
        v[3].1 = "averyveryverylongname";
        assert_eq!(err_var(&v), "CNI_IFNAME");
        let mut v = add();
        v[3].1 = "eth:0";
        assert_eq!(err_var(&v), "CNI_IFNAME");
        let mut v = add();
        v[2].1 = "";
        assert_eq!(err_var(&v), "CNI_NETNS");
        let mut v = add();
        v[4].1 = "IgnoreUnknown";
        assert_eq!(err_var(&v), "CNI_ARGS");
    }

    #[test]
    fn del_without_netns_and_version_gc_status_without_container() {
        let mut v = add();
        v[0].1 = "DEL";
        v[2].1 = "";
        assert_eq!(Env::from_map(&map(&v)).unwrap().netns, "");
        for c in ["VERSION", "GC", "STATUS"] {
            let e = Env::from_map(&map(&[("CNI_COMMAND", c)])).unwrap();
            assert_eq!(e.command.as_str(), c);
            assert!(e.path.is_empty());
        }
    }

    #[test]
    fn hostile_pod_names_are_refused_by_add_and_check_only() {
        for args in [
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web\x1b[2J",
            "K8S_POD_NAMESPACE=de:fault;K8S_POD_NAME=web",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web\n0 violation(s)",
        ] {
            let mut v = add();
            v[4].1 = args;
            assert_eq!(err_var(&v), "CNI_ARGS", "{args}");
            v[0].1 = "CHECK";
            assert_eq!(err_var(&v), "CNI_ARGS", "{args}");
            v[0].1 = "DEL";
            assert_eq!(Env::from_map(&map(&v)).unwrap().pod, None);
        }
        let long = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", "a".repeat(254));
        let mut v = add();
        v[4].1 = &long;
        assert_eq!(err_var(&v), "CNI_ARGS");
        // One of the two alone names no pod.
        v[4].1 = "K8S_POD_NAME=web-0";
        assert_eq!(Env::from_map(&map(&v)).unwrap().pod, None);
    }

    #[test]
    fn args_edge_cases() {
        assert!(parse_args("").unwrap().is_empty());
        assert_eq!(parse_args("A=;B=c=d").unwrap()[1].1, "c=d");
        assert!(parse_args("=x").is_err());
    }
}
