//! A load generator for `netctx audit`: holds listening sockets inside many
//! network namespaces from one process.
//!
//!     sockets N NS:ADDR [NS:ADDR …]
//!
//! For each named namespace (`/run/netns/NS`) a thread enters it, opens N
//! sockets bound to ADDR (half TCP listeners, half UDP), and ends; the
//! sockets stay in their namespaces. Prints `ready` and holds them until
//! stdin closes. Used by `bench/run`.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;

/// Sockets held open: TCP listeners and UDP sockets as plain descriptors.
fn open_in(ns: &str, addr: IpAddr, n: u16) -> std::io::Result<Vec<OwnedFd>> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(OwnedFd::from(file), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut out = Vec::new();
            for i in 0..n {
                let sa = SocketAddr::new(addr, 20000 + i);
                out.push(if i % 2 == 0 {
                    OwnedFd::from(TcpListener::bind(sa)?)
                } else {
                    OwnedFd::from(UdpSocket::bind(sa)?)
                });
            }
            Ok(out)
        })
        .join()
        .unwrap()
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u16 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: sockets N NS:ADDR…");
    let mut held = Vec::new();
    for spec in args {
        let (ns, addr) = spec.split_once(':').expect("NS:ADDR");
        let addr: IpAddr = addr.parse().expect("an IP address");
        match open_in(ns, addr, n) {
            Ok(s) => held.extend(s),
            Err(e) => {
                eprintln!("sockets: {ns}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("ready {} sockets", held.len());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
