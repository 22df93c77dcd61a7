//! Docker's `DOCKER-USER` chain (docs/coexistence.md): Docker's
//! forward chain (`ip filter FORWARD`, policy drop) jumps there first, and
//! Docker documents it as the place for other tools' rules. With
//! `host_firewall = "auto"`, while netctx forwards for any context, each
//! `DOCKER-USER` (`ip filter`, and `ip6 filter` with IPv6) holds one rule
//! of netctx's at its head, commented `netctx`: accept what netctx's own
//! chains accepted and marked (`iptables -S DOCKER-USER` lists it as
//! `-A DOCKER-USER -m mark --mark 0x2000/0x2000 -m comment --comment
//! netctx -j ACCEPT`). The rule is the one change netctx makes to an
//! object it did not make; it goes when netctx forwards for no context any
//! more. Runs in the host's namespace.

use super::Host;
use crate::kernel::netlink::NlError;
use crate::kernel::nft::expr::{Action, Match, Rule};
use crate::kernel::nft::table;
use crate::model::HostFirewall;
use crate::observe::firewall::{self as seen, ForeignChain, NFPROTO_IPV4, NFPROTO_IPV6};
use crate::plan::firewall::{is_docker_user_rule, DOCKER_USER, DOCKER_USER_COMMENT};
use crate::plan::rules::FORWARD_MARK;

/// The handles of netctx's rules in a `DOCKER-USER` chain.
fn ours(c: &ForeignChain) -> Vec<u64> {
    c.rules
        .iter()
        .filter(|r| {
            r.comment.as_deref() == Some(DOCKER_USER_COMMENT) && is_docker_user_rule(&r.exprs)
        })
        .map(|r| r.handle)
        .collect()
}

/// What `sync` did, for the caller to say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// `ip filter DOCKER-USER` and the like, where the rule was added.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Make every `DOCKER-USER` hold netctx's rule (`want`), or none of it.
pub fn sync(host: &mut Host, want: bool) -> Result<Synced, NlError> {
    let chains = seen::read(&mut host.nft)?;
    let mut msgs = Vec::new();
    let mut done = Synced::default();
    for c in chains.iter().filter(|c| {
        matches!(c.family, NFPROTO_IPV4 | NFPROTO_IPV6)
            && c.table == "filter"
            && c.name == DOCKER_USER
            && c.hook.is_none()
    }) {
        let have = ours(c);
        if want && have.is_empty() {
            let rule = Rule {
                matches: vec![Match::MarkBit(FORWARD_MARK)],
                action: Action::Accept,
            };
            msgs.push(table::insert_foreign_rule(
                c.family,
                &c.table,
                &c.name,
                &rule,
                DOCKER_USER_COMMENT,
            ));
            done.added.push(c.title());
        } else if !want && !have.is_empty() {
            for h in have {
                msgs.push(table::del_foreign_rule(c.family, &c.table, &c.name, h));
            }
            done.removed.push(c.title());
        }
    }
    if !msgs.is_empty() {
        host.nft.transaction(&msgs).map_err(|(_, e)| e)?;
    }
    Ok(done)
}

/// After `up`, `down`, ADD or DEL: netctx's rule in `DOCKER-USER` while
/// netctx forwards for any context (its forward dispatch exists) and
/// `mode` is `Auto` — added only with `may_add` (`up`, ADD, `watch`:
/// `down` and DEL, which may not know the configuration, never add it);
/// none when nothing is forwarded or `mode` is `None`.
pub fn after(host: &mut Host, mode: HostFirewall, may_add: bool) -> Result<Synced, NlError> {
    let live = crate::observe::nft::read_chains(&mut host.nft)?;
    let forwards =
        !live.foreign_host_table() && live.has_chain(crate::kernel::nft::dispatch::DISPATCH);
    if !forwards || mode == HostFirewall::None {
        return sync(host, false);
    }
    if may_add {
        return sync(host, true);
    }
    Ok(Synced::default())
}

/// What the host's own firewall would drop of netctx's traffic: a line
/// each (table, chain, rule or policy, remedy), iptables-legacy's tables
/// (which nf_tables cannot see) as far as their shape tells. `forwarding`: the host links
/// and uplinks of what netctx forwards; `links`: all of netctx's host
/// links.
pub fn findings(
    host: &mut Host,
    forwarding: &[String],
    links: &[String],
) -> Result<Vec<String>, NlError> {
    let chains = seen::read(&mut host.nft)?;
    let mut out: Vec<String> = crate::plan::firewall::findings(&chains, forwarding, links)
        .iter()
        .map(|f| f.to_string())
        .collect();
    out.extend(crate::plan::firewall::legacy_findings(
        &crate::observe::legacy::read(),
        forwarding,
        links,
    ));
    Ok(out)
}
