//! CHECK: the kernel against the configuration and prevResult. Everything
//! netctx made is looked at (links, aliases, addresses, routes, the table
//! inside, the host's gateway addresses, host routes and chain); every
//! difference is listed.

use super::attach::{Attachment, InnerRoute};
use super::error::{CniError, Result};
use super::kernel::open_netns;
use super::naming::Alias;
use crate::apply::Host;
use crate::kernel::netlink::Rtnl;
use crate::kernel::netns;
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::table as ruleset;
use crate::model::{max_prefix, Cidr};
use crate::observe::links::{self as state, NsState, ObsLink};
use crate::observe::nft as observe;
use crate::plan::rules;

fn alias_ok(l: &ObsLink, ctx: &str) -> bool {
    l.alias
        .as_deref()
        .and_then(Alias::parse)
        .is_some_and(|a| a.context == ctx)
}

/// Differences of the link `l` (`what`) from what it should be.
fn link_diffs(l: Option<&ObsLink>, what: &str, ctx: &str, addrs: &[Cidr], out: &mut Vec<String>) {
    let Some(l) = l else {
        out.push(format!("{what} is missing"));
        return;
    };
    if l.kind.as_deref() != Some("veth") {
        out.push(format!("{what} is not a veth"));
    }
    if !alias_ok(l, ctx) {
        out.push(format!("{what} does not carry netctx's alias for {ctx}"));
    }
    if !l.up {
        out.push(format!("{what} is down"));
    }
    for a in addrs {
        if !l.addrs.contains(a) {
            out.push(format!("{what} lacks address {a}"));
        }
    }
}

/// Differences inside the namespace.
pub fn inside_diffs(att: &Attachment, ns: &NsState) -> Vec<String> {
    let mut out = Vec::new();
    let what = format!("link {} in {}", att.ifname(), att.netns);
    link_diffs(
        ns.link(att.ifname()),
        &what,
        &att.ctx.name,
        att.addresses(),
        &mut out,
    );
    let index = ns.link(att.ifname()).map(|l| l.index);
    for r in &att.inner_routes {
        let found = match r {
            InnerRoute::OnLink(gw) => ns.routes.iter().any(|o| {
                o.to == Cidr {
                    addr: *gw,
                    prefix: max_prefix(*gw),
                } && o.via.is_none()
                    && o.oif == index
            }),
            InnerRoute::Via(to, gw) => ns.routes.iter().any(|o| o.to == *to && o.via == Some(*gw)),
        };
        if !found {
            let r = match r {
                InnerRoute::OnLink(gw) => format!("{gw} dev {}", att.ifname()),
                InnerRoute::Via(to, gw) => format!("{to} via {gw}"),
            };
            out.push(format!("route {r} is missing in {}", att.netns));
        }
    }
    if let Some(t) = rules::context_table(&att.ctx) {
        if !ns.nft.exists {
            out.push(format!("table inet netctx is missing in {}", att.netns));
        } else if ns.nft.digest != t.digest()
            || ns.nft.comment.as_deref() != Some(t.comment.as_str())
        {
            out.push(format!(
                "table inet netctx in {} differs from its configuration",
                att.netns
            ));
        }
    }
    out
}

/// Differences on the host.
fn host_diffs(att: &Attachment, host: &mut Host) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let hname = att.host();
    let links = state::read_links(&mut host.rtnl).map_err(|e| CniError::kernel("host links", e))?;
    let l = links.iter().find(|l| l.name == hname);
    let what = format!("host link {hname}");
    link_diffs(
        l,
        &what,
        &att.ctx.name,
        &att.ctx.links[0].host_addresses,
        &mut out,
    );
    let routes: Vec<state::ObsRoute> = host
        .rtnl
        .dump(crate::kernel::rtnl::dump_routes())
        .map_err(|e| CniError::kernel("host routes", e))?
        .iter()
        .filter_map(|m| match m {
            netlink_packet_route::RouteNetlinkMessage::NewRoute(r) => state::parse_route(r),
            _ => None,
        })
        .collect();
    for r in &att.host_routes {
        if !routes
            .iter()
            .any(|o| o.to == *r && o.oif == l.map(|l| l.index))
        {
            out.push(format!("host route {r} dev {hname} is missing"));
        }
    }
    let prefix = rules::host_chain_prefix(&att.ctx.name);
    let live = observe::read(&mut host.nft, &[])
        .map_err(|e| CniError::kernel("host nftables table inet netctx", e))?;
    let mut want = ruleset::digest_of(&rules::host_chains(&att.ctx), &[]);
    super::publish::add_digest(&att.ctx.name, hname, &att.dnats().0, &mut want);
    if live.only(&prefix) != want {
        out.push(format!(
            "host chains {prefix}{hname}* differ from their configuration"
        ));
    }
    Ok(out)
}

pub fn check(att: &Attachment, host: &mut Host) -> Result<()> {
    let ns = open_netns(&att.netns).ok_or_else(|| CniError::UnknownContainer {
        container: att.alias.container_id.clone(),
        why: format!("{} is not a network namespace", att.netns),
    })?;
    let observed = netns::run_in(&ns, || -> Result<NsState> {
        let mut nl =
            Rtnl::open().map_err(|e| CniError::io(format!("netlink in {}", att.netns), e))?;
        let mut nft =
            Nft::open().map_err(|e| CniError::io(format!("nf_tables in {}", att.netns), e))?;
        state::read_ns(&mut nl, &mut nft, &[])
            .map_err(|e| CniError::kernel(format!("reading {}", att.netns), e))
    })
    .map_err(|e| CniError::io(format!("entering {}", att.netns), e))??;
    let mut diffs = inside_diffs(att, &observed);
    diffs.extend(host_diffs(att, host)?);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(CniError::Check(diffs.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::attach;
    use crate::cni::config::NetConf;
    use crate::cni::env::Env;
    use crate::cni::result::CniResult;
    use crate::observe::nft::Live;
    use netlink_packet_route::route::RouteProtocol;
    use std::collections::HashMap;

    fn attachment() -> Attachment {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"nx","type":"netctx","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        let vars: HashMap<String, String> = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/abc"),
            ("CNI_IFNAME", "eth0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = Env::from_map(&vars).unwrap();
        let r = CniResult::parse(
            &serde_json::json!({"ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1"}]}),
            "prevResult",
        )
        .unwrap();
        attach::build(&conf, &env, &r, 0).unwrap()
    }

    /// The namespace exactly as ADD leaves it.
    fn as_made(att: &Attachment) -> NsState {
        let t = rules::context_table(&att.ctx).unwrap();
        let route = |to: &str, via: Option<&str>| state::ObsRoute {
            to: Cidr::parse(to).unwrap(),
            via: via.map(|v| v.parse().unwrap()),
            oif: Some(2),
            protocol: RouteProtocol::Static,
        };
        NsState {
            links: vec![ObsLink {
                index: 2,
                name: "eth0".into(),
                kind: Some("veth".into()),
                up: true,
                alias: Some(att.alias.render()),
                addrs: vec![Cidr::parse("10.89.0.2/24").unwrap()],
                link_local: Vec::new(),
                mac: None,
            }],
            routes: vec![
                route("10.89.0.1/32", None),
                route("10.89.0.0/24", Some("10.89.0.1")),
            ],
            sysctls: Default::default(),
            nft: Live {
                exists: true,
                comment: Some(t.comment.clone()),
                digest: t.digest(),
                dispatch: None,
            },
        }
    }

    #[test]
    fn as_made_is_clean_and_each_drift_is_named() {
        let att = attachment();
        let ok = as_made(&att);
        assert_eq!(inside_diffs(&att, &ok), Vec::<String>::new());

        let mut ns = ok.clone();
        ns.links[0].addrs.clear();
        assert!(inside_diffs(&att, &ns)[0].contains("lacks address 10.89.0.2/24"));
        let mut ns = ok.clone();
        ns.links[0].up = false;
        ns.links[0].alias = None;
        let d = inside_diffs(&att, &ns);
        assert!(d.iter().any(|d| d.contains("is down")) && d.iter().any(|d| d.contains("alias")));
        let mut ns = ok.clone();
        ns.routes.remove(0);
        assert!(inside_diffs(&att, &ns)[0].contains("route 10.89.0.1 dev eth0"));
        let mut ns = ok.clone();
        ns.nft.digest.rules.pop();
        assert!(inside_diffs(&att, &ns)[0].contains("differs"));
        let mut ns = ok.clone();
        ns.nft = Live::default();
        assert!(inside_diffs(&att, &ns)[0].contains("missing"));
        let mut ns = ok;
        ns.links.clear();
        assert!(inside_diffs(&att, &ns)[0].contains("link eth0 in /run/netns/abc is missing"));
    }
}
