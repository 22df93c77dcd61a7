//! The namespace's /proc/net files `diag` reads beside sock_diag: the
//! sockets in use by protocol (protocols), and the raw and ping sockets no
//! sock_diag dump lists (raw{,6}, icmp{,6}).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{state_name, Socket};

/// Sockets in use by protocol (its name in /proc/net/protocols) in the
/// calling thread's namespace: the kernel counts every socket it has
/// hashed (bound, listening, connected), that is every socket a dump lists.
pub(super) fn in_use() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/protocols").unwrap_or_default();
    parse_protocols(&text)
}

fn parse_protocols(text: &str) -> HashMap<String, u64> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let sockets = f.nth(1)?.parse().ok()?;
            Some((name, sockets))
        })
        .collect()
}

fn hex_addr(s: &str, v6: bool) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    if v6 {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        Some(IpAddr::V4(Ipv4Addr::from(word(0)?)))
    }
}

fn hex_endpoint(s: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    Some((hex_addr(a, v6)?, u16::from_str_radix(p, 16).ok()?))
}

/// Raw or ping sockets from /proc/net/raw{,6} or /proc/net/icmp{,6}
/// (addresses as the kernel's `%08X` of network-order words; the "port" is
/// the protocol of a raw socket, the echo identifier of a ping socket).
pub(super) fn parse_proc(text: &str, v6: bool, proto: &'static str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, port) = hex_endpoint(f.get(1)?, v6)?;
            let (peer, peer_port) = hex_endpoint(f.get(2)?, v6)?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some(Socket {
                proto,
                local,
                port,
                peer,
                peer_port,
                state: state_name(proto, state),
                inode: f.get(9)?.parse().ok()?,
                ifindex: 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn raw_sockets_are_read_from_proc() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  1: 0100007F:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123456 2 0000000000000000 0\n";
        let s = parse_proc(v4, false, "raw");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].port, s[0].state, s[0].inode), (1, "UNCONN", 123456));
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  58: 000080FE00000000FF000000020000FE:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n";
        let s = parse_proc(v6, true, "raw");
        let want: IpAddr = "fe80::ff:fe00:2".parse().unwrap();
        assert_eq!((s[0].local, s[0].port, s[0].inode), (want, 58, 777));
    }

    #[test]
    fn sockets_in_use_are_read_from_proc_net_protocols() {
        let text = "protocol  size sockets  memory press maxhdr  slab module     cl co di ac io in de sh ss gs se re sp bi br ha uh gp em\n\
                    MPTCPv6   2048      0       0   no       0   yes  kernel      y  n  y  y  y  y  y  y  y  y  y  y  n  n  n  y  y  y  n\n\
                    UDP-Lite  1088      3       -1   NI       0   yes  kernel      y  y  y  n  y  y  y  n  y  y  y  y  y  n  n  y  y  y  n\n";
        let m = parse_protocols(text);
        assert_eq!((m["MPTCPv6"], m["UDP-Lite"]), (0, 3));
        assert_eq!(m.len(), 2);
    }
}
