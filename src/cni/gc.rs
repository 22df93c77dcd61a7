//! GC and STATUS. GC removes every attachment of this network that is not in
//! `cni.dev/valid-attachments`: host links with netctx's alias, chains named
//! after the attachment, and IPAM leases (forwarded as GC to an IPAM plugin
//! that speaks 1.1.0; otherwise one IPAM DEL per stale attachment, found on
//! the links and, for host-local, in its lease directory).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::config::NetConf;
use super::env::{Command, Env};
use super::error::{CniError, Result};
use super::ipam;
use super::naming::{self, Alias};
use crate::apply::Host;
use crate::observe::links as state;
use crate::observe::nft as observe;

/// (container id, interface) of an attachment.
pub type Key = (String, String);

/// host-local's leases of network `name` under `data_dir`: files named by
/// address holding `CONTAINERID\r\nIFNAME`.
pub fn host_local_leases(data_dir: &Path, name: &str) -> Vec<Key> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(data_dir.join(name)) else {
        return out;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if file.parse::<std::net::IpAddr>().is_err() {
            continue;
        }
        let Ok(s) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = s.lines().map(|l| l.trim());
        if let (Some(id), Some(ifname)) = (lines.next(), lines.next()) {
            if !id.is_empty() && !ifname.is_empty() {
                out.push((id.to_string(), ifname.to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// host-local's lease directory for this configuration.
pub fn host_local_dir(conf: &NetConf) -> PathBuf {
    conf.raw["ipam"]["dataDir"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/cni/networks"))
}

/// Stale attachments: those of `found` whose key is not valid.
pub fn stale(found: &[Key], valid: &HashSet<Key>) -> Vec<Key> {
    let mut v: Vec<Key> = found
        .iter()
        .filter(|k| !valid.contains(*k))
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Remove the stale links and chains; the keys whose leases must go.
fn gc_kernel(
    conf: &NetConf,
    valid: &HashSet<Key>,
    host: &mut Host,
    errors: &mut Vec<CniError>,
) -> Vec<Key> {
    let valid_ctx: HashSet<String> = valid
        .iter()
        .map(|(c, i)| naming::context_name(c, i))
        .collect();
    let links = match state::read_links_only(&mut host.rtnl) {
        Ok(l) => l,
        Err(e) => {
            errors.push(CniError::kernel("host links", e));
            return Vec::new();
        }
    };
    let mut gone_ctx = Vec::new();
    let mut keys = Vec::new();
    for l in &links {
        let Some(a) = l.alias.as_deref().and_then(Alias::parse) else {
            continue;
        };
        if a.network != conf.name || valid_ctx.contains(&a.context) {
            continue;
        }
        // Its namespace is unknown (or gone): the host end takes the pair.
        let failed = crate::apply::teardown::detach(host, &a.context, &l.name, &a.ifname, "");
        errors.extend(failed.into_iter().map(CniError::from));
        if a.complete() {
            keys.push((a.container_id.clone(), a.ifname.clone()));
        }
        gone_ctx.push(a.context);
    }
    // Chains whose device is gone belong to attachments removed without
    // DEL (the namespace went, and the veth with it); so do the other chains
    // of an attachment that has no host link left (kernels before 6.16 drop
    // an ingress chain with its device, leaving its forward chain).
    let names: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let linked: HashSet<String> = links
        .iter()
        .filter_map(|l| l.alias.as_deref().and_then(Alias::parse))
        .map(|a| a.context)
        .collect();
    if let Ok(live) = observe::read(&mut host.nft, &[]) {
        for (chain, _) in &live.digest.chains {
            if let Some((ctx, dev)) = chain.split_once('_') {
                let device_gone = dev.starts_with("nxc") && !names.contains(dev);
                let gone = device_gone || !linked.contains(ctx);
                if crate::model::is_attachment_chain(chain) && !valid_ctx.contains(ctx) && gone {
                    gone_ctx.push(ctx.to_string());
                }
            }
        }
    }
    gone_ctx.sort();
    gone_ctx.dedup();
    for c in &gone_ctx {
        if let Err(e) = crate::apply::dns::remove_record(c) {
            errors.push(CniError::io("removing an attachment's resolver record", e));
        }
    }
    if !gone_ctx.is_empty() {
        if let Err(e) = crate::apply::teardown::remove_host_chains(host, &gone_ctx) {
            errors.push(CniError::TryAgain(e.to_string()));
        }
        for e in crate::apply::uplink::after_down(host, &gone_ctx, false) {
            errors.push(CniError::io(
                "the uplink",
                std::io::Error::other(e.to_string()),
            ));
        }
    }
    keys
}

pub fn gc(conf: &NetConf, env: &Env, host: &mut Host) -> Result<()> {
    let valid: HashSet<Key> = conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let mut errors = Vec::new();
    let mut keys = gc_kernel(conf, &valid, host, &mut errors);
    if let Some(plugin) = &conf.ipam {
        match ipam::find(plugin, &env.path) {
            Err(e) => errors.push(e),
            Ok(bin) => {
                let speaks_gc = ipam::versions(&bin, env, &conf.cni_version)
                    .map(|v| v.iter().any(|v| super::version::at_least(v, "1.1.0")))
                    .unwrap_or(false);
                if speaks_gc {
                    if let Err(e) =
                        ipam::call(&bin, env, Command::Gc, &[], &conf.raw, &conf.cni_version)
                    {
                        errors.push(e);
                    }
                } else {
                    if plugin == "host-local" {
                        keys.extend(host_local_leases(&host_local_dir(conf), &conf.name));
                    }
                    for (id, ifname) in stale(&keys, &valid) {
                        let o = [
                            ("CNI_CONTAINERID", id.as_str()),
                            ("CNI_IFNAME", ifname.as_str()),
                            ("CNI_NETNS", ""),
                        ];
                        if let Err(e) =
                            ipam::call(&bin, env, Command::Del, &o, &conf.raw, &conf.cni_version)
                        {
                            errors.push(e);
                        }
                    }
                }
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::Many(errors)),
    }
}

/// STATUS: whether ADD can succeed here.
pub fn status(conf: &NetConf, env: &Env) -> Result<()> {
    let na = |why: String| CniError::NotAvailable(why);
    super::unsupported(conf).map_err(|e| na(e.to_string()))?;
    let mut host = Host::open().map_err(|e| na(format!("netlink sockets: {e}")))?;
    let live = observe::read(&mut host.nft, &[]).map_err(|e| na(format!("nf_tables: {e}")))?;
    if live.foreign_host_table() {
        // Its chains may drop what netctx's would pass.
        return Err(CniError::Limited(
            "the host's table inet netctx was not made by netctx".into(),
        ));
    }
    let Some(plugin) = &conf.ipam else {
        return Err(na("the configuration has no ipam section".into()));
    };
    let bin = ipam::find(plugin, &env.path).map_err(|e| na(e.to_string()))?;
    let offered = ipam::versions(&bin, env, &conf.cni_version).map_err(|e| na(e.to_string()))?;
    if offered.iter().any(|v| super::version::at_least(v, "1.1.0")) {
        ipam::call(
            &bin,
            env,
            Command::Status,
            &[],
            &conf.raw,
            &conf.cni_version,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_of_host_local() {
        let dir = std::env::temp_dir().join(format!("netctx-gc-{}", std::process::id()));
        let net = dir.join("nx");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("10.89.0.2"), "aaa\r\neth0").unwrap();
        std::fs::write(net.join("10.89.0.3"), "bbb\r\neth0").unwrap();
        std::fs::write(net.join("2001:db8::3"), "bbb\r\neth0").unwrap();
        std::fs::write(net.join("10.89.0.4"), "old-format-without-ifname").unwrap();
        std::fs::write(net.join("last_reserved_ip.0"), "10.89.0.3").unwrap();
        std::fs::write(net.join("lock"), "").unwrap();
        let leases = host_local_leases(&dir, "nx");
        assert_eq!(
            leases,
            vec![("aaa".into(), "eth0".into()), ("bbb".into(), "eth0".into())]
        );
        assert!(host_local_leases(&dir, "other").is_empty());
        let valid: HashSet<Key> = [("aaa".to_string(), "eth0".to_string())].into();
        assert_eq!(stale(&leases, &valid), vec![("bbb".into(), "eth0".into())]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lease_directory_from_the_configuration() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"nx","type":"netctx","ipam":{"type":"host-local","dataDir":"/tmp/x"}}"#).unwrap();
        assert_eq!(host_local_dir(&c), PathBuf::from("/tmp/x"));
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"nx","type":"netctx","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        assert_eq!(host_local_dir(&c), PathBuf::from("/var/lib/cni/networks"));
    }
}
