//! `egress = "routed"` on the host: a proxy neighbour entry on the uplink
//! for each of the context's addresses inside the uplink's subnets, and a
//! host route `ADDR/32` (`/128`) to the context's host veth. What is added
//! is recorded first in `/run/netctx/host-proxies` (0600), so that `down`
//! (also `down --all` after a crash, without the configuration) removes
//! exactly that.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use super::uplink::UplinkError;
use super::Host;
use crate::kernel::{rtnl, rundir};
use crate::model::Context;
use crate::observe::links;
use crate::plan::uplink::routed_entries;

pub const PROXIES: &str = "/run/netctx/host-proxies";

/// `(context, uplink, address, host veth)`.
pub type Proxy = (String, String, IpAddr, String);

pub fn parse(text: &str) -> BTreeSet<Proxy> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [ctx, up, addr, veth] = f.as_slice() else {
                return None;
            };
            Some((
                ctx.to_string(),
                up.to_string(),
                addr.parse().ok()?,
                veth.to_string(),
            ))
        })
        .collect()
}

fn render(r: &BTreeSet<Proxy>) -> String {
    r.iter()
        .map(|(c, u, a, v)| format!("{c} {u} {a} {v}\n"))
        .collect()
}

fn load() -> Result<BTreeSet<Proxy>, UplinkError> {
    match std::fs::read_to_string(PROXIES) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(UplinkError::Record(e)),
    }
}

fn save(r: &BTreeSet<Proxy>) -> Result<(), UplinkError> {
    if r.is_empty() {
        return match std::fs::remove_file(PROXIES) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(UplinkError::Record(e)),
            _ => Ok(()),
        };
    }
    rundir::write_private(Path::new(PROXIES), render(r).as_bytes()).map_err(UplinkError::Record)
}

/// Entries of the `routed` contexts added (replaced), those of `leaving`
/// contexts (every one with `all`) and stale ones of `routed` removed.
pub fn converge(
    host: &mut Host,
    routed: &[&Context],
    leaving: &[String],
    all: bool,
) -> Vec<UplinkError> {
    let mut errors = Vec::new();
    let rec = match load() {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    if rec.is_empty() && routed.is_empty() {
        return errors;
    }
    let host_links = match links::read_links(&mut host.rtnl) {
        Ok(l) => l,
        Err(e) => return vec![UplinkError::Neigh(e)],
    };
    let index = |name: &str| host_links.iter().find(|l| l.name == name).map(|l| l.index);
    let mut want: BTreeSet<Proxy> = BTreeSet::new();
    for c in routed {
        let up = c.uplink.clone().unwrap_or_default();
        let Some(link) = host_links.iter().find(|l| l.name == up) else {
            errors.push(UplinkError::NoUplink(up));
            continue;
        };
        for (addr, veth) in routed_entries(c, &link.addrs) {
            want.insert((c.name.clone(), up.clone(), addr, veth));
        }
    }
    let names: Vec<&str> = routed.iter().map(|c| c.name.as_str()).collect();
    let stale: Vec<Proxy> = rec
        .iter()
        .filter(|p| {
            (all && !crate::model::is_attachment_name(&p.0))
                || leaving.contains(&p.0)
                || (names.contains(&p.0.as_str()) && !want.contains(*p))
        })
        .cloned()
        .collect();
    // Recorded before anything is added.
    let union: BTreeSet<Proxy> = rec.union(&want).cloned().collect();
    if let Err(e) = save(&union) {
        return vec![e];
    }
    let mut reqs = Vec::new();
    for (ctx, up, addr, veth) in &want {
        if let (Some(u), Some(v)) = (index(up), index(veth)) {
            // An announced address's route is the announce's (the same
            // route, of protocol netctx).
            let announced = routed.iter().any(|c| c.name == *ctx && c.announce);
            let proto = if announced {
                rtnl::ANNOUNCE_PROTO
            } else {
                rtnl::ROUTE_PROTO
            };
            reqs.push(rtnl::add_proxy(u, *addr));
            reqs.push(rtnl::replace_host_route(*addr, v, proto));
        }
    }
    let adds = reqs.len();
    for (_, up, addr, veth) in &stale {
        reqs.extend(index(up).map(|u| rtnl::del_proxy(u, *addr)));
        // Only a route of its own: an announced address's stays the
        // announce's.
        let proto = rtnl::ROUTE_PROTO;
        reqs.extend(index(veth).map(|v| rtnl::del_host_route(*addr, v, proto)));
    }
    for (i, r) in host.rtnl.exec(reqs).into_iter().enumerate() {
        match r {
            // Gone already (its link went, or someone removed it).
            Err(e) if i >= adds && [libc::ENOENT, libc::ESRCH, libc::ENODEV].contains(&e.errno) => {
            }
            Err(e) => errors.push(UplinkError::Neigh(e)),
            Ok(()) => {}
        }
    }
    let kept: BTreeSet<Proxy> = union.into_iter().filter(|p| !stale.contains(p)).collect();
    errors.extend(save(&kept).err());
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back() {
        let r: BTreeSet<Proxy> = [(
            "web".to_string(),
            "up0".to_string(),
            "203.0.113.10".parse().unwrap(),
            "nx-web".to_string(),
        )]
        .into();
        assert_eq!(render(&r), "web up0 203.0.113.10 nx-web\n");
        assert_eq!(parse(&render(&r)), r);
    }
}
