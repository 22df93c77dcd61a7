//! A socket probe for the bind-restriction tests: runs a list of socket
//! operations in order and prints one line per operation, so a test can
//! put the process into a cgroup first (or not) and see what the kernel
//! answers.
//!
//!     bindprobe OP…      each OP is comma-separated fields:
//!
//!     join,DIR                 write our pid to DIR/cgroup.procs
//!     user,UID                 setgid(UID) + setuid(UID)
//!     socket,N,tcp|udp|udplite|ping|mptcp,4|6   a socket named N
//!     opt,N,freebind|transparent  IP_/IPV6_FREEBIND or _TRANSPARENT
//!     bind,N,ADDR,PORT
//!     listen,N
//!     connect,N,ADDR,PORT
//!     sendto,N,ADDR,PORT       one UDP datagram "x"
//!     send,N                   the same on a connected socket
//!     sendfrom,N,SRC,ADDR,PORT the same with IP_PKTINFO/IPV6_PKTINFO source SRC
//!     sticky,N,SRC             setsockopt(IPV6_PKTINFO) source SRC (IPv6)
//!     fastopen,N,ADDR,PORT     sendto(MSG_FASTOPEN) of "x" (TCP)
//!     name,N                   getsockname
//!     recv,N                   the source address of one datagram (2 s)
//!     sync                     print "sync", wait for a line on stdin
//!
//! Each prints `ok`, `ok ADDR` (name, recv) or the errno's name.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

fn errno_name(e: &io::Error) -> String {
    let n = e.raw_os_error().unwrap_or(0);
    let name = match n {
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EINVAL => "EINVAL",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EAGAIN => "EAGAIN",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno {n}"),
    };
    name.to_string()
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A sockaddr for `a` and its length.
fn raw(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: fam(libc::AF_INET),
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: fam(libc::AF_INET6),
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned for it.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, slen(len))
}

fn from_raw(ss: &libc::sockaddr_storage) -> String {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).to_string()
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), 0, 0).to_string()
        }
        f => format!("family {f}"),
    }
}

fn sockaddr(addr: &str, port: &str) -> SocketAddr {
    let ip: IpAddr = addr
        .parse()
        .unwrap_or_else(|_| die(&format!("bad address {addr}")));
    SocketAddr::new(ip, port.parse().unwrap_or_else(|_| die("bad port")))
}

fn die(msg: &str) -> ! {
    eprintln!("bindprobe: {msg}");
    std::process::exit(2)
}

fn set_int(fd: i32, level: i32, opt: i32) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            slen(std::mem::size_of::<libc::c_int>()),
        )
    })
    .map(drop)
}

struct Sock {
    fd: i32,
    v6: bool,
}

fn socket(proto: &str, family: &str) -> io::Result<Sock> {
    let v6 = family == "6";
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let (ty, p) = match proto {
        "tcp" => (libc::SOCK_STREAM, 0),
        "udp" => (libc::SOCK_DGRAM, 0),
        "ping" if v6 => (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6),
        "ping" => (libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        "mptcp" => (libc::SOCK_STREAM, libc::IPPROTO_MPTCP),
        "udplite" => (libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE),
        _ => die(&format!("bad protocol {proto}")),
    };
    // SAFETY: plain socket(2); the descriptor is kept for the process's life.
    let fd = check(unsafe { libc::socket(domain, ty, p) })?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    Ok(Sock { fd, v6 })
}

fn opt(s: &Sock, what: &str) -> io::Result<()> {
    let (level, opt) = match (what, s.v6) {
        ("freebind", false) => (libc::SOL_IP, libc::IP_FREEBIND),
        ("freebind", true) => (libc::SOL_IPV6, libc::IPV6_FREEBIND),
        ("transparent", false) => (libc::SOL_IP, libc::IP_TRANSPARENT),
        ("transparent", true) => (libc::SOL_IPV6, libc::IPV6_TRANSPARENT),
        _ => die(&format!("bad option {what}")),
    };
    set_int(s.fd, level, opt)
}

fn name(s: &Sock) -> io::Result<String> {
    // SAFETY: zeroed sockaddr_storage is valid; getsockname writes at most len bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = slen(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: as above.
    check(unsafe { libc::getsockname(s.fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) })?;
    Ok(from_raw(&ss))
}

fn recv(s: &Sock) -> io::Result<String> {
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a live timeval and its size.
    check(unsafe {
        libc::setsockopt(
            s.fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            slen(std::mem::size_of::<libc::timeval>()),
        )
    })?;
    let mut buf = [0u8; 64];
    // SAFETY: zeroed sockaddr_storage is valid; recvfrom writes at most len bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = slen(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: buffers are live and their lengths are given.
    let r = unsafe {
        libc::recvfrom(
            s.fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
            &mut ss as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(from_raw(&ss))
}

/// sendmsg of "x" to `dst` (None: the connected peer), with a source in a
/// PKTINFO cmsg if `src`.
fn send(s: &Sock, src: Option<IpAddr>, dst: Option<SocketAddr>) -> io::Result<()> {
    let (mut sa, salen) = match dst {
        Some(d) => raw(d),
        // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
        None => (unsafe { std::mem::zeroed() }, 0),
    };
    let mut data = *b"x";
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if dst.is_some() {
        msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
        msg.msg_namelen = salen;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(src) = src {
        let (level, ty, payload): (i32, i32, Vec<u8>) = match src {
            IpAddr::V4(v4) => {
                let mut p = vec![0u8; std::mem::size_of::<libc::in_pktinfo>()];
                // struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                p[4..8].copy_from_slice(&v4.octets());
                (libc::SOL_IP, libc::IP_PKTINFO, p)
            }
            IpAddr::V6(v6) => {
                let mut p = vec![0u8; std::mem::size_of::<libc::in6_pktinfo>()];
                // struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
                p[..16].copy_from_slice(&v6.octets());
                (libc::SOL_IPV6, libc::IPV6_PKTINFO, p)
            }
        };
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: CMSG_* compute sizes and pointers inside `control`, which is
        // large enough for one cmsg of this payload.
        unsafe {
            msg.msg_controllen =
                libc::CMSG_SPACE(u32::try_from(payload.len()).expect("small")) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(u32::try_from(payload.len()).expect("small")) as usize;
            std::ptr::copy_nonoverlapping(payload.as_ptr(), libc::CMSG_DATA(c), payload.len());
        }
    }
    // SAFETY: msg points to live buffers described by their lengths.
    let r = unsafe { libc::sendmsg(s.fd, &msg, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn run(op: &str, socks: &mut HashMap<String, Sock>) -> io::Result<String> {
    let f: Vec<&str> = op.split(',').collect();
    let sock = |n: &str| {
        socks
            .get(n)
            .unwrap_or_else(|| die(&format!("no socket {n}")))
    };
    let ok = |r: io::Result<()>| r.map(|()| "ok".to_string());
    match f.as_slice() {
        ["join", dir] => ok(std::fs::write(
            format!("{dir}/cgroup.procs"),
            std::process::id().to_string(),
        )),
        ["user", uid] => {
            let uid: u32 = uid.parse().unwrap_or_else(|_| die("bad uid"));
            // SAFETY: setgroups/setgid/setuid have no memory preconditions.
            ok(check(unsafe { libc::setgroups(0, std::ptr::null()) })
                .and_then(|_| check(unsafe { libc::setgid(uid) }))
                .and_then(|_| check(unsafe { libc::setuid(uid) }))
                .map(drop))
        }
        ["socket", n, proto, family] => {
            let s = socket(proto, family)?;
            socks.insert(n.to_string(), s);
            Ok("ok".into())
        }
        ["opt", n, what] => ok(opt(sock(n), what)),
        ["bind", n, addr, port] => {
            let (sa, len) = raw(sockaddr(addr, port));
            // SAFETY: a sockaddr of the given length.
            ok(check(unsafe {
                libc::bind(sock(n).fd, &sa as *const _ as *const libc::sockaddr, len)
            })
            .map(drop))
        }
        // SAFETY: listen(2) on our descriptor.
        ["listen", n] => ok(check(unsafe { libc::listen(sock(n).fd, 16) }).map(drop)),
        ["connect", n, addr, port] => {
            let (sa, len) = raw(sockaddr(addr, port));
            // SAFETY: a sockaddr of the given length.
            ok(check(unsafe {
                libc::connect(sock(n).fd, &sa as *const _ as *const libc::sockaddr, len)
            })
            .map(drop))
        }
        ["sendto", n, addr, port] => ok(send(sock(n), None, Some(sockaddr(addr, port)))),
        ["send", n] => ok(send(sock(n), None, None)),
        ["sendfrom", n, src, addr, port] => {
            let src: IpAddr = src.parse().unwrap_or_else(|_| die("bad source"));
            ok(send(sock(n), Some(src), Some(sockaddr(addr, port))))
        }
        ["sticky", n, src] => {
            let src: std::net::Ipv6Addr = src.parse().unwrap_or_else(|_| die("bad source"));
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            // SAFETY: setsockopt with a live in6_pktinfo and its size.
            ok(check(unsafe {
                libc::setsockopt(
                    sock(n).fd,
                    libc::SOL_IPV6,
                    libc::IPV6_PKTINFO,
                    &info as *const _ as *const libc::c_void,
                    slen(std::mem::size_of::<libc::in6_pktinfo>()),
                )
            })
            .map(drop))
        }
        ["fastopen", n, addr, port] => {
            let (sa, len) = raw(sockaddr(addr, port));
            // SAFETY: a one-byte buffer and a sockaddr of the given length.
            let r = unsafe {
                libc::sendto(
                    sock(n).fd,
                    b"x".as_ptr() as *const libc::c_void,
                    1,
                    libc::MSG_FASTOPEN,
                    &sa as *const _ as *const libc::sockaddr,
                    len,
                )
            };
            ok(check(if r < 0 { -1 } else { 0 }).map(drop))
        }
        ["name", n] => name(sock(n)).map(|a| format!("ok {a}")),
        ["recv", n] => recv(sock(n)).map(|a| format!("ok {a}")),
        ["sync"] => {
            println!("sync");
            io::stdout().flush()?;
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            Ok("ok".into())
        }
        _ => die(&format!("bad operation {op}")),
    }
}

fn main() {
    let mut socks = HashMap::new();
    for op in std::env::args().skip(1) {
        let line = run(&op, &mut socks).unwrap_or_else(|e| errno_name(&e));
        println!("{line}");
        io::stdout().flush().ok();
    }
}

fn fam(af: libc::c_int) -> libc::sa_family_t {
    libc::sa_family_t::try_from(af).expect("an address family")
}

fn slen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).expect("a small size")
}
