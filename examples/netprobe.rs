//! A small network probe used by the integration tests (and handy by hand),
//! so that checking packets and sockets needs no interpreter:
//!
//!     netprobe listen ADDR PORT [--tcp|--udplite|--raw|--mptcp|--ping] [--freebind]
//!                    [--dev IF] [--enter NS] [--ignore-term] [--secs S]
//!         (UDP unless told; with --raw PORT is the IP protocol, with --ping
//!         (an ICMP datagram socket) the echo identifier; --dev scopes
//!         an IPv6 link-local ADDR to link IF; --enter moves the process
//!         into /run/netns/NS once the socket is open, keeping it)
//!     netprobe recv-udp ADDR PORT SECS FILE     append "TEXT SOURCE" lines to FILE
//!     netprobe serve ADDR PORT SECS FILE        TCP: append each client's address to FILE
//!     netprobe send-udp DST PORT TEXT
//!     netprobe forge SRC DST PORT TEXT          IPv4/UDP with any source (raw socket)
//!     netprobe mark-udp DST PORT MARK           a datagram with SO_MARK MARK: "sent", or
//!                                               the errno's name and exit 1
//!     netprobe bind ADDR PORT                   prints "ok" or the errno's name
//!     netprobe raw                              opens a raw socket; exit 1 if refused
//!     netprobe resolve NAME                     getaddrinfo(3): the addresses, one a line,
//!                                               or "failed: …" and exit 1
//!     netprobe dns SERVER NAME A|AAAA [--tcp]   one query to SERVER port 53 (2 s): the
//!                                               answer's addresses, one a line, or its
//!                                               response code ("Refused"…), "timeout"
//!                                               or the errno's name and exit 1
//!     netprobe connect ADDR PORT                TCP connect (1 s): "connected", else "timeout"
//!                                               or the errno's name and exit 1
//!     netprobe sink ADDR PORT SECS              TCP: one client's bytes to its end: "BYTES SECS"
//!                                               (from the first byte to the last)
//!     netprobe pour ADDR PORT SECS              TCP: send as fast as it goes for SECS
//!     netprobe echo ADDR PORT SECS              TCP: echo one client's bytes back
//!     netprobe ticks ADDR PORT FILE SECS        TCP: a byte every 50 ms over one
//!                                               connection, the count echoed back in FILE
//!     netprobe conns ADDR PORT N HOLD           TCP: N connections one after another
//!                                               (2 s each): "opened K", then hold them HOLD s
//!     netprobe burst ADDR PORT N                TCP: N connects at once: "opened K" of
//!                                               those done within 0.8 s
//!     netprobe ra IFACE PREFIX                  sends a router advertisement (default
//!                                               route, autoconf PREFIX/64) to ff02::1

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

#[path = "netprobe/dns.rs"]
mod dns;

fn die(msg: &str) -> ! {
    eprintln!("netprobe: {msg}");
    std::process::exit(2)
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EADDRINUSE) => "EADDRINUSE".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

/// The kind of socket `listen` opens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Udp,
    Tcp,
    UdpLite,
    /// A raw socket of IP protocol PORT.
    Raw,
    Mptcp,
    /// An ICMP datagram socket (ping), PORT its identifier.
    Ping,
}

/// A socket bound to ADDR:PORT (a listener for TCP and MPTCP), optionally
/// with IP_FREEBIND so that an address the namespace does not have is
/// accepted, scoped to link `scope` (IPv6).
fn bound(addr: IpAddr, port: u16, kind: Kind, freebind: bool, scope: u32) -> std::io::Result<i32> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let (ty, proto, port) = match kind {
        Kind::Udp => (libc::SOCK_DGRAM, 0, port),
        Kind::Tcp => (libc::SOCK_STREAM, 0, port),
        Kind::UdpLite => (libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, port),
        Kind::Raw => (libc::SOCK_RAW, libc::c_int::from(port), 0),
        Kind::Mptcp => (libc::SOCK_STREAM, libc::IPPROTO_MPTCP, port),
        Kind::Ping if domain == libc::AF_INET => (libc::SOCK_DGRAM, libc::IPPROTO_ICMP, port),
        Kind::Ping => (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6, port),
    };
    let listener = matches!(kind, Kind::Tcp | Kind::Mptcp);
    // SAFETY: plain socket(2); the descriptor is checked and owned here.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            4,
        );
        if freebind {
            libc::setsockopt(
                fd,
                libc::SOL_IP,
                libc::IP_FREEBIND,
                &one as *const _ as *const libc::c_void,
                4,
            );
        }
    }
    let sa = socket2_addr(SocketAddr::new(addr, port), scope);
    // SAFETY: bind with a sockaddr built for this family and its length.
    let r = unsafe { libc::bind(fd, sa.0.as_ptr() as *const libc::sockaddr, sa.1) };
    // SAFETY: listen(2) on the descriptor just bound (only if it was).
    let listening = r == 0 && (!listener || unsafe { libc::listen(fd, 16) } == 0);
    if !listening {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// The index of link `name`, 0 when there is none.
fn link_index(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Move the whole (single-threaded) process into /run/netns/NS.
fn enter(ns: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

fn family(af: libc::c_int) -> libc::sa_family_t {
    libc::sa_family_t::try_from(af).expect("an address family")
}

fn socket2_addr(sa: SocketAddr, scope: u32) -> (Vec<u8>, libc::socklen_t) {
    match sa {
        SocketAddr::V4(a) => {
            let s = libc::sockaddr_in {
                sin_family: family(libc::AF_INET),
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: viewing a plain C struct as bytes.
            let b = unsafe {
                std::slice::from_raw_parts(&s as *const _ as *const u8, std::mem::size_of_val(&s))
            };
            (
                b.to_vec(),
                libc::socklen_t::try_from(b.len()).expect("a sockaddr"),
            )
        }
        SocketAddr::V6(a) => {
            let s = libc::sockaddr_in6 {
                sin6_family: family(libc::AF_INET6),
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: scope,
            };
            // SAFETY: viewing a plain C struct as bytes.
            let b = unsafe {
                std::slice::from_raw_parts(&s as *const _ as *const u8, std::mem::size_of_val(&s))
            };
            (
                b.to_vec(),
                libc::socklen_t::try_from(b.len()).expect("a sockaddr"),
            )
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

fn forge(src: Ipv4Addr, dst: Ipv4Addr, port: u16, text: &[u8]) -> std::io::Result<()> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    let udp_len = u16::try_from(8 + text.len()).expect("a small datagram");
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(text);
    let total = u16::try_from(20 + udp.len()).expect("a small datagram");
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    // SAFETY: a raw socket; IPPROTO_RAW implies IP_HDRINCL.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sa = socket2_addr(SocketAddr::new(IpAddr::V4(dst), 0), 0);
    // SAFETY: sendto with a valid buffer and address.
    let r = unsafe {
        libc::sendto(
            fd,
            ip.as_ptr() as *const libc::c_void,
            ip.len(),
            0,
            sa.0.as_ptr() as *const libc::sockaddr,
            sa.1,
        )
    };
    let e = std::io::Error::last_os_error();
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(e);
    }
    Ok(())
}

/// A router advertisement as a rogue router sends it: lifetime 1800 s (a
/// default route) and a prefix to autoconfigure, to all nodes on `iface`.
fn router_advert(iface: &str, prefix: IpAddr) -> std::io::Result<()> {
    let IpAddr::V6(prefix) = prefix else {
        die("an IPv6 prefix")
    };
    let mut ra = vec![134u8, 0, 0, 0, 64, 0];
    ra.extend_from_slice(&1800u16.to_be_bytes());
    ra.extend_from_slice(&[0; 8]);
    // Prefix information: type 3, 4 × 8 bytes, /64, on-link + autonomous.
    ra.extend_from_slice(&[3, 4, 64, 0xc0]);
    ra.extend_from_slice(&86400u32.to_be_bytes());
    ra.extend_from_slice(&14400u32.to_be_bytes());
    ra.extend_from_slice(&[0; 4]);
    ra.extend_from_slice(&prefix.octets());
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); the kernel fills in the ICMPv6 checksum.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hops: libc::c_int = 255;
    for opt in [libc::IPV6_MULTICAST_HOPS, libc::IPV6_UNICAST_HOPS] {
        // SAFETY: an int option of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                opt,
                &hops as *const libc::c_int as *const libc::c_void,
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap(),
            )
        };
    }
    let dst = libc::sockaddr_in6 {
        sin6_family: family(libc::AF_INET6),
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        },
        sin6_scope_id: index,
    };
    // SAFETY: the buffer and the address live across the call.
    let n = unsafe {
        libc::sendto(
            fd,
            ra.as_ptr() as *const libc::c_void,
            ra.len(),
            0,
            &dst as *const libc::sockaddr_in6 as *const libc::sockaddr,
            libc::socklen_t::try_from(std::mem::size_of_val(&dst)).unwrap(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Accept TCP connections for `secs` seconds, appending each client's
/// address to `file`.
fn serve(at: SocketAddr, secs: u64, file: &str) {
    let l = std::net::TcpListener::bind(at).unwrap_or_else(|e| die(&e.to_string()));
    l.set_nonblocking(true).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    println!("listening");
    let _ = std::io::stdout().flush();
    while std::time::Instant::now() < until {
        match l.accept() {
            Ok((_, from)) => {
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .unwrap();
                writeln!(out, "{}", from.ip()).unwrap();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// `sink`: accept one client, read to its end.
fn sink(at: SocketAddr, secs: u64) {
    use std::io::Read;
    let l = std::net::TcpListener::bind(at).unwrap_or_else(|e| die(&e.to_string()));
    println!("listening");
    let _ = std::io::stdout().flush();
    let (mut c, _) = l.accept().unwrap_or_else(|e| die(&e.to_string()));
    c.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut first, mut last) = (0u64, None, std::time::Instant::now());
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = std::time::Instant::now();
                first.get_or_insert(now);
                last = now;
                total += n as u64;
            }
            Err(e) => die(&e.to_string()),
        }
    }
    let took = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!("{total} {took:.3}");
}

/// `echo`: one client's bytes back to it, until it closes or `secs` idle.
fn echo(at: SocketAddr, secs: u64) {
    use std::io::Read;
    let l = std::net::TcpListener::bind(at).unwrap_or_else(|e| die(&e.to_string()));
    let (mut c, _) = l.accept().unwrap_or_else(|e| die(&e.to_string()));
    c.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 512];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// `ticks`: a byte every 50 ms for `secs` over one connection; after each
/// echo comes back, the count of them written to `file`.
fn ticks(to: SocketAddr, file: &str, secs: u64) {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))
        .unwrap_or_else(|e| die(&e.to_string()));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while std::time::Instant::now() < until {
        let mut b = [0u8; 1];
        if c.write_all(b"x").is_err() || c.read_exact(&mut b).is_err() {
            break;
        }
        n += 1;
        std::fs::write(file, n.to_string()).unwrap_or_else(|e| die(&e.to_string()));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pour`: send for `secs`.
fn pour(to: SocketAddr, secs: u64) {
    let mut c = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .unwrap_or_else(|e| die(&e.to_string()));
    let buf = vec![0x5au8; 1 << 16];
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let mut total = 0u64;
    while std::time::Instant::now() < until {
        c.write_all(&buf).unwrap_or_else(|e| die(&e.to_string()));
        total += buf.len() as u64;
    }
    let _ = c.shutdown(std::net::Shutdown::Write);
    println!("{total}");
}

/// `conns`: connections one after another, held.
fn conns(to: SocketAddr, n: u64, hold: u64) {
    let mut open = Vec::new();
    for _ in 0..n {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            open.push(c);
        }
    }
    println!("opened {}", open.len());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(hold));
}

/// `burst`: non-blocking connects sent at once; those done in 0.8 s
/// (before a dropped SYN's first retransmission).
fn burst(to: SocketAddr, n: u64) {
    let domain = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut fds = Vec::new();
    for _ in 0..n {
        // SAFETY: plain socket(2) and connect(2) on our own descriptors.
        unsafe {
            let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            if fd < 0 {
                die("socket");
            }
            let sa = socket2_addr(to, 0);
            libc::connect(fd, sa.0.as_ptr() as *const libc::sockaddr, sa.1);
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            });
        }
    }
    let until = std::time::Instant::now() + Duration::from_millis(800);
    let mut done = vec![false; fds.len()];
    let mut opened = 0;
    while std::time::Instant::now() < until && done.iter().any(|d| !d) {
        // SAFETY: poll over our own descriptors.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        for (i, p) in fds.iter_mut().enumerate() {
            if done[i] || p.revents == 0 {
                continue;
            }
            done[i] = true;
            let mut err: libc::c_int = 0;
            let mut len = 4;
            // SAFETY: getsockopt into an int we own.
            unsafe {
                libc::getsockopt(
                    p.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if err == 0 {
                opened += 1;
            }
            p.events = 0;
        }
    }
    println!("opened {opened}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing argument"))
    };
    let ip = |i: usize| -> IpAddr { arg(i).parse().unwrap_or_else(|_| die("not an address")) };
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| die("not a number")) };
    let port = |i: usize| -> u16 { arg(i).parse().unwrap_or_else(|_| die("not a port")) };
    let flag = |f: &str| args.iter().any(|a| a == f);
    match arg(0).as_str() {
        "listen" => {
            if flag("--ignore-term") {
                // SAFETY: ignoring a signal.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            }
            let secs = args
                .iter()
                .position(|a| a == "--secs")
                .map_or(60, |i| num(i + 1));
            let kind = [
                ("--tcp", Kind::Tcp),
                ("--udplite", Kind::UdpLite),
                ("--raw", Kind::Raw),
                ("--mptcp", Kind::Mptcp),
                ("--ping", Kind::Ping),
            ]
            .into_iter()
            .find(|(f, _)| flag(f))
            .map_or(Kind::Udp, |(_, k)| k);
            let opt = |name: &str| args.iter().position(|a| a == name).map(|i| arg(i + 1));
            let scope = opt("--dev").map_or(0, |d| link_index(&d));
            let fd = bound(ip(1), port(2), kind, flag("--freebind"), scope)
                .unwrap_or_else(|e| die(&format!("bind: {}", errno_name(&e))));
            if let Some(ns) = opt("--enter") {
                enter(&ns).unwrap_or_else(|e| die(&format!("setns {ns}: {e}")));
            }
            println!("listening");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(secs));
            let _ = fd;
        }
        "recv-udp" => {
            let s = UdpSocket::bind(SocketAddr::new(ip(1), port(2)))
                .unwrap_or_else(|e| die(&e.to_string()));
            s.set_read_timeout(Some(Duration::from_secs_f64(arg(3).parse().unwrap_or(1.0))))
                .unwrap();
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(arg(4))
                .unwrap();
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                writeln!(out, "{} {}", String::from_utf8_lossy(&buf[..n]), from.ip()).unwrap();
            }
        }
        "sink" => sink(SocketAddr::new(ip(1), port(2)), num(3)),
        "pour" => pour(SocketAddr::new(ip(1), port(2)), num(3)),
        "echo" => echo(SocketAddr::new(ip(1), port(2)), num(3)),
        "ticks" => ticks(SocketAddr::new(ip(1), port(2)), &arg(3), num(4)),
        "conns" => conns(SocketAddr::new(ip(1), port(2)), num(3), num(4)),
        "burst" => burst(SocketAddr::new(ip(1), port(2)), num(3)),
        "serve" => serve(SocketAddr::new(ip(1), port(2)), num(3), &arg(4)),
        "send-udp" => {
            let dst = SocketAddr::new(ip(1), port(2));
            let local: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            let s = UdpSocket::bind(local).unwrap_or_else(|e| die(&e.to_string()));
            s.send_to(arg(3).as_bytes(), dst)
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "forge" => {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip(1), ip(2)) else {
                die("IPv4 only")
            };
            match forge(src, dst, port(3), arg(4).as_bytes()) {
                Ok(()) => println!("sent"),
                // Dropped on output: the kernel says EPERM.
                Err(e) => println!("{}", errno_name(&e)),
            }
        }
        "mark-udp" => {
            // A datagram carrying packet mark MARK (SO_MARK: needs
            // CAP_NET_ADMIN over the namespace): `sent`, or the errno.
            let dst = SocketAddr::new(ip(1), port(2));
            let local: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            let s = UdpSocket::bind(local).unwrap_or_else(|e| die(&e.to_string()));
            let mark = libc::c_uint::try_from(num(3)).unwrap_or_else(|_| die("not a mark"));
            // SAFETY: setsockopt with a c_uint that outlives the call.
            let r = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_MARK,
                    (&mark as *const libc::c_uint).cast(),
                    4,
                )
            };
            if r != 0 {
                println!("{}", errno_name(&std::io::Error::last_os_error()));
                std::process::exit(1);
            }
            s.send_to(b"marked", dst)
                .unwrap_or_else(|e| die(&e.to_string()));
            println!("sent");
        }
        "bind" => match bound(ip(1), port(2), Kind::Tcp, false, 0) {
            Ok(_) => println!("ok"),
            Err(e) => println!("{}", errno_name(&e)),
        },
        // getaddrinfo(3) through std: the addresses, one a line.
        "resolve" => {
            use std::net::ToSocketAddrs;
            match (arg(1).as_str(), 0).to_socket_addrs() {
                Ok(addrs) => addrs.for_each(|a| println!("{}", a.ip())),
                Err(e) => {
                    println!("failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        "dns" => dns::query(ip(1), &arg(2), &arg(3), flag("--tcp")),
        "connect" => {
            let to = SocketAddr::new(ip(1), port(2));
            match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                Ok(_) => println!("connected"),
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        println!("timeout");
                    } else {
                        println!("{}", errno_name(&e));
                    }
                    std::process::exit(1);
                }
            }
        }
        "ra" => match router_advert(&arg(1), ip(2)) {
            Ok(()) => println!("sent"),
            Err(e) => println!("{}", errno_name(&e)),
        },
        "raw" => {
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            if fd < 0 {
                println!("{}", errno_name(&std::io::Error::last_os_error()));
                std::process::exit(1);
            }
            println!("ok");
        }
        other => die(&format!("unknown command {other}")),
    }
}
