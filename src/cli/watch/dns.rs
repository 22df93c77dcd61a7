//! netctx's resolver served by `watch`: for each context whose `reach`
//! names a domain, a UDP and a TCP listener on port 53 at the host side of
//! its first veth (its first host address of each family), bound in the
//! host's namespace with IP_FREEBIND (so before the context's address
//! exists). Each query is answered on a thread of its own (`resolve`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};

use super::resolve::{answer, Scope};
use crate::apply::dns::Allow;
use crate::model::Config;

/// How often a listener looks whether it must stop.
const POLL: Duration = Duration::from_millis(300);
/// A guest's TCP connection is closed after this long without a query.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries and connections answered at once, all contexts together; more
/// are dropped (a guest flooding its resolver starves only itself and
/// those alike, never watch).
const IN_FLIGHT: usize = 256;

static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Run `f` on a thread of its own, unless `IN_FLIGHT` are running.
fn spawn_counted(f: impl FnOnce() + Send + 'static) {
    if BUSY.fetch_add(1, Ordering::SeqCst) >= IN_FLIGHT {
        BUSY.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let spawned = std::thread::Builder::new().spawn(move || {
        f();
        BUSY.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The resolvers running, by context.
#[derive(Default)]
pub struct Resolvers {
    running: HashMap<String, Running>,
    nft: Arc<Mutex<Option<Allow>>>,
}

/// What a resolver is started for: its listening addresses, domains and
/// (a CNI attachment's) host veth it is bound to, with the veth's index (a
/// veth made anew under the same name is another device: the sockets bound
/// to the old one hear nothing, so the resolver starts again).
type Key = (Vec<IpAddr>, Vec<String>, Option<(String, u32)>);

struct Running {
    key: Key,
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Resolvers {
    /// Start the resolvers the configuration and the CNI attachments'
    /// records (those whose host veth is there) need, and stop the others.
    pub fn sync(&mut self, cfg: &Config) {
        let mut wanted: HashMap<String, Key> = HashMap::new();
        for c in cfg.contexts.iter().filter(|c| c.needs_resolver()) {
            let domains = c.domains().map(|(d, _)| d.to_string()).collect();
            wanted.insert(c.name.clone(), (c.resolver_addrs(), domains, None));
        }
        for r in crate::apply::dns::read_records() {
            if let Ok(index) = nix::net::if_::if_nametoindex(r.dev.as_str()) {
                wanted.insert(r.ctx, (r.addrs, r.domains, Some((r.dev, index))));
            }
        }
        self.running
            .retain(|name, r| wanted.get(name) == Some(&r.key));
        for (name, key) in &wanted {
            if self.running.contains_key(name) || key.0.is_empty() {
                continue;
            }
            match self.start(name, key) {
                Ok(r) => {
                    self.running.insert(name.to_string(), r);
                }
                Err(e) => eprintln!("netctx: error: context {name}: its resolver: {e}"),
            }
        }
    }

    fn start(&self, name: &str, key: &Key) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let scope = Arc::new(Scope {
            ctx: name.to_string(),
            domains: key.1.clone(),
            own: key.0.clone(),
        });
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for ip in &key.0 {
            let at = SocketAddr::new(*ip, 53);
            let dev = key.2.as_ref().map(|(d, _)| d.as_str());
            udp.push(UdpSocket::from(bound(at, SockType::Datagram, dev)?));
            let l = bound(at, SockType::Stream, dev)?;
            sock::listen(&l, sock::Backlog::new(64).map_err(io::Error::from)?)?;
            tcp.push(TcpListener::from(l));
        }
        for u in udp {
            let (stop, scope, nft) = (stop.clone(), scope.clone(), self.nft.clone());
            std::thread::spawn(move || serve_udp(u, &stop, scope, nft));
        }
        for t in tcp {
            let (stop, scope, nft) = (stop.clone(), scope.clone(), self.nft.clone());
            std::thread::spawn(move || serve_tcp(t, &stop, scope, nft));
        }
        Ok(Running {
            key: key.clone(),
            stop,
        })
    }
}

/// A socket bound to `at` (IP_FREEBIND: the address may not be there yet),
/// and to device `dev` when given.
fn bound(at: SocketAddr, ty: SockType, dev: Option<&str>) -> io::Result<OwnedFd> {
    let family = if at.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = sock::socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    sock::setsockopt(&fd, sockopt::IpFreebind, &true)?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if let Some(dev) = dev {
        sock::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(dev))?;
    }
    if at.is_ipv6() {
        sock::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    sock::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(at),
    )
    .map_err(|e| io::Error::other(format!("binding {at}: {e}")))?;
    Ok(fd)
}

fn serve_udp(u: UdpSocket, stop: &AtomicBool, s: Arc<Scope>, nft: Arc<Mutex<Option<Allow>>>) {
    if u.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = u.recv_from(&mut buf) else {
            continue;
        };
        let (query, s, nft) = (buf[..n].to_vec(), s.clone(), nft.clone());
        let Ok(u) = u.try_clone() else { continue };
        spawn_counted(move || {
            if let Some(a) = answer(&query, false, peer, &s, &nft) {
                let _ = u.send_to(&a, peer);
            }
        });
    }
}

fn serve_tcp(l: TcpListener, stop: &AtomicBool, s: Arc<Scope>, nft: Arc<Mutex<Option<Allow>>>) {
    if l.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((c, peer)) => {
                let (s, nft) = (s.clone(), nft.clone());
                spawn_counted(move || {
                    let _ = serve_conn(c, peer, &s, &nft);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Queries of one TCP connection, each framed by its two-byte length.
fn serve_conn(
    mut c: TcpStream,
    peer: SocketAddr,
    s: &Scope,
    nft: &Mutex<Option<Allow>>,
) -> io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(TCP_IDLE))?;
    loop {
        let mut l = [0u8; 2];
        c.read_exact(&mut l)?;
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(l))];
        c.read_exact(&mut q)?;
        let Some(a) = answer(&q, true, peer, s, nft) else {
            return Ok(());
        };
        let len = u16::try_from(a.len()).map_err(io::Error::other)?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&a);
        c.write_all(&out)?;
    }
}
