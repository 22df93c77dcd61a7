//! NETLINK_SOCK_DIAG: every TCP and UDP socket (IPv4 and IPv6) of the
//! calling thread's namespace.

use std::net::IpAddr;

use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;

use super::netlink::{Diag, NlError};

/// One socket as sock_diag reports it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_close_state_is_unconn() {
        assert_eq!(state_name(IPPROTO_UDP, 7), "UNCONN");
        assert_eq!(state_name(IPPROTO_TCP, 7), "CLOSE");
        assert_eq!(state_name(IPPROTO_TCP, 10), "LISTEN");
    }
}
