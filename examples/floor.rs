//! The benchmark's floor: the kernel work of N strict contexts and nothing
//! else, to measure netctx against the kernel itself.
//!
//!     floor up N [--host each] [--without PART]     floor observe N     floor down N
//!
//! Context `i` is what `bench/run` declares: namespace `c{i}`, a veth `nx{i}`
//! with its peer `eth0` created directly inside, one IPv4 address each side
//! (a /30 of its own), links up (lo too), a default route, the hardening
//! switches netctx writes, and exactly the nf_tables messages netctx sends
//! (its own encoders and rules, `netctx::floor`): the context's table
//! in one transaction inside, the host's ingress and forward chains and the
//! forward dispatch's map and chain (once) and elements. With no
//! observation, no checks beyond the kernel's errors, no ownership marks,
//! no rollback journal; ifindexes are given, not read. Work is spread over
//! `NETCTX_THREADS` (4) workers as netctx's is, each entering the namespace
//! it makes (netctx's own `netns::create_and_run`). The host's chains go in
//! one transaction for the whole run (`--host each`: one a context, as
//! netctx did before the host batch).
//!
//! `--without` leaves a part of that work out, to see which part grows
//! with N: `ingress` (the host's ingress chains; its forward chains and
//! dispatch stay), `host-nft` (nothing in the host's table), `nft` (no
//! nf_tables at all), `links` (the namespaces alone: no veth, addresses,
//! routes or switches).
//!
//! `observe` is the kernel work of looking at N such contexts, what
//! `status` and `up` of a converged host cannot do without: the host's link
//! dump and its table (chains, rules, the dispatch's elements) once, and in
//! every namespace, entered as netctx enters it, the link, address and route
//! dumps, the table's (its chains, rules and sets' elements), and the 20
//! switches netctx owns there read through netctx's own reader. Nothing
//! is parsed or compared.
//!
//! `down` unmounts and unlinks every namespace (netctx's `down --no-wait`)
//! and deletes the host's table; the kernel destroys the rest on its own.
//! Used by `bench/run`.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE};
use netlink_sys::Socket;

// netctx's own encoders, rules and namespace handling.
use model::{Cidr, Context, Isolation, Link, LinkKind, Route};
use netctx::floor::{
    dispatch, model, netlink as nl_wire, netns, nft as wire, rtnl, rules, sysctl, table, Request,
};

/// The ifindex of `eth0` inside: lo is 1 in a fresh namespace.
const PEER_INDEX: u32 = 2;
/// Host ifindexes start here (the sandbox's host has lo only).
const HOST_INDEX: u32 = 100;

/// Host and context address of context `i`, as `bench/run`'s `addrs`.
fn addrs(i: u32) -> (Cidr, Cidr) {
    let base = i * 4;
    let net = [10, 100 + base / 65536, (base / 256) % 256, base % 256];
    let ip = |last: u32| {
        let o: Vec<u8> = [net[0], net[1], net[2], net[3] + last]
            .iter()
            .map(|v| u8::try_from(*v).expect("N < 16,384"))
            .collect();
        Cidr {
            addr: std::net::IpAddr::from([o[0], o[1], o[2], o[3]]),
            prefix: 30,
        }
    };
    (ip(1), ip(2))
}

/// Context `i` as netctx's configuration validates it.
fn context(i: u32) -> Context {
    let (host, addr) = addrs(i);
    Context {
        name: format!("c{i}"),
        id: None,
        ip_forward: false,
        log: vec![],
        log_group: model::DEFAULT_LOG_GROUP,
        log_rate: model::DEFAULT_LOG_RATE,
        isolation: Isolation::Strict,
        single_ip: false,
        announce: false,
        hostname: format!("c{i}"),
        links: vec![Link {
            kind: LinkKind::Veth,
            name: "eth0".into(),
            host: Some(format!("nx{i}")),
            host_addresses: vec![host],
            addresses: vec![addr],
            accept_ra: false,
            ptp: false,
        }],
        routes: vec![Route {
            to: Cidr::parse("0.0.0.0/0").expect("constant"),
            via: host.addr,
        }],
        reach: vec![],
        accept_from: vec![],
        deny: vec![],
        uplink: None,
        egress: model::Egress::None,
        publish: vec![],
        guest: None,
        limits: Default::default(),
        file: "floor".into(),
        netns: Default::default(),
    }
}

/// The switches netctx writes in a new namespace and on the host end of its
/// veth (`plan::sysctls`: "all", "default", lo; ping_group_range; the host
/// veth's).
fn ns_sysctls() -> Vec<(String, &'static str)> {
    let mut w = Vec::new();
    for dev in ["all", "default", "lo"] {
        for k in [
            "accept_redirects",
            "accept_source_route",
            "proxy_arp",
            "route_localnet",
        ] {
            w.push((format!("net/ipv4/conf/{dev}/{k}"), "0"));
        }
        w.push((format!("net/ipv6/conf/{dev}/accept_redirects"), "0"));
        w.push((format!("net/ipv6/conf/{dev}/accept_ra"), "0"));
    }
    w.push(("net/ipv4/ping_group_range".into(), "0 4294967294"));
    w.push(("net/ipv4/ip_unprivileged_port_start".into(), "0"));
    w
}

fn host_sysctls(dev: &str) -> Vec<(String, &'static str)> {
    ["ipv6/conf/{}/accept_ra", "ipv6/conf/{}/autoconf"]
        .iter()
        .chain(&[
            "ipv6/conf/{}/accept_redirects",
            "ipv4/conf/{}/accept_redirects",
        ])
        .map(|p| (format!("net/{}", p.replace("{}", dev)), "0"))
        .collect()
}

/// A netlink socket with no acks asked for: the kernel handles a request
/// inside `sendmsg`, so once it returns the work is done, and only errors
/// come back.
struct Nl {
    sock: Socket,
    buf: Vec<u8>,
}

impl Nl {
    fn open(proto: isize) -> io::Result<Nl> {
        let mut sock = Socket::new(proto)?;
        sock.bind_auto()?;
        Ok(Nl {
            sock,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Send `bytes`, then fail on any error the kernel queued.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.sock.send(bytes, 0)? != bytes.len() {
            return Err(io::Error::other("short netlink send"));
        }
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => {
                    for f in nl_wire::frames(&self.buf) {
                        if f.ty == nl_wire::NLMSG_ERROR {
                            if let Some(errno) = nl_wire::error_code(f.payload()) {
                                return Err(io::Error::from_raw_os_error(errno));
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Send one dump request and read its answers to the end; the bytes
    /// answered.
    fn dump(&mut self, req: &[u8]) -> io::Result<usize> {
        self.sock.send(req, 0)?;
        let mut total = 0;
        loop {
            self.buf.clear();
            total += self.sock.recv(&mut self.buf, 0)?;
            for f in nl_wire::frames(&self.buf) {
                match f.ty {
                    nl_wire::NLMSG_DONE => return Ok(total),
                    nl_wire::NLMSG_ERROR => {
                        return match nl_wire::error_code(f.payload()) {
                            Some(errno) if errno != libc::ENOENT => {
                                Err(io::Error::from_raw_os_error(errno))
                            }
                            _ => Ok(total),
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// An rtnetlink dump.
    fn dump_rt(&mut self, msg: M) -> io::Result<usize> {
        let mut header = NetlinkHeader::default();
        header.flags = nl_wire::NLM_F_REQUEST | nl_wire::NLM_F_DUMP;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut out = vec![0; m.buffer_len()];
        m.serialize(&mut out);
        self.dump(&out)
    }

    /// An nf_tables get (`dump`: of every object of the kind `attrs`
    /// filters).
    fn get_nft(&mut self, ty: u16, attrs: &[u8], dump: bool) -> io::Result<usize> {
        let flags = nl_wire::NLM_F_REQUEST | if dump { nl_wire::NLM_F_DUMP } else { 0 };
        let ty = (wire::NFNL_SUBSYS_NFTABLES << 8) | ty;
        let mut out = Vec::new();
        nl_wire::encode_nfnl(ty, flags, 1, wire::NFPROTO_INET, 0, attrs, &mut out);
        if dump {
            return self.dump(&out);
        }
        self.sock.send(&out, 0)?;
        self.buf.clear();
        self.sock.recv(&mut self.buf, 0)
    }

    /// netctx's table as `observe::nft::read` reads it: the table, every
    /// chain, its rules, and the elements of `sets`.
    fn read_table(&mut self, sets: &[&str]) -> io::Result<usize> {
        let mut name = nl_wire::Attrs::default();
        name.str(wire::attr::TABLE_NAME, table::TABLE);
        let mut n = self.get_nft(wire::msg::GETTABLE, &name.0, false)?;
        n += self.get_nft(wire::msg::GETCHAIN, &[], true)?;
        let mut rules = nl_wire::Attrs::default();
        rules.str(wire::attr::RULE_TABLE, table::TABLE);
        n += self.get_nft(wire::msg::GETRULE, &rules.0, true)?;
        for set in sets {
            let mut a = nl_wire::Attrs::default();
            a.str(wire::attr::SET_ELEM_LIST_TABLE, table::TABLE)
                .str(wire::attr::SET_ELEM_LIST_SET, set);
            n += self.get_nft(wire::msg::GETSETELEM, &a.0, true)?;
        }
        Ok(n)
    }

    /// rtnetlink requests in one datagram.
    fn exec(&mut self, reqs: Vec<Request>) -> io::Result<()> {
        let mut out = Vec::new();
        for (seq, r) in (1..).zip(reqs) {
            let mut header = NetlinkHeader::default();
            header.flags = nl_wire::NLM_F_REQUEST | r.flags;
            header.sequence_number = seq;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(r.msg));
            m.finalize();
            let start = out.len();
            out.resize(start + m.buffer_len(), 0);
            m.serialize(&mut out[start..]);
        }
        self.send(&out)
    }

    /// One nf_tables transaction, no acks.
    fn transaction(&mut self, msgs: &[wire::Msg]) -> io::Result<()> {
        let mut out = Vec::new();
        let frame = |ty, seq, out: &mut Vec<u8>| {
            nl_wire::encode_nfnl(
                ty,
                nl_wire::NLM_F_REQUEST,
                seq,
                0,
                wire::NFNL_SUBSYS_NFTABLES,
                &[],
                out,
            );
        };
        frame(wire::NFNL_MSG_BATCH_BEGIN, 1, &mut out);
        for (seq, m) in (2..).zip(msgs) {
            m.encode(seq, &mut out).map_err(io::Error::other)?;
        }
        frame(wire::NFNL_MSG_BATCH_END, 0, &mut out);
        // The whole batch is one datagram: let the socket take it.
        let size = libc::c_int::try_from(out.len() + 4096).unwrap_or(libc::c_int::MAX);
        // SAFETY: setting an integer socket option on a socket we own, with
        // a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&size as *const libc::c_int).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.send(&out)
    }
}

/// The part of a context's kernel work `floor up --without` leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Without {
    Nothing,
    Ingress,
    HostNft,
    Nft,
    Links,
}

impl Without {
    fn parse(s: &str) -> Option<Without> {
        Some(match s {
            "ingress" => Without::Ingress,
            "host-nft" => Without::HostNft,
            "nft" => Without::Nft,
            "links" => Without::Links,
            _ => return None,
        })
    }

    /// Whether the host's table is left out.
    fn no_host_nft(self) -> bool {
        matches!(self, Without::HostNft | Without::Nft | Without::Links)
    }
}

/// One context: namespace, links, addresses, routes, switches, its table;
/// its host chains are returned (or sent at once with `host_each`).
fn up_one(
    i: u32,
    host: &mut Nl,
    host_nft: &mut Nl,
    host_each: bool,
    without: Without,
) -> io::Result<Vec<wire::Msg>> {
    let ctx = context(i);
    if without == Without::Links {
        netns::create_and_run(&ctx.name, |_| Ok(()), |_| -> io::Result<()> { Ok(()) })??;
        return Ok(Vec::new());
    }
    let (h, a) = addrs(i);
    let hostname = format!("nx{i}");
    let hindex = HOST_INDEX + i;
    netns::create_and_run(
        &ctx.name,
        |_| Ok(()),
        |file| -> io::Result<()> {
            for (p, v) in ns_sysctls() {
                sysctl::write(&p, v)?;
            }
            let mut veth = rtnl::new_veth(&hostname, "eth0", file.as_raw_fd());
            if let M::NewLink(m) = &mut veth.msg {
                m.header.index = hindex;
                for info in &mut m.attributes {
                    if let netlink_packet_route::link::LinkAttribute::LinkInfo(infos) = info {
                        for d in infos {
                            if let netlink_packet_route::link::LinkInfo::Data(
                                netlink_packet_route::link::InfoData::Veth(
                                    netlink_packet_route::link::InfoVeth::Peer(p),
                                ),
                            ) = d
                            {
                                p.header.index = PEER_INDEX;
                            }
                        }
                    }
                }
            }
            host.exec(vec![
                veth,
                rtnl::add_address(hindex, h),
                rtnl::set_link_up(&hostname, true),
            ])?;
            let mut ns = Nl::open(NETLINK_ROUTE)?;
            let mut reqs = vec![
                rtnl::set_link_up("lo", true),
                rtnl::add_address(PEER_INDEX, a),
                rtnl::set_link_up("eth0", true),
            ];
            reqs.extend(ctx.routes.iter().map(|r| rtnl::add_route(r.to, r.via)));
            ns.exec(reqs)?;
            if without == Without::Nft {
                return Ok(());
            }
            let t = rules::context_table(&ctx).expect("a strict context has a table");
            Nl::open(NETLINK_NETFILTER)?.transaction(&table::replace_table(Some(&t), false))
        },
    )??;
    for (p, v) in host_sysctls(&hostname) {
        sysctl::write(&p, v)?;
    }
    if without.no_host_nft() {
        return Ok(Vec::new());
    }
    let mut chains = rules::host_chains(&ctx);
    if without == Without::Ingress {
        chains.retain(|c| c.device.is_none());
    }
    // The context's forward chain is reached through the dispatch's map.
    let d = dispatch::DispatchChange {
        add: rules::dispatch_elems(&ctx, &chains),
        ..Default::default()
    };
    if host_each {
        host_nft.transaction(&table::replace_host_chains(
            &[],
            &chains,
            &d,
            &Default::default(),
        ))?;
        return Ok(Vec::new());
    }
    let mut msgs = Vec::new();
    dispatch::host_change_msgs(&[], &chains, &d, &mut msgs);
    Ok(msgs)
}

fn threads(n: usize) -> usize {
    std::env::var("NETCTX_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4usize)
        .clamp(1, n.max(1))
}

/// `f(host rtnl, host nft, i)` for every i < n on the worker pool; the
/// results in no particular order.
fn pool<R: Send>(
    n: u32,
    f: impl Fn(&mut Nl, &mut Nl, u32) -> io::Result<R> + Sync,
) -> io::Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    let count = usize::try_from(n).unwrap_or(usize::MAX);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads(count))
            .map(|_| {
                s.spawn(|| -> io::Result<()> {
                    let mut host = Nl::open(NETLINK_ROUTE)?;
                    let mut nft = Nl::open(NETLINK_NETFILTER)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(i) = u32::try_from(i).ok().filter(|i| *i < n) else {
                            return Ok(());
                        };
                        let r = f(&mut host, &mut nft, i)
                            .map_err(|e| io::Error::other(format!("context c{i}: {e}")))?;
                        out.lock().unwrap().push(r);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a worker panicked"))
    })?;
    Ok(out.into_inner().unwrap())
}

fn up(n: u32, host_each: bool, without: Without) -> io::Result<()> {
    netns::prepare_dir()?;
    // The dispatch's map and base chain, once.
    let shared = dispatch::DispatchChange {
        create_map: true,
        chain: Some(vec![]),
        ..Default::default()
    };
    if host_each && !without.no_host_nft() {
        Nl::open(NETLINK_NETFILTER)?.transaction(&table::replace_host_chains(
            &[],
            &[],
            &shared,
            &Default::default(),
        ))?;
    }
    let per_ctx = pool(n, |host, nft, i| up_one(i, host, nft, host_each, without))?;
    if !host_each && !without.no_host_nft() {
        let mut msgs = vec![table::new_table(Some(table::HOST_COMMENT))];
        dispatch::host_change_msgs(&[], &[], &shared, &mut msgs);
        msgs.extend(per_ctx.into_iter().flatten());
        Nl::open(NETLINK_NETFILTER)?.transaction(&msgs)?;
    }
    Ok(())
}

/// The switches netctx owns inside a context (`plan::sysctls::wanted` but
/// the per-device ones, which the link dump carries).
fn owned_switches() -> Vec<String> {
    let mut v: Vec<String> = [
        "net/ipv4/ip_forward",
        "net/ipv4/ip_nonlocal_bind",
        "net/ipv6/ip_nonlocal_bind",
        "net/ipv4/ping_group_range",
        "net/ipv4/ip_unprivileged_port_start",
    ]
    .map(String::from)
    .to_vec();
    for dev in ["all", "default"] {
        for k in [
            "accept_redirects",
            "accept_source_route",
            "proxy_arp",
            "route_localnet",
        ] {
            v.push(format!("net/ipv4/conf/{dev}/{k}"));
        }
        for k in [
            "accept_redirects",
            "accept_source_route",
            "forwarding",
            "accept_ra",
        ] {
            v.push(format!("net/ipv6/conf/{dev}/{k}"));
        }
    }
    v
}

fn observe(n: u32) -> io::Result<()> {
    let mut host = Nl::open(NETLINK_ROUTE)?;
    let mut bytes = host.dump_rt(rtnl::dump_links())?;
    bytes += Nl::open(NETLINK_NETFILTER)?.read_table(&[dispatch::DISPATCH])?;
    let switches = owned_switches();
    let per_ns = pool(n, |_, _, i| {
        let file = std::fs::File::open(format!("{}/c{i}", netns::NETNS_DIR))?;
        netns::run_in(&file, || -> io::Result<usize> {
            let mut rt = Nl::open(NETLINK_ROUTE)?;
            let mut b = rt.dump_rt(rtnl::dump_links())?;
            b += rt.dump_rt(rtnl::dump_addresses())?;
            b += rt.dump_rt(rtnl::dump_routes())?;
            b += Nl::open(NETLINK_NETFILTER)?.read_table(&table::SETS)?;
            let read = sysctl::read_many(&switches);
            if read.iter().any(Option::is_none) {
                return Err(io::Error::other("a switch could not be read"));
            }
            Ok(b)
        })?
    })?;
    bytes += per_ns.iter().sum::<usize>();
    eprintln!("floor: observed {n} contexts, {bytes} bytes of dumps");
    Ok(())
}

fn down(n: u32) -> io::Result<()> {
    pool(n, |_, _, i| netns::remove(&format!("c{i}")))?;
    match Nl::open(NETLINK_NETFILTER)?.transaction(&[table::del_table()]) {
        // `up --without` left the host's table out.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args.get(1).and_then(|s| s.parse::<u32>().ok());
    let flags: Vec<&str> = args.iter().skip(2).map(String::as_str).collect();
    let (mut host_each, mut without, mut bad) = (false, Some(Without::Nothing), false);
    for pair in flags.chunks(2) {
        match pair {
            ["--host", "each"] => host_each = true,
            ["--without", part] => without = Without::parse(part),
            _ => bad = true,
        }
    }
    let r = match (args.first().map(String::as_str), n, without) {
        (Some("up"), Some(n), Some(without)) if !bad => up(n, host_each, without),
        (Some("down"), Some(n), _) if args.len() == 2 => down(n),
        (Some("observe"), Some(n), _) if args.len() == 2 => observe(n),
        _ => {
            eprintln!(
                "usage: floor up N [--host each] [--without ingress|host-nft|nft|links] \
                 | floor observe N | floor down N"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}
