//! `netctx status`: each declared context planned against the kernel (dry)
//! and named up, down, drifted (with how), in conflict or in error; the
//! orphans; the host's own rows (the uplinks' guard, the host's firewall);
//! the CNI attachments. Exit 2 when anything is not as declared.

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::engine::{converge_all, select};
use super::Exit;
use crate::apply::teardown as down;
use crate::apply::{self, CtxError};
use crate::guest;
use crate::model::Config;
use crate::observe::owner::NsOwner;
use crate::plan;

/// What `status` says of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextState {
    /// As declared.
    Up,
    /// Declared, nothing of it there.
    Down,
    /// There, not as declared (the details say how).
    Drifted,
    /// Something netctx did not make is in the way.
    Conflict,
    /// Not in the configuration.
    Orphaned,
    /// Could not be looked at.
    Error,
}

impl ContextState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextState::Up => "up",
            ContextState::Down => "down",
            ContextState::Drifted => "drifted",
            ContextState::Conflict => "conflict",
            ContextState::Orphaned => "orphaned",
            ContextState::Error => "error",
        }
    }

    /// Whether `status` exits 2 for it.
    pub fn is_finding(self) -> bool {
        !matches!(self, ContextState::Up | ContextState::Down)
    }
}

impl std::fmt::Display for ContextState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One context's state for `status`.
struct Status {
    name: String,
    /// An attachment's `NAMESPACE/POD`.
    pod: Option<String>,
    state: ContextState,
    detail: Vec<String>,
}

/// `status --json`.
#[derive(Serialize)]
struct StatusDoc<'a> {
    contexts: Vec<StatusRow<'a>>,
    drift: bool,
}

#[derive(Serialize)]
struct StatusRow<'a> {
    drift: &'a [String],
    guest: Option<&'static str>,
    guest_pid: Option<i32>,
    id: Option<u16>,
    /// The fences this host cannot enforce as designed.
    limits: Vec<String>,
    name: &'a str,
    not_shifted: Vec<String>,
    pod: Option<&'a str>,
    processes: usize,
    state: ContextState,
}

pub fn status(cfg: &Config, l: &super::Listing) -> anyhow::Result<Exit> {
    // CNI attachments (`cni` + 8 hex digits) are listed from the host's
    // links; the rest are declared contexts.
    let sel = crate::observe::attachments::split_names(&l.contexts);
    let ctxs = match &sel.declared {
        Some(names) => select(cfg, names)?,
        None => Vec::new(),
    };
    let mut nl = apply::Host::open().context("opening netlink sockets")?;
    let (view, results) = converge_all(&ctxs, true)?;
    let mut out: Vec<Status> = ctxs
        .iter()
        .zip(results)
        .map(|(c, r)| {
            let (mut state, mut detail) = declared(r);
            // Limits the running guests do not have yet (`up` sets them).
            let limits = guest::limits::pending(c);
            if state == ContextState::Up && !limits.is_empty() {
                state = ContextState::Drifted;
            }
            detail.extend(limits);
            Status {
                name: c.name.clone(),
                pod: None,
                state,
                detail,
            }
        })
        .collect();
    resolver_details(&ctxs, &mut out);
    if l.contexts.is_empty() {
        for name in down::known_in(view.links.values(), &view.nft)? {
            if cfg.get(&name).is_none() {
                out.push(Status {
                    name,
                    pod: None,
                    state: ContextState::Orphaned,
                    detail: vec!["not in the configuration; `netctx down NAME` removes it".into()],
                });
            }
        }
        // Attachments forward too (their egress and published ports): their
        // host links count.
        let attachments: Vec<String> = view
            .links
            .values()
            .filter(|l| l.owner().is_some_and(crate::model::is_attachment_name))
            .map(|l| l.name.clone())
            .collect();
        out.extend(host_rows(cfg, &attachments, &mut nl));
    }
    if let Some(wanted) = &sel.attachments {
        let rows = super::attachments::status_rows(&mut nl, &view);
        let named =
            |r: &super::attachments::Row, w: &String| r.name == *w || r.pod.as_ref() == Some(w);
        for w in wanted {
            if !rows.iter().any(|r| named(r, w)) {
                let w = crate::model::escape(w);
                bail!("no CNI attachment {w} on this host");
            }
        }
        for r in rows {
            if wanted.is_empty() || wanted.iter().any(|w| named(&r, w)) {
                out.push(Status {
                    name: r.name,
                    pod: r.pod,
                    state: r.state,
                    detail: r.detail,
                });
            }
        }
    }
    let finding = out.iter().any(|s| s.state.is_finding());
    print_status(cfg, &out, l.json, finding);
    Ok(if finding { Exit::Finding } else { Exit::Ok })
}

/// A context whose `reach` names domains and whose resolver no `netctx
/// watch` serves (nothing listens on UDP port 53 at its address): a detail
/// line, not drift.
fn resolver_details(ctxs: &[&crate::model::Context], out: &mut [Status]) {
    if !ctxs.iter().any(|c| c.needs_resolver()) {
        return;
    }
    let listening = dns_listeners();
    for (c, s) in ctxs.iter().zip(out.iter_mut()) {
        if let Some(at) = c.resolver_addrs().first() {
            s.detail.extend(resolver_missing(&listening, *at, None));
        }
    }
}

/// The host's sockets a resolver listens on: UDP and TCP port 53.
pub(super) fn dns_listeners() -> Vec<crate::observe::diag::Socket> {
    crate::observe::diag::services_on(&[53]).unwrap_or_default()
}

/// The detail line of a context or CNI attachment whose `reach` names
/// domains when no UDP socket of `listening` is bound to its resolver's
/// address `at` (and to the device of index `dev`, for an attachment's,
/// which `watch` binds to its host veth): no `netctx watch` serves it.
pub(super) fn resolver_missing(
    listening: &[crate::observe::diag::Socket],
    at: std::net::IpAddr,
    dev: Option<u32>,
) -> Option<String> {
    let served = listening
        .iter()
        .any(|l| l.proto == "udp" && l.local == at && dev.is_none_or(|d| l.ifindex == d));
    (!served).then(|| {
        format!(
            "its reach names domains and no `netctx watch` serves its resolver at {at} port 53: \
             they resolve to nothing"
        )
    })
}

/// A declared context's state and details from its dry converge.
fn declared(r: Result<apply::Outcome, CtxError>) -> (ContextState, Vec<String>) {
    match r {
        Ok(o) if o.actions.is_empty() => (ContextState::Up, vec![]),
        Ok(o)
            if o.owner == NsOwner::Absent
                && !o
                    .actions
                    .iter()
                    .any(|a| matches!(a, plan::Action::DeleteLink { .. })) =>
        {
            (ContextState::Down, vec![])
        }
        Ok(o) => {
            let mut d: Vec<String> = Vec::new();
            match o.owner {
                NsOwner::OursMissing => d.push("namespace is missing".into()),
                NsOwner::OursUnmounted => d.push("namespace file has nothing mounted".into()),
                _ => {}
            }
            d.extend(
                o.actions
                    .iter()
                    .filter(|a| !matches!(a, plan::Action::CreateNs | plan::Action::RemoveNsFile))
                    .map(|a| format!("needs: {a}")),
            );
            (ContextState::Drifted, d)
        }
        Err(CtxError::Refused(r)) => (ContextState::Conflict, vec![r.to_string()]),
        Err(e) => (ContextState::Error, vec![e.chain()]),
    }
}

/// What netctx forwards goes in by or out of these: the host links and
/// uplinks of contexts with an uplink in use or a `reach`.
pub fn forwarding_ifaces(cfg: &Config) -> Vec<String> {
    let mut ifaces: Vec<String> = Vec::new();
    for c in cfg
        .contexts
        .iter()
        .filter(|c| c.uses_uplink() || !c.reach.is_empty())
    {
        ifaces.extend(c.links.iter().filter_map(|l| l.host.clone()));
        ifaces.extend(c.uplink.clone().filter(|_| c.uses_uplink()));
    }
    ifaces.sort();
    ifaces.dedup();
    ifaces
}

/// Every host link of the declared contexts (what the host's input,
/// output and prerouting chains meet of netctx's).
pub fn host_links(cfg: &Config) -> Vec<String> {
    let mut links: Vec<String> = cfg
        .contexts
        .iter()
        .flat_map(|c| c.links.iter().filter_map(|l| l.host.clone()))
        .collect();
    links.sort();
    links.dedup();
    links
}

/// The host's rows: the uplinks' guard chain (the host's, no context's)
/// and the host's own firewall for what netctx forwards (the host links
/// and uplinks of contexts with an uplink in use or a `reach`).
fn host_rows(cfg: &Config, attachments: &[String], nl: &mut apply::Host) -> Vec<Status> {
    let row = |state, detail| Status {
        name: "host".into(),
        pod: None,
        state,
        detail,
    };
    let mut out = Vec::new();
    match apply::uplink::guard_drift(nl) {
        Ok(Some(d)) => out.push(row(ContextState::Drifted, vec![d])),
        Ok(None) => {}
        Err(e) => out.push(row(ContextState::Error, vec![e.to_string()])),
    }
    let mut ifaces = forwarding_ifaces(cfg);
    ifaces.extend(attachments.iter().cloned());
    let mut links = host_links(cfg);
    links.extend(attachments.iter().cloned());
    match apply::firewall::findings(nl, &ifaces, &links) {
        Ok(f) if f.is_empty() => {}
        Ok(f) => out.push(row(ContextState::Conflict, f)),
        Err(e) => out.push(row(
            ContextState::Error,
            vec![format!("reading the host's firewall: {e}")],
        )),
    }
    out
}

fn print_status(cfg: &Config, out: &[Status], json: bool, finding: bool) {
    // Declared guest paths a context's guests cannot write (not drift: a
    // guest still starts).
    let not_shifted = |c: &str| cfg.get(c).map(guest::shift::not_owned).unwrap_or_default();
    // Contexts nothing was ever started in have no files to read.
    let traces = guest::Traces::read();
    let processes = |c: &str| {
        if traces.any(c) {
            guest::processes(c)
        } else {
            0
        }
    };
    let recorded = |c: &str| traces.any(c).then(|| guest::recorded(c)).flatten();
    // Fences a guest's context cannot have here (never a silent no-op).
    let host = guest::limits::Host::read();
    let limits = |s: &Status| {
        let c = cfg.get(&s.name).filter(|_| s.state != ContextState::Down);
        c.and_then(|c| guest::limits::line(c, host, traces.any(&s.name)))
    };
    if json {
        let contexts = out
            .iter()
            .map(|s| {
                let rec = recorded(&s.name);
                StatusRow {
                    drift: &s.detail,
                    guest: rec.map(|(_, alive)| if alive { "running" } else { "exited" }),
                    guest_pid: rec.filter(|g| g.1).map(|g| g.0),
                    id: cfg.get(&s.name).and_then(|c| c.id),
                    limits: limits(s).map_or(Vec::new(), |_| {
                        cfg.get(&s.name)
                            .map(|c| guest::limits::notes(&c.limits, host))
                            .unwrap_or_default()
                    }),
                    name: &s.name,
                    not_shifted: not_shifted(&s.name),
                    pod: s.pod.as_deref(),
                    processes: processes(&s.name),
                    state: s.state,
                }
            })
            .collect();
        let doc = StatusDoc {
            contexts,
            drift: finding,
        };
        println!("{}", serde_json::to_string(&doc).unwrap_or_default());
    } else {
        for s in out {
            let n = processes(&s.name);
            match recorded(&s.name) {
                Some((pid, true)) => println!(
                    "{:<12} {:<9} guest pid {pid}, {n} process(es)",
                    s.name, s.state
                ),
                Some((pid, false)) => {
                    println!("{:<12} {:<9} guest exited (was pid {pid})", s.name, s.state)
                }
                None if n > 0 => println!("{:<12} {:<9} {n} process(es)", s.name, s.state),
                None if s.pod.is_some() => println!(
                    "{:<12} {:<9} pod {}",
                    s.name,
                    s.state,
                    s.pod.as_deref().unwrap_or_default()
                ),
                None => println!("{:<12} {}", s.name, s.state),
            }
            for d in &s.detail {
                println!("{:<12}   {d}", "");
            }
            for w in not_shifted(&s.name) {
                println!("{:<12}   {w}", "");
            }
            if let Some(l) = limits(s) {
                println!("{:<12}   {l}", "");
            }
        }
    }
}
