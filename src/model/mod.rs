//! Validated model of the configuration: types that cannot hold an invalid
//! value. Built only by `config::validate`; everything after loading (plan,
//! apply, status) works on these types.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// Default `log_group`: the NFLOG group of the logging rules.
pub const DEFAULT_LOG_GROUP: u16 = 100;
/// Default `log_rate`: packets a second each logging rule passes on.
pub const DEFAULT_LOG_RATE: u32 = 100;

/// An address with its prefix length, as assigned to a link (`10.0.0.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("address {s:?} has no prefix length (write e.g. {s}/24)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = max_prefix(addr);
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length {p:?} is not a number in 0..={max}"))?;
        Ok(Cidr { addr, prefix })
    }

    /// The network address of the subnet (host bits cleared).
    pub fn network(&self) -> IpAddr {
        mask(self.addr, self.prefix)
    }

    /// Whether `ip` lies inside this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.network()
    }

    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether the subnets of two addresses share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let p = self.prefix.min(other.prefix);
        self.is_v4() == other.is_v4() && mask(self.addr, p) == mask(other.addr, p)
    }

    /// The subnet as a CIDR with host bits cleared.
    pub fn subnet(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Hook {
    Input,
    Forward,
    Output,
}

impl Hook {
    pub fn parse(s: &str) -> Option<Hook> {
        match s {
            "input" => Some(Hook::Input),
            "forward" => Some(Hook::Forward),
            "output" => Some(Hook::Output),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    Strict,
    Off,
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Isolation, String> {
        match s {
            "strict" => Ok(Isolation::Strict),
            "off" => Ok(Isolation::Off),
            other => Err(format!(
                "isolation must be \"strict\" or \"off\", not {other:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkKind {
    Veth,
    Dummy,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Veth => "veth",
            LinkKind::Dummy => "dummy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub kind: LinkKind,
    /// Name inside the context.
    pub name: String,
    /// Host-side name (veth only; defaults already resolved).
    pub host: Option<String>,
    pub host_addresses: Vec<Cidr>,
    pub addresses: Vec<Cidr>,
    /// Accept IPv6 router advertisements on this link (default: no).
    pub accept_ra: bool,
    /// Point to point (a CNI attachment's layout, as the ptp plugin's):
    /// the addresses inside put no subnet route in, the host side's
    /// addresses (the gateways) are single addresses, the inside reaches
    /// each gateway on the link and the host each address by a host route.
    pub ptp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Destination; `default` is `0.0.0.0/0` or `::/0` by the gateway's family.
    pub to: Cidr,
    pub via: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Guest {
    pub command: Vec<String>,
    pub user: Option<String>,
    /// The guest's own root filesystem (default: the host's, read-only).
    pub root: Option<PathBuf>,
    /// Paths the guest may write (absolute, inside its root).
    pub writable: Vec<PathBuf>,
    /// Capabilities kept, from the default set (None: the whole set).
    pub capabilities: Option<Vec<u32>>,
    /// Environment beyond the fixed minimum.
    pub env: Vec<(String, String)>,
}

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

mod policy;
pub use policy::{dns_set, domain_covers, meet, Admit, Peer, Ports, Reach, DEFAULT_DENY};

/// How a context reaches the world through its uplink (`egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Egress {
    /// Only published ports, nothing out.
    #[default]
    None,
    /// Masqueraded to the uplink's address.
    Nat,
    /// Untranslated; the context's addresses in the uplink's subnets are
    /// answered for on the uplink (proxy ARP/NDP) and routed to it.
    Routed,
}

impl std::str::FromStr for Egress {
    type Err = String;
    fn from_str(s: &str) -> Result<Egress, String> {
        match s {
            "none" => Ok(Egress::None),
            "nat" => Ok(Egress::Nat),
            "routed" => Ok(Egress::Routed),
            other => Err(format!(
                "egress must be \"none\", \"nat\" or \"routed\", not {other:?}"
            )),
        }
    }
}

/// A published port (`[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Publish {
    /// `None`: every address of the host but loopback; `0.0.0.0` every
    /// IPv4 one, `::` every IPv6 one.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:")?,
            Some(a) => write!(f, "{a}:")?,
            None => {}
        }
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{}:{}/{proto}", self.host_port, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub name: String,
    pub id: Option<u16>,
    pub ip_forward: bool,
    pub log: Vec<Hook>,
    pub log_group: u16,
    /// Packets a second each logging rule lets through (burst the same).
    pub log_rate: u32,
    pub isolation: Isolation,
    /// A wildcard bind becomes a bind to the first address of its family.
    pub single_ip: bool,
    pub hostname: String,
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    /// What it may open connections to (docs/policy.md).
    pub reach: Vec<Reach>,
    /// Who may open connections to it (empty: whoever `reach`es it).
    pub accept_from: Vec<Reach>,
    /// `[defaults] deny`: what it never reaches.
    pub deny: Vec<Reach>,
    /// The host interface it reaches the world through.
    pub uplink: Option<String>,
    pub egress: Egress,
    pub publish: Vec<Publish>,
    /// Its addresses get host routes of protocol `netctx` for a routing
    /// daemon to export (docs/cluster.md).
    pub announce: bool,
    pub guest: Option<Guest>,
    /// Its fences (`[context.NAME.limits]`).
    pub limits: Limits,
    /// The file that declared it.
    pub file: PathBuf,
    /// The network namespace it lives in.
    pub netns: Netns,
}

/// Where a context's network namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Netns {
    /// netctx's own, `/run/netns/NAME` with its marker: made and removed
    /// with the context.
    #[default]
    Named,
    /// A container runtime's (a CNI attachment, docs/cni.md), which netctx
    /// neither makes nor removes: inside it, netctx's are only the links
    /// carrying `alias`, the routes over them, their switches and the table
    /// `inet netctx` of the attachment. `held`: a descriptor of that
    /// namespace this process holds open (opened from `path` and checked
    /// once), entered instead of opening `path` again, so what was checked
    /// is what is changed.
    Runtime {
        path: String,
        alias: String,
        held: Option<i32>,
    },
}

/// A whole validated configuration; contexts sorted by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub contexts: Vec<Context>,
    /// `[defaults] host_firewall`.
    pub host_firewall: HostFirewall,
}

/// What netctx does with the host's own firewall (docs/coexistence.md):
/// `Auto` keeps its one rule in Docker's `DOCKER-USER`;
/// `None` leaves every foreign table alone. Both report what would drop
/// netctx's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HostFirewall {
    #[default]
    Auto,
    None,
}

impl Context {
    /// The number n of the context's user-id range (docs/guests.md):
    /// its `id`, else one derived from its name (validation rejects two
    /// contexts with one n).
    pub fn idmap(&self) -> u16 {
        self.id.unwrap_or_else(|| derived_idmap(&self.name))
    }

    /// The host ids of the context's guests: `(first, count)`, guest id u
    /// being host id first + u.
    pub fn id_range(&self) -> (u32, u32) {
        id_range(self.idmap())
    }

    /// Whether the context uses its uplink (egress or published ports).
    /// The alias on the context's links: `netctx:NAME`, or the
    /// attachment's.
    pub fn link_alias(&self) -> String {
        match &self.netns {
            Netns::Named => format!("{LINK_ALIAS_PREFIX}{}", self.name),
            Netns::Runtime { alias, .. } => alias.clone(),
        }
    }

    /// A CNI attachment's (in a runtime's namespace).
    pub fn is_attachment(&self) -> bool {
        matches!(self.netns, Netns::Runtime { .. })
    }

    /// Whether the context uses its uplink: egress, published ports, or
    /// its addresses announced to a routing fabric reached through it.
    pub fn uses_uplink(&self) -> bool {
        self.uplink.is_some()
            && (self.egress != Egress::None || !self.publish.is_empty() || self.announce)
    }

    /// The context's first address of a family.
    pub fn first_address(&self, v6: bool) -> Option<IpAddr> {
        self.links
            .iter()
            .flat_map(|l| &l.addresses)
            .map(|a| a.addr)
            .find(|a| a.is_ipv6() == v6)
    }
}

impl Config {
    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }
}

/// Prefix of the alias netctx puts on the host-side links of a declared
/// context (`netctx:NAME`).
pub const LINK_ALIAS_PREFIX: &str = "netctx:";
/// Prefix of the alias on both ends of a CNI attachment's veth
/// (`netctx-cni:CTX:GROUP:NETWORK:IFNAME:CONTAINERID`). Deliberately not the
/// engine's, so `netctx down --all` does not take a runtime's attachments
/// for contexts of its own.
pub const ATTACHMENT_ALIAS_PREFIX: &str = "netctx-cni:";

/// The context whose alias `alias` is: a declared context's (`netctx:NAME`)
/// or an attachment's (`netctx-cni:CTX:…`).
pub fn alias_owner(alias: &str) -> Option<&str> {
    if let Some(rest) = alias.strip_prefix(ATTACHMENT_ALIAS_PREFIX) {
        return rest.split(':').next().filter(|c| is_attachment_name(c));
    }
    alias.strip_prefix(LINK_ALIAS_PREFIX)
}

/// Whether `name` is an attachment's context name: CNI attachments are
/// contexts named `cni` and 8 hex digits (docs/cni.md), which no declared
/// context may take.
pub fn is_attachment_name(name: &str) -> bool {
    name.len() == 11
        && name
            .strip_prefix("cni")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a chain of the host's table belongs to a CNI attachment
/// (`cniXXXXXXXX_nxcYYYYYYYYYYYY`): the engine leaves those to the plugin.
pub fn is_attachment_chain(chain: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match chain.split_once('_') {
        Some((ctx, dev)) => {
            // The ingress chain `CTX_HOST`, the forward chain `CTX_forward`,
            // the NAT chains `CTX_HOST_pre`, `CTX_HOST_out`, `CTX_HOST_post`.
            if dev == "forward" {
                return ctx.strip_prefix("cni").is_some_and(|h| hex(h, 8));
            }
            let dev = dev
                .strip_suffix("_pre")
                .or_else(|| dev.strip_suffix("_out"))
                .or_else(|| dev.strip_suffix("_post"))
                .unwrap_or(dev);
            ctx.strip_prefix("cni").is_some_and(|h| hex(h, 8))
                && dev.strip_prefix("nxc").is_some_and(|h| hex(h, 12))
        }
        None => false,
    }
}

pub mod guest_caps;
pub mod pod;

/// Names of a context's chains in the host's table other than its veths'
/// (`CTX_forward`, the NAT chains): no host-side veth may be called so.
pub const RESERVED_CHAINS: [&str; 4] = ["forward", "post", "pre", "out"];

/// The range number of a context without `id`: FNV-1a of its name, in
/// 4096..=65534 (away from the small ids administrators pick by hand).
pub fn derived_idmap(name: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let span = 65535 - 4096;
    u16::try_from(4096 + h % span).unwrap_or(4096)
}

/// Host ids `(first, count)` of range n: 65536·n on, 65536 of them (65535
/// for n = 65535: the id 2³²−1 means "no id" to the kernel).
pub fn id_range(n: u16) -> (u32, u32) {
    let first = u32::from(n) << 16;
    (first, if n == u16::MAX { 65535 } else { 65536 })
}

mod text;
pub use text::{escape, escape_bytes};

pub mod limits;
pub use limits::{Limits, Per, Tbf};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("10.100.0.2/24").unwrap();
        assert_eq!(c.network().to_string(), "10.100.0.0");
        assert!(c.contains("10.100.0.1".parse().unwrap()));
        assert!(!c.contains("10.100.1.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        let v6 = Cidr::parse("fd00:100::2/64").unwrap();
        assert!(v6.contains("fd00:100::1".parse().unwrap()));
        assert_eq!(
            Cidr::parse("0.0.0.0/0").unwrap().network().to_string(),
            "0.0.0.0"
        );
        assert!(Cidr::parse("10.0.0.1").is_err());
        assert!(Cidr::parse("10.0.0.1/33").is_err());
        assert!(Cidr::parse("fd00::1/129").is_err());
        assert!(Cidr::parse("10.0.0/24").is_err());
    }
}
