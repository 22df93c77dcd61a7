//! The one probe `netctx explain` sends (docs/coexistence.md): a TCP
//! connection attempt, a UDP datagram or an ICMP echo request, from the
//! calling thread's network namespace — from the address the kernel picks,
//! from one of the namespace's own, or (IP_TRANSPARENT, `--from` an address
//! beyond the host) from one that is not the host's, whose answer the
//! tracing table stops before it could leave the host.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect, getsockopt, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags,
    SockFlag, SockProtocol, SockType, SockaddrStorage,
};

/// Where the probe's socket is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Where the kernel's route says.
    Any,
    /// One of the namespace's own addresses.
    Local(IpAddr),
    /// An address the namespace does not have (sent with IP_TRANSPARENT).
    Foreign(IpAddr),
}

/// Whether `addr` is one of the calling thread's namespace's addresses
/// (a socket can be bound to it).
pub fn is_local(addr: IpAddr) -> bool {
    let family = family(addr);
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .and_then(|fd| {
            bind(
                fd.as_raw_fd(),
                &SockaddrStorage::from(SocketAddr::new(addr, 0)),
            )
        })
        .is_ok()
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn open(
    ty: SockType,
    flags: SockFlag,
    proto: Option<SockProtocol>,
    src: Source,
    to: IpAddr,
) -> Result<OwnedFd, String> {
    let v6 = to.is_ipv6();
    let fd = socket(family(to), ty, flags | SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| format!("failed: socket: {e}"))?;
    let at = match src {
        Source::Any => return Ok(fd),
        Source::Local(a) => a,
        Source::Foreign(a) => {
            let set = if v6 {
                crate::kernel::sys::set_ipv6_transparent(fd.as_fd())
            } else {
                setsockopt(&fd, sockopt::IpTransparent, &true).map_err(std::io::Error::from)
            };
            set.map_err(|e| format!("failed: IP_TRANSPARENT: {e}"))?;
            a
        }
    };
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(at, 0)),
    )
    .map_err(|e| format!("failed: binding to {at}: {e}"))?;
    Ok(fd)
}

fn wait_for(fd: &OwnedFd, what: PollFlags, wait: Duration) -> bool {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), what)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

fn tcp(src: Source, to: SocketAddr, wait: Duration) -> Result<String, String> {
    let fd = open(
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK,
        None,
        src,
        to.ip(),
    )?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(to)) {
        Ok(()) => return Ok("connected".into()),
        Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(format!("failed: {e}")),
    }
    if !wait_for(&fd, PollFlags::POLLOUT, wait) {
        return Ok("no answer".into());
    }
    Ok(match getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => "connected".into(),
        Ok(e) if e == libc::ECONNREFUSED => {
            "refused (the destination answered: nothing listens there)".into()
        }
        Ok(e) => format!("failed: {}", Errno::from_raw(e)),
        Err(e) => format!("failed: {e}"),
    })
}

fn udp(src: Source, to: SocketAddr) -> Result<String, String> {
    let fd = open(SockType::Datagram, SockFlag::empty(), None, src, to.ip())?;
    sendto(
        fd.as_raw_fd(),
        b"netctx explain",
        &SockaddrStorage::from(to),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("failed: {e}"))?;
    Ok("sent (UDP: no answer is expected)".into())
}

/// The Internet checksum (RFC 1071) of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(u16::try_from(sum).unwrap_or(0))
}

/// An ICMP echo request: from a foreign source on a raw socket (the
/// kernel fills ICMPv6's checksum, not ICMP's), else on an ICMP datagram
/// socket (what `ping` uses), whose answer is awaited.
fn echo(src: Source, to: IpAddr, wait: Duration) -> Result<String, String> {
    let v6 = to.is_ipv6();
    let proto = if v6 {
        SockProtocol::IcmpV6
    } else {
        SockProtocol::Icmp
    };
    let ty = if v6 { 128 } else { 8 };
    // Type, code, checksum, identifier, sequence 1.
    let mut msg = [ty, 0, 0, 0, 0x6e, 0x78, 0, 1];
    let raw = matches!(src, Source::Foreign(_));
    if raw && !v6 {
        let sum = checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let kind = if raw {
        SockType::Raw
    } else {
        SockType::Datagram
    };
    let fd = open(kind, SockFlag::empty(), Some(proto), src, to)?;
    sendto(
        fd.as_raw_fd(),
        &msg,
        &SockaddrStorage::from(SocketAddr::new(to, 0)),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("failed: {e}"))?;
    if raw {
        return Ok("no answer".into());
    }
    if !wait_for(&fd, PollFlags::POLLIN, wait) {
        return Ok("no answer".into());
    }
    let mut buf = [0u8; 1500];
    Ok(
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => "answered (echo reply)".into(),
            Err(e) => format!("failed: {e}"),
        },
    )
}

/// Send the probe to `to` (`port`: TCP or, with `udp`, UDP; none: an ICMP
/// echo request) and say what came back within `wait`. From a foreign
/// source, nothing comes back here: the caller learns from the trace.
pub fn send(src: Source, to: IpAddr, port: Option<u16>, is_udp: bool, wait: Duration) -> String {
    let out = match (port, is_udp) {
        (Some(p), false) => tcp(src, SocketAddr::new(to, p), wait),
        (Some(p), true) => udp(src, SocketAddr::new(to, p)),
        (None, _) => echo(src, to, wait),
    };
    out.unwrap_or_else(|e| e)
}

/// The addresses of the calling thread's namespace's link `name` (the
/// uplink a published port is reached on), link-local ones left out.
pub fn addresses_of(name: &str) -> std::io::Result<Vec<IpAddr>> {
    let mut nl = crate::kernel::netlink::Rtnl::open()?;
    let links = super::links::read_links(&mut nl).map_err(std::io::Error::other)?;
    Ok(links
        .iter()
        .filter(|l| l.name == name)
        .flat_map(|l| l.addrs.iter().map(|c| c.addr))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icmp_checksum_is_rfc_1071s() {
        // An echo request with identifier 0x6e78, sequence 1.
        let m = [8u8, 0, 0, 0, 0x6e, 0x78, 0, 1];
        let c = checksum(&m);
        let mut full = m;
        full[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&full), 0);
        assert_eq!(c, !(0x0800u16 + 0x6e78 + 1));
    }
}
