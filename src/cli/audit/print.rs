//! `netctx audit`'s output: a table per context, or one JSON document.

use serde_json::{json, Value};

use super::{endpoint, ns_phrase, who, Report, Row};
use crate::observe::procs::Proc;

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
        "ifindex": r.sock.ifindex,
        "namespace": r.namespace,
        "pid": r.owner.as_ref().map(|o| o.0),
        "command": r.owner.as_ref().map(|o| o.1.clone()),
        "verdict": r.verdict,
    })
}

fn proc_json(p: &Proc) -> Value {
    json!({"pid": p.pid, "command": p.comm, "cgroup": p.cgroup})
}

pub(super) fn json(reports: &[Report], host: Option<&(Vec<Row>, Vec<String>)>, total: usize) {
    let contexts: Vec<Value> = reports
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "state": if r.up { "up" } else { "down" },
                "sockets": r.rows.iter().map(row_json).collect::<Vec<_>>(),
                "violations": r.violations,
                "unconfined": r.unconfined.iter().map(proc_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let host = host.map(|(rows, v)| {
        json!({"sockets": rows.iter().map(row_json).collect::<Vec<_>>(), "violations": v})
    });
    println!(
        "{}",
        json!({"contexts": contexts, "host": host, "violations": total})
    );
}

/// The rows of namespace `ns` (others are sockets its processes hold).
fn print_table(title: &str, ns: &str, rows: &[Row], violations: &[String]) {
    println!("{title}");
    if rows.is_empty() {
        println!("  (no sockets)");
    } else {
        println!(
            "  {:<7} {:<11} {:<28} {:<28} {:<20} VERDICT",
            "PROTO", "STATE", "LOCAL", "PEER", "PROCESS"
        );
        for r in rows {
            let proc_ = r
                .owner
                .as_ref()
                .map_or("-".to_string(), |(p, c)| format!("{p}/{c}"));
            let verdict = if r.namespace == ns {
                r.verdict.to_string()
            } else {
                format!("{} (socket of {})", r.verdict, ns_phrase(&r.namespace))
            };
            println!(
                "  {:<7} {:<11} {:<28} {:<28} {:<20} {verdict}",
                r.sock.proto,
                r.sock.state,
                endpoint(r.sock.local, r.sock.port),
                endpoint(r.sock.peer, r.sock.peer_port),
                proc_,
            );
        }
    }
    for v in violations {
        println!("  VIOLATION: {v}");
    }
}

pub(super) fn text(reports: &[Report], host: Option<&(Vec<Row>, Vec<String>)>, total: usize) {
    for r in reports {
        if !r.up {
            println!("context {}: down\n", r.name);
            continue;
        }
        print_table(
            &format!("context {}", r.name),
            &r.name,
            &r.rows,
            &r.violations,
        );
        for p in &r.unconfined {
            let cg = p.cgroup.as_deref().unwrap_or("?");
            println!("  unconfined: {} in cgroup {cg}", who(p));
        }
        println!();
    }
    if let Some((rows, v)) = host {
        print_table("host", "host", rows, v);
        println!();
    }
    println!("{total} violation(s)");
}
