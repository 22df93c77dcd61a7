//! Delegation to the IPAM plugin (spec section 4): the binary named by
//! `ipam.type` is looked up in `CNI_PATH` and run with our environment and
//! the whole configuration on stdin; its stderr is ours. An IPAM plugin that
//! does not speak the configuration's version (Debian's host-local stops at
//! 1.0.0) is asked again in the newest version both know, and its answer
//! read in whatever version it gives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use super::env::{Command, Env};
use super::error::{code, CniError, Result};
use super::result::CniResult;
use super::version;

/// The first executable `plugin` in the `CNI_PATH` directories.
pub fn find(plugin: &str, path: &[PathBuf]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path {
        let p = dir.join(plugin);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    Err(CniError::InvalidEnv {
        var: "CNI_PATH",
        why: format!(
            "no executable {plugin} in {}",
            if path.is_empty() {
                "(CNI_PATH is empty)".to_string()
            } else {
                path.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            }
        ),
    })
}

/// The spec's error object a plugin printed, as our error.
pub fn delegated_error(plugin: &str, status: i32, stdout: &[u8]) -> CniError {
    let v: Option<Value> = serde_json::from_slice(stdout).ok();
    let field = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match v
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
    {
        Some(c) => CniError::Delegated {
            plugin: plugin.into(),
            code: c,
            msg: field("msg"),
            details: field("details"),
        },
        None => CniError::Delegated {
            plugin: plugin.into(),
            code: code::IO,
            msg: format!("exited with status {status} without an error object"),
            details: String::from_utf8_lossy(stdout).trim().to_string(),
        },
    }
}

/// Run a plugin: `overrides` replace our `CNI_*` values (GC's DELs name
/// another attachment). `Ok(None)` when it printed nothing.
pub fn exec(
    binary: &Path,
    env: &Env,
    command: Command,
    overrides: &[(&str, &str)],
    stdin: &[u8],
) -> Result<Option<Value>> {
    let plugin = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p = Process::new(binary);
    for (k, v) in env.vars() {
        p.env(k, v);
    }
    p.env("CNI_COMMAND", command.as_str());
    for (k, v) in overrides {
        p.env(k, v);
    }
    p.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = p
        .spawn()
        .map_err(|e| CniError::io(format!("running {}", binary.display()), e))?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that does not read its stdin closes the pipe: fine.
        let _ = i.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("waiting for {}", binary.display()), e))?;
    if !out.status.success() {
        return Err(delegated_error(
            &plugin,
            out.status.code().unwrap_or(-1),
            &out.stdout,
        ));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|e| CniError::Decode {
            what: format!("the answer of {plugin}"),
            why: e.to_string(),
        })
}

/// The versions a plugin says it supports (its VERSION answer).
pub fn versions(binary: &Path, env: &Env, asked: &str) -> Result<Vec<String>> {
    let ask = super::version::Answer {
        cni_version: asked,
        supported_versions: &[],
    };
    let stdin = serde_json::to_vec(&ask).unwrap_or_default();
    let v = exec(binary, env, Command::Version, &[], &stdin)?.unwrap_or_default();
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// `raw` with another `cniVersion`.
pub fn with_version(raw: &Value, v: &str) -> Vec<u8> {
    let mut raw = raw.clone();
    if let Some(o) = raw.as_object_mut() {
        o.insert("cniVersion".into(), Value::String(v.into()));
    }
    serde_json::to_vec(&raw).unwrap_or_default()
}

/// One IPAM call for the configuration `raw` (version `ver`), retried in an
/// older version the plugin knows if it refuses `ver`.
pub fn call(
    binary: &Path,
    env: &Env,
    command: Command,
    overrides: &[(&str, &str)],
    raw: &Value,
    ver: &str,
) -> Result<Option<Value>> {
    let stdin = serde_json::to_vec(raw).unwrap_or_default();
    match exec(binary, env, command, overrides, &stdin) {
        Err(CniError::Delegated { code: 1, .. }) => {
            let offered = versions(binary, env, ver)?;
            let older = version::best_common(ver, &offered).ok_or_else(|| {
                CniError::IncompatibleVersion {
                    version: ver.to_string(),
                }
            })?;
            exec(binary, env, command, overrides, &with_version(raw, &older))
        }
        other => other,
    }
}

/// IPAM ADD: the addresses, gateways and routes.
pub fn add(binary: &Path, env: &Env, raw: &Value, ver: &str) -> Result<CniResult> {
    let plugin = binary.display().to_string();
    let v = call(binary, env, Command::Add, &[], raw, ver)?.ok_or_else(|| CniError::Decode {
        what: format!("the answer of {plugin}"),
        why: "it printed nothing".into(),
    })?;
    CniResult::parse(&v, &format!("the answer of {plugin}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_delegated_plugins() {
        let e = delegated_error(
            "host-local",
            1,
            br#"{"code":11,"msg":"no IP addresses available in range set","details":"10.89.0.1-10.89.0.2"}"#,
        );
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains("host-local"));
        let e = delegated_error("x", 2, b"panic: oops");
        assert_eq!(e.code(), code::IO);
        assert!(e.to_string().contains("oops"));
    }

    #[test]
    fn find_in_path() {
        let dir = std::env::temp_dir().join(format!("netctx-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("fake-ipam");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert_eq!(
            find("fake-ipam", std::slice::from_ref(&dir))
                .unwrap_err()
                .code(),
            4
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let missing = PathBuf::from("/nonexistent");
        assert_eq!(find("fake-ipam", &[missing, dir.clone()]).unwrap(), p);
        assert!(find("fake-ipam", &[])
            .unwrap_err()
            .to_string()
            .contains("CNI_PATH is empty"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn version_rewrite_keeps_the_rest() {
        let raw =
            serde_json::json!({"cniVersion":"1.1.0","name":"nx","ipam":{"type":"host-local"}});
        let v: Value = serde_json::from_slice(&with_version(&raw, "1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["ipam"]["type"], "host-local");
    }
}
