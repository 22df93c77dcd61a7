//! What the kernel has: links, addresses, routes and forwarding switches of a
//! namespace, and netctx's host-side links. Read with one dump per object kind
//! per namespace; turned into plain data that `plan` compares with the model.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::rtnl;
use crate::kernel::sysctl;
use crate::model::Cidr;
use crate::observe::nft::Live;
pub use crate::observe::routes::{parse_route, read_routed, ObsRoute, RoutedObs};

/// The alias of a declared context's host links (`netctx:NAME`).
#[cfg(test)]
pub fn alias_for(ctx: &str) -> String {
    format!("{}{ctx}", crate::model::LINK_ALIAS_PREFIX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsLink {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub up: bool,
    pub alias: Option<String>,
    /// Addresses other than IPv6 link-local ones.
    pub addrs: Vec<Cidr>,
    /// IPv6 link-local addresses (fe80::/10).
    pub link_local: Vec<Cidr>,
    /// The hardware address, for links that have one of 6 bytes.
    pub mac: Option<[u8; 6]>,
    /// The kind of its root qdisc (IFLA_QDISC), when it has one.
    pub qdisc: Option<String>,
    /// netctx's token bucket at its root, when it has it (read only
    /// when the link's qdisc is a `tbf`).
    pub tbf: Option<crate::model::Tbf>,
}

impl ObsLink {
    /// The context whose alias this link carries, if any.
    pub fn owner(&self) -> Option<&str> {
        self.alias.as_deref().and_then(crate::model::alias_owner)
    }
}

/// The host's links by name (what `Deref` gives), indexed once by the
/// context whose alias each carries, so planning one context looks at its
/// own links, not at every link of the host.
#[derive(Debug, Default)]
pub struct HostLinks {
    by_name: HashMap<String, ObsLink>,
    /// Names of the links each context's alias marks, sorted.
    owned: HashMap<String, Vec<String>>,
    /// Names of the links no alias marks, sorted.
    foreign: Vec<String>,
}

impl From<HashMap<String, ObsLink>> for HostLinks {
    fn from(by_name: HashMap<String, ObsLink>) -> Self {
        let mut owned: HashMap<String, Vec<String>> = HashMap::new();
        let mut foreign = Vec::new();
        for l in by_name.values() {
            match l.owner() {
                Some(o) => owned.entry(o.to_string()).or_default().push(l.name.clone()),
                None => foreign.push(l.name.clone()),
            }
        }
        owned.values_mut().for_each(|v| v.sort());
        foreign.sort();
        HostLinks {
            by_name,
            owned,
            foreign,
        }
    }
}

impl std::ops::Deref for HostLinks {
    type Target = HashMap<String, ObsLink>;
    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

impl HostLinks {
    /// The links carrying `ctx`'s alias, by name.
    pub fn owned_by<'a>(&'a self, ctx: &str) -> impl Iterator<Item = &'a ObsLink> + 'a {
        let names = self.owned.get(ctx).map(Vec::as_slice).unwrap_or_default();
        names.iter().filter_map(|n| self.by_name.get(n))
    }

    /// The links no context's alias marks, by name.
    pub fn foreign(&self) -> impl Iterator<Item = &ObsLink> + '_ {
        self.foreign.iter().filter_map(|n| self.by_name.get(n))
    }
}

/// The inside of a context's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsState {
    pub links: Vec<ObsLink>,
    pub routes: Vec<ObsRoute>,
    /// The switches asked for, by path under /proc/sys.
    pub sysctls: BTreeMap<String, String>,
    /// The table `inet netctx`.
    pub nft: Live,
}

impl NsState {
    pub fn link(&self, name: &str) -> Option<&ObsLink> {
        self.links.iter().find(|l| l.name == name)
    }
}

fn parse_link(m: &LinkMessage) -> ObsLink {
    let mut l = ObsLink {
        index: m.header.index,
        name: String::new(),
        kind: None,
        up: m.header.flags.contains(LinkFlags::Up),
        alias: None,
        addrs: Vec::new(),
        link_local: Vec::new(),
        mac: None,
        qdisc: None,
        tbf: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(mac) => l.mac = mac.as_slice().try_into().ok(),
            LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
            LinkAttribute::Qdisc(q) => l.qdisc = Some(q.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(kind_name(k));
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// The per-device switches a link dump carries (`IFLA_AF_SPEC`), under
/// the paths `/proc/sys` shows them at: the same values, without a file
/// opened for each. Read through the full parse, what `raw_link` is tested
/// against.
#[cfg(test)]
fn link_conf(m: &LinkMessage, name: &str, out: &mut BTreeMap<String, String>) {
    use netlink_packet_route::link::{AfSpecInet, AfSpecInet6, AfSpecUnspec};
    let mut put = |fam: &str, key: &str, v: i32| {
        out.insert(format!("net/{fam}/conf/{name}/{key}"), v.to_string());
    };
    for a in &m.attributes {
        let LinkAttribute::AfSpecUnspec(specs) = a else {
            continue;
        };
        for spec in specs {
            match spec {
                AfSpecUnspec::Inet(v) => {
                    for c in v {
                        if let AfSpecInet::DevConf(c) = c {
                            put("ipv4", "forwarding", c.forwarding);
                            put("ipv4", "proxy_arp", c.proxy_arp);
                            put("ipv4", "accept_redirects", c.accept_redirects);
                            put("ipv4", "accept_source_route", c.accept_source_route);
                            put("ipv4", "route_localnet", c.route_localnet);
                            put("ipv4", "rp_filter", c.rp_filter);
                        }
                    }
                }
                AfSpecUnspec::Inet6(v) => {
                    for c in v {
                        if let AfSpecInet6::DevConf(c) = c {
                            put("ipv6", "forwarding", c.forwarding);
                            put("ipv6", "accept_ra", c.accept_ra);
                            put("ipv6", "accept_redirects", c.accept_redirects);
                            put("ipv6", "autoconf", c.autoconf);
                            put("ipv6", "accept_source_route", c.accept_source_route);
                            put("ipv6", "proxy_ndp", c.proxy_ndp);
                            put("ipv6", "disable_ipv6", c.disable_ipv6);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The kind as the kernel names it (`IFLA_INFO_KIND`), as the dump's
/// bytes give it.
fn kind_name(k: &InfoKind) -> String {
    k.to_string()
}

fn parse_address(m: &AddressMessage) -> Option<(u32, Cidr)> {
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => addr = Some(*ip),
            AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
            _ => {}
        }
    }
    let addr = addr?;
    Some((
        m.header.index,
        Cidr {
            addr,
            prefix: m.header.prefix_len,
        },
    ))
}

/// Every link of the socket's namespace, without addresses.
pub fn read_links_only(nl: &mut Rtnl) -> Result<Vec<ObsLink>, NlError> {
    Ok(read_links_only_conf(nl)?.0)
}

/// `read_links_only`, and the links' switches (`link_conf`), read from the
/// dump's bytes (`link_dump::raw_link`).
fn read_links_only_conf(
    nl: &mut Rtnl,
) -> Result<(Vec<ObsLink>, BTreeMap<String, String>), NlError> {
    // Each link's switches with it: an interrupted dump is read again
    // whole, and nothing of the first attempt may stay.
    let read = nl.dump_raw(rtnl::dump_links(), super::link_dump::raw_link)?;
    let mut conf = BTreeMap::new();
    let mut links = Vec::with_capacity(read.len());
    for (l, c) in read {
        conf.extend(c);
        links.push(l);
    }
    super::qdisc::fill(nl, &mut links)?;
    Ok((links, conf))
}

/// Every link of the socket's namespace with its addresses.
pub fn read_links(nl: &mut Rtnl) -> Result<Vec<ObsLink>, NlError> {
    Ok(read_links_conf(nl)?.0)
}

/// `read_links`, and the switches of the links the dump carries, by path
/// (for `read_sysctls_from`).
pub fn read_links_conf(nl: &mut Rtnl) -> Result<(Vec<ObsLink>, BTreeMap<String, String>), NlError> {
    let (mut links, conf) = read_links_only_conf(nl)?;
    let by_index: HashMap<u32, usize> = links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.index, i))
        .collect();
    for m in nl.dump(rtnl::dump_addresses())? {
        if let M::NewAddress(a) = m {
            if let Some((index, cidr)) = parse_address(&a) {
                if let Some(i) = by_index.get(&index) {
                    if is_link_local(cidr.addr) {
                        links[*i].link_local.push(cidr);
                    } else {
                        links[*i].addrs.push(cidr);
                    }
                }
            }
        }
    }
    for l in &mut links {
        l.addrs.sort();
        l.link_local.sort();
    }
    Ok((links, conf))
}

/// One link by name, without its addresses; `None` when there is none.
pub fn read_link(nl: &mut Rtnl, name: &str) -> Result<Option<ObsLink>, NlError> {
    match nl.query(rtnl::get_link(name), 0) {
        Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
            M::NewLink(l) => Some(parse_link(l)),
            _ => None,
        })),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// The links of the namespace `ns` (entered on the calling thread and left).
pub fn read_links_in(ns: &std::fs::File) -> std::io::Result<Vec<ObsLink>> {
    crate::kernel::netns::run_in(ns, || {
        let mut nl = Rtnl::open()?;
        read_links(&mut nl).map_err(std::io::Error::other)
    })?
}

impl ObsLink {
    /// The hardware address as `aa:bb:…`.
    pub fn mac_text(&self) -> Option<String> {
        self.mac.map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
    }
}

/// Everything inside the calling thread's namespace. `/proc/sys/net` shows
/// the namespace of the reading thread, so this is right on a setns'd thread.
pub fn read_ns(
    nl: &mut Rtnl,
    nft: &mut crate::kernel::nft::sock::Nft,
    sysctl_paths: &[String],
) -> Result<NsState, NlError> {
    use crate::kernel::profile::{time, OBSERVE};
    let (links, conf) = time(OBSERVE, || read_links_conf(nl))?;
    let mut routes: Vec<ObsRoute> = time(OBSERVE + 1, || nl.dump(rtnl::dump_routes()))?
        .iter()
        .filter_map(|m| match m {
            M::NewRoute(r) => parse_route(r),
            _ => None,
        })
        .collect();
    routes.sort_by_key(|r| (r.to, r.via));
    let sysctls = time(OBSERVE + 2, || read_sysctls_from(sysctl_paths, &conf));
    let nft = time(OBSERVE + 3, || {
        crate::observe::nft::read(nft, &crate::kernel::nft::table::SETS)
    })?;
    Ok(NsState {
        links,
        routes,
        sysctls,
        nft,
    })
}

/// The switches at `paths` that exist, with their values.
pub fn read_sysctls(paths: &[String]) -> BTreeMap<String, String> {
    paths
        .iter()
        .zip(sysctl::read_many(paths))
        .filter_map(|(p, v)| Some((p.clone(), v?)))
        .collect()
}

/// `read_sysctls`, taking what `known` (the link dump's switches) has
/// from there and only the rest from `/proc/sys`.
pub fn read_sysctls_from(
    paths: &[String],
    known: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let rest: Vec<String> = paths
        .iter()
        .filter(|p| !known.contains_key(*p))
        .cloned()
        .collect();
    let mut out = read_sysctls(&rest);
    for p in paths {
        if let Some(v) = known.get(p) {
            out.insert(p.clone(), v.clone());
        }
    }
    out
}

/// fe80::/10.
pub fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// The link-local address the kernel gives a link of hardware address
/// `mac` (EUI-64, `addr_gen_mode` 0).
pub fn kernel_link_local(mac: [u8; 6]) -> Cidr {
    let b = [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ];
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::from(b)),
        prefix: 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_read_from_the_dumps_bytes_are_what_the_full_parse_reads() {
        let mut nl = Rtnl::open().unwrap();
        let (raw, raw_conf) = read_links_only_conf(&mut nl).unwrap();
        let mut full = Vec::new();
        let mut full_conf = BTreeMap::new();
        for m in nl.dump(rtnl::dump_links()).unwrap() {
            if let M::NewLink(m) = m {
                let l = parse_link(&m);
                link_conf(&m, &l.name, &mut full_conf);
                full.push(l);
            }
        }
        assert!(!raw.is_empty());
        assert_eq!(raw, full);
        assert_eq!(raw_conf, full_conf);
        assert!(raw_conf.contains_key("net/ipv6/conf/lo/disable_ipv6"));
    }

    #[test]
    fn the_link_dumps_switches_are_what_proc_sys_shows() {
        // Any process may dump the links of its own namespace.
        let mut nl = Rtnl::open().unwrap();
        let (links, conf) = read_links_conf(&mut nl).unwrap();
        assert!(links.iter().any(|l| l.name == "lo"));
        assert!(conf.contains_key("net/ipv4/conf/lo/accept_redirects"));
        for (path, value) in &conf {
            // A link can go between the dump and the read.
            if let Some(proc) = sysctl::read(path) {
                assert_eq!(&proc, value, "{path}");
            }
        }
        let paths = vec![
            "net/ipv4/conf/lo/route_localnet".to_string(),
            "net/ipv4/ip_forward".to_string(),
        ];
        let both = read_sysctls_from(&paths, &conf);
        assert_eq!(both, read_sysctls(&paths));
    }
}
