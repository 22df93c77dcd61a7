//! What one context's part of a committed transaction on the host's table
//! makes of the table as read (`Live`): the same messages
//! (`kernel::nft::ranges::host_context_msgs`) read as what they leave, so
//! that `up` keeps the table it wrote without dumping it again. Each step
//! mirrors what a whole read (`observe::nft::read`, `read_dispatch`,
//! `read_nat`) would find; `integration/host_table.rs` holds the two equal.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use crate::kernel::nft::dispatch::nat::{NatKey, NatMap};
use crate::kernel::nft::dispatch::{dispatch_chains, DispatchChange, DISPATCH};
use crate::kernel::nft::ranges::{ported_name, HostSets};
use crate::kernel::nft::table::{digest_of, Chain, HOST_COMMENT, REGULAR};
use crate::observe::nft::{Dispatch, Live};

/// One context's part of the transaction, as sent: the chains that go, the
/// chains that come, its dispatch change and its sets.
pub struct Part<'a> {
    pub remove: &'a [String],
    pub chains: &'a [Chain],
    pub dispatch: &'a DispatchChange,
    pub sets: &'a HostSets,
}

/// `live` with every part made. The parts touch chains of their own
/// (a context's prefix; the shared base chains are made by one part), and
/// a part never removes an element an earlier one added (`apply::rules`),
/// so all removals first, then all additions, is the transaction's result.
pub fn splice(live: &mut Live, parts: &[Part<'_>]) {
    if !live.exists {
        live.exists = true;
        live.comment = Some(HOST_COMMENT.to_string());
    }
    let mut gone: HashSet<&str> = HashSet::new();
    let mut made: Vec<Chain> = Vec::new();
    let mut fwd_gone: HashSet<&String> = HashSet::new();
    let mut fwd_add: Vec<(String, String)> = Vec::new();
    let mut nat_gone: HashSet<&NatKey> = HashSet::new();
    let mut nat_add: Vec<(NatKey, String)> = Vec::new();
    for p in parts {
        sets_before(live, p.sets);
        let d = p.dispatch;
        if d.create_map {
            live.dispatch.get_or_insert_with(Dispatch::default);
            add_set_name(live, DISPATCH);
        }
        for (g, _) in &d.nat.make {
            for m in g.maps() {
                if !live.nat.maps.contains(m) {
                    live.nat.maps.push(*m);
                }
                add_set_name(live, m.name());
            }
            made.extend(g.chains());
        }
        if d.chain.is_some() {
            made.extend(dispatch_chains());
        }
        gone.extend(p.remove.iter().map(String::as_str));
        made.extend(p.chains.iter().cloned());
        fwd_gone.extend(&d.remove);
        fwd_add.extend(d.add.iter().cloned());
        nat_gone.extend(&d.nat.remove);
        nat_add.extend(d.nat.add.iter().cloned());
    }
    live.nat.maps = NatMap::ALL
        .into_iter()
        .filter(|m| live.nat.maps.contains(m))
        .collect();
    // A base chain made is flushed and filled: as if it went and came.
    gone.extend(
        made.iter()
            .filter(|c| c.hooknum != REGULAR)
            .map(|c| c.name.as_str()),
    );
    replace_chains(live, &gone, &made);
    if let Some(fwd) = &mut live.dispatch {
        *fwd = Dispatch::from(edit(&fwd.elems, &fwd_gone, fwd_add));
    }
    live.nat.elems = Dispatch::from(edit(&live.nat.elems.elems, &nat_gone, nat_add));
    for p in parts {
        for name in &p.sets.remove {
            if let Ok(i) = live.set_names.binary_search(name) {
                live.set_names.remove(i);
            }
            live.ranges.remove(name);
        }
    }
}

/// A map's elements with the keys `gone` removed, then `add` added (a key
/// there takes the new chain: the kernel refuses a different one, so a
/// committed transaction had none).
fn edit<K: Ord + Clone + Hash>(
    elems: &[(K, String)],
    gone: &HashSet<&K>,
    add: Vec<(K, String)>,
) -> Vec<(K, String)> {
    let mut out: BTreeMap<K, String> = elems
        .iter()
        .filter(|(k, _)| !gone.contains(k))
        .cloned()
        .collect();
    out.extend(add);
    out.into_iter().collect()
}

/// The timed sets made when missing, the range sets (a context's own and
/// the shared `deny` sets) made or changed.
fn sets_before(live: &mut Live, sets: &HostSets) {
    for s in &sets.keep {
        add_set_name(live, &s.name);
    }
    for r in sets.ranges.iter().chain(&sets.shared) {
        let name = r.set.name.clone();
        add_set_name(live, &name);
        if ported_name(&name).is_none() {
            continue;
        }
        let elems = live.ranges.entry(name).or_default();
        if r.create {
            elems.clone_from(&r.set.elems);
        } else {
            elems.retain(|e| !r.del.contains(e));
            elems.extend(
                r.add
                    .iter()
                    .filter(|e| !elems.contains(e))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        elems.sort();
    }
}

/// A set's name among the table's (sorted); a range set's elements kept
/// as a read finds them (none yet) when it is new.
fn add_set_name(live: &mut Live, name: &str) {
    if let Err(i) = live.set_names.binary_search_by(|n| n.as_str().cmp(name)) {
        live.set_names.insert(i, name.to_string());
        if ported_name(name).is_some() {
            live.ranges.entry(name.to_string()).or_default();
        }
    }
}

/// The chains in `gone` removed with their rules, then `made` made (a
/// chain made that is there gets its rules after those it has).
fn replace_chains(live: &mut Live, gone: &HashSet<&str>, made: &[Chain]) {
    let dg = &mut live.digest;
    dg.chains.retain(|(n, _)| !gone.contains(n.as_str()));
    dg.rules.retain(|(n, _)| !gone.contains(n.as_str()));
    let new = digest_of(made, &[]);
    let there: HashSet<String> = dg.chains.iter().map(|c| c.0.clone()).collect();
    dg.chains
        .extend(new.chains.into_iter().filter(|c| !there.contains(&c.0)));
    dg.rules.extend(new.rules);
    dg.normalize();
}
