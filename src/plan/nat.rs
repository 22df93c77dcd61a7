//! A context's NAT chains in the host's table (design §3 "Uplink"):
//! `CTX_post` masquerades its sources leaving by the uplink (`egress =
//! "nat"`); `CTX_pre` (from outside) and `CTX_out` (from the host itself)
//! DNAT its published ports to its first address of the family, the client's
//! source kept. Pure.

use super::rules::host_chain_prefix;
use crate::kernel::nft::expr::{Action, Dir, Match, Rule, IPPROTO_TCP, IPPROTO_UDP};
use crate::kernel::nft::table::{
    Chain, ChainKind, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING,
    PRIORITY_DSTNAT, PRIORITY_SRCNAT,
};
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

/// The name of the context's NAT chain `kind` (`pre`, `out`, `post`):
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
        kind: ChainKind::Nat(PRIORITY_SRCNAT),
        hooknum: NF_INET_POST_ROUTING,
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
        for (name, hooknum) in [("pre", NF_INET_PRE_ROUTING), ("out", NF_INET_LOCAL_OUT)] {
            out.push(Chain {
                name: chain_name(ctx, name),
                kind: ChainKind::Nat(PRIORITY_DSTNAT),
                hooknum,
                device: None,
                rules: dnat.clone(),
            });
        }
    }
    out
}
