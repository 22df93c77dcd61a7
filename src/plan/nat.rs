//! A context's NAT chains in the host's table (docs/uplink.md), regular
//! chains reached through the NAT dispatch's maps
//! (`kernel::nft::dispatch::nat`): `CTX_post` masquerades its sources
//! leaving by the uplink (`egress = "nat"`), from its host veths; `CTX_pre`
//! DNATs its published ports to its first address of the family, the
//! client's source kept, from outside (prerouting) and from the host itself
//! (output). Pure.

use super::rules::host_chain_prefix;
use crate::kernel::nft::dispatch::nat::NatKey;
use crate::kernel::nft::expr::{Action, Dir, Match, Rule, IPPROTO_TCP, IPPROTO_UDP};
use crate::kernel::nft::table::{Chain, ChainKind, REGULAR};
use crate::model::{max_prefix, Cidr, Context, Egress, Proto};

/// The sources a context sends from: its addresses; with `ip_forward` the
/// subnets of its links, which it routes for.
pub fn sources(ctx: &Context) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = Vec::new();
    for a in ctx.links.iter().flat_map(|l| &l.addresses) {
        let src = if ctx.ip_forward {
            a.subnet()
        } else {
            Cidr {
                addr: a.addr,
                prefix: max_prefix(a.addr),
            }
        };
        if !out.contains(&src) {
            out.push(src);
        }
    }
    out
}

/// The name of the context's NAT chain `kind` (`pre`, `post`):
/// `CTX_pre`; an attachment's, as all its chains, after its one host veth
/// (`CTX_HOST_pre`).
fn chain_name(ctx: &Context, kind: &str) -> String {
    let prefix = host_chain_prefix(&ctx.name);
    let veth = ctx.links.iter().find_map(|l| l.host.as_deref());
    match veth.filter(|_| ctx.is_attachment()) {
        Some(v) => format!("{prefix}{v}_{kind}"),
        None => format!("{prefix}{kind}"),
    }
}

/// `CTX_post`: masquerade what leaves by the uplink from the context.
fn masquerade(ctx: &Context, uplink: &str) -> Option<Chain> {
    if ctx.egress != Egress::Nat {
        return None;
    }
    let rules = sources(ctx)
        .into_iter()
        .map(|c| Rule {
            matches: vec![
                Match::OifName(uplink.to_string()),
                Match::Prefix {
                    dir: Dir::Src,
                    cidr: c,
                },
            ],
            action: Action::Masquerade,
        })
        .collect();
    Some(Chain {
        name: chain_name(ctx, "post"),
        kind: ChainKind::Filter,
        hooknum: REGULAR,
        device: None,
        rules,
    })
}

/// The DNAT rules of the context's published ports, per family.
pub fn dnat_rules(ctx: &Context) -> Vec<Rule> {
    let mut rules = Vec::new();
    for p in &ctx.publish {
        let families: &[bool] = match p.host_ip {
            Some(h) => &[h.is_ipv6()][..],
            None => &[false, true][..],
        };
        for v6 in families {
            let Some(to) = ctx.first_address(*v6) else {
                continue;
            };
            let dst = match p.host_ip {
                Some(h) if !h.is_unspecified() => Match::Prefix {
                    dir: Dir::Dst,
                    cidr: Cidr {
                        addr: h,
                        prefix: max_prefix(h),
                    },
                },
                _ => Match::LocalNotLoopback { v6: *v6 },
            };
            let proto = match p.proto {
                Proto::Tcp => IPPROTO_TCP,
                Proto::Udp => IPPROTO_UDP,
            };
            rules.push(Rule {
                matches: vec![
                    dst,
                    Match::Dport {
                        proto,
                        port: p.host_port,
                    },
                ],
                action: Action::Dnat { to, port: p.port },
            });
        }
    }
    rules
}

/// The context's NAT chains: masquerade with an uplink in use; published
/// ports (which a declared context has only with an uplink; an attachment's
/// `portMappings` also without, for the host itself).
pub fn chains(ctx: &Context) -> Vec<Chain> {
    let uplink = ctx.uplink.as_deref().filter(|_| ctx.uses_uplink());
    let mut out: Vec<Chain> = uplink
        .and_then(|u| masquerade(ctx, u))
        .into_iter()
        .collect();
    let dnat = dnat_rules(ctx);
    if !dnat.is_empty() {
        out.push(Chain {
            name: chain_name(ctx, "pre"),
            kind: ChainKind::Filter,
            hooknum: REGULAR,
            device: None,
            rules: dnat,
        });
    }
    out
}

/// The keys of the context's published ports in the NAT dispatch: a host
/// address's, or a family's (no address, or `0.0.0.0`/`[::]`).
fn publish_keys(ctx: &Context) -> Vec<NatKey> {
    let mut keys = Vec::new();
    for p in &ctx.publish {
        let proto = match p.proto {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        };
        let port = p.host_port;
        let families: &[bool] = match p.host_ip {
            Some(h) => &[h.is_ipv6()][..],
            None => &[false, true][..],
        };
        for v6 in families {
            if ctx.first_address(*v6).is_none() {
                continue;
            }
            keys.push(match p.host_ip {
                Some(addr) if !addr.is_unspecified() => NatKey::AddrPort { addr, proto, port },
                _ => NatKey::Port {
                    v6: *v6,
                    proto,
                    port,
                },
            });
        }
    }
    keys
}

/// The NAT dispatch's elements for the context, sorted: each host veth to
/// `CTX_post`, each published port's key to `CTX_pre`, when `chains` (its
/// host chains) have them.
pub fn nat_elems(ctx: &Context, chains: &[Chain]) -> Vec<(NatKey, String)> {
    let has = |n: &str| chains.iter().any(|c| c.name == n);
    let (post, pre) = (chain_name(ctx, "post"), chain_name(ctx, "pre"));
    let mut e: Vec<(NatKey, String)> = Vec::new();
    if has(&post) {
        for v in super::rules::host_veths(ctx) {
            e.push((NatKey::Iif(v), post.clone()));
        }
    }
    if has(&pre) {
        e.extend(publish_keys(ctx).into_iter().map(|k| (k, pre.clone())));
    }
    e.sort();
    e.dedup_by(|a, b| a.0 == b.0);
    e
}

/// A host socket, as far as a published port cares: protocol (`tcp` or
/// `udp`), local address and port, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSocket {
    pub proto: Proto,
    pub local: std::net::IpAddr,
    pub port: u16,
    /// `sshd (pid 812)`, or `a process` when none is known.
    pub holder: String,
}

/// The context's published ports whose host port a host service already
/// listens on (TCP) or is bound to (UDP) on an address the publish takes:
/// netctx would take the port from it (docs/coexistence.md). One
/// message each.
pub fn taken_ports(ctx: &Context, sockets: &[HostSocket]) -> Vec<String> {
    let mut out = Vec::new();
    for p in &ctx.publish {
        let hit = sockets.iter().find(|s| {
            let addr_hit = s.local.is_unspecified()
                || match p.host_ip {
                    None => !s.local.is_loopback(),
                    Some(h) if h.is_unspecified() => {
                        h.is_ipv4() == s.local.is_ipv4() && !s.local.is_loopback()
                    }
                    Some(h) => h == s.local,
                };
            s.proto == p.proto && s.port == p.host_port && addr_hit
        });
        if let Some(s) = hit {
            out.push(format!(
                "publish {p}: host port {}/{} is taken by {} listening on {}; netctx would take \
                 it from that service (choose another host port, or give the publish a host \
                 address the service does not use)",
                p.host_port,
                if p.proto == Proto::Udp { "udp" } else { "tcp" },
                s.holder,
                s.local
            ));
        }
    }
    out
}

#[cfg(test)]
mod taken_tests {
    use super::*;
    use crate::model::Publish;

    #[test]
    fn a_port_a_host_service_holds_is_taken_on_the_addresses_the_publish_covers() {
        let mut ctx = crate::config::load_sources(&[(
            std::path::PathBuf::from("t.toml"),
            "[context.web]\nuplink = \"up0\"\n[[context.web.link]]\nkind = \"veth\"\nname = \"eth0\"\naddresses = [\"10.9.0.2/24\"]\n".into(),
        )])
        .unwrap()
        .contexts[0]
            .clone();
        let publish = |host_ip: Option<&str>, port| Publish {
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: port,
            port: 80,
            proto: Proto::Tcp,
        };
        let sshd = |local: &str| HostSocket {
            proto: Proto::Tcp,
            local: local.parse().unwrap(),
            port: 9022,
            holder: "sshd (pid 812)".into(),
        };
        ctx.publish = vec![publish(None, 9022)];
        let m = taken_ports(&ctx, &[sshd("0.0.0.0")]);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("9022/tcp is taken by sshd (pid 812) listening on 0.0.0.0"),
            "{m:?}"
        );
        assert_eq!(taken_ports(&ctx, &[sshd("203.0.113.1")]).len(), 1);
        // Loopback is not published; another port or protocol is free.
        assert!(taken_ports(&ctx, &[sshd("127.0.0.1")]).is_empty());
        ctx.publish = vec![publish(None, 9023)];
        assert!(taken_ports(&ctx, &[sshd("0.0.0.0")]).is_empty());
        // An explicit host address: only that address (or a wildcard).
        ctx.publish = vec![publish(Some("198.51.100.1"), 9022)];
        assert!(taken_ports(&ctx, &[sshd("203.0.113.1")]).is_empty());
        assert_eq!(taken_ports(&ctx, &[sshd("::")]).len(), 1);
    }
}
