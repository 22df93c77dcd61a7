//! The policy across contexts (docs/policy.md): each `reach` naming a
//! context resolved into that context's veths and what its `accept_from`
//! admits of the sender, so that the sender's chain alone decides.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::{meet, Admit, Context, Peer, Ports, Reach};

/// Each `reach` of a context learns the host-side veths of the context it
/// names and what that context's `accept_from` admits of it.
pub(super) fn resolve_reach(contexts: &mut [Context]) {
    type Peers = (Vec<String>, Vec<Reach>);
    let peers: HashMap<String, Peers> = contexts
        .iter()
        .map(|c| {
            let hosts = c.links.iter().filter_map(|l| l.host.clone()).collect();
            (c.name.clone(), (hosts, c.accept_from.clone()))
        })
        .collect();
    for c in contexts {
        let name = c.name.clone();
        let sources: Vec<IpAddr> = c
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().map(|a| a.addr))
            .collect();
        for r in &mut c.reach {
            let Some((veths, accept)) = r.context().and_then(|t| peers.get(t)) else {
                continue;
            };
            r.links.clone_from(veths);
            r.admit = admitted(&name, &sources, r.ports, accept);
        }
    }
}

/// What a receiver's `accept_from` admits of a sender's `reach` entry
/// naming it (with these ports): without `accept_from`, the entry; else
/// each of its entries naming the sender or an address range holding one
/// of the sender's addresses (`sources`: then the sources in it), on the
/// ports both allow.
fn admitted(
    sender: &str,
    sources: &[IpAddr],
    ports: Option<Ports>,
    accept: &[Reach],
) -> Vec<Admit> {
    if accept.is_empty() {
        return vec![Admit { from: None, ports }];
    }
    let mut out: Vec<Admit> = accept
        .iter()
        .filter_map(|a| {
            let from = match &a.to {
                Peer::Context(c) if c == sender => None,
                Peer::Net(n) if sources.iter().any(|s| n.contains(*s)) => Some(*n),
                _ => return None,
            };
            meet(ports, a.ports).map(|ports| Admit { from, ports })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
