//! ADD, DEL and CHECK from start to end: IPAM delegation around the kernel
//! work, rollback of a failed ADD, and the result in the version asked for.
//! Kernel work runs under netctx's lock, so concurrent runtimes' calls (and
//! `netctx up`) never interleave on the host's table.

use serde_json::Value;

use super::attach;
use super::config::NetConf;
use super::env::{Command, Env};
use super::error::{CniError, Result};
use super::ipam;
use super::kernel::{self, Macs};
use super::result::{CniResult, Interface};
use crate::apply::Host;

/// Run `f` with the lock held and the host's sockets open.
pub fn locked<T>(f: impl FnOnce(&mut Host) -> Result<T>) -> Result<T> {
    let _lock = crate::kernel::lock::lock(std::time::Duration::from_secs(300))
        .map_err(|e| CniError::TryAgain(format!("netctx's lock: {e}")))?;
    let mut host =
        Host::open().map_err(|e| CniError::io("opening netlink sockets on the host", e))?;
    f(&mut host)
}

/// The result: prevResult (if netctx is chained after something) with
/// netctx's two interfaces and the IPAM plugin's IPs, routes and DNS.
pub fn result(
    prev: Option<&CniResult>,
    ipam: &CniResult,
    att: &attach::Attachment,
    macs: Macs,
) -> CniResult {
    let mut r = prev.cloned().unwrap_or_default();
    r.interfaces.push(Interface {
        name: att.host().to_string(),
        mac: macs.host,
        ..Default::default()
    });
    r.interfaces.push(Interface {
        name: att.ifname().to_string(),
        mac: macs.container,
        sandbox: Some(att.netns.clone()),
        ..Default::default()
    });
    let index = r.interfaces.len() - 1;
    for ip in ipam.ips_of(0) {
        let mut ip = ip.clone();
        ip.interface = Some(index);
        r.ips.push(ip);
    }
    r.routes.extend(att.result_routes.iter().cloned());
    if r.dns.is_empty() {
        r.dns = ipam.dns.clone();
    }
    // A reach naming domains: netctx's resolver is the name server (the
    // runtime writes it into the container's resolv.conf).
    if att.ctx.needs_resolver() {
        let ns: Vec<String> = att
            .ctx
            .resolver_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        r.dns.insert("nameservers".into(), serde_json::json!(ns));
    }
    r
}

fn ipam_bin(conf: &NetConf, env: &Env) -> Result<Option<std::path::PathBuf>> {
    conf.ipam
        .as_deref()
        .map(|p| ipam::find(p, &env.path))
        .transpose()
}

fn ipam_del(conf: &NetConf, env: &Env) -> Result<()> {
    if let Some(bin) = ipam_bin(conf, env)? {
        ipam::call(&bin, env, Command::Del, &[], &conf.raw, &conf.cni_version)?;
    }
    Ok(())
}

pub fn add(conf: &NetConf, env: &Env) -> Result<Value> {
    super::unsupported(conf)?;
    if conf.ipam.is_none() {
        return Err(CniError::config(
            "netctx needs an ipam section to get addresses",
        ));
    }
    let bin = ipam_bin(conf, env)?.expect("checked above");
    // Before any address is taken; held open from here on, so that the
    // namespace checked is the one changed, whatever the path names later.
    let ns = crate::kernel::netns::open_path(&env.netns).ok_or_else(|| CniError::InvalidEnv {
        var: "CNI_NETNS",
        why: format!("{} is not a network namespace", env.netns),
    })?;
    locked(|host| {
        // Under the lock: no context comes up meanwhile.
        refuse_namespace(env, &ns)?;
        let got = ipam::add(&bin, env, &conf.raw, &conf.cni_version)?;
        let made = attach::build(conf, env, &got, 0).and_then(|mut att| {
            if let crate::model::Netns::Runtime { held, .. } = &mut att.ctx.netns {
                *held = Some(std::os::fd::AsRawFd::as_raw_fd(&ns));
            }
            for m in &att.unpublished {
                eprintln!("netctx: warning: port mapping {m} is not published by netctx");
            }
            let macs = kernel::add(&att, host)?;
            if let Err(e) = crate::apply::dns::write_record(&att.ctx) {
                let _ = kernel::del(&att.ctx.name, att.host(), att.ifname(), &env.netns, host);
                return Err(CniError::io("recording the attachment's resolver", e));
            }
            Ok(result(conf.prev_result.as_ref(), &got, &att, macs))
        });
        match made {
            Ok(r) => Ok(r.to_json(&conf.cni_version)),
            Err(e) => {
                // The kernel's side is undone already (`kernel::add`).
                if let Err(d) = ipam_del(conf, env) {
                    eprintln!("netctx: error: releasing the address of the failed ADD: {d}");
                }
                Err(e)
            }
        }
    })
}

/// ADD never touches a namespace that is not a container's own
/// (docs/cni.md, "The commands"): the host's own, a declared context's
/// (netctx's marker names it), or one holding another container's
/// attachment. A second interface of the same container (Multus) is fine.
/// Code 4, nothing touched.
fn refuse_namespace(env: &Env, ns: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| CniError::InvalidEnv {
        var: "CNI_NETNS",
        why: format!("{}: {why}; netctx attaches containers only", env.netns),
    };
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let me = id(&ns
        .metadata()
        .map_err(|e| CniError::io("reading CNI_NETNS", e))?);
    for host in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        if std::fs::metadata(host).is_ok_and(|m| id(&m) == me) {
            return Err(refuse("it is the host's own network namespace".into()));
        }
    }
    let dir = std::path::Path::new(crate::kernel::netns::NETNS_DIR);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if std::fs::metadata(e.path()).is_ok_and(|m| id(&m) == me)
            && matches!(
                crate::observe::owner::ns_owner(&name),
                Ok(crate::observe::owner::NsOwner::Ours)
            )
        {
            return Err(refuse(format!("it is netctx context {name}'s")));
        }
    }
    let others: Vec<String> = crate::observe::attachments::aliases_in(ns)
        .map_err(|e| CniError::io("reading the links of CNI_NETNS", e))?
        .into_iter()
        .filter(|a| !env.container_id.starts_with(&a.container_id))
        .map(|a| a.container_id)
        .collect();
    if let Some(other) = others.first() {
        return Err(refuse(format!(
            "it holds an attachment of container {other}"
        )));
    }
    Ok(())
}

/// DEL: best effort, idempotent; the namespace may be gone or unnamed.
pub fn del(conf: &NetConf, env: &Env) -> Result<()> {
    let (ctx, hl, _) = attach::names(conf, env);
    let kernel =
        locked(|host| kernel::del(&ctx, &hl, &env.ifname, &env.netns, host)).and_then(|()| {
            crate::apply::dns::remove_record(&ctx)
                .map_err(|e| CniError::io("removing the attachment's resolver record", e))
        });
    let lease = ipam_del(conf, env);
    match (kernel, lease) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(CniError::Many(vec![a, b])),
    }
}

pub fn check(conf: &NetConf, env: &Env) -> Result<()> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("CHECK needs a prevResult"))?;
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            CniError::Check(format!(
                "prevResult lists no interface {} in a sandbox",
                env.ifname
            ))
        })?;
    let att = attach::build(conf, env, prev, index)?;
    locked(|host| kernel::check(&att, host))?;
    if let Some(bin) = ipam_bin(conf, env)? {
        ipam::call(&bin, env, Command::Check, &[], &conf.raw, &conf.cni_version)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn result_appends_to_prev_result_and_points_ips_at_the_container() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"nx","type":"netctx","ipam":{"type":"host-local"},
                "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"lo0"}],"dns":{"domain":"x"}}}"#,
        )
        .unwrap();
        let vars: HashMap<String, String> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/t"),
            ("CNI_IFNAME", "eth0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = Env::from_map(&vars).unwrap();
        let got = CniResult::parse(
            &serde_json::json!({"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"}],
                "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.89.0.1"]}}),
            "ipam",
        )
        .unwrap();
        let att = attach::build(&conf, &env, &got, 0).unwrap();
        let macs = Macs {
            host: Some("02:00:00:00:00:01".into()),
            container: Some("02:00:00:00:00:02".into()),
        };
        let r = result(conf.prev_result.as_ref(), &got, &att, macs);
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[1].name, att.host());
        assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/netns/t"));
        assert_eq!(r.ips[0].interface, Some(2));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.dns["domain"], "x");
        let j = r.to_json("1.0.0");
        assert_eq!(j["ips"][0]["interface"], 2);
    }
}
