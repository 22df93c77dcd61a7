//! `netprobe dns`: one DNS query to one server, over UDP or TCP, with
//! `hickory-proto` for the messages (netctx's resolver asked directly at
//! one of its addresses, whatever the guest's resolv.conf says first).

use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// One DNS query for `name` of type `ty` to `server` port 53, over UDP or
/// TCP: prints the A/AAAA addresses of the answer, else its response code
/// or `timeout` (exit 1).
pub fn query(server: IpAddr, name: &str, ty: &str, tcp: bool) {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::io::Read;
    let ty = match ty {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        _ => super::die("A or AAAA"),
    };
    let name = Name::from_ascii(name).unwrap_or_else(|e| super::die(&e.to_string()));
    let mut q = Message::query();
    q.add_query(Query::query(name, ty));
    q.metadata.recursion_desired = true;
    let q = q.to_vec().unwrap_or_else(|e| super::die(&e.to_string()));
    let to = SocketAddr::new(server, 53);
    let wait = Some(Duration::from_secs(2));
    let raw = if tcp {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).and_then(|mut c| {
            c.set_read_timeout(wait)?;
            let len = u16::try_from(q.len()).unwrap_or(0).to_be_bytes();
            c.write_all(&[&len[..], &q].concat())?;
            let mut l = [0u8; 2];
            c.read_exact(&mut l)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
            c.read_exact(&mut buf)?;
            Ok(buf)
        })
    } else {
        let local = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        UdpSocket::bind(local).and_then(|u| {
            u.connect(to)?;
            u.set_read_timeout(wait)?;
            u.send(&q)?;
            let mut buf = vec![0u8; 65535];
            let n = u.recv(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    };
    let raw = raw.unwrap_or_else(|e| {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => println!("timeout"),
            _ => println!("{}", super::errno_name(&e)),
        }
        std::process::exit(1)
    });
    let m = Message::from_vec(&raw).unwrap_or_else(|e| super::die(&e.to_string()));
    let addrs: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if addrs.is_empty() {
        println!("{:?}", m.metadata.response_code);
        std::process::exit(1);
    }
    addrs.iter().for_each(|a| println!("{a}"));
}
