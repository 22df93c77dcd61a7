//! Phase 4 of `apply`, the rules: the context's table inside in one
//! transaction, its chains in the host's table in another; and `up`'s one
//! host transaction for many contexts (`host_rules`), falling back to one
//! per context.

use std::io;

use super::kernel::Kernel;
use super::{crash, CtxError, Host, HostView};
use crate::kernel::netlink::{NlError, Request};
use crate::kernel::nft::dispatch::DispatchChange;
use crate::kernel::nft::ranges::{Elem, RangeChange};
use crate::kernel::nft::table;
use crate::kernel::nft::wire::Msg;
use crate::kernel::profile;
use crate::kernel::sysctl;
use crate::model::Context;
use crate::observe::host_table::{self, splice::Part};
use crate::observe::links;
use crate::plan::{rules, Action, Side};

/// Rules: one transaction inside, one on the host; each all or nothing.
pub(super) fn rules_phase(
    ctx: &Context,
    actions: &[Action],
    k: &mut impl Kernel,
    defer_host_rules: bool,
) -> Result<(), CtxError> {
    const INSIDE: &str = "nftables table inet netctx";
    for a in actions {
        match a {
            Action::ReplaceTable { table, exists } => {
                let msgs = table::replace_table(Some(table), *exists);
                nft_transaction(k, Side::Ctx, &msgs, INSIDE, 4)?;
            }
            Action::DeleteTable => {
                let msgs = table::replace_table(None, true);
                nft_transaction(k, Side::Ctx, &msgs, INSIDE, 4)?;
            }
            Action::ReplaceHostChains { .. } | Action::UpdateHostSets(_) if defer_host_rules => {}
            Action::UpdateHostSets(ranges) => {
                let (shared, own): (Vec<RangeChange>, Vec<RangeChange>) =
                    ranges.iter().cloned().partition(RangeChange::shared);
                shared_sets(k, shared)?;
                if !own.is_empty() {
                    let mut msgs = vec![table::new_table(Some(table::HOST_COMMENT))];
                    own.iter().for_each(|r| r.msgs(&mut msgs));
                    nft_transaction(k, Side::Host, &msgs, SETS, 5)?;
                }
            }
            Action::ReplaceHostChains {
                remove,
                chains,
                dispatch,
                sets,
            } => {
                host_chains(ctx, remove, chains, (dispatch, &**sets), k)?;
                crash::point("an nf_tables transaction done");
            }
            _ => {}
        }
    }
    Ok(())
}

const SETS: &str = "host nftables sets in table inet netctx";

/// The shared deny sets' changes in a transaction of their own: contexts
/// converged at once each planned them from one look, and whichever comes
/// second finds elements gone or there already (ENOENT, EEXIST): it looks
/// again and changes what is left to change, if anything.
pub(super) fn shared_sets(
    k: &mut impl Kernel,
    mut changes: Vec<RangeChange>,
) -> Result<(), CtxError> {
    for attempt in 1.. {
        if changes.is_empty() {
            break;
        }
        let mut msgs = vec![table::new_table(Some(table::HOST_COMMENT))];
        changes.iter().for_each(|r| r.msgs(&mut msgs));
        match profile::time(5, || k.nft(Side::Host, &msgs)) {
            Ok(()) => break,
            Err((_, e)) if [libc::ENOENT, libc::EEXIST].contains(&e.errno) && attempt <= 3 => {
                let mut again = Vec::new();
                for c in changes {
                    let have = k
                        .host_set(&c.set.name, c.set.ports)
                        .map_err(|e| CtxError::kernel(SETS, e))?;
                    again.extend(RangeChange::against(c.set, have.as_deref()));
                }
                changes = again;
            }
            Err((_, e)) => return Err(CtxError::kernel(SETS, e)),
        }
    }
    Ok(())
}

fn host_chains(
    ctx: &Context,
    remove: &[String],
    chains: &[table::Chain],
    (dispatch, sets): (&DispatchChange, &table::HostSets),
    k: &mut impl Kernel,
) -> Result<(), CtxError> {
    const OBJECT: &str = "host nftables table inet netctx";
    // The shared sets' elements changed on their own (`shared_sets`); those
    // made go with the chains that look them up.
    let (made, changed): (Vec<RangeChange>, Vec<RangeChange>) =
        sets.shared.iter().cloned().partition(|r| r.create);
    shared_sets(k, changed)?;
    let sets = &table::HostSets {
        shared: made,
        ..sets.clone()
    };
    let mut remove = remove.to_vec();
    for attempt in 1.. {
        let msgs = table::replace_host_chains(&remove, chains, dispatch, sets);
        match profile::time(5, || k.nft(Side::Host, &msgs)) {
            Ok(()) => break,
            // A chain to remove went on its own (its device was deleted, on
            // kernels that drop such chains): look again at what is there.
            Err((_, e)) if e.errno == libc::ENOENT && attempt <= 3 => {
                remove = k
                    .host_chains(&rules::host_chain_prefix(&ctx.name))
                    .map_err(|e| CtxError::kernel(OBJECT, e))?;
            }
            Err((_, e)) => return Err(CtxError::kernel(OBJECT, e)),
        }
    }
    Ok(())
}

/// One nf_tables transaction, timed as profile phase `phase`.
fn nft_transaction(
    k: &mut impl Kernel,
    side: Side,
    msgs: &[crate::kernel::nft::wire::Msg],
    object: &str,
    phase: usize,
) -> Result<(), CtxError> {
    profile::time(phase, || k.nft(side, msgs)).map_err(|(_, e)| CtxError::kernel(object, e))?;
    crash::point("an nf_tables transaction done");
    Ok(())
}

/// Each context's part of `host_rules`' one transaction: its chains and
/// sets, with what they share made or changed by the first context that
/// has it to do (the dispatch's map and base chains, the NAT groups, the
/// shared deny sets), and an element two claim set by the first only.
pub(super) fn pending<'a>(items: &[(&Context, &'a [Action])]) -> Vec<Pending<'a>> {
    let empty = DispatchChange::default();
    let mut shared_made = false;
    let mut touched: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut nat_made = Vec::new();
    let mut nat_touched = std::collections::HashSet::new();
    let mut shared_taken = std::collections::HashSet::new();
    items
        .iter()
        .map(|(_, acts)| {
            let found = host_part(acts, &empty);
            let (remove, chains, dispatch, mut sets) =
                found.unwrap_or((&[], &[], &empty, table::HostSets::default()));
            let mut d = dispatch.clone();
            // The shared deny sets are made or changed once.
            sets.shared
                .retain(|r| shared_taken.insert(r.set.name.clone()));
            // The dispatch's map and base chain are made once a run, by the
            // first context that finds them missing.
            if shared_made {
                d.create_map = false;
                d.chain = None;
            }
            shared_made |= d.create_map || d.chain.is_some();
            // An element two contexts claim (one's veth jumping to the
            // other's chain) is removed or set by the first of them only.
            d.remove.retain(|k| !touched.contains(k));
            touched.extend(d.remove.iter().cloned());
            touched.extend(d.add.iter().map(|e| e.0.clone()));
            // So with the NAT dispatch's groups and elements.
            d.nat.make.retain(|(g, _)| !nat_made.contains(g));
            nat_made.extend(d.nat.make.iter().map(|(g, _)| *g));
            d.nat.remove.retain(|k| !nat_touched.contains(k));
            nat_touched.extend(d.nat.remove.iter().cloned());
            nat_touched.extend(d.nat.add.iter().map(|e| e.0.clone()));
            (remove, chains, d, sets)
        })
        .collect()
}

/// The host's chains of every context converged with `DeferHostRules`, in
/// one transaction (the table's creation once, then each context's removals
/// and chains). If it fails, each context's chains go in a transaction of
/// their own, so the failure is the failing context's alone. The results are
/// in the order of `items`.
///
/// When the one transaction commits, the host's table `view` had with it
/// made is kept for the next run (`observe::host_table::committed`).
pub fn host_rules(
    host: &mut Host,
    view: &HostView,
    items: &[(&Context, &[Action])],
) -> Vec<Result<(), CtxError>> {
    let no_sets = table::HostSets::default();
    let pending = pending(items);
    let mut msgs = vec![table::new_table(Some(table::HOST_COMMENT))];
    let mut any = false;
    for (remove, chains, dispatch, sets) in &pending {
        if remove.is_empty() && chains.is_empty() && dispatch.is_empty() && *sets == no_sets {
            continue;
        }
        any = true;
        table::host_context_msgs(remove, chains, dispatch, sets, &mut msgs);
    }
    let r = if any {
        profile::time(5, || host.nft.transaction(&msgs))
    } else {
        Ok(())
    };
    match r {
        Ok(()) => {
            crash::point("the host's nf_tables transaction done");
            if any {
                keep_committed(host, view, &pending);
            }
            return items.iter().map(|_| Ok(())).collect();
        }
        Err((i, e)) => {
            tracing::debug!(message = i, error = %e, "host transaction failed; one per context");
        }
    }
    items
        .iter()
        .zip(pending)
        .map(|((ctx, acts), (remove, chains, mut dispatch, mut sets))| {
            // On its own, each context makes the shared parts it found
            // missing (the transaction of the one that was to make them
            // may be the failing one); making them twice is harmless.
            if let Some(orig) = acts.iter().find_map(|a| match a {
                Action::ReplaceHostChains { dispatch, .. } => Some(dispatch),
                _ => None,
            }) {
                dispatch.create_map = orig.create_map;
                dispatch.chain.clone_from(&orig.chain);
                dispatch.nat.make.clone_from(&orig.nat.make);
            }
            // And the shared sets it found missing (their changes in place
            // stay the first's: `shared_sets` makes them once).
            let made = acts.iter().find_map(|a| match a {
                Action::ReplaceHostChains { sets, .. } => Some(&sets.shared),
                _ => None,
            });
            for r in made.into_iter().flatten().filter(|r| r.create) {
                if !sets.shared.iter().any(|s| s.set.name == r.set.name) {
                    sets.shared.push(r.clone());
                }
            }
            if remove.is_empty() && chains.is_empty() && dispatch.is_empty() && sets == no_sets {
                return Ok(());
            }
            let mut k = HostOnly(host);
            host_chains(ctx, remove, chains, (&dispatch, &sets), &mut k)
        })
        .collect()
}

/// A context's host chains and sets among its actions.
fn host_part<'a: 'b, 'b>(
    acts: &'a [Action],
    empty: &'b DispatchChange,
) -> Option<(
    &'a [String],
    &'a [table::Chain],
    &'b DispatchChange,
    table::HostSets,
)> {
    acts.iter().find_map(|a| match a {
        Action::ReplaceHostChains {
            remove,
            chains,
            dispatch,
            sets,
        } => Some((
            remove.as_slice(),
            chains.as_slice(),
            dispatch,
            (**sets).clone(),
        )),
        // Only set elements: no chain, no dispatch change.
        Action::UpdateHostSets(ranges) => {
            let (shared, ranges) = ranges.iter().cloned().partition(RangeChange::shared);
            let sets = table::HostSets {
                ranges,
                shared,
                ..Default::default()
            };
            Some((&[][..], &[][..], empty, sets))
        }
        _ => None,
    })
}

/// Keep the host's table `view` had with the committed transaction's
/// `pending` parts made (`observe::host_table::committed`).
fn keep_committed(host: &mut Host, view: &HostView, pending: &[Pending]) {
    let Some(before) = view.generation else {
        return;
    };
    let parts: Vec<Part> = pending
        .iter()
        .map(|(remove, chains, dispatch, sets)| Part {
            remove,
            chains,
            dispatch,
            sets,
        })
        .collect();
    host_table::committed(&mut host.nft, &view.nft, before, &parts);
}

/// A context's part of the host's transaction: chains that go, chains that
/// come, its dispatch change and its timed sets.
pub(super) type Pending<'a> = (
    &'a [String],
    &'a [table::Chain],
    DispatchChange,
    table::HostSets,
);

/// The host's sockets as a `Kernel` for the host's chains alone.
struct HostOnly<'a>(&'a mut Host);

impl Kernel for HostOnly<'_> {
    fn exec(&mut self, _side: Side, reqs: Vec<Request>) -> Vec<Result<(), NlError>> {
        self.0.rtnl.exec(reqs)
    }
    fn ns_links(&mut self) -> Result<Vec<(String, u32)>, NlError> {
        Ok(Vec::new())
    }
    fn host_link(&mut self, name: &str) -> Result<Option<u32>, NlError> {
        Ok(links::read_link(&mut self.0.rtnl, name)?.map(|l| l.index))
    }
    fn read_sysctl(&mut self, path: &str) -> Option<String> {
        sysctl::read(path)
    }
    fn write_sysctl(&mut self, path: &str, value: &str) -> io::Result<()> {
        sysctl::write(path, value)
    }
    fn nft(&mut self, _side: Side, msgs: &[Msg]) -> Result<(), (usize, NlError)> {
        self.0.nft.transaction(msgs)
    }
    fn host_chains(&mut self, prefix: &str) -> Result<Vec<String>, NlError> {
        let live = crate::observe::nft::read(&mut self.0.nft, &[])?;
        Ok(live.only(prefix).chains.into_iter().map(|c| c.0).collect())
    }
    fn host_set(&mut self, name: &str, ports: bool) -> Result<Option<Vec<Elem>>, NlError> {
        crate::observe::nft::read_range_set(&mut self.0.nft, name, ports)
    }
}
