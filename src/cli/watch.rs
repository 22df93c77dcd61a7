//! `netctx watch`: converge once, then follow the kernel's notifications in
//! the host and in every context (one reader thread a namespace, see
//! `readers`) and converge a context again when a change made it drift.
//!
//! Events are debounced per context; a context with events is checked with a
//! dry run first (no lock), and only a non-empty plan takes netctx's lock and
//! converges. The notifications of watch's own repairs therefore end in a
//! check that finds nothing to do. Contexts are followed while netctx's
//! namespace is mounted: `down` makes watch let go of one, `up` (by anyone)
//! makes it follow one. The configuration is read again when its files
//! change, so a repair never undoes a newer configuration that `up` brought
//! in. SIGTERM and SIGINT end it; nothing is undone.

mod debounce;
mod dns;
mod host;
mod readers;
mod resolve;
mod signals;
mod stamp;
mod targets;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

use super::{Exit, WatchArgs};
use crate::apply::{self, converge, Host, HostView};
use crate::config;
use crate::kernel::netns::{self, NsFile};
use crate::kernel::{lock, pool};
use crate::model::{Config, Context};
use crate::observe::events::Event;
use crate::observe::links;
use crate::observe::owner::{self, NsOwner};
use debounce::{Burst, Debounce};
use readers::{Msg, Place, Reader};
use signals::{install_signals, STOP};
use targets::{declared_hosts, host_owner, target, Target};

/// A context is checked once its events have been quiet this long …
const QUIET: Duration = Duration::from_millis(150);
/// … or this long after its first event, whichever comes first.
const MAX_DELAY: Duration = Duration::from_millis(400);
/// How often the markers are listed for contexts that came or went; every
/// namespace is looked at when they changed, when a host link of an
/// unknown context appeared, and at least every `FULL_SCAN`.
const SCAN: Duration = Duration::from_millis(200);
const FULL_SCAN: Duration = Duration::from_secs(1);
/// More repair attempts than this within `BURST_WINDOW` (one every half
/// second): something fights netctx, or the repair keeps failing; the
/// context is left alone until it calms down.
const BURST: usize = 20;
const BURST_WINDOW: Duration = Duration::from_secs(10);

struct Watch<'a> {
    path: &'a Path,
    cfg: Config,
    json: bool,
    wait: Duration,
    tx: mpsc::Sender<Msg>,
    readers: HashMap<String, Reader>,
    /// Contexts whose reader reported Ready at least once.
    ready: HashSet<String>,
    /// Namespaces not followed (undeclared, or their reader failed).
    skipped: HashSet<(String, u64)>,
    pending: Debounce,
    repairs: Burst,
    host: Host,
    host_index: HashMap<u32, String>,
    declared_hosts: HashMap<String, String>,
    announced: bool,
    /// The configuration files as last read (see `config_stamp`).
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    /// The markers at the last full scan, and when it was.
    markers: Vec<String>,
    full_scan: Instant,
    /// A full scan is wanted at the next tick.
    rescan: bool,
    /// A foreign table changed (Docker rewrote its chains): netctx's rule
    /// in `DOCKER-USER` is looked at again.
    firewall_dirty: bool,
    /// What the host's firewall would drop, as last said.
    firewall_findings: Vec<String>,
    /// netctx's resolver, for the contexts whose `reach` names domains.
    dns: dns::Resolvers,
}

pub fn watch(path: &Path, cfg: Config, a: &WatchArgs, wait: Duration) -> anyhow::Result<Exit> {
    install_signals()?;
    let (tx, rx) = mpsc::channel();
    let _host_reader = readers::spawn(Place::Host, None, tx.clone());
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Msg::Ready(_)) => {}
        Ok(Msg::Failed(p, why)) => bail!("{p}: {why}"),
        _ => bail!("the host's notification reader did not start"),
    }
    let mut w = Watch {
        path,
        declared_hosts: declared_hosts(&cfg),
        cfg,
        json: a.json,
        wait,
        tx,
        readers: HashMap::new(),
        ready: HashSet::new(),
        skipped: HashSet::new(),
        pending: Debounce::new(QUIET, MAX_DELAY),
        repairs: Burst::new(BURST, BURST_WINDOW),
        host: Host::open().context("opening netlink sockets")?,
        host_index: HashMap::new(),
        announced: false,
        stamp: stamp::config_stamp(path),
        markers: Vec::new(),
        full_scan: Instant::now(),
        rescan: true,
        firewall_dirty: true,
        firewall_findings: Vec::new(),
        dns: dns::Resolvers::default(),
    };
    w.converge_once()?;
    w.dns.sync(&w.cfg);
    w.scan()?;
    w.run(&rx)?;
    Ok(Exit::Ok)
}

impl Watch<'_> {
    /// `up` of every declared context, as the first thing.
    fn converge_once(&mut self) -> anyhow::Result<()> {
        let ctxs: Vec<&Context> = self.cfg.contexts.iter().collect();
        let _lock = lock::lock(self.wait).context("taking the netctx lock")?;
        netns::prepare_dir().with_context(|| format!("preparing {}", netns::NETNS_DIR))?;
        let view =
            HostView::read(&mut self.host, &ctxs).context("reading the host's links and rules")?;
        let results = pool::map(&ctxs, Some("watch: up"), Host::open, |h, c| {
            converge(c, &view, h, false)
        })?;
        let ok: Vec<&Context> = ctxs
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(c, _)| *c)
            .collect();
        super::engine::name_route_protocol(&ok);
        super::engine::uplink_run(|h| crate::apply::uplink::after_converge(h, &ok))?;
        for (c, r) in ctxs.iter().zip(results) {
            match r {
                Ok(o) => {
                    let actions: Vec<String> = o.actions.iter().map(|a| a.to_string()).collect();
                    let what = match (o.owner, actions.len()) {
                        (_, 0) => "unchanged",
                        (NsOwner::Ours, _) => "converged",
                        _ => "created",
                    };
                    // As `up` says it; the actions themselves in JSON.
                    let shown = if self.json { &actions[..] } else { &[] };
                    self.say(&c.name, what, shown, None);
                }
                Err(e) => eprintln!("netctx: error: context {}: {e}", c.name),
            }
        }
        Ok(())
    }

    fn run(&mut self, rx: &mpsc::Receiver<Msg>) -> anyhow::Result<()> {
        let mut last_scan = Instant::now();
        while !STOP.load(Ordering::SeqCst) {
            let timeout = self
                .pending
                .next_due()
                .map_or(SCAN, |d| d.saturating_duration_since(Instant::now()))
                .min(SCAN)
                .max(Duration::from_millis(5));
            match rx.recv_timeout(timeout) {
                Ok(m) => {
                    self.on_msg(m)?;
                    while let Ok(m) = rx.try_recv() {
                        self.on_msg(m)?;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("every reader ended"),
            }
            if last_scan.elapsed() >= SCAN {
                self.scan()?;
                self.dns.sync(&self.cfg);
                last_scan = Instant::now();
            }
            let due = self.pending.take_due(Instant::now());
            if !due.is_empty() {
                self.repair(&due);
            }
            if std::mem::take(&mut self.firewall_dirty) {
                self.host_firewall();
            }
        }
        Ok(())
    }

    fn mark(&mut self, ctx: &str) {
        if !self.readers.contains_key(ctx) {
            return;
        }
        self.pending.mark(ctx, Instant::now());
    }

    fn on_msg(&mut self, m: Msg) -> anyhow::Result<()> {
        match m {
            Msg::Ready(Place::Host) => {}
            Msg::Ready(Place::Ctx(name, _)) => {
                // Subscribed: whatever happened before is seen by one check.
                self.ready.insert(name.clone());
                self.mark(&name);
                self.announce();
            }
            Msg::Failed(Place::Host, why) => bail!("the host: {why}"),
            Msg::Failed(Place::Ctx(name, inode), why) => {
                eprintln!("netctx: error: context {name}: {why}; not watching it");
                if self.readers.get(&name).is_some_and(|r| r.inode == inode) {
                    self.readers.remove(&name);
                    self.skipped.insert((name, inode));
                }
                self.announce();
            }
            Msg::Events(place, events) => {
                for ev in &events {
                    self.on_event(&place, ev);
                }
            }
        }
        Ok(())
    }

    /// Once every context found at the start is subscribed: say so (on
    /// stderr) once.
    fn announce(&mut self) {
        if !self.announced && self.readers.keys().all(|n| self.ready.contains(n)) {
            self.announced = true;
            eprintln!("netctx: watching {} context(s)", self.readers.len());
        }
    }

    fn on_event(&mut self, place: &Place, ev: &Event) {
        if let (Place::Host, Event::Nft { table, .. }) = (place, ev) {
            if table != crate::observe::nft::TABLE {
                self.firewall_dirty = true;
            }
        }
        if let (Place::Host, Event::Link { index, deleted, .. }) = (place, ev) {
            self.host_index.remove(index);
            if let (false, Target::One(c)) = (
                *deleted,
                target(place, ev, &HashMap::new(), &self.declared_hosts),
            ) {
                self.host_index.insert(*index, c);
            }
        }
        match target(place, ev, &self.host_index, &self.declared_hosts) {
            Target::Nobody => {}
            Target::One(c) if place == &Place::Host && !self.readers.contains_key(&c) => {
                // A host link of a context not followed: it may be new.
                self.rescan = true;
            }
            Target::One(c) => self.mark(&c),
            Target::All => {
                let names: Vec<String> = self.readers.keys().cloned().collect();
                for n in names {
                    self.mark(&n);
                }
            }
            Target::HostIndex(i) => {
                // A link netctx has not heard of yet: learn the host's links.
                if let Ok(ls) = links::read_links_only(&mut self.host.rtnl) {
                    for l in ls {
                        if let Some(c) =
                            host_owner(Some(&l.name), l.alias.as_deref(), &self.declared_hosts)
                        {
                            self.host_index.insert(l.index, c);
                        }
                    }
                }
                if let Some(c) = self.host_index.get(&i).cloned() {
                    self.mark(&c);
                }
            }
        }
    }

    /// Follow the contexts whose namespace netctx has mounted; let go of the
    /// others.
    fn scan(&mut self) -> anyhow::Result<()> {
        let markers = owner::marked().context("listing netctx's markers")?;
        if !self.rescan && markers == self.markers && self.full_scan.elapsed() < FULL_SCAN {
            return Ok(());
        }
        self.rescan = false;
        self.full_scan = Instant::now();
        self.markers.clone_from(&markers);
        let mut live: HashMap<String, u64> = HashMap::new();
        for name in markers {
            if owner::ns_owner(&name).ok() != Some(NsOwner::Ours) {
                continue;
            }
            if let Ok(NsFile::Mounted { inode }) = netns::probe(&name) {
                live.insert(name, inode);
            }
        }
        let gone: Vec<String> = self
            .readers
            .iter()
            .filter(|(n, r)| live.get(*n) != Some(&r.inode))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            self.readers.remove(&n);
            self.ready.remove(&n);
            self.pending.forget(&n);
            self.repairs.forget(&n);
            self.say(&n, "gone", &[], None);
        }
        for (name, inode) in live {
            if self.readers.contains_key(&name) || self.skipped.contains(&(name.clone(), inode)) {
                continue;
            }
            if self.cfg.get(&name).is_none() {
                self.reload();
            }
            if self.cfg.get(&name).is_none() {
                eprintln!("netctx: context {name} is not in the configuration; not watching it");
                self.skipped.insert((name, inode));
                continue;
            }
            let file = match netns::open(&name) {
                Ok(f) => f,
                Err(_) => continue,
            };
            let reader =
                readers::spawn(Place::Ctx(name.clone(), inode), Some(file), self.tx.clone());
            let again = self.announced;
            self.readers.insert(name.clone(), reader);
            if again {
                self.say(&name, "watching", &[], None);
            }
        }
        self.announce();
        Ok(())
    }

    /// Read the configuration again: it changed on disk, or a context
    /// appeared that it does not declare. An invalid one is said once and
    /// the last valid one kept.
    fn reload(&mut self) {
        self.stamp = stamp::config_stamp(self.path);
        match config::load(self.path) {
            Ok(c) => {
                self.declared_hosts = declared_hosts(&c);
                self.cfg = c;
            }
            Err(e) => eprintln!(
                "netctx: warning: reloading {}: {e}; keeping the last valid configuration",
                self.path.display()
            ),
        }
    }

    /// Whether `ctx` has been repaired too often lately (and say so once).
    fn fighting(&mut self, ctx: &str) -> bool {
        match self.repairs.hold(ctx, Instant::now()) {
            None => false,
            Some(first) => {
                if first {
                    eprintln!(
                        "netctx: warning: context {ctx} was repaired {BURST} times in {} s: something keeps changing it; leaving it alone for {} s",
                        BURST_WINDOW.as_secs(),
                        BURST_WINDOW.as_secs()
                    );
                }
                true
            }
        }
    }

    /// Check the contexts (dry); converge those that drifted, under the lock.
    fn repair(&mut self, due: &[(String, Instant)]) {
        // Repair towards the configuration as it is now, so that a changed
        // one brought up by `up` is not undone.
        if stamp::config_stamp(self.path) != self.stamp {
            self.reload();
        }
        let owned: Vec<Context> = due
            .iter()
            .filter_map(|(n, _)| self.cfg.get(n).cloned())
            .collect();
        let ctxs: Vec<&Context> = owned.iter().collect();
        let view = match HostView::read(&mut self.host, &ctxs) {
            Ok(v) => v,
            Err(e) => return eprintln!("netctx: error: reading the host's links and rules: {e}"),
        };
        let checks = pool::map(&ctxs, None, Host::open, |h, c| converge(c, &view, h, true));
        let checks = match checks {
            Ok(c) => c,
            Err(e) => return eprintln!("netctx: error: opening netlink sockets: {e}"),
        };
        let mut drifted: Vec<&Context> = Vec::new();
        for (c, r) in ctxs.iter().zip(checks) {
            match r {
                Ok(o) if o.actions.is_empty() => {}
                Ok(_) => drifted.push(c),
                Err(e) => eprintln!("netctx: error: context {}: {e}", c.name),
            }
        }
        drifted.retain(|c| !self.fighting(&c.name));
        if drifted.is_empty() {
            return;
        }
        let results = match self.converge_locked(&drifted) {
            Ok(r) => r,
            Err(e) => return eprintln!("netctx: error: {e:#}"),
        };
        // A repair may make or remove the forward dispatch: DOCKER-USER
        // follows.
        self.firewall_dirty = true;
        for (c, r) in drifted.iter().zip(results) {
            let since = due
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, t)| t.elapsed());
            // Every attempt counts, failed ones too: a repair that fails
            // (and is rolled back) must not be retried in a loop either.
            if r.is_some() {
                self.repairs.record(&c.name, Instant::now());
            }
            match r {
                Some(Ok(o)) if !o.actions.is_empty() => {
                    let actions: Vec<String> = o.actions.iter().map(|a| a.to_string()).collect();
                    self.say(&c.name, "repaired", &actions, since);
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => eprintln!("netctx: error: context {}: {e}", c.name),
            }
        }
    }

    /// Converge `ctxs` holding the lock; a context whose namespace is no
    /// longer netctx's mounted one (a `down` ran meanwhile) is left alone
    /// (`None`).
    fn converge_locked(
        &mut self,
        ctxs: &[&Context],
    ) -> anyhow::Result<Vec<Option<Result<apply::Outcome, apply::CtxError>>>> {
        let _lock = lock::lock(self.wait).context("taking the netctx lock")?;
        let still: Vec<&Context> = ctxs
            .iter()
            .copied()
            .filter(|c| owner::ns_owner(&c.name).ok() == Some(NsOwner::Ours))
            .collect();
        let view =
            HostView::read(&mut self.host, &still).context("reading the host's links and rules")?;
        let done = pool::map(&still, Some("watch: repair"), Host::open, |h, c| {
            converge(c, &view, h, false)
        })?;
        // The uplinks' switches (drift of which is a context's drift too).
        let ok: Vec<&Context> = still
            .iter()
            .zip(&done)
            .filter(|(_, r)| r.is_ok())
            .map(|(c, _)| *c)
            .collect();
        super::engine::uplink_run(|h| crate::apply::uplink::after_converge(h, &ok))?;
        let mut done = done.into_iter();
        Ok(ctxs
            .iter()
            .map(|c| {
                still
                    .iter()
                    .any(|s| s.name == c.name)
                    .then(|| done.next())
                    .flatten()
            })
            .collect())
    }
}
