//! The shared deny sets (`kernel::nft::ranges::shared`) of the host's
//! table leave it: with the last chain of their front end (the declared
//! contexts', the CNI attachments'), and after a run when their front end's
//! `deny` no longer has entries of their family or kind.

use crate::kernel::netlink::NlError;
use crate::kernel::nft::ranges::shared;
use crate::kernel::nft::table;
use crate::kernel::nft::wire::Msg;
use crate::model::{is_attachment_chain, Context};
use crate::observe::nft as nft_live;

use super::Host;

/// The removals of the shared sets (of `set_names`, the table's) whose
/// front end has no context chain left among `kept`: after the chains that
/// looked them up went.
pub(super) fn leaving(set_names: &[String], kept: &[String]) -> Vec<Msg> {
    let left = |attachments: bool| {
        kept.iter()
            .any(|c| c.contains('_') && is_attachment_chain(c) == attachments)
    };
    set_names
        .iter()
        .filter(|s| shared::scope(s).is_some_and(|a| !left(a)))
        .map(|s| table::del_set(s))
        .collect()
}

/// After a run that converged `ctxs`: the shared sets their front end's
/// `deny` no longer wants (its last IPv6 range gone, say) go, each in a
/// transaction of its own; one that a context not converged in this run
/// still looks up stays (the kernel refuses, EBUSY) until that one is.
pub fn prune(host: &mut Host, ctxs: &[&Context]) -> Result<(), NlError> {
    let mut wanted: [Option<Vec<String>>; 2] = [None, None];
    for c in ctxs {
        let slot = &mut wanted[usize::from(c.is_attachment())];
        if slot.is_none() {
            let names = crate::plan::deny_sets(c).into_iter().map(|s| s.name);
            *slot = Some(names.collect());
        }
    }
    if wanted.iter().all(Option::is_none) {
        return Ok(());
    }
    for name in &nft_live::read_set_names(&mut host.nft)? {
        let Some(a) = shared::scope(name) else {
            continue;
        };
        let Some(want) = &wanted[usize::from(a)] else {
            continue;
        };
        if want.contains(name) {
            continue;
        }
        match host.nft.transaction(&[table::del_set(name)]) {
            Err((_, e)) if e.errno != libc::EBUSY && e.errno != libc::ENOENT => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
