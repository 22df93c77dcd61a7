//! From (configuration, IPAM result, environment) to what the kernel must
//! hold for one attachment: a context in netctx's model (one veth, its
//! addresses, strict isolation, logging) plus the point-to-point routing a
//! runtime's namespace needs (the ptp plugin's layout: the gateway is the
//! host side's address, /32 or /128 on every veth of the network; the
//! container reaches its subnet through it, the host reaches each container
//! by a host route). Pure: tested without root.

use crate::config::EntryKind;
use std::net::IpAddr;
use std::path::PathBuf;

use super::config::{NetConf, PortMapping};
use super::env::Env;
use super::error::{CniError, Result};
use super::naming::{self, Alias};
use super::result::{CniResult, RouteConfig};
use crate::model::{max_prefix, Cidr, Context, Link, LinkKind, Netns, Proto, Publish, Route};

#[derive(Debug, Clone)]
pub struct Attachment {
    /// The attachment as a netctx context named `cni` + 8 hex digits in the
    /// runtime's namespace: its one point-to-point veth carries the
    /// container side's name, the host side's name and addresses (the
    /// gateways) and the container's addresses; its `publish` are the
    /// `portMappings` netctx publishes.
    pub ctx: Context,
    /// The container whose attachment it is.
    pub container_id: String,
    pub netns: String,
    /// The routes the result reports (the IPAM plugin's).
    pub result_routes: Vec<RouteConfig>,
    /// `portMappings` netctx leaves to the `portmap` plugin, with why.
    pub unpublished: Vec<String>,
}

impl Attachment {
    pub fn host(&self) -> &str {
        self.ctx.links[0].host.as_deref().unwrap_or_default()
    }
    pub fn ifname(&self) -> &str {
        &self.ctx.links[0].name
    }
    #[cfg(test)]
    pub fn addresses(&self) -> &[Cidr] {
        &self.ctx.links[0].addresses
    }
    #[cfg(test)]
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.ctx.links[0]
            .host_addresses
            .iter()
            .map(|c| c.addr)
            .collect()
    }
}

/// `portMappings` as the context's `publish`: all but those on a loopback
/// host address, which need source translation (the `portmap` plugin's).
fn published(mappings: &[PortMapping]) -> (Vec<Publish>, Vec<String>) {
    let (mut out, mut left) = (Vec::new(), Vec::new());
    for m in mappings {
        let host_ip: Option<IpAddr> = m.host_ip.parse().ok();
        if host_ip.is_some_and(|h| h.is_loopback()) {
            left.push(format!(
                "{} (loopback: chain the portmap plugin)",
                m.publish()
            ));
            continue;
        }
        let p = Publish {
            host_ip,
            host_port: m.host_port,
            port: m.container_port,
            proto: if m.protocol == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            },
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    (out, left)
}

fn host_cidr(ip: IpAddr) -> Cidr {
    Cidr {
        addr: ip,
        prefix: max_prefix(ip),
    }
}

/// The first address of the subnet, as host-local picks by default.
fn default_gateway(a: Cidr) -> Option<IpAddr> {
    if a.prefix + 1 >= max_prefix(a.addr) {
        return None;
    }
    Some(match a.network() {
        IpAddr::V4(n) => IpAddr::V4((u32::from(n) + 1).into()),
        IpAddr::V6(n) => IpAddr::V6((u128::from(n) + 1).into()),
    })
}

/// The names of an attachment's objects, which DEL and GC work from alone.
pub fn names(conf: &NetConf, env: &Env) -> (String, String, Alias) {
    let ctx = naming::context_name(&env.container_id, &env.ifname);
    let alias = Alias {
        context: ctx.clone(),
        log_group: conf.log_group,
        network: conf.name.clone(),
        ifname: env.ifname.clone(),
        container_id: env.container_id.clone(),
        pod: env.pod.clone(),
    };
    (
        ctx,
        naming::host_veth(&env.container_id, &env.ifname),
        alias,
    )
}

/// The addresses, the gateways (one per family and subnet) and the routes
/// inside of the IPAM plugin's IPs and routes.
fn addressing(
    ips: Vec<&super::result::IpConfig>,
    ipam_routes: &[RouteConfig],
) -> Result<(Vec<Cidr>, Vec<IpAddr>, Vec<Route>)> {
    let mut addresses = Vec::new();
    let mut gateways: Vec<IpAddr> = Vec::new();
    let mut routes: Vec<Route> = Vec::new();
    for ip in ips {
        let a = ip.address;
        let gw = ip.gateway.or_else(|| default_gateway(a)).ok_or_else(|| {
            CniError::config(format!(
                "address {a} has no gateway and its subnet is too small for one"
            ))
        })?;
        if gw == a.addr || !a.contains(gw) || gw.is_ipv4() != a.is_v4() {
            return Err(CniError::config(format!(
                "gateway {gw} of address {a} is the address itself or outside its subnet"
            )));
        }
        if addresses.contains(&a) {
            continue;
        }
        addresses.push(a);
        if !gateways.contains(&gw) {
            gateways.push(gw);
        }
        let via = Route {
            to: a.subnet(),
            via: gw,
        };
        if a.prefix < max_prefix(a.addr) && !routes.contains(&via) {
            routes.push(via);
        }
    }
    for r in ipam_routes {
        let gw = match r.gw {
            Some(g) => g,
            None => *gateways
                .iter()
                .find(|g| g.is_ipv4() == r.dst.is_v4())
                .ok_or_else(|| {
                    CniError::config(format!("route {} has no gateway of its family", r.dst))
                })?,
        };
        let via = Route {
            to: r.dst.subnet(),
            via: gw,
        };
        if !routes.iter().any(|x| x.to == via.to) {
            routes.push(via);
        }
    }
    Ok((addresses, gateways, routes))
}

/// The attachment for `ipam`'s addresses (an IPAM answer, or for CHECK the
/// prevResult's IPs of the container interface).
pub fn build(conf: &NetConf, env: &Env, ipam: &CniResult, index: usize) -> Result<Attachment> {
    let (name, host, alias) = names(conf, env);
    let ips = ipam.ips_of(index);
    if ips.is_empty() {
        return Err(CniError::config(format!(
            "the IPAM plugin {} gave no address",
            conf.ipam.as_deref().unwrap_or("(none)")
        )));
    }
    let (addresses, gateways, routes) = addressing(ips, &ipam.routes)?;
    let (publish, unpublished) = published(&conf.port_mappings);
    let ctx = Context {
        name: name.clone(),
        id: None,
        ip_forward: false,
        log: conf.log.clone(),
        log_group: conf.log_group,
        log_rate: crate::model::DEFAULT_LOG_RATE,
        isolation: conf.isolation,
        single_ip: false,
        announce: false,
        hostname: name,
        links: vec![Link {
            kind: LinkKind::Veth,
            name: env.ifname.clone(),
            host: Some(host),
            host_addresses: gateways.into_iter().map(host_cidr).collect(),
            addresses,
            accept_ra: false,
            ptp: true,
        }],
        routes,
        reach: entries(&conf.reach, EntryKind::Reach),
        accept_from: entries(&conf.accept_from, EntryKind::AcceptFrom),
        deny: entries(
            &crate::model::DEFAULT_DENY.map(String::from),
            EntryKind::Deny,
        ),
        uplink: conf.uplink.clone(),
        egress: conf.egress,
        publish,
        guest: None,
        limits: Default::default(),
        file: PathBuf::from(format!("cni network {}", conf.name)),
        netns: Netns::Runtime {
            path: env.netns.clone(),
            alias: alias.render(),
            held: None,
        },
    };
    Ok(Attachment {
        ctx,
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        result_routes: ipam.routes.clone(),
        unpublished,
    })
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod tests;

/// The policy's entries of a checked network configuration (malformed
/// ones were refused by `NetConf::parse`).
fn entries(v: &[String], kind: EntryKind) -> Vec<crate::model::Reach> {
    let mut out: Vec<_> = v
        .iter()
        .filter_map(|e| crate::config::parse_entry(e, kind).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}
