//! CNI attachments in `netctx status`: one row each, from the host's links
//! and table (`observe::attachments`).

use super::status::ContextState;
use crate::apply::{Host, HostView};
use crate::observe::attachments::{any_attachment, attachments, inside};
use crate::observe::nft;
use crate::plan::rules;

/// One attachment's `netctx status` row.
pub struct Row {
    pub name: String,
    /// `NAMESPACE/POD`, when the runtime named the pod.
    pub pod: Option<String>,
    pub state: ContextState,
    pub detail: Vec<String>,
}

/// `netctx status` rows for the attachments, given the host links and table
/// already read for the contexts.
pub fn status_rows(host: &mut Host, view: &HostView) -> Vec<Row> {
    if !any_attachment(view.links.values()) {
        return Vec::new();
    }
    let live = attachments(&mut host.rtnl);
    let chains = nft::read(&mut host.nft, &[]).unwrap_or_default();
    let resolvers = crate::apply::dns::read_records();
    let listening = if resolvers.is_empty() {
        Vec::new()
    } else {
        super::status::dns_listeners()
    };
    live.iter()
        .map(|a| {
            let mut d = Vec::new();
            if !a.host_up {
                d.push(format!("host link {} is down", a.host_link));
            }
            let prefix = rules::host_chain_prefix(&a.alias.context);
            let strict = chains
                .digest
                .chains
                .iter()
                .any(|c| c.0.starts_with(&prefix));
            match &a.netns {
                Some((_, f)) => d.extend(inside(a, f, strict)),
                None => d.push("no namespace holds its peer".into()),
            }
            let state = if d.is_empty() {
                ContextState::Up
            } else {
                ContextState::Drifted
            };
            let esc = crate::model::escape;
            let mut detail = vec![format!(
                "CNI attachment: network {}, container {}, interface {}{}{}",
                esc(&a.alias.network),
                esc(&a.alias.container_id),
                esc(&a.alias.ifname),
                a.netns
                    .as_ref()
                    .map(|(p, _)| format!(", namespace {}", p.display()))
                    .unwrap_or_default(),
                if strict {
                    ""
                } else {
                    ", no host chain (isolation off?)"
                },
            )];
            detail.extend(d);
            // Its reach names domains (ADD recorded its resolver): not
            // drift, but its names resolve to nothing without watch.
            if let Some(r) = resolvers.iter().find(|r| r.ctx == a.alias.context) {
                let dev = nix::net::if_::if_nametoindex(r.dev.as_str()).unwrap_or(0);
                if let Some(at) = r.addrs.first() {
                    detail.extend(super::status::resolver_missing(&listening, *at, Some(dev)));
                }
            }
            Row {
                name: a.alias.context.clone(),
                pod: a.alias.pod.clone(),
                state,
                detail,
            }
        })
        .collect()
}
