//! `netctx audit`: gather sockets, addresses and guests per namespace, judge
//! them (`crate::audit`), print a table per context or one JSON document.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::engine::select;
use super::{EXIT_FINDING, EXIT_OK};
use crate::audit::{self, judge, judge_host, undeclared, Socket, Verdict};
use crate::model::{Cidr, Config, Context};
use crate::nl::{Diag, NlError, Rtnl};
use crate::owner::{self, NsOwner};
use crate::{guest, netns, pool, state, Listing};

/// What was found in one namespace.
struct Seen {
    sockets: Vec<Socket>,
    /// Addresses present, with their link.
    addrs: Vec<(String, Cidr)>,
    /// The namespace's nsfs inode.
    inode: u64,
}

/// Sockets and addresses of the calling thread's namespace.
fn read_here(inode: u64) -> Result<Seen, NlError> {
    let sockets = audit::read_sockets(&mut Diag::open()?)?;
    let addrs = state::read_links(&mut Rtnl::open()?)?
        .into_iter()
        .flat_map(|l| l.addrs.into_iter().map(move |a| (l.name.clone(), a)))
        .collect();
    Ok(Seen {
        sockets,
        addrs,
        inode,
    })
}

fn read_ctx(name: &str) -> anyhow::Result<Option<Seen>> {
    if owner::ns_owner(name)? != NsOwner::Ours {
        return Ok(None);
    }
    let f = netns::open(name)?;
    let inode = f.metadata()?.ino();
    Ok(Some(netns::run_in(&f, || read_here(inode))??))
}

struct Row {
    sock: Socket,
    owner: Option<(i32, String)>,
    verdict: &'static str,
}

fn rows(
    sockets: Vec<Socket>,
    owners: &HashMap<u32, (i32, String)>,
    judge: impl Fn(IpAddr) -> &'static str,
) -> Vec<Row> {
    sockets
        .into_iter()
        .map(|s| Row {
            verdict: judge(s.local),
            owner: owners.get(&s.inode).cloned(),
            sock: s,
        })
        .collect()
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    let ip = audit::canonical(ip);
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

fn row_json(r: &Row) -> Value {
    json!({
        "proto": r.sock.proto,
        "family": if r.sock.local.is_ipv4() { "ipv4" } else { "ipv6" },
        "state": r.sock.state,
        "local": r.sock.local.to_string(),
        "port": r.sock.port,
        "peer": r.sock.peer.to_string(),
        "peer_port": r.sock.peer_port,
        "inode": r.sock.inode,
        "pid": r.owner.as_ref().map(|o| o.0),
        "command": r.owner.as_ref().map(|o| o.1.clone()),
        "verdict": r.verdict,
    })
}

fn print_table(title: &str, rows: &[Row], violations: &[String]) {
    println!("{title}");
    if rows.is_empty() {
        println!("  (no sockets)");
    } else {
        println!(
            "  {:<5} {:<11} {:<28} {:<28} {:<20} VERDICT",
            "PROTO", "STATE", "LOCAL", "PEER", "PROCESS"
        );
        for r in rows {
            let proc_ = r
                .owner
                .as_ref()
                .map_or("-".to_string(), |(p, c)| format!("{p}/{c}"));
            println!(
                "  {:<5} {:<11} {:<28} {:<28} {:<20} {}",
                r.sock.proto,
                r.sock.state,
                endpoint(r.sock.local, r.sock.port),
                endpoint(r.sock.peer, r.sock.peer_port),
                proc_,
                r.verdict
            );
        }
    }
    for v in violations {
        println!("  VIOLATION: {v}");
    }
}

pub fn audit(cfg: &Config, l: &Listing) -> anyhow::Result<u8> {
    let ctxs: Vec<&Context> = select(cfg, &l.contexts)?;
    let seen = pool::map(&ctxs, None, |_, c| read_ctx(&c.name))?;
    let owners = audit::socket_owners();
    let assigned: Vec<(String, Vec<IpAddr>)> = cfg
        .contexts
        .iter()
        .map(|c| {
            let a = c
                .links
                .iter()
                .flat_map(|l| l.addresses.iter().map(|x| x.addr))
                .collect();
            (c.name.clone(), a)
        })
        .collect();

    let mut total = 0;
    let mut docs = Vec::new();
    for (c, s) in ctxs.iter().zip(seen) {
        let s = s.with_context(|| format!("context {}", c.name))?;
        let Some(s) = s else {
            docs.push((c.name.clone(), "down", Vec::new(), Vec::new()));
            continue;
        };
        let mine: Vec<IpAddr> = assigned
            .iter()
            .find(|(n, _)| *n == c.name)
            .map(|x| x.1.clone())
            .unwrap_or_default();
        let rows = rows(s.sockets, &owners, |ip| judge(ip, &mine).as_str());
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
                    audit::canonical(r.sock.local),
                    c.name
                )
            })
            .collect();
        let declared: Vec<(String, Cidr)> = c
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().map(move |a| (l.name.clone(), *a)))
            .collect();
        for (link, a) in undeclared(&s.addrs, &declared) {
            violations.push(format!(
                "address {a} on link {link} is not declared for {}",
                c.name
            ));
        }
        let guest_pid = guest::running(&c.name);
        if let Some(pid) = guest_pid {
            if guest::netns_inode(pid) != Some(s.inode) {
                violations.push(format!(
                    "guest pid {pid} is not in the network namespace of {}",
                    c.name
                ));
            }
        }
        // Every other process of the context, found through its cgroup.
        let init = guest::init::running(&c.name);
        for pid in guest::cgroup::procs(&c.name) {
            let ours = Some(pid) == guest_pid || Some(pid) == init;
            if !ours && guest::netns_inode(pid).is_some_and(|i| i != s.inode) {
                violations.push(format!(
                    "process {pid} of context {} is not in its network namespace",
                    c.name
                ));
            }
        }
        total += violations.len();
        docs.push((c.name.clone(), "up", rows, violations));
    }

    // The host: its own sockets; binding a context's address is a violation.
    let mut host = None;
    if l.contexts.is_empty() {
        let here = read_here(0).context("reading the host's sockets")?;
        let rows = rows(here.sockets, &owners, |ip| {
            match judge_host(ip, &assigned) {
                Some(_) => Verdict::Foreign.as_str(),
                None if audit::canonical(ip).is_unspecified() => Verdict::Wildcard.as_str(),
                None => "host",
            }
        });
        let violations: Vec<String> = rows
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
        total += violations.len();
        host = Some((rows, violations));
    }

    if l.json {
        let contexts: Vec<Value> = docs
            .iter()
            .map(|(n, st, rows, v)| {
                json!({"name": n, "state": st, "sockets": rows.iter().map(row_json).collect::<Vec<_>>(), "violations": v})
            })
            .collect();
        let host = host.as_ref().map(|(rows, v)| {
            json!({"sockets": rows.iter().map(row_json).collect::<Vec<_>>(), "violations": v})
        });
        println!(
            "{}",
            json!({"contexts": contexts, "host": host, "violations": total})
        );
    } else {
        for (n, st, rows, v) in &docs {
            if *st == "down" {
                println!("context {n}: down\n");
                continue;
            }
            print_table(&format!("context {n}"), rows, v);
            println!();
        }
        if let Some((rows, v)) = &host {
            print_table("host", rows, v);
            println!();
        }
        println!("{total} violation(s)");
    }
    Ok(if total > 0 { EXIT_FINDING } else { EXIT_OK })
}
