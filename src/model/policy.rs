//! The policy's entries (docs/policy.md): what a context may reach
//! (`reach`), who may open connections to it (`accept_from`) and the
//! administrator's floor (`[defaults] deny`).

use std::fmt;

use super::{Cidr, Proto};

/// A port or port range of one protocol (`443/tcp`, `8000-8100/udp`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
    pub proto: Proto,
}

impl Ports {
    /// The ports both allow: `None` for none (another protocol, or no
    /// overlap).
    pub fn meet(&self, other: &Ports) -> Option<Ports> {
        let (lo, hi) = (self.lo.max(other.lo), self.hi.min(other.hi));
        (self.proto == other.proto && lo <= hi).then_some(Ports {
            lo,
            hi,
            proto: self.proto,
        })
    }
}

/// What both port specifications allow (`None`: any port): `None` when
/// nothing, `Some(p)` else.
pub fn meet(a: Option<Ports>, b: Option<Ports>) -> Option<Option<Ports>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x),
        (Some(a), Some(b)) => a.meet(&b).map(Some),
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        if self.lo == self.hi {
            write!(f, "{}/{proto}", self.lo)
        } else {
            write!(f, "{}-{}/{proto}", self.lo, self.hi)
        }
    }
}

/// Whom an entry names.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Peer {
    /// Another declared context.
    Context(String),
    /// The host's own services, on any address of the host.
    Host,
    /// An address range.
    Net(Cidr),
    /// A domain name (`*.example.com` covers its subdomains).
    Domain(String),
}

/// A source admitted by the receiver's `accept_from` for a `reach` entry
/// naming it: its sources (`None`: the sender's own) on these ports.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Admit {
    pub from: Option<Cidr>,
    pub ports: Option<Ports>,
}

/// One entry of `reach`, `accept_from` or `deny`: a peer, with the ports
/// (`None`: every port and protocol).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Reach {
    pub to: Peer,
    pub ports: Option<Ports>,
    /// `reach` of a context: that context's host-side veths (resolved by
    /// validation).
    pub links: Vec<String>,
    /// `reach` of a context: what the receiver admits of this entry
    /// (resolved by validation from its `accept_from`; without
    /// `accept_from` the entry itself).
    pub admit: Vec<Admit>,
}

impl Reach {
    pub fn new(to: Peer, ports: Option<Ports>) -> Reach {
        Reach {
            to,
            ports,
            links: Vec::new(),
            admit: Vec::new(),
        }
    }

    /// The context named, if the entry names one.
    pub fn context(&self) -> Option<&str> {
        match &self.to {
            Peer::Context(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the entry limits the world (an address range or a domain).
    pub fn is_world(&self) -> bool {
        matches!(self.to, Peer::Net(_) | Peer::Domain(_))
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            Peer::Context(c) | Peer::Domain(c) => write!(f, "{c}")?,
            Peer::Host => write!(f, "host")?,
            Peer::Net(c) if !c.is_v4() && self.ports.is_some() => write!(f, "[{c}]")?,
            Peer::Net(c) => write!(f, "{c}")?,
        }
        match &self.ports {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// `[defaults] deny` when it is not given: cloud metadata services.
pub const DEFAULT_DENY: [&str; 2] = ["169.254.0.0/16", "fd00:ec2::254/128"];

/// The name of the host's set of the addresses netctx's resolver allowed a
/// context (`CTX_dns4`, `CTX_dns6`).
pub fn dns_set(ctx: &str, v6: bool) -> String {
    format!("{ctx}_dns{}", if v6 { 6 } else { 4 })
}

/// Whether a domain entry of `reach` (`example.com`, `*.example.com`: its
/// subdomains) covers `name` (ASCII, with or without the final dot).
pub fn domain_covers(entry: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let entry = entry.trim_end_matches('.').to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(parent) => name
            .strip_suffix(parent)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => name == entry,
    }
}

impl super::Context {
    /// The entries of `reach` naming a domain.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &Reach)> {
        self.reach.iter().filter_map(|r| match &r.to {
            Peer::Domain(d) => Some((d.as_str(), r)),
            _ => None,
        })
    }

    /// Whether it needs netctx's resolver: its `reach` names a domain.
    pub fn needs_resolver(&self) -> bool {
        self.domains().next().is_some()
    }

    /// Where netctx's resolver answers it, when it needs one: the first
    /// host address of each family of its first veth.
    pub fn resolver_addrs(&self) -> Vec<std::net::IpAddr> {
        if !self.needs_resolver() {
            return Vec::new();
        }
        let Some(link) = self.links.iter().find(|l| l.kind == super::LinkKind::Veth) else {
            return Vec::new();
        };
        let v4 = link.host_addresses.iter().find(|a| a.is_v4());
        let v6 = link.host_addresses.iter().find(|a| !a.is_v4());
        v4.into_iter().chain(v6).map(|a| a.addr).collect()
    }

    /// Whether its `reach` covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.domains().any(|(d, _)| domain_covers(d, name))
    }
}

#[cfg(test)]
mod tests {
    use super::domain_covers;

    #[test]
    fn a_wildcard_covers_subdomains_only_and_names_match_whole() {
        assert!(domain_covers("api.example.com", "API.example.com."));
        assert!(!domain_covers("api.example.com", "x.api.example.com"));
        assert!(!domain_covers("api.example.com", "evilapi.example.com"));
        assert!(domain_covers("*.example.com", "a.b.example.com."));
        assert!(!domain_covers("*.example.com", "example.com"));
        assert!(!domain_covers("*.example.com", "badexample.com"));
        assert!(!domain_covers("*.example.com", "example.com.evil.net"));
    }
}
