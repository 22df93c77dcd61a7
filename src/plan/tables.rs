//! The plan for nf_tables: the context's table, replaced whole when anything
//! differs, and the context's chains in the host's table.

use super::{rules, Action, Observed, Refusal};
use crate::kernel::nft::table::{digest_of, HOST_COMMENT};
use crate::model::Context;
use crate::observe::links::NsState;

pub(super) fn context_table(ctx: &Context, ns: &NsState, acts: &mut Vec<Action>) {
    match rules::context_table(ctx) {
        Some(t) => {
            let differs = !ns.nft.exists
                || ns.nft.comment.as_deref() != Some(t.comment.as_str())
                || ns.nft.digest != t.digest();
            if differs {
                acts.push(Action::ReplaceTable {
                    table: t,
                    exists: ns.nft.exists,
                });
            }
        }
        None if ns.nft.exists => acts.push(Action::DeleteTable),
        None => {}
    }
}

pub(super) fn host_chains(
    ctx: &Context,
    obs: &Observed,
    acts: &mut Vec<Action>,
) -> Result<(), Refusal> {
    let prefix = rules::host_chain_prefix(&ctx.name);
    let chains = rules::host_chains(ctx);
    let have = obs.host_nft.only(&prefix);
    // A chain on the ingress of a host veth that is made anew goes with the
    // old device on some kernels (6.1) and stays on others (6.18): either
    // way it is installed again.
    let veth_renewed = acts.iter().any(|a| matches!(a, Action::CreateVeth { .. }));
    if have != digest_of(&chains, &[]) || (veth_renewed && !chains.is_empty()) {
        if obs.host_nft.exists && obs.host_nft.comment.as_deref() != Some(HOST_COMMENT) {
            return Err(Refusal::ForeignHostTable);
        }
        acts.push(Action::ReplaceHostChains {
            remove: have.chains.into_iter().map(|c| c.0).collect(),
            chains,
        });
    }
    Ok(())
}
