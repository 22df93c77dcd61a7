//! From (configuration, IPAM result, environment) to what the kernel must
//! hold for one attachment: a context in netctx's model (one veth, its
//! addresses, strict isolation, logging) plus the point-to-point routing a
//! runtime's namespace needs (the ptp plugin's layout: the gateway is the
//! host side's address, /32 or /128 on every veth of the network; the
//! container reaches its subnet through it, the host reaches each container
//! by a host route). Pure: tested without root.

use std::net::IpAddr;
use std::path::PathBuf;

use super::config::{Egress, NetConf};
use super::env::Env;
use super::error::{CniError, Result};
use super::naming::{self, Alias};
use super::result::{CniResult, RouteConfig};
use crate::model::{max_prefix, Cidr, Context, Link, LinkKind, Route};

/// A route inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerRoute {
    /// The gateway, on the link (`GW dev IFNAME scope link`).
    OnLink(IpAddr),
    /// `DST via GW`.
    Via(Cidr, IpAddr),
}

#[derive(Debug, Clone)]
pub struct Attachment {
    /// The attachment as a netctx context named `cni` + 8 hex digits: its
    /// one veth carries the container side's name, the host side's name and
    /// addresses (the gateways) and the container's addresses.
    pub ctx: Context,
    pub alias: Alias,
    pub netns: String,
    pub inner_routes: Vec<InnerRoute>,
    /// Host routes to the container's addresses over the host-side veth.
    pub host_routes: Vec<Cidr>,
    /// The routes the result reports (the IPAM plugin's).
    pub result_routes: Vec<RouteConfig>,
    // The engine's forwarding, egress and publishing read these once the
    // layout refactor lands; this build refuses reach and egress at ADD.
    #[allow(dead_code)]
    pub reach: Vec<String>,
    #[allow(dead_code)]
    pub egress: Egress,
    #[allow(dead_code)]
    pub uplink: Option<String>,
    #[allow(dead_code)]
    /// `portMappings` as `publish` entries.
    pub publish: Vec<String>,
    /// `portMappings` as given, which netctx publishes itself.
    pub port_mappings: Vec<super::config::PortMapping>,
}

impl Attachment {
    pub fn host(&self) -> &str {
        self.ctx.links[0].host.as_deref().unwrap_or_default()
    }
    pub fn ifname(&self) -> &str {
        &self.ctx.links[0].name
    }
    pub fn addresses(&self) -> &[Cidr] {
        &self.ctx.links[0].addresses
    }
    /// The DNATs of its port mappings, and the mappings left to portmap.
    pub fn dnats(&self) -> (Vec<super::publish::Dnat>, Vec<String>) {
        let addrs: Vec<IpAddr> = self.addresses().iter().map(|c| c.addr).collect();
        super::publish::plan(&self.port_mappings, &addrs)
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
    };
    (
        ctx,
        naming::host_veth(&env.container_id, &env.ifname),
        alias,
    )
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
    let mut addresses = Vec::new();
    let mut gateways: Vec<IpAddr> = Vec::new();
    let mut inner = Vec::new();
    let mut host_routes = Vec::new();
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
        host_routes.push(host_cidr(a.addr));
        if !gateways.contains(&gw) {
            gateways.push(gw);
            inner.push(InnerRoute::OnLink(gw));
        }
        let via = InnerRoute::Via(a.subnet(), gw);
        if a.prefix < max_prefix(a.addr) && !inner.contains(&via) {
            inner.push(via);
        }
    }
    for r in &ipam.routes {
        let gw = match r.gw {
            Some(g) => g,
            None => *gateways
                .iter()
                .find(|g| g.is_ipv4() == r.dst.is_v4())
                .ok_or_else(|| {
                    CniError::config(format!("route {} has no gateway of its family", r.dst))
                })?,
        };
        let via = InnerRoute::Via(r.dst.subnet(), gw);
        if !inner.contains(&via) {
            inner.push(via);
        }
    }
    let routes = inner
        .iter()
        .filter_map(|r| match r {
            InnerRoute::Via(to, via) => Some(Route { to: *to, via: *via }),
            InnerRoute::OnLink(_) => None,
        })
        .collect();
    let ctx = Context {
        name: name.clone(),
        id: None,
        ip_forward: false,
        log: conf.log.clone(),
        log_group: conf.log_group,
        log_rate: crate::model::DEFAULT_LOG_RATE,
        isolation: conf.isolation,
        single_ip: false,
        hostname: name,
        links: vec![Link {
            kind: LinkKind::Veth,
            name: env.ifname.clone(),
            host: Some(host),
            host_addresses: gateways.into_iter().map(host_cidr).collect(),
            addresses,
            accept_ra: false,
        }],
        routes,
        reach: Vec::new(),
        uplink: None,
        egress: crate::model::Egress::None,
        publish: Vec::new(),
        guest: None,
        file: PathBuf::from(format!("cni network {}", conf.name)),
    };
    Ok(Attachment {
        ctx,
        alias,
        netns: env.netns.clone(),
        inner_routes: inner,
        host_routes,
        result_routes: ipam.routes.clone(),
        reach: conf.reach.clone(),
        egress: conf.egress,
        uplink: conf.uplink.clone(),
        publish: conf.publish(),
        port_mappings: conf.port_mappings.clone(),
    })
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod tests;
