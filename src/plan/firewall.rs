//! The host's own firewall against netctx's (docs/coexistence.md). An
//! nftables `accept` is final only in its own table: a drop in any other
//! base chain on the same hook still drops. This judges every foreign
//! filter base chain on the hooks netctx's traffic passes for the packets
//! netctx's chains accept, and names every policy and rule that would drop
//! or reject them:
//!
//! - forward: in by or out of a netctx link or an uplink, carrying netctx's
//!   mark (`rules::FORWARD_MARK`) after netctx's dispatch;
//! - prerouting: in by a netctx link or an uplink;
//! - input: from a context to the host (in by a netctx link);
//! - output: from the host to a context (out by a netctx link);
//! - postrouting: out by a netctx link or an uplink.
//!
//! On input and output, where a host's own policy is expected to be strict
//! (ufw's, firewalld's), only a drop that is certain counts: one that an
//! earlier rule might have accepted first (a match the judgement cannot
//! read: a port, a conntrack state) is left out. Pure.

use crate::kernel::nft::dispatch::DISPATCH_PRIORITY;
use crate::observe::firewall::{Expr, ForeignChain, Load, Verdict};
use crate::observe::legacy::Legacy;

use crate::kernel::nft::table::{
    NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING,
};
/// Docker's chain for other tools' rules (in `ip filter` and `ip6 filter`).
pub const DOCKER_USER: &str = "DOCKER-USER";
/// The comment on netctx's rule in `DOCKER-USER`.
pub const DOCKER_USER_COMMENT: &str = "netctx";

/// A foreign chain that would drop netctx's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `ip filter FORWARD`.
    pub chain: String,
    /// `policy drop`, or `rule 12 (handle) drops …`.
    pub what: String,
    /// The chain's hook (NF_INET_*).
    pub hook: u32,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.chain;
        let (drops, remedy) = match self.hook {
            NF_INET_FORWARD => (
                "forwarded traffic netctx accepts".to_string(),
                format!(
                    "accept netctx's mark first in that chain, `nft insert rule {c} meta mark and \
                     {m:#x} == {m:#x} accept`; with Docker, netctx keeps that rule in DOCKER-USER \
                     itself",
                    m = super::rules::FORWARD_MARK
                ),
            ),
            NF_INET_LOCAL_IN => (
                "what contexts send to the host (ICMP echo to their host side, the host \
                 services their reach names)"
                    .to_string(),
                format!(
                    "accept netctx's links first in that chain, `nft insert rule {c} iifname \
                     \"nx-*\" accept`: netctx's own chains judge what contexts may send"
                ),
            ),
            NF_INET_LOCAL_OUT => (
                "what the host sends to contexts".to_string(),
                format!("accept it first, `nft insert rule {c} oifname \"nx-*\" accept`"),
            ),
            NF_INET_PRE_ROUTING => (
                "packets from contexts and to published ports before netctx judges them".into(),
                format!(
                    "accept netctx's links first, `nft insert rule {c} iifname \"nx-*\" accept`, \
                     and the published ports from the uplink"
                ),
            ),
            _ => (
                "packets netctx sends on to contexts and the uplink".to_string(),
                format!("accept them first, `nft insert rule {c} oifname \"nx-*\" accept`"),
            ),
        };
        write!(
            f,
            "host firewall: {c} {}: it drops {drops} (remedy: {remedy})",
            self.what
        )
    }
}

/// The packets judged on one hook: their input and output interfaces (a
/// set of names, `""` for none; `None`: any), their mark, and whether only
/// a certain drop counts.
struct Packets<'a> {
    iif: Option<&'a [String]>,
    oif: Option<&'a [String]>,
    mark: u32,
    certain_only: bool,
}

/// Whether a condition holds for netctx's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Always,
    Never,
    /// For some of netctx's packets (by interface), surely.
    Part,
    /// Unknown (a match the judgement cannot read).
    Maybe,
}

impl Truth {
    fn and(self, o: Truth) -> Truth {
        match (self, o) {
            (Truth::Never, _) | (_, Truth::Never) => Truth::Never,
            (Truth::Always, t) | (t, Truth::Always) => t,
            _ => Truth::Maybe,
        }
    }
}

/// What a register holds, as far as netctx's packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reg {
    Iif,
    Oif,
    /// The mark with `mask` applied and `xor` (None: unmasked).
    Mark(Option<(u32, u32)>),
    Unknown,
}

fn u32_ne(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// Whether interface name `name` matches the compared bytes (a whole name
/// NUL-padded, or a prefix: iptables' `eth+`).
fn name_matches(name: &str, data: &[u8]) -> bool {
    let n = name.as_bytes();
    let end = data.iter().position(|b| *b == 0);
    match end {
        Some(e) => &data[..e] == n,
        None => n.starts_with(data),
    }
}

/// The truth of one comparison of `reg` for the packets `p`.
fn compare(reg: &Reg, op: u32, data: &[u8], p: &Packets) -> Truth {
    let names = |ifaces: Option<&[String]>| match ifaces {
        None => Truth::Maybe,
        Some(ifaces) => match ifaces.iter().filter(|i| name_matches(i, data)).count() {
            0 => Truth::Never,
            n if n == ifaces.len() => Truth::Always,
            _ => Truth::Part,
        },
    };
    let mark = p.mark;
    let truth = match reg {
        Reg::Iif => names(p.iif),
        Reg::Oif => names(p.oif),
        Reg::Mark(Some((mask, xor))) if mask & !mark == 0 => {
            // Only netctx's bit survives the mask: the value is known.
            match u32_ne(data) {
                Some(d) if d == (mark & mask) ^ xor => Truth::Always,
                Some(_) => Truth::Never,
                None => Truth::Maybe,
            }
        }
        _ => Truth::Maybe,
    };
    match (op, truth) {
        (0, t) => t,
        (1, Truth::Always) => Truth::Never,
        (1, Truth::Never) => Truth::Always,
        (1, Truth::Part) => Truth::Part,
        _ => Truth::Maybe,
    }
}

/// Whether the rule's matches hold for netctx's packets, and its verdict.
fn rule_truth<'a>(exprs: &'a [Expr], p: &Packets) -> (Truth, Option<&'a Verdict>) {
    let mut regs: std::collections::HashMap<u32, Reg> = std::collections::HashMap::new();
    let mut t = Truth::Always;
    let mut verdict = None;
    for e in exprs {
        match e {
            Expr::Load { dreg, what } => {
                let r = match what {
                    Load::IifName => Reg::Iif,
                    Load::OifName => Reg::Oif,
                    Load::Mark => Reg::Mark(None),
                    Load::Other(_) => Reg::Unknown,
                };
                regs.insert(*dreg, r);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                let r = match (regs.get(sreg), u32_ne(mask), u32_ne(xor)) {
                    (Some(Reg::Mark(None)), Some(m), Some(x)) => Reg::Mark(Some((m, x))),
                    _ => Reg::Unknown,
                };
                regs.insert(*dreg, r);
            }
            Expr::Cmp { sreg, op, data } => {
                let r = regs.get(sreg).cloned().unwrap_or(Reg::Unknown);
                t = t.and(compare(&r, *op, data, p));
            }
            Expr::Lookup | Expr::Unknown(_) => t = t.and(Truth::Maybe),
            Expr::Verdict(v) => verdict = Some(v),
            Expr::Statement(_) => {}
        }
    }
    (t, verdict)
}

/// How a walk through a chain ends for netctx's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Accepted,
    /// Back to the caller (or the policy, for a base chain); `open`: some
    /// of the packets may have been accepted on the way.
    Through {
        open: bool,
    },
    /// `certain`: all of them, no rule before might have accepted some.
    Dropped {
        what: String,
        certain: bool,
    },
}

fn walk(c: &ForeignChain, all: &[ForeignChain], p: &Packets, depth: u8) -> End {
    if depth > 16 {
        return End::Through { open: true };
    }
    let callee = |name: &str| {
        all.iter()
            .find(|o| o.family == c.family && o.table == c.table && o.name == name)
    };
    let mut open = false;
    for (i, r) in c.rules.iter().enumerate() {
        let (t, v) = rule_truth(&r.exprs, p);
        if t == Truth::Never {
            continue;
        }
        // `may`: not all of netctx's packets; `unsure`: not known.
        let may = t != Truth::Always;
        let unsure = t == Truth::Maybe;
        let what = || format!("rule {} (handle {})", i + 1, r.handle);
        let says =
            |sure: &str, maybe: &str| format!("{} {}", what(), if may { maybe } else { sure });
        let dropped = |what: String| End::Dropped {
            what,
            certain: !unsure && !open,
        };
        match v {
            Some(Verdict::Accept) if !may => return End::Accepted,
            Some(Verdict::Accept) | Some(Verdict::Other(_)) => open = true,
            Some(Verdict::Drop) => return dropped(says("drops", "may drop")),
            Some(Verdict::Reject) => return dropped(says("rejects", "may reject")),
            Some(Verdict::Jump(n)) | Some(Verdict::Goto(n)) => {
                let Some(sub) = callee(n) else { continue };
                match walk(sub, all, p, depth + 1) {
                    End::Accepted if !may => return End::Accepted,
                    End::Accepted => open = true,
                    End::Dropped { what: w, certain } if may => {
                        return End::Dropped {
                            what: format!("{} may go to {n}, whose {w}", what()),
                            certain: certain && !unsure && !open,
                        };
                    }
                    End::Dropped { what: w, certain } => {
                        return End::Dropped {
                            what: format!("{}: {n} {w}", what()),
                            certain: certain && !open,
                        };
                    }
                    End::Through { open: o } => {
                        open |= o;
                        if matches!(v, Some(Verdict::Goto(_))) && !may {
                            return End::Through { open };
                        }
                    }
                }
            }
            Some(Verdict::Return) if !may => return End::Through { open },
            _ => {}
        }
    }
    End::Through { open }
}

/// Every foreign filter base chain on a hook netctx's traffic passes that
/// would drop or reject it. `forwarding`: the host links and uplinks of
/// what netctx forwards; `links`: every host link of netctx's.
pub fn findings(chains: &[ForeignChain], forwarding: &[String], links: &[String]) -> Vec<Finding> {
    let none = [String::new()];
    let mut both: Vec<String> = forwarding.iter().chain(links).cloned().collect();
    both.sort();
    both.dedup();
    let mut out = Vec::new();
    for c in chains {
        let Some((hook, prio, kind)) = &c.hook else {
            continue;
        };
        if kind != "filter" && kind != "route" {
            continue;
        }
        let (iif, oif, certain_only) = match *hook {
            NF_INET_FORWARD if !forwarding.is_empty() => {
                (Some(forwarding), Some(forwarding), false)
            }
            NF_INET_PRE_ROUTING if !both.is_empty() => (Some(&both[..]), Some(&none[..]), true),
            NF_INET_LOCAL_IN if !links.is_empty() => (Some(links), Some(&none[..]), true),
            NF_INET_LOCAL_OUT if !links.is_empty() => (Some(&none[..]), Some(links), true),
            NF_INET_POST_ROUTING if !both.is_empty() => (None, Some(&both[..]), true),
            _ => continue,
        };
        // Only forward's packets carry the mark, from netctx's dispatch on:
        // a chain that runs before it sees none yet.
        let marked = *hook == NF_INET_FORWARD && *prio > DISPATCH_PRIORITY;
        let p = Packets {
            iif,
            oif,
            mark: if marked {
                super::rules::FORWARD_MARK
            } else {
                0
            },
            certain_only,
        };
        let what = match walk(c, chains, &p, 0) {
            End::Accepted => continue,
            End::Dropped { what, certain } if certain || !p.certain_only => what,
            End::Through { open } if c.policy_drop && !(open && p.certain_only) => {
                "has policy drop".to_string()
            }
            _ => continue,
        };
        out.push(Finding {
            chain: c.title(),
            what,
            hook: *hook,
        });
    }
    out
}

/// iptables' name of a hook's chain.
fn chain_name(hook: u32) -> &'static str {
    match hook {
        NF_INET_PRE_ROUTING => "PREROUTING",
        NF_INET_LOCAL_IN => "INPUT",
        NF_INET_FORWARD => "FORWARD",
        NF_INET_LOCAL_OUT => "OUTPUT",
        _ => "POSTROUTING",
    }
}

/// What iptables-legacy's chains would do to netctx's traffic, as far as
/// their shape tells (their rules are not read, but for one form): a
/// forward chain whose first rule accepts netctx's mark lets it through; a
/// policy drop on a chain without rules is certain on every hook; on
/// forward, any other rule is an unknown that is reported as such; on the
/// other hooks, rules before a policy are the host's own business (as for
/// nf_tables). A table that could not be read is unknown. `forwarding` and
/// `links` as for `findings`.
pub fn legacy_findings(tables: &[Legacy], forwarding: &[String], links: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let remedy = "move the host's rules to iptables-nft, which netctx can judge";
    for t in tables {
        let c = match t {
            Legacy::Unreadable {
                family,
                table,
                error,
            } if !forwarding.is_empty() || !links.is_empty() => {
                out.push(format!(
                    "host firewall: iptables-legacy table {family} {table} could not be read \
                     ({error}): whether it drops netctx's traffic is unknown (remedy: {remedy})"
                ));
                continue;
            }
            Legacy::Chain(c) => c,
            Legacy::Unreadable { .. } => continue,
        };
        let ours = if c.hook == NF_INET_FORWARD {
            forwarding
        } else {
            links
        };
        let marked =
            c.hook == NF_INET_FORWARD && c.first_accepts_mark == Some(super::rules::FORWARD_MARK);
        if ours.is_empty() || marked {
            continue;
        }
        let name = format!(
            "iptables-legacy {} {} {}",
            c.family,
            c.table,
            chain_name(c.hook)
        );
        let tool = if c.family == "ip6" {
            "ip6tables-legacy"
        } else {
            "iptables-legacy"
        };
        let first = match c.hook {
            NF_INET_FORWARD => format!(
                "`{tool} -t {} -I FORWARD -m mark --mark {m:#x}/{m:#x} -j ACCEPT`",
                c.table,
                m = super::rules::FORWARD_MARK
            ),
            NF_INET_LOCAL_OUT | NF_INET_POST_ROUTING => format!(
                "`{tool} -t {} -I {} -o nx-+ -j ACCEPT`",
                c.table,
                chain_name(c.hook)
            ),
            _ => format!(
                "`{tool} -t {} -I {} -i nx-+ -j ACCEPT`",
                c.table,
                chain_name(c.hook)
            ),
        };
        if c.rules == 0 && c.policy_drop {
            out.push(format!(
                "host firewall: {name} has policy drop: it drops netctx's traffic (remedy: {remedy}, \
                 or accept it first, {first})"
            ));
        } else if c.rules > 0 && c.hook == NF_INET_FORWARD {
            out.push(format!(
                "host firewall: {name} holds {} rule(s){}: whether they drop what netctx forwards \
                 is unknown (remedy: {remedy}, or accept netctx's mark first, {first})",
                c.rules,
                if c.policy_drop {
                    " and policy drop"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

/// Whether a rule is netctx's in `DOCKER-USER`: accept netctx's mark
/// (what `iptables -S` lists as `-m mark --mark M/M -j ACCEPT`).
pub fn is_docker_user_rule(exprs: &[Expr]) -> bool {
    let p = Packets {
        iif: Some(&[]),
        oif: Some(&[]),
        mark: super::rules::FORWARD_MARK,
        certain_only: false,
    };
    let (t, v) = rule_truth(exprs, &p);
    let loads_mark = exprs.iter().any(|e| {
        matches!(
            e,
            Expr::Load {
                what: Load::Mark,
                ..
            }
        )
    });
    t == Truth::Always && loads_mark && v == Some(&Verdict::Accept)
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
