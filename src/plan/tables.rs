//! The plan for nf_tables: the context's table, replaced whole when anything
//! differs, and the context's chains in the host's table.

use super::{rules, Action, Observed, Refusal};
use crate::kernel::nft::dispatch::nat::{Group, NatChange, NatKey};
use crate::kernel::nft::dispatch::{DispatchChange, DISPATCH, INPUT_DISPATCH};
use crate::kernel::nft::ranges::{ported_name, RangeChange, RangeSet};
use crate::kernel::nft::table::{digest_of, Chain, HostSets};
use crate::model::Context;
use crate::observe::links::NsState;
use crate::observe::nft::Live;

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
    let (dispatch, elems_differ) = dispatch_change(ctx, &chains, obs.host_nft);
    let sets = host_sets(ctx, &chains, obs.host_nft);
    let replace = have != digest_of(&chains, &[])
        || !sets.remove.is_empty()
        || sets
            .keep
            .iter()
            .any(|s| obs.host_nft.set_names.binary_search(&s.name).is_err())
        || (veth_renewed && !chains.is_empty())
        || elems_differ
        || dispatch.create_map
        || dispatch.chain.is_some()
        || !dispatch.nat.make.is_empty();
    let in_place = sets.ranges.len() + sets.shared.len();
    if (replace || in_place > 0) && obs.host_nft.foreign_host_table() {
        return Err(Refusal::ForeignHostTable);
    }
    if replace {
        acts.push(Action::ReplaceHostChains {
            remove: have.chains.into_iter().map(|c| c.0).collect(),
            chains,
            dispatch,
            sets: Box::new(sets),
        });
    } else if in_place > 0 {
        // Only the addresses changed: the chains and their counters stay.
        let mut r = sets.shared;
        r.extend(sets.ranges);
        acts.push(Action::UpdateHostSets(r));
    }
    Ok(())
}

/// The context's sets in the host's table: its timed sets (netctx's
/// resolver's: their elements are the resolver's business, never drift),
/// its range sets (those missing made, the others' elements changed in
/// place where they differ), those of its there that it no longer needs,
/// and the shared deny sets its chains look up (made when missing, their
/// elements changed in place: the floor is every context's at once).
pub fn host_sets(ctx: &Context, chains: &[Chain], live: &Live) -> HostSets {
    let keep = super::policy::dns_sets(ctx);
    let want = super::policy::range_sets(ctx, chains);
    let dns = format!("{}_dns", ctx.name);
    let remove = live
        .sets_named(&format!("{}_", ctx.name))
        .into_iter()
        .filter(|n| n.starts_with(&dns) || ported_name(n).is_some())
        .filter(|n| !keep.iter().any(|s| s.name == *n) && !want.iter().any(|s| s.name == *n))
        .collect();
    let against = |set: RangeSet| {
        let have = live
            .ranges
            .get(&set.name)
            .filter(|_| live.set_names.binary_search(&set.name).is_ok());
        RangeChange::against(set, have.map(Vec::as_slice))
    };
    let ranges = want.into_iter().filter_map(against).collect();
    let shared = super::policy::shared_sets(ctx, chains)
        .into_iter()
        .filter_map(against)
        .collect();
    HostSets {
        keep,
        ranges,
        remove,
        shared,
    }
}

/// The dispatch's change for a context whose chains are replaced: its
/// elements (its veths', and any that jumps to one of its chains) go and
/// the wanted ones come; the map and base chain are made when missing or
/// not as they must be. And whether its elements differ from the wanted.
pub fn dispatch_change(ctx: &Context, chains: &[Chain], live: &Live) -> (DispatchChange, bool) {
    let prefix = rules::host_chain_prefix(&ctx.name);
    let veths = rules::host_veths(ctx);
    let want = rules::dispatch_elems(ctx, chains);
    let have = live
        .dispatch
        .as_ref()
        .map(|d| d.of(&veths, &prefix))
        .unwrap_or_default();
    let shared_ok = want.is_empty() || live.dispatch_ok();
    let (nat, nat_differ) = nat_change(ctx, chains, live);
    let differ = have != want || nat_differ;
    let change = DispatchChange {
        create_map: !want.is_empty() && live.dispatch.is_none(),
        chain: (!shared_ok).then(|| {
            [DISPATCH, INPUT_DISPATCH]
                .into_iter()
                .filter(|c| live.has_chain(c))
                .map(String::from)
                .collect()
        }),
        remove: have.into_iter().map(|e| e.0).collect(),
        add: want,
        nat,
    };
    (change, differ)
}

/// The NAT dispatch's part (`dispatch_change`): the context's elements
/// (those of its keys and veths, and any that jumps to one of its chains)
/// go and the wanted come; a group it needs is made when missing or not as
/// it must be. And whether its elements differ from the wanted.
pub fn nat_change(ctx: &Context, chains: &[Chain], live: &Live) -> (NatChange, bool) {
    let prefix = rules::host_chain_prefix(&ctx.name);
    let want = super::nat::nat_elems(ctx, chains);
    let mut keys: Vec<NatKey> = want.iter().map(|e| e.0.clone()).collect();
    keys.extend(rules::host_veths(ctx).into_iter().map(NatKey::Iif));
    keys.sort();
    keys.dedup();
    let have = live.nat.elems.of(&keys, &prefix);
    let make = Group::ALL
        .into_iter()
        .filter(|g| want.iter().any(|(k, _)| k.map().group() == *g))
        .filter(|g| !live.nat_group_ok(*g))
        .map(|g| {
            let present = g
                .chains()
                .into_iter()
                .map(|c| c.name)
                .filter(|c| live.has_chain(c))
                .collect();
            (g, present)
        })
        .collect();
    let differ = have != want;
    let change = NatChange {
        make,
        remove: have.into_iter().map(|e| e.0).collect(),
        add: want,
    };
    (change, differ)
}
