//! `plan`, `up`, `down`, `status`: the engine's commands.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::Exit;
use crate::apply::teardown as down;
use crate::apply::{self, CtxError, Mode};
use crate::kernel::{lock, netns, pool, profile};
use crate::model::{Config, Context};
use crate::observe::owner::NsOwner;
use crate::plan;
use crate::{config, guest};

/// The declared contexts named (all when none are).
pub fn select<'a>(cfg: &'a Config, names: &[String]) -> anyhow::Result<Vec<&'a Context>> {
    if names.is_empty() {
        return Ok(cfg.contexts.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        match cfg.get(n) {
            Some(c) => out.push(c),
            None => bail!("context {n} is not declared in the configuration"),
        }
    }
    Ok(out)
}

/// Observe (and with `dry == false`, converge) every selected context. The
/// host's chains of all of them go in one transaction at the end; a
/// context whose chains fail there is rolled back (a new one removed).
pub(super) fn converge_all(
    ctxs: &[&Context],
    dry: bool,
) -> anyhow::Result<(apply::HostView, Vec<Result<apply::Outcome, CtxError>>)> {
    let mut host = apply::Host::open().context("opening netlink sockets")?;
    // The host is read while the workers look into the namespaces (on a
    // converged host these are most of the time, and both need the view
    // only for planning).
    let (view, seen) = std::thread::scope(|s| {
        let view = s.spawn(|| {
            profile::time(profile::OBSERVE + 4, || {
                apply::HostView::read(&mut apply::Host::open()?, ctxs)
            })
        });
        let seen = pool::map(
            ctxs,
            None,
            || Ok(()),
            |(), c| Mutex::new(Some(apply::observe(c))),
        );
        (view.join().expect("the host view's reader panicked"), seen)
    });
    let view = view.context("reading the host's links and rules")?;
    let seen = seen?;
    let what = (!dry).then_some("up");
    let mode = if dry { Mode::Dry } else { Mode::DeferHostRules };
    let items: Vec<(&Context, &Mutex<Option<_>>)> = ctxs.iter().copied().zip(&seen).collect();
    let mut results = pool::map(&items, what, apply::Host::open, |host, (c, seen)| {
        let seen = seen
            .lock()
            .unwrap()
            .take()
            .expect("each context is planned once");
        seen.and_then(|s| apply::converge_seen(c, s, &view, host, mode))
    })?;
    if dry {
        return Ok((view, results));
    }
    let done: Vec<(usize, (&Context, &[plan::Action]))> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, (ctxs[i], r.as_ref().ok()?.actions.as_slice()))))
        .collect();
    let items: Vec<(&Context, &[plan::Action])> = done.iter().map(|(_, it)| *it).collect();
    let host_results = apply::host_rules(&mut host, &view, &items);
    let failed: Vec<(usize, CtxError)> = done
        .iter()
        .zip(host_results)
        .filter_map(|((i, _), r)| r.err().map(|e| (*i, e)))
        .collect();
    for (i, e) in failed {
        let new = results[i].as_ref().is_ok_and(|o| o.owner != NsOwner::Ours);
        if new {
            // A new context leaves nothing behind.
            let _ = down::down(&mut host, &[ctxs[i].name.clone()], true);
        }
        results[i] = Err(e);
    }
    Ok((view, results))
}

/// `plan --json`. Fields in name order (as the documents of netctx print
/// them everywhere).
#[derive(Serialize)]
struct PlanDoc<'a> {
    contexts: Vec<PlanRow<'a>>,
}

#[derive(Serialize)]
struct PlanRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    name: &'a str,
}

/// The limits running guests do not have yet, as `up` would set them.
fn limits_pending(c: &Context) -> Vec<String> {
    guest::limits::pending(c)
        .into_iter()
        .map(|p| format!("set {}", p.trim_start_matches("needs: ")))
        .collect()
}

pub fn plan(cfg: &Config, l: &super::Listing, verbose: bool) -> anyhow::Result<Exit> {
    let ctxs = select(cfg, &l.contexts)?;
    let mut failed = false;
    let (_, results) = converge_all(&ctxs, true)?;
    if l.json {
        let contexts: Vec<PlanRow> = ctxs
            .iter()
            .zip(&results)
            .map(|(c, r)| PlanRow {
                actions: r.as_ref().ok().map(|o| {
                    let mut a: Vec<String> = o.actions.iter().map(|a| a.to_string()).collect();
                    a.extend(limits_pending(c));
                    a
                }),
                error: r.as_ref().err().map(|e| e.chain()),
                name: &c.name,
            })
            .collect();
        println!("{}", serde_json::to_string(&PlanDoc { contexts })?);
        let failed = results.iter().any(|r| r.is_err());
        return Ok(if failed { Exit::Error } else { Exit::Ok });
    }
    for (c, r) in ctxs.iter().zip(results) {
        let limits = limits_pending(c);
        match r {
            Ok(o) if o.actions.is_empty() && limits.is_empty() => {
                println!("{}: up to date", c.name)
            }
            Ok(o) => {
                println!("{}:", c.name);
                for l in &limits {
                    println!("  {l}");
                }
                for a in &o.actions {
                    println!("  {a}");
                    // With -v, the rules themselves, in nft syntax.
                    if !verbose {
                        continue;
                    }
                    for line in a.rules_text().unwrap_or_default().lines() {
                        println!("      {line}");
                    }
                }
            }
            Err(e) => {
                eprintln!("netctx: error: context {}: {}", c.name, e.chain());
                failed = true;
            }
        }
    }
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// The contexts whose published ports a host service holds, with why
/// (docs/uplink.md, "Refusals at `up`"): they are refused, nothing of them changed.
fn taken_ports(ctxs: &[&Context]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let ports: Vec<u16> = ctxs
        .iter()
        .flat_map(|c| c.publish.iter().map(|p| p.host_port))
        .collect();
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    let found = crate::observe::diag::services_on(&ports).context("reading the host's sockets")?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let procs = crate::observe::procs::Procs::scan();
    let sockets: Vec<plan::nat::HostSocket> = found
        .iter()
        .map(|s| plan::nat::HostSocket {
            proto: if s.proto == "udp" {
                crate::model::Proto::Udp
            } else {
                crate::model::Proto::Tcp
            },
            local: s.local,
            port: s.port,
            holder: procs.owner(s.inode).map_or("a process".to_string(), |p| {
                // comm is escaped by the scan already.
                format!("{} (pid {})", p.comm, p.pid)
            }),
        })
        .collect();
    Ok(ctxs
        .iter()
        .map(|c| (c.name.clone(), plan::nat::taken_ports(c, &sockets)))
        .filter(|(_, m)| !m.is_empty())
        .collect())
}

/// Routed contexts whose addresses a host on the uplink's LAN already
/// answers for (before netctx proxies them), with why: refused.
fn routed_taken(ctxs: &[&Context]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for c in ctxs {
        let Some(up) = c
            .uplink
            .as_deref()
            .filter(|_| c.uses_uplink() && c.egress == crate::model::Egress::Routed)
        else {
            continue;
        };
        let pick = |subnets: &[crate::model::Cidr]| {
            plan::uplink::routed_entries(c, subnets)
                .into_iter()
                .map(|(a, _)| a)
                .collect()
        };
        let hits = crate::observe::neigh::taken_on(up, pick, Duration::from_millis(800))
            .with_context(|| format!("asking the LAN on {up}"))?;
        let why: Vec<String> = hits
            .iter()
            .map(|(a, mac)| {
                format!(
                    "egress = \"routed\" address {a} is already answered for on {up}'s LAN by \
                     {mac}; netctx would race that host for it (give the context a free address)"
                )
            })
            .collect();
        if !why.is_empty() {
            out.push((c.name.clone(), why));
        }
    }
    Ok(out)
}

pub fn up(cfg: &Config, names: &[String], wait: Duration) -> anyhow::Result<Exit> {
    let ctxs = select(cfg, names)?;
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    let mut taken = taken_ports(&ctxs)?;
    taken.extend(routed_taken(&ctxs)?);
    for (name, why) in &taken {
        for w in why {
            eprintln!("netctx: error: context {name}: {w}");
        }
    }
    let mut refused: Vec<&str> = taken.iter().map(|(n, _)| n.as_str()).collect();
    refused.sort_unstable();
    refused.dedup();
    let ctxs: Vec<&Context> = ctxs
        .into_iter()
        .filter(|c| !refused.contains(&c.name.as_str()))
        .collect();
    netns::prepare_dir().with_context(|| format!("preparing {}", netns::NETNS_DIR))?;
    name_route_protocol(&ctxs);
    let mut failed = Vec::new();
    let mut converged = Vec::new();
    let limits_host = guest::limits::Host::read();
    for (c, r) in ctxs.iter().zip(converge_all(&ctxs, false)?.1) {
        if r.is_ok() {
            converged.push(*c);
        }
        match r {
            Ok(o) => {
                // Running guests follow address and single_ip changes
                // through the bind restriction's maps.
                if crate::guest::cgroup::path(&c.name).is_ok_and(|p| p.exists()) {
                    if let Err(e) = guest::bind_hooks(c) {
                        eprintln!("netctx: error: context {}: {e:#}", c.name);
                        failed.push(c.name.as_str());
                        continue;
                    }
                }
                for a in &o.actions {
                    tracing::debug!(context = %c.name, action = %a, "planned");
                }
                let what = match (o.owner, o.actions.len()) {
                    (_, 0) => "unchanged".to_string(),
                    (NsOwner::Ours, n) => format!("converged ({n} change(s))"),
                    (_, _) => "created".to_string(),
                };
                println!("{}: {what}", c.name);
                for w in guest::shift::not_owned(c) {
                    eprintln!("netctx: warning: context {}: {w}", c.name);
                }
                let ran = crate::guest::cgroup::path(&c.name).is_ok_and(|p| p.exists());
                if let Some(l) = guest::limits::line(c, limits_host, ran) {
                    eprintln!("netctx: warning: context {}: {l}", c.name);
                }
            }
            Err(e) => {
                eprintln!("netctx: error: context {}: {}", c.name, e.chain());
                failed.push(c.name.as_str());
            }
        }
    }
    let mut uplink_errors = uplink_run(|h| apply::uplink::after_converge(h, &converged))?;
    uplink_errors |= host_firewall_run(cfg.host_firewall, true)?;
    // What the host's own firewall would still drop (status exits 2 for it).
    let mut host = apply::Host::open().context("opening netlink sockets")?;
    let ifaces = super::status::forwarding_ifaces(cfg);
    let links = super::status::host_links(cfg);
    match apply::firewall::findings(&mut host, &ifaces, &links) {
        Ok(found) => found.iter().for_each(|f| eprintln!("netctx: warning: {f}")),
        Err(e) => eprintln!("netctx: warning: reading the host's firewall: {e}"),
    }
    if failed.is_empty() && refused.is_empty() {
        return Ok(if uplink_errors { Exit::Error } else { Exit::Ok });
    }
    if !failed.is_empty() {
        eprintln!(
            "netctx: error: {} of {} context(s) failed and were rolled back: {}",
            failed.len(),
            ctxs.len(),
            failed.join(", ")
        );
    }
    if !refused.is_empty() {
        eprintln!(
            "netctx: error: refused, nothing of them changed: {}",
            refused.join(", ")
        );
    }
    Ok(Exit::Error)
}

/// With a context announcing: the name of netctx's route protocol for
/// `ip route`, when it is absent (the routes work without it: a warning).
pub fn name_route_protocol(ctxs: &[&Context]) {
    if ctxs.iter().any(|c| c.announce) {
        if let Err(e) = apply::announce::name_protocol() {
            let file = apply::announce::RT_PROTOS_FILE;
            eprintln!("netctx: warning: writing {file}: {e}");
        }
    }
}

/// The host's switches for uplinks and the guard chain (after the
/// contexts); whether anything failed (each error printed).
pub fn uplink_run(
    run: impl FnOnce(&mut apply::Host) -> Vec<apply::uplink::UplinkError>,
) -> anyhow::Result<bool> {
    let mut host = apply::Host::open().context("opening netlink sockets")?;
    let errors = run(&mut host);
    for e in &errors {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        eprintln!("netctx: error: uplink: {msg}");
    }
    Ok(!errors.is_empty())
}

/// Docker's `DOCKER-USER` after the contexts (`apply::firewall`); whether
/// it failed (the error printed).
pub fn host_firewall_run(mode: crate::model::HostFirewall, may_add: bool) -> anyhow::Result<bool> {
    let mut host = apply::Host::open().context("opening netlink sockets")?;
    match apply::firewall::after(&mut host, mode, may_add) {
        Ok(done) => {
            for c in &done.added {
                println!("{c}: netctx's rule added (accept what netctx accepted)");
            }
            for c in &done.removed {
                println!("{c}: netctx's rule removed");
            }
            Ok(false)
        }
        Err(e) => {
            eprintln!("netctx: error: host firewall: DOCKER-USER: {e}");
            Ok(true)
        }
    }
}

pub fn down(args: &super::DownArgs, wait: Duration) -> anyhow::Result<Exit> {
    if !args.all && args.contexts.is_empty() {
        bail!("name the contexts to remove, or use --all");
    }
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    let mut nl = apply::Host::open().context("opening netlink sockets")?;
    let names = if args.all {
        profile::time(profile::DOWN, || down::known(&mut nl))?
    } else {
        for n in &args.contexts {
            config::check_context_name(n).map_err(anyhow::Error::msg)?;
        }
        args.contexts.clone()
    };
    let mut failed = false;
    // Guests first: a namespace with processes in it outlives its mount.
    let stopped = profile::time(profile::DOWN + 1, || {
        guest::stop_many(&names, std::time::Duration::from_secs(10))
    });
    for (name, r) in names.iter().zip(stopped) {
        match r {
            Ok(s) => {
                super::guest::report(name, &s);
                // The guests' output log goes with them (`stop` keeps it
                // for reading).
                for w in guest::logpump::remove(name) {
                    eprintln!("netctx: warning: {w}");
                }
            }
            Err(e) => {
                eprintln!("netctx: error: context {name}: stopping its guest: {e:#}");
                failed = true;
            }
        }
    }
    for (name, r) in down::down(&mut nl, &names, !args.no_wait) {
        match r {
            Ok(down::Removed::Removed) => println!("{name}: removed"),
            Ok(down::Removed::NotPresent) => println!("{name}: not present"),
            Err(e) => {
                eprintln!("netctx: error: context {name}: {}", e.chain());
                failed = true;
            }
        }
    }
    failed |= uplink_run(|h| apply::uplink::after_down(h, &names, args.all))?;
    // Without the configuration: only taken away when nothing is
    // forwarded any more.
    failed |= host_firewall_run(crate::model::HostFirewall::Auto, false)?;
    Ok(if failed { Exit::Error } else { Exit::Ok })
}
