//! `netctx audit`: gather sockets, addresses and processes per namespace
//! (sock_diag and rtnetlink in each namespace on the pool, one /proc scan a
//! run), judge them (`crate::audit`), print a table per context or one JSON
//! document. Reads only.

mod attachments;
mod print;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;

use anyhow::Context as _;

use super::engine::select;
use super::Exit;
use super::Listing;
use crate::audit::{self, canonical, judge, judge_host, undeclared, Known, Own, Verdict};
use crate::guest;
use crate::guest::cgroup;
use crate::kernel::{netns, pool};
use crate::model::{Cidr, Config, Context};
use crate::observe::diag::{self, Kinds, Socket};
use crate::observe::owner::{self, NsOwner};
use crate::observe::procs::{Proc, Procs};
use crate::observe::NlError;

/// What was found in one namespace.
struct Seen {
    sockets: Vec<Socket>,
    /// Addresses present, with their link.
    addrs: Vec<(String, Cidr)>,
    /// IPv6 link-local addresses present, with their link's index.
    link_local: Vec<(u32, Ipv6Addr)>,
    /// The namespace's nsfs inode.
    inode: u64,
    /// Whether a link of it is a CNI attachment's host end (its alias).
    attachments: bool,
}

/// Sockets and addresses of the calling thread's namespace.
fn read_here(kinds: &Kinds) -> Result<Seen, NlError> {
    let inode = netns::current_inode()?;
    let diag::Here {
        sockets,
        links,
        link_locals: lls,
    } = diag::read_here(kinds)?;
    let mut addrs: Vec<(String, Cidr)> = links
        .iter()
        .flat_map(|l| l.addrs.iter().map(|a| (l.name.clone(), *a)))
        .collect();
    // Link-local addresses the kernel did not make are addresses like any.
    for ll in lls.iter().filter(|ll| !ll.kernel) {
        if let Some(l) = links.iter().find(|l| l.index == ll.index) {
            let c = Cidr {
                addr: IpAddr::V6(ll.addr),
                prefix: ll.prefix,
            };
            addrs.push((l.name.clone(), c));
        }
    }
    Ok(Seen {
        sockets,
        addrs,
        link_local: lls.iter().map(|ll| (ll.index, ll.addr)).collect(),
        inode,
        attachments: crate::observe::attachments::any_attachment(&links),
    })
}

fn read_ctx(name: &str, kinds: &Kinds) -> anyhow::Result<Option<Seen>> {
    if owner::ns_owner(name)? != NsOwner::Ours {
        return Ok(None);
    }
    let f = netns::open(name)?;
    let inode = f.metadata()?.ino();
    let seen = netns::run_in(&f, || read_here(kinds))??;
    anyhow::ensure!(seen.inode == inode, "namespace {name} changed while read");
    Ok(Some(seen))
}

struct Row {
    sock: Socket,
    owner: Option<(i32, String)>,
    verdict: &'static str,
    /// The namespace whose socket this is: "host" or a context's name.
    namespace: String,
}

/// What audit says about one context.
struct Report {
    name: String,
    /// A CNI attachment's `NAMESPACE/POD`.
    pod: Option<String>,
    up: bool,
    rows: Vec<Row>,
    violations: Vec<String>,
    /// Processes in its namespace outside its cgroup.
    unconfined: Vec<Proc>,
    /// The bind restriction: "attached", "missing", "no cgroup" (no guest
    /// has run: they are attached when the first one starts), "off".
    bind_hooks: &'static str,
}

/// Whether the bind restriction is attached to a strict context's cgroup;
/// a strict context whose hooks are missing is a violation.
fn bind_hooks(c: &Context) -> (&'static str, Option<String>) {
    if c.isolation != crate::model::Isolation::Strict {
        return ("off", None);
    }
    let Ok(cg) = cgroup::path(&c.name) else {
        return ("no cgroup", None);
    };
    if !cg.exists() {
        return ("no cgroup", None);
    }
    match guest::binds::status(&cg) {
        Ok(s) if s.complete() => ("attached", None),
        Ok(s) => {
            let missing: Vec<&str> = s.missing.iter().map(|h| h.name()).collect();
            let v = format!(
                "the bind restriction of {} is missing on {}: {}",
                c.name,
                cg.display(),
                missing.join(", ")
            );
            ("missing", Some(v))
        }
        Err(e) => (
            "missing",
            Some(format!("the bind restriction of {}: {e}", c.name)),
        ),
    }
}

fn owner_of(procs: &Procs, inode: u32) -> Option<(i32, String)> {
    procs.owner(inode).map(|p| (p.pid, p.comm.clone()))
}

fn rows(
    sockets: &[Socket],
    namespace: &str,
    procs: &Procs,
    judge: impl Fn(&Socket) -> &'static str,
) -> Vec<Row> {
    sockets
        .iter()
        .map(|s| Row {
            verdict: judge(s),
            owner: owner_of(procs, s.inode),
            sock: s.clone(),
            namespace: namespace.to_string(),
        })
        .collect()
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    let ip = canonical(ip);
    let host = if ip.is_unspecified() {
        "*".to_string()
    } else {
        ip.to_string()
    };
    let port = if port == 0 {
        "*".to_string()
    } else {
        port.to_string()
    };
    match ip {
        IpAddr::V6(_) if host != "*" => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

fn who(p: &Proc) -> String {
    format!("pid {} ({})", p.pid, p.comm)
}

fn ns_phrase(ns: &str) -> String {
    if ns == "host" {
        "the host's namespace".into()
    } else {
        format!("the namespace of context {ns}")
    }
}

/// The namespaces read, as (label, inode, sockets): the host's first.
type Dump<'a> = (&'a str, u64, &'a [Socket]);

/// Sockets of one namespace held by a process of a context whose namespace
/// it is not, by that context.
fn foreign_held(
    dumps: &[Dump],
    procs: &Procs,
    ctxs: &Known,
) -> HashMap<String, (Vec<Row>, Vec<String>)> {
    let mut out: HashMap<String, (Vec<Row>, Vec<String>)> = HashMap::new();
    let root = cgroup::proc_root();
    for (label, ino, sockets) in dumps {
        for s in *sockets {
            for p in procs.holders(s.inode) {
                let cg = p
                    .cgroup
                    .as_deref()
                    .map(|c| cgroup::relative(c, root.as_deref()));
                let st = audit::standing(p.netns, cg.as_deref(), ctxs);
                let Some(ctx) = audit::foreign_holder(*ino, &st, ctxs) else {
                    continue;
                };
                let e = out.entry(ctx.to_string()).or_default();
                e.1.push(format!(
                    "{} holds a {} socket on {} of {}, not of context {ctx}",
                    who(p),
                    s.proto,
                    endpoint(s.local, s.port),
                    ns_phrase(label)
                ));
                e.0.push(Row {
                    sock: s.clone(),
                    owner: Some((p.pid, p.comm.clone())),
                    verdict: Verdict::Foreign.as_str(),
                    namespace: label.to_string(),
                });
            }
        }
    }
    out
}

/// Unconfined processes and processes of a context's cgroup outside its
/// namespace, by context.
fn confinement(
    procs: &Procs,
    ctxs: &Known,
) -> (HashMap<String, Vec<Proc>>, HashMap<String, Vec<Proc>>) {
    let (mut unconfined, mut escaped): (HashMap<_, Vec<Proc>>, HashMap<_, Vec<Proc>>) =
        Default::default();
    // Paths as netctx's own cgroup mount sees them (the reader's cgroup
    // namespace may differ from the mount's).
    let root = cgroup::proc_root();
    for p in &procs.all {
        let cg = p
            .cgroup
            .as_deref()
            .map(|c| cgroup::relative(c, root.as_deref()));
        let st = audit::standing(p.netns, cg.as_deref(), ctxs);
        if let Some(c) = st.unconfined {
            unconfined.entry(c.to_string()).or_default().push(p.clone());
        }
        if let Some(c) = st.escaped {
            escaped.entry(c.to_string()).or_default().push(p.clone());
        }
    }
    (unconfined, escaped)
}

/// Everything audit reads: the contexts' namespaces, the host's, /proc.
struct Gathered {
    seen: Vec<Option<Seen>>,
    host: Seen,
    procs: Procs,
    kinds: Kinds,
}

fn gather(ctxs: &[&Context]) -> anyhow::Result<Gathered> {
    let kinds = Kinds::detect().context("probing socket diagnostics")?;
    // The host's sockets are read while the workers read the contexts'.
    let (seen, host) = std::thread::scope(|s| {
        let host = s.spawn(|| read_here(&kinds));
        let seen = pool::map(ctxs, None, || Ok(()), |_, c| read_ctx(&c.name, &kinds));
        (
            seen,
            host.join().expect("the host's socket reader panicked"),
        )
    });
    let seen = ctxs
        .iter()
        .zip(seen?)
        .map(|(c, s)| s.with_context(|| format!("context {}", c.name)))
        .collect::<anyhow::Result<_>>()?;
    let host = host.context("reading the host's sockets")?;
    // After the dumps: every socket listed was open before the scan.
    let procs = Procs::scan();
    Ok(Gathered {
        seen,
        host,
        procs,
        kinds,
    })
}

fn declared(c: &Context) -> Vec<(String, Cidr)> {
    c.links
        .iter()
        .flat_map(|l| l.addresses.iter().map(move |a| (l.name.clone(), *a)))
        .collect()
}

/// The verdicts on one context's own sockets, addresses and guest.
fn judge_context(c: &Context, s: &Seen, procs: &Procs) -> (Vec<Row>, Vec<String>) {
    let assigned: Vec<IpAddr> = declared(c).iter().map(|(_, a)| a.addr).collect();
    let own = Own {
        assigned: &assigned,
        link_local: &s.link_local,
    };
    let rows = rows(&s.sockets, &c.name, procs, |x| {
        judge(x.local, x.ifindex, &own).as_str()
    });
    let mut violations: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Foreign.as_str())
        .map(|r| {
            let who = r
                .owner
                .as_ref()
                .map_or("unknown process".into(), |(p, c)| format!("pid {p} ({c})"));
            format!(
                "{} socket on {} is bound to {}, which is not assigned to {} ({who})",
                r.sock.proto,
                endpoint(r.sock.local, r.sock.port),
                canonical(r.sock.local),
                c.name
            )
        })
        .collect();
    for (link, a) in undeclared(&s.addrs, &declared(c)) {
        violations.push(format!(
            "address {a} on link {link} is not declared for {}",
            c.name
        ));
    }
    if let Some(pid) = guest::running(&c.name) {
        if guest::netns_inode(pid) != Some(s.inode) {
            violations.push(format!(
                "guest pid {pid} is not in the network namespace of {}",
                c.name
            ));
        }
    }
    (rows, violations)
}

/// The host's own sockets: binding a context's address is a violation.
fn judge_host_sockets(host: &Seen, procs: &Procs, cfg: &Config) -> (Vec<Row>, Vec<String>) {
    let assigned: Vec<(String, Vec<IpAddr>)> = cfg
        .contexts
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                declared(c).iter().map(|(_, a)| a.addr).collect(),
            )
        })
        .collect();
    let rows = rows(&host.sockets, "host", procs, |s| {
        match judge_host(s.local, &assigned) {
            Some(_) => Verdict::Foreign.as_str(),
            None if canonical(s.local).is_unspecified() => Verdict::Wildcard.as_str(),
            None => "host",
        }
    });
    let violations = rows
        .iter()
        .filter_map(|r| {
            let ctx = judge_host(r.sock.local, &assigned)?;
            Some(format!(
                "host {} socket on {} is bound to an address of context {ctx}",
                r.sock.proto,
                endpoint(r.sock.local, r.sock.port)
            ))
        })
        .collect();
    (rows, violations)
}

fn reports(ctxs: &[&Context], g: &Gathered) -> Vec<Report> {
    let inodes = Known::new(
        ctxs.iter()
            .zip(&g.seen)
            .filter_map(|(c, s)| Some((c.name.clone(), s.as_ref()?.inode))),
    );
    let mut dumps: Vec<Dump> = vec![("host", g.host.inode, &g.host.sockets)];
    for (c, s) in ctxs.iter().zip(&g.seen) {
        if let Some(s) = s {
            dumps.push((&c.name, s.inode, &s.sockets));
        }
    }
    let mut held = foreign_held(&dumps, &g.procs, &inodes);
    let (mut unconfined, mut escaped) = confinement(&g.procs, &inodes);
    let mut out = Vec::new();
    for (c, s) in ctxs.iter().zip(&g.seen) {
        let Some(s) = s else {
            out.push(Report {
                name: c.name.clone(),
                pod: None,
                up: false,
                rows: Vec::new(),
                violations: Vec::new(),
                unconfined: Vec::new(),
                bind_hooks: "off",
            });
            continue;
        };
        let (mut rows, mut violations) = judge_context(c, s, &g.procs);
        let guest = guest::running(&c.name);
        // netctx's own init of the context's PID namespace stays on the host.
        let init = guest::init::running(&c.name);
        for p in escaped.remove(&c.name).unwrap_or_default() {
            // The guest's own check above already says so.
            if Some(p.pid) != guest && Some(p.pid) != init {
                violations.push(format!(
                    "{} is in the cgroup of {} but not in its network namespace",
                    who(&p),
                    c.name
                ));
            }
        }
        if let Some((r, v)) = held.remove(&c.name) {
            rows.extend(r);
            violations.extend(v);
        }
        let (hooks, missing) = bind_hooks(c);
        violations.extend(missing);
        out.push(Report {
            name: c.name.clone(),
            pod: None,
            up: true,
            rows,
            violations,
            unconfined: unconfined.remove(&c.name).unwrap_or_default(),
            bind_hooks: hooks,
        });
    }
    out
}

pub fn audit(cfg: &Config, l: &Listing) -> anyhow::Result<Exit> {
    // CNI attachments (`cni` + 8 hex digits) live in the runtime's
    // namespaces; the rest are declared contexts.
    let sel = crate::observe::attachments::split_names(&l.contexts);
    let ctxs: Vec<&Context> = match &sel.declared {
        Some(names) => select(cfg, names)?,
        None => Vec::new(),
    };
    let g = gather(&ctxs)?;
    let mut reports = reports(&ctxs, &g);
    match &sel.attachments {
        // None on the host: nothing to look for.
        Some(names) if names.is_empty() && !g.host.attachments => {}
        Some(names) => reports.extend(attachments::reports(names, &g)?),
        None => {}
    }
    // The host is always read (a context's process may hold its sockets),
    // listed only when no context is named.
    let host = l
        .contexts
        .is_empty()
        .then(|| judge_host_sockets(&g.host, &g.procs, cfg));
    let total = reports.iter().map(|r| r.violations.len()).sum::<usize>()
        + host.as_ref().map_or(0, |h| h.1.len());
    if l.json {
        print::json(&reports, host.as_ref(), total);
    } else {
        print::text(&reports, host.as_ref(), total);
    }
    Ok(if total > 0 { Exit::Finding } else { Exit::Ok })
}
