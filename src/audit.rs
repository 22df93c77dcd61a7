//! `netctx audit`: every TCP and UDP socket (IPv4 and IPv6) of every context
//! and of the host, read through NETLINK_SOCK_DIAG inside each namespace, with
//! the owning process found by socket inode (one scan of /proc per run).
//! Verdicts are pure functions of those lists and the configuration.

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;

use crate::model::Cidr;
use crate::nl::{Diag, NlError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub proto: &'static str,
    pub local: IpAddr,
    pub port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
    pub state: &'static str,
    pub inode: u32,
}

/// How a socket's local address relates to its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of the context's assigned addresses.
    Assigned,
    /// 0.0.0.0 or `::`: listed and marked, not a violation.
    Wildcard,
    Loopback,
    /// Not the context's: a violation.
    Foreign,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Assigned => "assigned",
            Verdict::Wildcard => "wildcard",
            Verdict::Loopback => "loopback",
            Verdict::Foreign => "VIOLATION",
        }
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The verdict on a socket bound to `local` in a context with `assigned`.
pub fn judge(local: IpAddr, assigned: &[IpAddr]) -> Verdict {
    let ip = canonical(local);
    if ip.is_unspecified() {
        Verdict::Wildcard
    } else if ip.is_loopback() {
        Verdict::Loopback
    } else if assigned.contains(&ip) {
        Verdict::Assigned
    } else {
        Verdict::Foreign
    }
}

/// The verdict on a host socket: violations are binds to a context's
/// address (possible only with IP_FREEBIND or ip_nonlocal_bind).
pub fn judge_host(local: IpAddr, contexts: &[(String, Vec<IpAddr>)]) -> Option<&str> {
    let ip = canonical(local);
    contexts
        .iter()
        .find(|(_, addrs)| addrs.contains(&ip))
        .map(|(n, _)| n.as_str())
}

/// Addresses present on a context's links that its configuration does not
/// declare (IPv6 link-local and loopback are the kernel's own).
pub fn undeclared(present: &[(String, Cidr)], declared: &[(String, Cidr)]) -> Vec<(String, Cidr)> {
    present
        .iter()
        .filter(|(link, c)| {
            link != "lo" && !c.addr.is_loopback() && !declared.contains(&(link.clone(), *c))
        })
        .cloned()
        .collect()
}

fn state_name(proto: u8, state: u8) -> &'static str {
    match (proto, state) {
        (IPPROTO_UDP, 7) => "UNCONN",
        (_, 1) => "ESTAB",
        (_, 2) => "SYN-SENT",
        (_, 3) => "SYN-RECV",
        (_, 4) => "FIN-WAIT-1",
        (_, 5) => "FIN-WAIT-2",
        (_, 6) => "TIME-WAIT",
        (_, 7) => "CLOSE",
        (_, 8) => "CLOSE-WAIT",
        (_, 9) => "LAST-ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Every TCP and UDP socket of the socket's namespace: four dumps.
pub fn read_sockets(nl: &mut Diag) -> Result<Vec<Socket>, NlError> {
    let mut out = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        for (proto, name) in [(IPPROTO_TCP, "tcp"), (IPPROTO_UDP, "udp")] {
            let req = SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: proto,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: id.clone(),
            });
            let answer = nl.dump(req).map_err(|mut e| {
                let fam = if family == AF_INET { "IPv4" } else { "IPv6" };
                let why = if e.errno == libc::ENOENT {
                    " (this kernel has no socket diagnostics for it: modules inet_diag, tcp_diag, udp_diag)"
                } else {
                    ""
                };
                e.extack = Some(format!("NETLINK_SOCK_DIAG dump of {name}/{fam}{why}"));
                e
            })?;
            for m in answer {
                if let SockDiagMessage::InetResponse(r) = m {
                    let h = &r.header;
                    out.push(Socket {
                        proto: name,
                        local: h.socket_id.source_address,
                        port: h.socket_id.source_port,
                        peer: h.socket_id.destination_address,
                        peer_port: h.socket_id.destination_port,
                        state: state_name(proto, h.state),
                        inode: h.inode,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Socket inode → (pid, command) for every process: one pass over /proc.
pub fn socket_owners() -> HashMap<u32, (i32, String)> {
    let mut map = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return map;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(ino) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u32>().ok())
            {
                let c = comm.get_or_insert_with(|| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default()
                });
                map.entry(ino).or_insert((pid, c.clone()));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn verdicts_on_synthetic_sockets() {
        let assigned = [ip("10.100.0.2"), ip("fd00:100::2")];
        assert_eq!(judge(ip("10.100.0.2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("fd00:100::2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("0.0.0.0"), &assigned), Verdict::Wildcard);
        assert_eq!(judge(ip("::"), &assigned), Verdict::Wildcard);
        assert_eq!(judge(ip("127.0.0.53"), &assigned), Verdict::Loopback);
        assert_eq!(judge(ip("::1"), &assigned), Verdict::Loopback);
        // Another context's address, bound with IP_FREEBIND.
        assert_eq!(judge(ip("10.200.0.2"), &assigned), Verdict::Foreign);
        // v4-mapped IPv6 is judged as the IPv4 address.
        assert_eq!(judge(ip("::ffff:10.100.0.2"), &assigned), Verdict::Assigned);
        assert_eq!(judge(ip("::ffff:10.200.0.2"), &assigned), Verdict::Foreign);
        assert_eq!(judge(ip("::ffff:0.0.0.0"), &assigned), Verdict::Wildcard);
    }

    #[test]
    fn host_sockets_on_a_context_address_are_flagged() {
        let ctxs = vec![("web".to_string(), vec![ip("10.100.0.2")])];
        assert_eq!(judge_host(ip("10.100.0.2"), &ctxs), Some("web"));
        assert_eq!(judge_host(ip("::ffff:10.100.0.2"), &ctxs), Some("web"));
        assert_eq!(judge_host(ip("10.100.0.1"), &ctxs), None);
        assert_eq!(judge_host(ip("0.0.0.0"), &ctxs), None);
    }

    #[test]
    fn undeclared_addresses_are_found() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        let declared = vec![("eth0".to_string(), c("10.0.0.2/24"))];
        let present = vec![
            ("eth0".to_string(), c("10.0.0.2/24")),
            ("eth0".to_string(), c("10.0.0.99/24")),
            ("lo".to_string(), c("127.0.0.1/8")),
        ];
        assert_eq!(
            undeclared(&present, &declared),
            [("eth0".to_string(), c("10.0.0.99/24"))]
        );
    }

    #[test]
    fn udp_close_state_is_unconn() {
        assert_eq!(state_name(IPPROTO_UDP, 7), "UNCONN");
        assert_eq!(state_name(IPPROTO_TCP, 7), "CLOSE");
        assert_eq!(state_name(IPPROTO_TCP, 10), "LISTEN");
    }
}
