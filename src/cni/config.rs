//! The network configuration a runtime writes on stdin: the spec's keys,
//! netctx's own (isolation, log, reach, egress, uplink) and what the runtime
//! adds (`runtimeConfig`, `prevResult`, `cni.dev/valid-attachments`).
//! Unknown keys are passed by, as the spec wants plugins to; netctx's own
//! keys are checked strictly.

use serde::Deserialize;
use serde_json::Value;

use super::error::{CniError, Result};
use super::result::CniResult;
use super::version;
pub use crate::model::Egress;
use crate::model::{Hook, Isolation};

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    ipam: Option<Value>,
    isolation: Option<String>,
    log: Option<Vec<String>>,
    log_group: Option<u16>,
    #[serde(default)]
    reach: Vec<String>,
    #[serde(default)]
    accept_from: Vec<String>,
    egress: Option<String>,
    uplink: Option<String>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RuntimeConfig,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "portMappings", default)]
    port_mappings: Vec<PortMapping>,
}

/// One of `runtimeConfig.portMappings`: Podman writes the keys lowercase
/// (`hostPort`), containerd's CRI capitalised (`HostPort`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort", alias = "HostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort", alias = "ContainerPort")]
    pub container_port: u16,
    #[serde(default = "tcp", alias = "Protocol")]
    pub protocol: String,
    #[serde(rename = "hostIP", alias = "HostIP", alias = "hostIp", default)]
    pub host_ip: String,
}

fn tcp() -> String {
    "tcp".into()
}

impl PortMapping {
    /// The mapping as a netctx `publish` entry: `[HOSTIP:]HOSTPORT:PORT/PROTO`.
    pub fn publish(&self) -> String {
        let ip = match self.host_ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:"),
            Ok(v4) => format!("{v4}:"),
            Err(_) => String::new(),
        };
        format!(
            "{ip}{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A checked network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    /// `ipam.type`, when there is an `ipam` section.
    pub ipam: Option<String>,
    pub isolation: Isolation,
    pub log: Vec<Hook>,
    pub log_group: u16,
    pub reach: Vec<String>,
    pub accept_from: Vec<String>,
    pub egress: Egress,
    pub uplink: Option<String>,
    pub port_mappings: Vec<PortMapping>,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Vec<ValidAttachment>,
    /// The configuration as received (what delegated plugins get).
    pub raw: Value,
}

/// Network names: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
pub fn valid_network_name(s: &str) -> bool {
    super::env::valid_container_id(s)
}

/// Only the version, as VERSION reads it; `None` if stdin says none.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// The first malformed entry of `reach` or `accept_from`, with the reason.
fn bad_entry(reach: &[String], accept_from: &[String]) -> Option<String> {
    use crate::config::{parse_entry, EntryKind};
    let r = reach.iter().map(|e| (e, EntryKind::Reach));
    r.chain(accept_from.iter().map(|e| (e, EntryKind::AcceptFrom)))
        .find_map(|(e, k)| parse_entry(e, k).err())
}

fn check_mapping(m: &PortMapping) -> Result<()> {
    let bad = |why: String| CniError::config(format!("runtimeConfig.portMappings: {why}"));
    if m.host_port == 0 || m.container_port == 0 {
        return Err(bad(format!(
            "port 0 in {}:{}",
            m.host_port, m.container_port
        )));
    }
    if !matches!(m.protocol.as_str(), "tcp" | "udp") {
        return Err(CniError::Unsupported {
            field: "runtimeConfig.portMappings.protocol".into(),
            value: format!("{:?}", m.protocol),
        });
    }
    if !m.host_ip.is_empty() && m.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(format!("hostIP {:?} is not an IP address", m.host_ip)));
    }
    Ok(())
}

fn parse_log(log: Option<Vec<String>>) -> Result<Vec<Hook>> {
    let mut out = Vec::new();
    for l in log.unwrap_or_default() {
        let h = Hook::parse(&l).ok_or_else(|| {
            CniError::config(format!("log entry {l:?} is none of input, forward, output"))
        })?;
        if !out.contains(&h) {
            out.push(h);
        }
    }
    Ok(out)
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| CniError::Decode {
            what: "the network configuration on stdin".into(),
            why: e.to_string(),
        })?;
        let r: Raw = serde_json::from_value(raw.clone()).map_err(|e| CniError::Decode {
            what: "the network configuration on stdin".into(),
            why: e.to_string(),
        })?;
        let cni_version = r
            .cni_version
            .ok_or_else(|| CniError::config("cniVersion is missing"))?;
        if !version::is_supported(&cni_version) {
            return Err(CniError::IncompatibleVersion {
                version: cni_version,
            });
        }
        let name = r.name.unwrap_or_default();
        if !valid_network_name(&name) {
            return Err(CniError::config(format!(
                "name {name:?} is not a network name (an alphanumeric, then alphanumerics, _, . or -)"
            )));
        }
        if r.kind.as_deref().is_none_or(str::is_empty) {
            return Err(CniError::config("type is missing"));
        }
        let ipam = match &r.ipam {
            None => None,
            Some(v) => match v.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') => Some(t.to_string()),
                _ => {
                    return Err(CniError::config(
                        "ipam.type is missing or not a plugin name",
                    ))
                }
            },
        };
        let isolation = match r.isolation.as_deref() {
            None => Isolation::Strict,
            Some(o) => o.parse().map_err(CniError::config)?,
        };
        let egress = match r.egress.as_deref() {
            None => Egress::None,
            Some(o) => o.parse().map_err(CniError::config)?,
        };
        if egress != Egress::None && r.uplink.as_deref().is_none_or(str::is_empty) {
            return Err(CniError::config("egress needs an uplink"));
        }
        if let Some(u) = &r.uplink {
            if !super::env::valid_ifname(u) {
                return Err(CniError::config(format!(
                    "uplink {u:?} is not an interface name"
                )));
            }
        }
        if let Some(why) = bad_entry(&r.reach, &r.accept_from) {
            return Err(CniError::config(why));
        }
        let mut port_mappings = r.runtime_config.port_mappings;
        for m in &mut port_mappings {
            m.protocol = m.protocol.to_ascii_lowercase();
            check_mapping(m)?;
        }
        let prev_result = r
            .prev_result
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| CniResult::parse(v, "prevResult"))
            .transpose()?;
        Ok(NetConf {
            cni_version,
            name,
            ipam,
            isolation,
            log: parse_log(r.log)?,
            log_group: r.log_group.unwrap_or(100),
            reach: r.reach,
            accept_from: r.accept_from,
            egress,
            uplink: r.uplink.filter(|u| !u.is_empty()),
            port_mappings,
            prev_result,
            valid_attachments: r.valid_attachments.unwrap_or_default(),
            raw,
        })
    }

    /// `portMappings` as netctx `publish` entries.
    #[cfg(test)]
    pub fn publish(&self) -> Vec<String> {
        self.port_mappings
            .iter()
            .map(PortMapping::publish)
            .collect()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
