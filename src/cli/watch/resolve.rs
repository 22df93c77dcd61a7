//! netctx's resolver, one query: a name the context's `reach` covers is
//! forwarded to the host's upstream resolvers and every A/AAAA address of
//! the answer is allowed to the context (its timed sets) for the answer's
//! time to live, at least `MIN_TTL`; any other name is refused (REFUSED)
//! and logged `CTX DENY: NAME=…` in the DNS log that `netctx logs` follows.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;

use crate::apply::dns::{self as allow, Allow};
use crate::model::{domain_covers, escape};

/// The least time an answered address stays allowed.
pub const MIN_TTL: Duration = Duration::from_secs(30);
/// How long one upstream server is waited for.
const UPSTREAM_WAIT: Duration = Duration::from_secs(3);
/// The host's resolver file (`NETCTX_RESOLV_CONF` overrides it, for tests).
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What one context's resolver answers for.
pub struct Scope {
    pub ctx: String,
    /// Its `reach`'s domain entries (`*.example.com`: the subdomains).
    pub domains: Vec<String>,
    /// Its own listening addresses (never an upstream).
    pub own: Vec<IpAddr>,
}

/// The upstream name servers: the host's resolv.conf, or systemd-resolved's
/// upstream list when that names only loopback servers.
pub fn upstreams(own: &[IpAddr]) -> Vec<IpAddr> {
    let path = std::env::var_os("NETCTX_RESOLV_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(RESOLV_CONF));
    let host = std::fs::read_to_string(&path).unwrap_or_default();
    nameservers(&host, own, || {
        std::fs::read_to_string(crate::guest::resolv::UPSTREAM).unwrap_or_default()
    })
}

/// The `nameserver`s of resolv.conf text `host` — or, when it names only
/// loopback servers (systemd-resolved's stub), of `resolved()` — but
/// loopback and the resolver's `own` addresses. Pure.
fn nameservers(host: &str, own: &[IpAddr], resolved: impl FnOnce() -> String) -> Vec<IpAddr> {
    let text = if crate::guest::resolv::only_loopback(host) {
        resolved()
    } else {
        host.to_string()
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !own.contains(ip))
        .collect()
}

/// The answer to one query (raw DNS message) from `peer`; `None` for
/// what is no DNS query at all (dropped).
pub fn answer(
    query: &[u8],
    tcp: bool,
    peer: SocketAddr,
    s: &Scope,
    nft: &Mutex<Option<Allow>>,
) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let (id, op) = (q.metadata.id, q.metadata.op_code);
    let reply = |code| {
        let mut m = Message::error_msg(id, op, code);
        m.queries.clone_from(&q.queries);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.to_vec().ok()
    };
    let [question] = q.queries.as_slice() else {
        return reply(ResponseCode::FormErr);
    };
    let name = question.name.to_ascii();
    let shown = name.trim_end_matches('.');
    if !s.domains.iter().any(|d| domain_covers(d, shown)) {
        let line = format!("{} DENY: NAME={} SRC={}", s.ctx, escape(shown), peer.ip());
        if let Err(e) = allow::log(&line) {
            eprintln!("netctx: warning: the DNS log: {e}");
        }
        return reply(ResponseCode::Refused);
    }
    for server in upstreams(&s.own) {
        let Some(raw) = exchange(query, tcp, SocketAddr::new(server, 53)) else {
            continue;
        };
        let Ok(resp) = Message::from_vec(&raw) else {
            continue;
        };
        if resp.metadata.id != id || resp.queries != q.queries {
            continue;
        }
        permit(&resp, s, nft);
        return Some(raw);
    }
    reply(ResponseCode::ServFail)
}

/// Allow the context every A/AAAA address of the answer.
fn permit(resp: &Message, s: &Scope, nft: &Mutex<Option<Allow>>) {
    let mut guard = nft.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        match Allow::open() {
            Ok(a) => *guard = Some(a),
            Err(e) => {
                eprintln!("netctx: error: context {}: nf_tables socket: {e}", s.ctx);
                return;
            }
        }
    }
    let Some(a) = guard.as_mut() else { return };
    for r in &resp.answers {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        let ttl = Duration::from_secs(r.ttl.into()).max(MIN_TTL);
        if let Err(e) = a.allow(&s.ctx, ip, ttl) {
            eprintln!(
                "netctx: error: context {}: allowing {ip} in the host's set {}: {e}",
                s.ctx,
                crate::model::dns_set(&s.ctx, ip.is_ipv6())
            );
        }
    }
}

/// One query to one server, over UDP or TCP as the guest asked.
fn exchange(query: &[u8], tcp: bool, server: SocketAddr) -> Option<Vec<u8>> {
    if tcp {
        let mut c = TcpStream::connect_timeout(&server, UPSTREAM_WAIT).ok()?;
        c.set_read_timeout(Some(UPSTREAM_WAIT)).ok()?;
        let len = u16::try_from(query.len()).ok()?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(query);
        c.write_all(&out).ok()?;
        let mut l = [0u8; 2];
        c.read_exact(&mut l).ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
        c.read_exact(&mut buf).ok()?;
        return Some(buf);
    }
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().ok()?
    } else {
        "0.0.0.0:0".parse().ok()?
    };
    let u = UdpSocket::bind(bind).ok()?;
    u.connect(server).ok()?;
    u.set_read_timeout(Some(UPSTREAM_WAIT)).ok()?;
    u.send(query).ok()?;
    let mut buf = vec![0u8; 65535];
    let n = u.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_the_hosts_or_systemd_resolveds_behind_its_stub() {
        let own: Vec<IpAddr> = vec!["10.88.0.1".parse().unwrap()];
        let ips = |v: Vec<IpAddr>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        let resolved = || "nameserver 203.0.113.53\nnameserver 2001:db8::53\n".to_string();
        // The host's own servers, without loopback or the resolver itself.
        let host = "search example\nnameserver 198.51.100.53\nnameserver 127.0.0.1\nnameserver 10.88.0.1\n";
        assert_eq!(ips(nameservers(host, &own, resolved)), ["198.51.100.53"]);
        // Only systemd-resolved's stub: its upstream list.
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        assert_eq!(
            ips(nameservers(stub, &own, resolved)),
            ["203.0.113.53", "2001:db8::53"]
        );
        // Nothing usable: no upstream (every covered name then fails).
        assert!(nameservers("", &own, String::new).is_empty());
    }
}
