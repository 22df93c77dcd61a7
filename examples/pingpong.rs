//! UDP round trips through several network namespaces, interleaved packet
//! by packet, so that the drift of a loaded machine lands on every path
//! alike. Used by `bench/run --datapath`.
//!
//!     pingpong serve NS@ADDR:PORT [NS@ADDR:PORT …]
//!     pingpong client COUNT NS@ADDR:PORT [NS@ADDR:PORT …]
//!
//! NS is a name under `/run/netns` or `-` for the caller's namespace. The
//! server binds a UDP socket at each ADDR:PORT inside its NS and echoes
//! every datagram on it (one thread, poll), until it is killed. The client
//! connects a socket from each NS to its ADDR:PORT, then COUNT times sends
//! one 16-byte datagram on each in turn (the first path one further each
//! time) and waits for its echo; it prints, per path, the 25th, 50th and
//! 75th percentile of the round trips in µs as one JSON object.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

/// `NS@ADDR:PORT` split.
fn parse(spec: &str) -> Result<(String, SocketAddr), String> {
    let (ns, addr) = spec
        .split_once('@')
        .ok_or(format!("{spec}: expected NS@ADDR:PORT"))?;
    let addr = addr.parse().map_err(|e| format!("{spec}: {e}"))?;
    Ok((ns.to_owned(), addr))
}

/// A UDP socket made inside `ns`, bound to `bind` and, if given, connected.
fn socket_in(ns: &str, bind: SocketAddr, peer: Option<SocketAddr>) -> std::io::Result<UdpSocket> {
    let open = || {
        let s = UdpSocket::bind(bind)?;
        if let Some(p) = peer {
            s.connect(p)?;
        }
        Ok(s)
    };
    if ns == "-" {
        return open();
    }
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(OwnedFd::from(file), nix::sched::CloneFlags::CLONE_NEWNET)?;
            open()
        })
        .join()
        .expect("socket thread")
    })
}

fn serve(specs: &[(String, SocketAddr)]) -> std::io::Result<()> {
    let socks = specs
        .iter()
        .map(|(ns, addr)| socket_in(ns, *addr, None))
        .collect::<std::io::Result<Vec<_>>>()?;
    println!("ready");
    let mut buf = [0u8; 2048];
    loop {
        let mut fds: Vec<PollFd> = socks
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        nix::poll::poll(&mut fds, PollTimeout::NONE)?;
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        for (s, r) in socks.iter().zip(ready) {
            if r {
                let (n, from) = s.recv_from(&mut buf)?;
                s.send_to(&buf[..n], from)?;
            }
        }
    }
}

/// The `pct`th percentile of sorted values (nearest rank below).
fn percentile(sorted: &[f64], pct: usize) -> f64 {
    sorted[(sorted.len() - 1) * pct / 100]
}

fn client(count: usize, specs: &[(String, SocketAddr)]) -> std::io::Result<()> {
    let any: SocketAddr = "0.0.0.0:0".parse().expect("address");
    let socks = specs
        .iter()
        .map(|(ns, addr)| {
            let s = socket_in(ns, any, Some(*addr))?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut times = vec![Vec::with_capacity(count); socks.len()];
    let (msg, mut buf) = ([7u8; 16], [0u8; 64]);
    // A warm-up round of 100 a path (neighbours, conntrack entries, caches).
    for i in 0..count + 100 {
        for k in 0..socks.len() {
            let j = (i + k) % socks.len();
            let t = Instant::now();
            socks[j].send(&msg)?;
            socks[j].recv(&mut buf)?;
            if i >= 100 {
                times[j].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for ((ns, addr), mut t) in specs.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        out.insert(
            format!("{ns}@{addr}"),
            serde_json::json!({"p25": percentile(&t, 25), "p50": percentile(&t, 50),
                               "p75": percentile(&t, 75), "count": t.len()}),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pingpong serve NS@ADDR:PORT… | pingpong client COUNT NS@ADDR:PORT…";
    let run = || -> Result<(), String> {
        let (mode, rest) = args.split_first().ok_or(usage)?;
        let (count, specs) = match mode.as_str() {
            "serve" => (0, rest),
            "client" => {
                let (c, s) = rest.split_first().ok_or(usage)?;
                (c.parse().map_err(|e| format!("COUNT {c}: {e}"))?, s)
            }
            _ => return Err(usage.into()),
        };
        let specs = specs
            .iter()
            .map(|s| parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if specs.is_empty() {
            return Err(usage.into());
        }
        let done = if mode == "serve" {
            serve(&specs)
        } else {
            client(count, &specs)
        };
        done.map_err(|e| e.to_string())
    };
    if let Err(e) = run() {
        eprintln!("pingpong: {e}");
        std::process::exit(1);
    }
}
