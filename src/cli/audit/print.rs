//! `netctx audit`'s output: a table per context, or one JSON document.

use serde::Serialize;

use super::{endpoint, ns_phrase, who, Report, Row};
use crate::observe::procs::Proc;

// The document, serialized straight from the reports (10,000 sockets made
// into `serde_json::Value`s first cost more than reading them). Fields in
// name order, as `json!` objects print them.

#[derive(Serialize)]
struct RowOut<'a> {
    command: Option<&'a str>,
    family: &'static str,
    ifindex: u32,
    inode: u32,
    local: String,
    namespace: &'a str,
    peer: String,
    peer_port: u16,
    pid: Option<i32>,
    port: u16,
    proto: &'a str,
    state: &'a str,
    verdict: &'a str,
}

impl<'a> From<&'a Row> for RowOut<'a> {
    fn from(r: &'a Row) -> Self {
        RowOut {
            command: r.owner.as_ref().map(|o| o.1.as_str()),
            family: if r.sock.local.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            },
            ifindex: r.sock.ifindex,
            inode: r.sock.inode,
            local: r.sock.local.to_string(),
            namespace: &r.namespace,
            peer: r.sock.peer.to_string(),
            peer_port: r.sock.peer_port,
            pid: r.owner.as_ref().map(|o| o.0),
            port: r.sock.port,
            proto: r.sock.proto,
            state: r.sock.state,
            verdict: r.verdict,
        }
    }
}

#[derive(Serialize)]
struct ProcOut<'a> {
    cgroup: &'a Option<String>,
    command: &'a str,
    pid: i32,
}

#[derive(Serialize)]
struct ContextOut<'a> {
    bind_hooks: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    sockets: Vec<RowOut<'a>>,
    state: &'static str,
    unconfined: Vec<ProcOut<'a>>,
    violations: &'a [String],
}

#[derive(Serialize)]
struct HostOut<'a> {
    sockets: Vec<RowOut<'a>>,
    violations: &'a [String],
}

#[derive(Serialize)]
struct Doc<'a> {
    contexts: Vec<ContextOut<'a>>,
    host: Option<HostOut<'a>>,
    violations: usize,
}

pub(super) fn json(reports: &[Report], host: Option<&(Vec<Row>, Vec<String>)>, total: usize) {
    let doc = Doc {
        contexts: reports
            .iter()
            .map(|r| ContextOut {
                bind_hooks: r.bind_hooks,
                name: &r.name,
                pod: r.pod.as_deref(),
                sockets: r.rows.iter().map(RowOut::from).collect(),
                state: if r.up { "up" } else { "down" },
                unconfined: r
                    .unconfined
                    .iter()
                    .map(|p: &Proc| ProcOut {
                        cgroup: &p.cgroup,
                        command: &p.comm,
                        pid: p.pid,
                    })
                    .collect(),
                violations: &r.violations,
            })
            .collect(),
        host: host.map(|(rows, v)| HostOut {
            sockets: rows.iter().map(RowOut::from).collect(),
            violations: v,
        }),
        violations: total,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed stdout (a pipe's reader gone) is not audit's failure.
    let _ = serde_json::to_writer(&mut out, &doc)
        .map_err(std::io::Error::from)
        .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
        .and_then(|()| std::io::Write::flush(&mut out));
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
        let pod = r.pod.as_deref().map(|p| format!(" (pod {p})"));
        print_table(
            &format!("context {}{}", r.name, pod.unwrap_or_default()),
            &r.name,
            &r.rows,
            &r.violations,
        );
        for p in &r.unconfined {
            let cg = p.cgroup.as_deref().unwrap_or("?");
            println!("  unconfined: {} in cgroup {cg}", who(p));
        }
        println!("  bind restriction: {}", r.bind_hooks);
        println!();
    }
    if let Some((rows, v)) = host {
        print_table("host", "host", rows, v);
        println!();
    }
    println!("{total} violation(s)");
}
