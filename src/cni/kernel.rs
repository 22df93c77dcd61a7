//! The kernel side of ADD, DEL and CHECK, all of it the engine's: an
//! attachment is a context in the runtime's namespace `CNI_NETNS` (which
//! netctx neither makes nor removes), converged by `apply` with its journal
//! and rollback, removed by `apply::teardown::detach`, checked by a plan
//! that must be empty. Its `uplink` switches go through the engine's record
//! as a declared context's do.

use super::attach::Attachment;
use super::error::{CniError, Result};
use crate::apply::{self, Host, HostView};
use crate::kernel::netns;
use crate::model::Context;
use crate::observe::links;

/// Hardware addresses ADD reports: (host side, container side).
pub struct Macs {
    pub host: Option<String>,
    pub container: Option<String>,
}

fn view(host: &mut Host, ctx: &Context) -> Result<HostView> {
    HostView::read(host, &[ctx])
        .map_err(|e| CniError::kernel("reading the host's links and table", e))
}

fn uplink_errors(errors: Vec<apply::uplink::UplinkError>) -> Result<()> {
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            Err(CniError::io("the uplink", std::io::Error::other(msg)))
        }
    }
}

/// Docker's `DOCKER-USER` as netctx's forwarding needs it: after ADD,
/// netctx's rule where netctx forwards (a CNI network has no
/// `host_firewall`: "auto"); after DEL, only taken away when nothing is
/// forwarded any more.
fn host_firewall(host: &mut Host, may_add: bool) -> Result<()> {
    apply::firewall::after(host, crate::model::HostFirewall::Auto, may_add)
        .map(|_| ())
        .map_err(|e| CniError::kernel("DOCKER-USER", e))
}

/// The path the attachment's namespace is opened by: the descriptor ADD
/// holds (what was checked), else the runtime's path.
fn ns_path(att: &Attachment) -> String {
    match &att.ctx.netns {
        crate::model::Netns::Runtime { held: Some(fd), .. } => format!("/proc/self/fd/{fd}"),
        _ => att.netns.clone(),
    }
}

/// ADD: the attachment converged, then the host's switches of its uplink
/// and Docker's `DOCKER-USER`. A failure anywhere removes what carries the
/// attachment's alias or name again (the engine's journal undoes links,
/// addresses, routes and switches; the tables are removed here).
pub fn add(att: &Attachment, host: &mut Host) -> Result<Macs> {
    let ctx = &att.ctx;
    let view = view(host, ctx)?;
    let done = apply::converge(ctx, &view, host, false)
        .map_err(CniError::from)
        .and_then(|_| uplink_errors(apply::uplink::after_converge(host, &[ctx])))
        .and_then(|()| host_firewall(host, true))
        .and_then(|()| macs(att, host));
    if done.is_err() {
        if let Err(d) = del(&ctx.name, att.host(), att.ifname(), &ns_path(att), host) {
            eprintln!("netctx: error: undoing the failed ADD: {d}");
        }
    }
    done
}

fn macs(att: &Attachment, host: &mut Host) -> Result<Macs> {
    let host_mac = links::read_link(&mut host.rtnl, att.host())
        .map_err(|e| CniError::kernel(format!("host link {}", att.host()), e))?
        .and_then(|l| l.mac_text());
    let container = netns::open_path(&ns_path(att))
        .map(|ns| links::read_links_in(&ns))
        .transpose()
        .map_err(|e| CniError::io(format!("reading the links of {}", att.netns), e))?
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.name == att.ifname())
        .and_then(|l| l.mac_text());
    Ok(Macs {
        host: host_mac,
        container,
    })
}

/// DEL (and the undoing of a failed ADD): what carries the attachment's
/// alias or name goes; the uplink's switches follow.
pub fn del(ctx: &str, host_link: &str, ifname: &str, netns: &str, host: &mut Host) -> Result<()> {
    let mut errors: Vec<CniError> = apply::teardown::detach(host, ctx, host_link, ifname, netns)
        .into_iter()
        .map(CniError::from)
        .collect();
    errors.extend(uplink_errors(apply::uplink::after_down(host, &[ctx.to_string()], false)).err());
    errors.extend(host_firewall(host, false).err());
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::Many(errors)),
    }
}

/// CHECK: the plan of the attachment against the kernel must be empty;
/// the error's details list what it would do.
pub fn check(att: &Attachment, host: &mut Host) -> Result<()> {
    if netns::open_path(&att.netns).is_none() {
        return Err(CniError::UnknownContainer {
            container: att.container_id.clone(),
            why: format!("{} is not a network namespace", att.netns),
        });
    }
    let view = view(host, &att.ctx)?;
    let outcome = apply::converge(&att.ctx, &view, host, true)?;
    if outcome.actions.is_empty() {
        return Ok(());
    }
    let needs: Vec<String> = outcome
        .actions
        .iter()
        .map(|a| format!("{}: {a}", a.object()))
        .collect();
    Err(CniError::Check(format!(
        "attachment {} needs: {}",
        att.ctx.name,
        needs.join("; ")
    )))
}
