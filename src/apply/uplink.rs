//! The host's switches for uplinks (docs/uplink.md): every value netctx
//! changes is first recorded in `/run/netctx/host-sysctls` (0600) with the
//! contexts that need it, then written; when the last of those contexts
//! goes (`down`, `up` of a context that no longer needs it, `down --all`
//! after a crash: the record survives), the old value is written back. The
//! guard chain (`plan::uplink::guard`) is installed before forwarding turns
//! on and removed with the last switch. Runs in the host's namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use super::Host;
use crate::kernel::nft::table::{self, digest_of, HOST_COMMENT};
use crate::kernel::{rundir, sysctl};
use crate::observe::links;
use crate::observe::nft as nft_live;
use crate::plan::uplink::{guard, GUARD};

/// The record of the host values netctx changed.
pub const RECORD: &str = "/run/netctx/host-sysctls";

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot read or write the record of host switches {RECORD}")]
    Record(#[source] io::Error),
    #[error("cannot set host {path} = {value} (does the uplink exist?)")]
    Write {
        path: String,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("host nftables chain {GUARD} in table inet netctx")]
    Guard(#[source] crate::kernel::netlink::NlError),
    #[error("host nftables NAT dispatch (netctx-postrouting, netctx-prerouting, netctx-output) in table inet netctx")]
    Nat(#[source] crate::kernel::netlink::NlError),
    #[error("host nftables deny sets (netctx-deny4…) in table inet netctx")]
    Deny(#[source] crate::kernel::netlink::NlError),
    #[error("proxy neighbour entry or host route of a routed context")]
    Neigh(#[source] crate::kernel::netlink::NlError),
    #[error("uplink {0} is no interface of the host")]
    NoUplink(String),
}

/// One recorded switch: its value before netctx, and who needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub old: String,
    pub value: String,
    pub users: BTreeSet<String>,
}

/// Path → entry; one line each: `PATH OLD VALUE USER,USER…` (values have
/// no spaces: netctx changes only 0/1/2 switches).
pub type Record = BTreeMap<String, Entry>;

pub fn parse(text: &str) -> Record {
    let mut r = Record::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [path, old, value, rest @ ..] = f.as_slice() {
            let users = rest
                .first()
                .map(|u| {
                    u.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            r.insert(
                path.to_string(),
                Entry {
                    old: old.to_string(),
                    value: value.to_string(),
                    users,
                },
            );
        }
    }
    r
}

pub fn render(r: &Record) -> String {
    r.iter()
        .map(|(p, e)| {
            let users: Vec<&str> = e.users.iter().map(String::as_str).collect();
            format!("{p} {} {} {}\n", e.old, e.value, users.join(","))
        })
        .collect()
}

pub fn load() -> Result<Record, UplinkError> {
    match std::fs::read_to_string(RECORD) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::new()),
        Err(e) => Err(UplinkError::Record(e)),
    }
}

fn save(r: &Record) -> Result<(), UplinkError> {
    if r.is_empty() {
        return match std::fs::remove_file(RECORD) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(UplinkError::Record(e)),
            _ => Ok(()),
        };
    }
    rundir::write_private(Path::new(RECORD), render(r).as_bytes()).map_err(UplinkError::Record)
}

fn write(path: &str, value: &str) -> Result<(), UplinkError> {
    let missing = || UplinkError::Write {
        path: path.replace('/', "."),
        value: value.to_string(),
        source: io::Error::from(io::ErrorKind::NotFound),
    };
    // A switch of an interface that is not there is an error here: the
    // uplink is missing.
    sysctl::read(path).ok_or_else(missing)?;
    sysctl::write(path, value).map_err(|source| UplinkError::Write {
        path: path.replace('/', "."),
        value: value.to_string(),
        source,
    })
}

/// The switches `ctx` needs, decided on the host's values now.
pub fn wanted(ctx: &crate::model::Context) -> Vec<(String, String)> {
    let mut paths = crate::plan::uplink::observed_paths(ctx);
    paths.push(crate::plan::uplink::FORCE_FORWARDING_PROBE.to_string());
    crate::plan::uplink::switches(ctx, &links::read_sysctls(&paths))
}

/// After `up` (or `watch`) converged `ctxs`: the NAT dispatch's groups no
/// context uses any more removed; the switches of those using an uplink
/// recorded and written, those no longer needing them released; routed
/// entries; the guard. Every error collected.
pub fn after_converge(host: &mut Host, ctxs: &[&crate::model::Context]) -> Vec<UplinkError> {
    let nat = super::teardown::prune_nat(host).err().map(UplinkError::Nat);
    let deny = super::shared::prune(host, ctxs)
        .err()
        .map(UplinkError::Deny);
    let (mut users, mut leaving) = (Vec::new(), Vec::new());
    let (mut routed, mut unrouted) = (Vec::new(), Vec::new());
    for c in ctxs {
        if c.uses_uplink() {
            users.push((c.name.clone(), wanted(c)));
        } else {
            leaving.push(c.name.clone());
        }
        if c.uses_uplink() && c.egress == crate::model::Egress::Routed {
            routed.push(*c);
        } else {
            unrouted.push(c.name.clone());
        }
    }
    let change = Change {
        users: &users,
        leaving: &leaving,
        all: false,
    };
    let mut errors: Vec<UplinkError> = nat.into_iter().chain(deny).collect();
    errors.extend(converge(host, &change));
    errors.extend(super::routed::converge(host, &routed, &unrouted, false));
    errors
}

/// After `down` of `names` (`all`: every recorded user goes).
pub fn after_down(host: &mut Host, names: &[String], all: bool) -> Vec<UplinkError> {
    let change = Change {
        users: &[],
        leaving: names,
        all,
    };
    let mut errors = converge(host, &change);
    errors.extend(super::routed::converge(host, &[], names, all));
    errors
}

/// What an uplink run does: `users` are the converged contexts with the
/// switches each needs; `leaving` the contexts that need none any more
/// (`all`: every recorded user goes).
pub struct Change<'a> {
    pub users: &'a [(String, Vec<(String, String)>)],
    pub leaving: &'a [String],
    pub all: bool,
}

/// Record, guard, write; restore what no context needs any more; the
/// guard after. Errors are collected; the run goes on.
pub fn converge(host: &mut Host, change: &Change) -> Vec<UplinkError> {
    let mut errors = Vec::new();
    let mut rec = match load() {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    if rec.is_empty() && change.users.iter().all(|(_, w)| w.is_empty()) {
        // No uplink in use, none recorded: nothing to do, nothing read.
        return errors;
    }
    // `down --all` takes every declared context's, not the CNI
    // attachments' (the runtime's, removed by DEL and GC).
    let leaves = |u: &String| {
        (change.all && !crate::model::is_attachment_name(u)) || change.leaving.contains(u)
    };
    for e in rec.values_mut() {
        e.users.retain(|u| !leaves(u));
    }
    let mut writes = Vec::new();
    for (ctx, wanted) in change.users {
        for (path, value) in wanted {
            if let Some(e) = rec.get_mut(path) {
                e.users.insert(ctx.clone());
                writes.push((path.clone(), e.value.clone()));
                continue;
            }
            match sysctl::read(path) {
                Some(now) if now != *value => {
                    let e = Entry {
                        old: now,
                        value: value.clone(),
                        users: [ctx.clone()].into(),
                    };
                    rec.insert(path.clone(), e);
                    writes.push((path.clone(), value.clone()));
                }
                Some(_) => {}
                None => errors.push(UplinkError::Write {
                    path: path.replace('/', "."),
                    value: value.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                }),
            }
        }
    }
    // Recorded before anything is written; the guard (covering the
    // switches to restore too) before forwarding turns on.
    if let Err(e) = save(&rec) {
        errors.push(e);
        return errors;
    }
    if let Err(e) = sync_guard(host, &rec) {
        errors.push(e);
        return errors;
    }
    if !writes.is_empty() {
        crate::apply::crash::point("host switches recorded, not written");
    }
    writes.sort();
    writes.dedup();
    for (path, value) in &writes {
        if sysctl::read(path).as_deref() != Some(value.as_str()) {
            errors.extend(write(path, value).err());
        }
    }
    let gone: Vec<String> = rec
        .iter()
        .filter(|(_, e)| e.users.is_empty())
        .map(|(p, _)| p.clone())
        .collect();
    for path in gone {
        let e = &rec[&path];
        // A switch whose interface went (or that is gone) has nothing to
        // restore.
        if sysctl::read(&path).is_some() {
            if let Err(err) = write(&path, &e.old) {
                errors.push(err);
                continue;
            }
        }
        rec.remove(&path);
    }
    errors.extend(save(&rec).err());
    errors.extend(sync_guard(host, &rec).err());
    errors
}

/// The guard as the record and the users' host veths want it, what the
/// kernel has of it, and whether the two are the same.
struct GuardState {
    want: Option<(
        crate::kernel::nft::table::Chain,
        crate::kernel::nft::table::IfnameSet,
    )>,
    live: nft_live::Live,
    present: bool,
    set_present: bool,
    same: bool,
}

fn guard_state(host: &mut Host, rec: &Record) -> Result<Option<GuardState>, UplinkError> {
    let users: BTreeSet<&str> = rec
        .values()
        .flat_map(|e| e.users.iter().map(String::as_str))
        .collect();
    let mut veths: Vec<String> = links::read_links_only(&mut host.rtnl)
        .map_err(UplinkError::Guard)?
        .into_iter()
        .filter(|l| l.owner().is_some_and(|o| users.contains(o)))
        .map(|l| l.name)
        .collect();
    veths.sort();
    let changed: Vec<&str> = rec.keys().map(String::as_str).collect();
    let want = guard(&changed, &veths);
    let live = nft_live::read(&mut host.nft, &[GUARD]).map_err(UplinkError::Guard)?;
    if live.foreign_host_table() {
        // Not netctx's table: the contexts' chains refuse it already.
        return Ok(None);
    }
    let have = live.only(GUARD);
    let have_set = live
        .digest
        .sets
        .iter()
        .find(|s| s.0 == GUARD)
        .map(|s| s.1.clone());
    let present = !have.chains.is_empty();
    let same = match &want {
        Some((chain, set)) => {
            have == digest_of(std::slice::from_ref(chain), &[])
                && have_set.as_ref() == Some(&set.keys())
        }
        None => !present && have_set.is_none(),
    };
    Ok(Some(GuardState {
        want,
        live,
        present,
        set_present: have_set.is_some(),
        same,
    }))
}

/// For `status`: how the guard differs from what the record wants, if it
/// does (`None` also when no uplink is recorded).
pub fn guard_drift(host: &mut Host) -> Result<Option<String>, UplinkError> {
    let rec = load()?;
    if rec.is_empty() {
        return Ok(None);
    }
    Ok(guard_state(host, &rec)?.filter(|g| !g.same).map(|g| {
        if g.want.is_some() {
            format!("needs: replace host nftables chain {GUARD} and its set")
        } else {
            format!("needs: remove host nftables chain {GUARD}")
        }
    }))
}

/// The guard chain as the record and the users' host veths want it:
/// replaced when it differs, removed (with the table, if nothing else is in
/// it) when no forwarding switch is recorded.
fn sync_guard(host: &mut Host, rec: &Record) -> Result<(), UplinkError> {
    let Some(GuardState {
        want,
        live,
        present,
        set_present,
        same,
    }) = guard_state(host, rec)?
    else {
        return Ok(());
    };
    if same {
        return Ok(());
    }
    let mut msgs = vec![table::new_table(Some(HOST_COMMENT))];
    if present {
        msgs.push(table::del_chain(GUARD));
    }
    if set_present {
        msgs.push(table::del_set(GUARD));
    }
    match &want {
        Some((chain, set)) => {
            table::ifname_set_msgs(set, &mut msgs);
            table::chain_msgs(chain, &mut msgs);
        }
        // Nothing else in the table: it goes.
        None if live
            .digest
            .chains
            .iter()
            .all(|c| c.0 == GUARD || crate::kernel::nft::dispatch::is_dispatch(&c.0)) =>
        {
            msgs = vec![table::del_table()];
        }
        None => {}
    }
    host.nft
        .transaction(&msgs)
        .map_err(|(_, e)| UplinkError::Guard(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let mut r = Record::new();
        r.insert(
            "net/ipv4/conf/up0/forwarding".into(),
            Entry {
                old: "0".into(),
                value: "1".into(),
                users: ["a".to_string(), "web".to_string()].into(),
            },
        );
        r.insert(
            "net/ipv6/conf/up0/accept_ra".into(),
            Entry {
                old: "1".into(),
                value: "2".into(),
                users: BTreeSet::new(),
            },
        );
        let text = render(&r);
        assert_eq!(
            text,
            "net/ipv4/conf/up0/forwarding 0 1 a,web\nnet/ipv6/conf/up0/accept_ra 1 2 \n"
        );
        assert_eq!(parse(&text), r);
        assert!(parse("garbage\n").is_empty());
    }
}
