//! The kernel side of ADD and DEL. ADD makes, in the runtime's namespace
//! `CNI_NETNS` (netctx did not make it and never removes it), the veth
//! `CNI_IFNAME` whose host side stays in the host's namespace, with the
//! addresses, routes, the table `inet netctx` (strict isolation, logging)
//! and, on the host, the gateway addresses, host routes and the ingress
//! chain. Both ends carry the alias `netctx-cni:…`; DEL and GC remove only
//! links with that alias and chains named after the attachment.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use super::attach::{Attachment, InnerRoute};
use super::error::{CniError, Result};
use super::naming::Alias;
use super::rtmsg;
use crate::apply::Host;
use crate::kernel::netlink::{NlError, Request, Rtnl};
use crate::kernel::netns;
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::table as ruleset;
use crate::kernel::rtnl as msgs;
use crate::observe::links as state;
use crate::observe::nft as observe;
use crate::plan::rules;

const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The runtime's namespace; `None` when the path is not (or no longer) a
/// network namespace.
pub fn open_netns(path: &str) -> Option<File> {
    let f = File::open(path).ok()?;
    let st = nix::sys::statfs::fstatfs(f.as_fd()).ok()?;
    (st.filesystem_type().0 as i64 == NSFS_MAGIC).then_some(f)
}

/// Hardware addresses ADD reports: (host side, container side).
pub struct Macs {
    pub host: Option<String>,
    pub container: Option<String>,
}

/// Send requests in order; the first failure, named.
fn exec(nl: &mut Rtnl, steps: Vec<(Request, String)>) -> Result<()> {
    let (reqs, what): (Vec<_>, Vec<_>) = steps.into_iter().unzip();
    for (r, w) in nl.exec(reqs).into_iter().zip(what) {
        r.map_err(|e| CniError::kernel(w, e))?;
    }
    Ok(())
}

fn host_sysctls(host: &str) {
    // As for every netctx host side: no router advertisements, no
    // autoconfiguration, no redirects. Absent without IPv6: ignored.
    for key in ["accept_ra", "autoconf", "accept_redirects"] {
        let _ = crate::kernel::sysctl::write(&format!("net/ipv6/conf/{host}/{key}"), "0");
    }
}

/// A host link named `name` that carries the alias of `ctx`.
fn ours(link: &state::ObsLink, ctx: &str) -> bool {
    link.alias
        .as_deref()
        .and_then(Alias::parse)
        .is_some_and(|a| a.context == ctx)
}

/// ADD on the host and in the namespace. On failure the caller runs
/// [`del`], which removes whatever was made.
pub fn add(att: &Attachment, host: &mut Host) -> Result<Macs> {
    let ns = open_netns(&att.netns).ok_or_else(|| CniError::InvalidEnv {
        var: "CNI_NETNS",
        why: format!("{} is not a network namespace", att.netns),
    })?;
    let hname = att.host().to_string();
    let ctx = att.ctx.name.clone();
    match state::read_link(&mut host.rtnl, &hname)
        .map_err(|e| CniError::kernel(format!("host link {hname}"), e))?
    {
        Some(l) if ours(&l, &ctx) => {
            // Left by an ADD whose DEL never came: ours to replace.
            if let Err(e) = host.rtnl.exec(vec![msgs::del_link(&hname)]).remove(0) {
                if e.errno != libc::ENODEV {
                    return Err(CniError::kernel(format!("host link {hname}"), e));
                }
            }
            let rtnl = &mut host.rtnl;
            crate::apply::wait_gone(|| Ok(state::read_link(rtnl, &hname)?.is_some()), &hname)
                .map_err(|e| CniError::TryAgain(e.chain()))?;
        }
        Some(_) => {
            return Err(CniError::kernel(
                format!("host link {hname} (not made by netctx)"),
                NlError {
                    errno: libc::EEXIST,
                    extack: None,
                },
            ))
        }
        None => {}
    }
    let alias = att.alias.render();
    exec(
        &mut host.rtnl,
        vec![
            (
                msgs::new_veth(&hname, att.ifname(), ns.as_raw_fd()),
                format!(
                    "link {} in {} (veth, host side {hname})",
                    att.ifname(),
                    att.netns
                ),
            ),
            (
                msgs::set_alias(&hname, &alias),
                format!("host link {hname}"),
            ),
        ],
    )?;
    host_sysctls(&hname);
    let index = state::read_link(&mut host.rtnl, &hname)
        .map_err(|e| CniError::kernel(format!("host link {hname}"), e))?
        .ok_or_else(|| CniError::TryAgain(format!("host link {hname} vanished")))?
        .index;
    let mut steps: Vec<(Request, String)> = att.ctx.links[0]
        .host_addresses
        .iter()
        .map(|a| {
            (
                msgs::add_address(index, *a),
                format!("address {a} on host link {hname}"),
            )
        })
        .collect();
    steps.push((
        msgs::set_link_up(&hname, true),
        format!("host link {hname}"),
    ));
    exec(&mut host.rtnl, steps)?;
    let container = netns::run_in(&ns, || inside(att, &alias))
        .map_err(|e| CniError::io(format!("entering {}", att.netns), e))??;
    // Host routes once the peer is up (a route over a link without carrier
    // is refused for IPv6).
    let routes = att
        .host_routes
        .iter()
        .map(|r| {
            (
                rtmsg::add_link_route(r.addr, index),
                format!("host route {r} dev {hname}"),
            )
        })
        .collect();
    exec(&mut host.rtnl, routes)?;
    host_chains(att, host)?;
    let host_mac = rtmsg::mac(&mut host.rtnl, &hname)
        .map_err(|e| CniError::kernel(format!("host link {hname}"), e))?;
    Ok(Macs {
        host: host_mac,
        container,
    })
}

/// Inside the namespace (the calling thread is in it): addresses, link up,
/// routes, the table. Returns the container side's MAC.
fn inside(att: &Attachment, alias: &str) -> Result<Option<String>> {
    let name = att.ifname();
    let mut nl = Rtnl::open().map_err(|e| CniError::io(format!("netlink in {}", att.netns), e))?;
    let mut nft =
        Nft::open().map_err(|e| CniError::io(format!("nf_tables in {}", att.netns), e))?;
    let what = || format!("link {name} in {}", att.netns);
    let index = state::read_link(&mut nl, name)
        .map_err(|e| CniError::kernel(what(), e))?
        .ok_or_else(|| CniError::TryAgain(format!("{} vanished", what())))?
        .index;
    let _ = crate::kernel::sysctl::write(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
    let mut steps = vec![(msgs::set_alias(name, alias), what())];
    for a in att.addresses() {
        steps.push((
            rtmsg::add_address_no_route(index, *a),
            format!("address {a} on {}", what()),
        ));
    }
    steps.push((
        msgs::set_link_up("lo", true),
        format!("link lo in {}", att.netns),
    ));
    steps.push((msgs::set_link_up(name, true), what()));
    for r in &att.inner_routes {
        let (req, w) = match r {
            InnerRoute::OnLink(gw) => (
                rtmsg::add_link_route(*gw, index),
                format!("route {gw} dev {name}"),
            ),
            InnerRoute::Via(to, gw) => (msgs::add_route(*to, *gw), format!("route {to} via {gw}")),
        };
        steps.push((req, format!("{w} in {}", att.netns)));
    }
    exec(&mut nl, steps)?;
    if let Some(t) = rules::context_table(&att.ctx) {
        let object = || format!("nftables table inet netctx in {}", att.netns);
        let live = observe::read(&mut nft, &[]).map_err(|e| CniError::kernel(object(), e))?;
        let msgs = ruleset::replace_table(Some(&t), live.exists);
        nft.transaction(&msgs)
            .map_err(|(_, e)| CniError::kernel(object(), e))?;
    }
    rtmsg::mac(&mut nl, name).map_err(|e| CniError::kernel(what(), e))
}

/// The attachment's ingress chain and published ports in the host's table
/// (replacing any chain of its name), in one transaction.
fn host_chains(att: &Attachment, host: &mut Host) -> Result<()> {
    let object = "host nftables table inet netctx";
    let chains = rules::host_chains(&att.ctx);
    let mut live = observe::read(&mut host.nft, &[]).map_err(|e| CniError::kernel(object, e))?;
    if live.exists {
        live.dispatch =
            observe::read_dispatch(&mut host.nft).map_err(|e| CniError::kernel(object, e))?;
    }
    if live.exists && live.comment.as_deref() != Some(ruleset::HOST_COMMENT) {
        return Err(CniError::kernel(
            format!("{object} (made by something else than netctx)"),
            NlError {
                errno: libc::EEXIST,
                extack: None,
            },
        ));
    }
    let remove: Vec<String> = live
        .only(&rules::host_chain_prefix(&att.ctx.name))
        .chains
        .into_iter()
        .map(|c| c.0)
        .collect();
    let (dnats, _) = att.dnats();
    if chains.is_empty() && remove.is_empty() && dnats.is_empty() {
        return Ok(());
    }
    let (dispatch, _) = crate::plan::tables::dispatch_change(&att.ctx, &chains, &live);
    let mut msgs = ruleset::replace_host_chains(&remove, &chains, &dispatch);
    msgs.extend(super::publish::msgs(&att.ctx.name, att.host(), &dnats));
    host.nft
        .transaction(&msgs)
        .map_err(|(_, e)| CniError::kernel(object, e))
}

/// Remove one attachment: its host link (and so the pair), inside the
/// namespace (when it still is one) the link and the table, on the host its
/// chains. Missing pieces are fine; every failure is reported, none stops
/// the rest.
pub fn del(ctx: &str, host_link: &str, ifname: &str, netns: &str, host: &mut Host) -> Result<()> {
    let mut errors = Vec::new();
    match state::read_link(&mut host.rtnl, host_link) {
        Ok(Some(l)) if ours(&l, ctx) => {
            // The kernel may be deleting it already (its namespace went).
            match host.rtnl.exec(vec![msgs::del_link(host_link)]).remove(0) {
                Err(e) if e.errno != libc::ENODEV => {
                    errors.push(CniError::kernel(format!("host link {host_link}"), e))
                }
                _ => {}
            }
        }
        Ok(_) => {}
        Err(e) => errors.push(CniError::kernel(format!("host link {host_link}"), e)),
    }
    if let Some(ns) = (!netns.is_empty()).then(|| open_netns(netns)).flatten() {
        match netns::run_in(&ns, || del_inside(ctx, ifname, netns)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(CniError::io(format!("entering {netns}"), e)),
        }
    }
    if let Err(e) = crate::apply::teardown::remove_host_chains(host, &[ctx.to_string()]) {
        errors.push(CniError::TryAgain(e.to_string()));
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::Many(errors)),
    }
}

fn del_inside(ctx: &str, ifname: &str, netns: &str) -> Result<()> {
    let mut nl = Rtnl::open().map_err(|e| CniError::io(format!("netlink in {netns}"), e))?;
    let mut nft = Nft::open().map_err(|e| CniError::io(format!("nf_tables in {netns}"), e))?;
    let what = format!("link {ifname} in {netns}");
    if let Some(l) = state::read_link(&mut nl, ifname).map_err(|e| CniError::kernel(&what, e))? {
        if ours(&l, ctx) {
            // Usually gone with its host side already.
            match nl.exec(vec![msgs::del_link(ifname)]).remove(0) {
                Err(e) if e.errno != libc::ENODEV => return Err(CniError::kernel(what, e)),
                _ => {}
            }
        }
    }
    let object = format!("nftables table inet netctx in {netns}");
    let live = observe::read(&mut nft, &[]).map_err(|e| CniError::kernel(&object, e))?;
    if live.exists && live.comment.as_deref() == Some(format!("netctx context {ctx}").as_str()) {
        nft.transaction(&[ruleset::del_table()])
            .map_err(|(_, e)| CniError::kernel(object, e))?;
    }
    Ok(())
}
