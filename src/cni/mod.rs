//! netctx as a CNI plugin (spec 1.1.0; docs/cni.md): when `CNI_COMMAND` is
//! set, `main` hands over to [`run`]. The configuration comes on stdin, the
//! parameters in `CNI_*` variables; the answer (a result, or the spec's
//! error object) goes to stdout, a one-line diagnostic to stderr. This
//! module is a front end, as `cli` is: an attachment is a context of the
//! engine in the runtime's namespace, converged, checked and removed by
//! `apply` (`kernel`); the attachments that exist are read by
//! `observe::attachments` (for `status`, `audit`, `logs` and `stats` too).
//! It never touches a declared context's objects, nor a link or chain
//! without its own alias or name.

mod attach;
mod config;
mod env;
mod error;
mod gc;
mod ipam;
mod kernel;
mod naming;
mod ops;
mod result;
mod version;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::Value;

use config::NetConf;
use env::{Command, Env};
use error::{CniError, Result};

/// The plugin mode: read, act, answer. Exit status 0 on success, 1 with an
/// error object otherwise.
pub fn run() -> ExitCode {
    let vars: HashMap<String, String> = std::env::vars().collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let ver = config::version_of(&stdin)
        .filter(|v| version::is_supported(v))
        .unwrap_or_else(|| version::LATEST.to_string());
    let outcome = match read {
        Err(e) => Err(CniError::io("reading the configuration on stdin", e)),
        Ok(_) => dispatch(&vars, &stdin),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(answer) => {
            if let Some(v) = answer {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&e.to_json(&ver)).unwrap_or_default()
            );
            eprintln!("netctx: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Commands a version must be new enough for.
fn version_gate(command: Command, ver: &str) -> Result<()> {
    let min = match command {
        Command::Check => "0.4.0",
        Command::Gc | Command::Status => "1.1.0",
        _ => return Ok(()),
    };
    if version::at_least(ver, min) {
        Ok(())
    } else {
        Err(CniError::VersionTooOld {
            command: command.as_str(),
            min,
            version: ver.to_string(),
        })
    }
}

/// What this build cannot do yet: `reach` or `accept_from` entries naming
/// contexts in a CNI network (an attachment knows no declared context),
/// refused with the spec's code 2, naming the field.
pub fn unsupported(conf: &NetConf) -> Result<()> {
    let names_context = |v: &[String]| {
        v.iter().any(|e| {
            crate::config::parse_entry(e, crate::config::EntryKind::AcceptFrom)
                .is_ok_and(|r| r.context().is_some())
        })
    };
    for (field, v) in [("reach", &conf.reach), ("accept_from", &conf.accept_from)] {
        if names_context(v) {
            return Err(CniError::Unsupported {
                field: field.into(),
                value: format!(
                    "{} (an attachment reaches and admits hosts, address ranges and domains, not contexts by name)",
                    conf.raw[field]
                ),
            });
        }
    }
    Ok(())
}

fn dispatch(vars: &HashMap<String, String>, stdin: &[u8]) -> Result<Option<Value>> {
    let env = Env::from_map(vars)?;
    if env.command == Command::Version {
        return Ok(Some(version::answer(config::version_of(stdin).as_deref())));
    }
    let conf = NetConf::parse(stdin)?;
    version_gate(env.command, &conf.cni_version)?;
    match env.command {
        Command::Add => ops::add(&conf, &env).map(Some),
        Command::Del => ops::del(&conf, &env).map(|()| None),
        Command::Check => ops::check(&conf, &env).map(|()| None),
        Command::Gc => ops::locked(|host| gc::gc(&conf, &env, host)).map(|()| None),
        Command::Status => gc::status(&conf, &env).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(cmd: &str) -> HashMap<String, String> {
        [("CNI_COMMAND", cmd)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn version_needs_nothing_but_the_command() {
        let v = dispatch(&vars("VERSION"), br#"{"cniVersion":"1.0.0"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        let v = dispatch(&vars("VERSION"), b"").unwrap().unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn gates_and_refusals_before_any_kernel_work() {
        let e = dispatch(
            &vars("GC"),
            br#"{"cniVersion":"1.0.0","name":"n","type":"netctx"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), 1);
        let e = dispatch(
            &vars("STATUS"),
            br#"{"cniVersion":"0.4.0","name":"n","type":"netctx"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), 1);
        assert!(version_gate(Command::Check, "0.3.1").is_err());
        assert!(version_gate(Command::Check, "0.4.0").is_ok());
        let e = dispatch(&vars("BOGUS"), b"{}").unwrap_err();
        assert_eq!(e.code(), 4);
        let e = dispatch(&vars("STATUS"), b"{oops").unwrap_err();
        assert_eq!(e.code(), 6);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"netctx","egress":"nat","uplink":"eth0"}"#,
        )
        .unwrap();
        assert!(unsupported(&c).is_ok());
        let c =
            NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"netctx","reach":["db"]}"#)
                .unwrap();
        let e = unsupported(&c).unwrap_err();
        assert!(e.to_string().contains("reach") && e.to_string().contains("db"));
        let parse = |j: &str| NetConf::parse(j.as_bytes()).unwrap();
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"netctx","reach":["host:53/udp","10.0.0.0/8:443","api.example.com"],"accept_from":["203.0.113.0/24:22"]}"#,
        );
        assert!(unsupported(&c).is_ok());
        let c =
            parse(r#"{"cniVersion":"1.1.0","name":"n","type":"netctx","accept_from":["web:22"]}"#);
        let e = unsupported(&c).unwrap_err();
        assert!(e.to_string().contains("accept_from"), "{e}");
        assert_eq!(e.code(), 2);
    }
}
