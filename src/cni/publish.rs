//! `runtimeConfig.portMappings` published by netctx itself (design §5:
//! "portMappings as publish"): two nat chains per attachment in the host's
//! table `inet netctx`, `CTX_HOST_pre` (prerouting, for the LAN) and
//! `CTX_HOST_out` (output, for the host itself), each DNATing HOSTPORT on
//! HOSTIP (default: every local address but loopback) to the container's
//! first address of that family on its port, the client's source kept.
//! Loopback host addresses need source translation and are left to the
//! `portmap` plugin. Pure: the rules are `kernel::nft::expr`'s (as a
//! declared context's `publish`), encoded as `nft` encodes them.

use std::net::IpAddr;

use super::config::PortMapping;
use super::naming::fnv1a;
use crate::kernel::nft::expr::{Action, Dir, Match, Rule};
use crate::kernel::nft::table::{
    Digest, NF_INET_LOCAL_OUT as HOOK_OUTPUT, NF_INET_PRE_ROUTING as HOOK_PREROUTING,
    PRIORITY_DSTNAT, TABLE,
};
use crate::kernel::nft::wire::{
    attr, comment_udata, msg, Attrs, Msg, NLA_F_NESTED, NLM_F_APPEND, NLM_F_CREATE,
};
use crate::model::{max_prefix, Cidr};

/// One DNAT: `[HOSTIP] PROTO dport HOSTPORT` to `TO:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub proto: u8,
    /// `None`: every local address of the family but loopback.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub to: IpAddr,
    pub port: u16,
}

/// The DNATs of the mappings, and the mappings netctx leaves alone (with
/// why).
pub fn plan(mappings: &[PortMapping], addresses: &[IpAddr]) -> (Vec<Dnat>, Vec<String>) {
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for m in mappings {
        let proto = if m.protocol == "udp" { 17 } else { 6 };
        let host: Option<IpAddr> = m.host_ip.parse().ok();
        if host.is_some_and(|h| h.is_loopback()) {
            skipped.push(format!(
                "{} (loopback: chain the portmap plugin)",
                m.publish()
            ));
            continue;
        }
        let families: &[bool] = match host {
            Some(h) => &[h.is_ipv6()][..],
            None => &[false, true][..],
        };
        let mut any = false;
        for v6 in families {
            let Some(to) = addresses.iter().find(|a| a.is_ipv6() == *v6) else {
                continue;
            };
            any = true;
            out.push(Dnat {
                proto,
                host_ip: host.filter(|h| !h.is_unspecified()),
                host_port: m.host_port,
                to: *to,
                port: m.container_port,
            });
        }
        if !any {
            skipped.push(format!(
                "{} (the container has no address of that family)",
                m.publish()
            ));
        }
    }
    (out, skipped)
}

impl Dnat {
    /// The rule, with the expressions of `kernel::nft::expr` (as `publish`
    /// of a declared context uses them).
    pub fn rule(&self) -> Rule {
        let v6 = self.to.is_ipv6();
        let dst = match self.host_ip {
            Some(ip) => Match::Prefix {
                dir: Dir::Dst,
                cidr: Cidr {
                    addr: ip,
                    prefix: max_prefix(ip),
                },
            },
            None => Match::LocalNotLoopback { v6 },
        };
        Rule {
            matches: vec![
                dst,
                Match::Dport {
                    proto: self.proto,
                    port: self.host_port,
                },
            ],
            action: Action::Dnat {
                to: self.to,
                port: self.port,
            },
        }
    }

    /// The NFTA_RULE_EXPRESSIONS payload.
    pub fn encode(&self) -> Attrs {
        self.rule().encode()
    }

    /// In `nft` syntax.
    #[cfg(test)]
    pub fn render(&self) -> String {
        self.rule().render()
    }
}

/// The comment a DNAT rule carries: a digest of its chain and expressions.
fn comment(chain: &str, d: &Dnat) -> String {
    format!("netctx:{:016x}", fnv1a(&[chain.as_bytes(), &d.encode().0]))
}

/// The chains' names and hooks for attachment `ctx` with host link `host`.
pub fn chain_names(ctx: &str, host: &str) -> [(String, u32); 2] {
    [
        (format!("{ctx}_{host}_pre"), HOOK_PREROUTING),
        (format!("{ctx}_{host}_out"), HOOK_OUTPUT),
    ]
}

/// Messages creating the two chains with their rules (none without DNATs).
pub fn msgs(ctx: &str, host: &str, dnats: &[Dnat]) -> Vec<Msg> {
    let mut out = Vec::new();
    if dnats.is_empty() {
        return out;
    }
    for (name, hook) in chain_names(ctx, host) {
        let mut a = Attrs::default();
        a.str(attr::CHAIN_TABLE, TABLE)
            .str(attr::CHAIN_NAME, &name)
            .str(attr::CHAIN_TYPE, "nat")
            .be32(attr::CHAIN_POLICY, 1)
            .nested(attr::CHAIN_HOOK, |h| {
                h.be32(attr::HOOK_HOOKNUM, hook).be32(
                    attr::HOOK_PRIORITY,
                    u32::from_ne_bytes(PRIORITY_DSTNAT.to_ne_bytes()),
                );
            });
        out.push(Msg::new(msg::NEWCHAIN, NLM_F_CREATE, a));
        for d in dnats {
            let mut a = Attrs::default();
            a.str(attr::RULE_TABLE, TABLE)
                .str(attr::RULE_CHAIN, &name)
                .bytes(attr::RULE_EXPRESSIONS | NLA_F_NESTED, &d.encode().0)
                .bytes(attr::RULE_USERDATA, &comment_udata(&comment(&name, d)));
            out.push(Msg::new(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a));
        }
    }
    out
}

/// What the kernel should read back for these chains, added to `d`.
pub fn add_digest(ctx: &str, host: &str, dnats: &[Dnat], d: &mut Digest) {
    if dnats.is_empty() {
        return;
    }
    for (name, hook) in chain_names(ctx, host) {
        d.chains.push((name.clone(), hook));
        for x in dnats {
            d.rules.push((name.clone(), comment(&name, x)));
        }
    }
    d.normalize();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(host_ip: &str, hp: u16, cp: u16, proto: &str) -> PortMapping {
        PortMapping {
            host_port: hp,
            container_port: cp,
            protocol: proto.into(),
            host_ip: host_ip.into(),
        }
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn mappings_by_family_and_loopback_left_to_portmap() {
        let addrs = ips(&["10.89.0.2", "2001:db8::2"]);
        let (d, skipped) = plan(
            &[
                pm("", 8080, 80, "tcp"),
                pm("203.0.113.1", 8443, 443, "tcp"),
                pm("::", 5353, 53, "udp"),
                pm("127.0.0.1", 18080, 80, "tcp"),
            ],
            &addrs,
        );
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(
            d[0].render(),
            "meta nfproto ipv4 fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.89.0.2:80"
        );
        assert_eq!(
            d[1].render(),
            "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [2001:db8::2]:80"
        );
        assert_eq!(
            d[2].render(),
            "meta nfproto ipv4 ip daddr 203.0.113.1 tcp dport 8443 dnat ip to 10.89.0.2:443"
        );
        assert_eq!(
            d[3].render(),
            "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 udp dport 5353 dnat ip6 to [2001:db8::2]:53"
        );
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("127.0.0.1:18080:80/tcp"));
        let (d, skipped) = plan(&[pm("2001:db8::1", 1, 2, "tcp")], &ips(&["10.89.0.2"]));
        assert!(d.is_empty() && skipped[0].contains("no address of that family"));
    }

    #[test]
    fn encoding_has_the_nat_expression_and_the_ports() {
        let d = Dnat {
            proto: 6,
            host_ip: None,
            host_port: 8080,
            to: "10.89.0.2".parse().unwrap(),
            port: 80,
        };
        let b = d.encode().0;
        let find = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"nat\0") && find(b"fib\0") && find(b"immediate\0"));
        assert!(find(&8080u16.to_be_bytes()) && find(&[10, 89, 0, 2]));
        let m = msgs("cni581f55db", "nxc373c8553bcbe", std::slice::from_ref(&d));
        assert_eq!(m.len(), 4);
        let mut dg = Digest::default();
        add_digest("cni581f55db", "nxc373c8553bcbe", &[d], &mut dg);
        assert_eq!(dg.chains.len(), 2);
        assert_eq!(dg.rules.len(), 2);
        assert!(msgs("c", "h", &[]).is_empty());
    }
}
