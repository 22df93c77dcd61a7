//! The host's own firewall against netctx's (docs/coexistence.md). An
//! nftables `accept` is final only in its own table: a drop in any other
//! base chain on the same hook still drops. This
//! judges every foreign base chain of the forward hook for the packets
//! netctx's chains accept — in by or out of a netctx link or an uplink,
//! carrying netctx's mark (`rules::FORWARD_MARK`) — and names every policy
//! and rule that would drop or reject them. Pure.

use crate::kernel::nft::dispatch::DISPATCH_PRIORITY;
use crate::observe::firewall::{Expr, ForeignChain, Load, Verdict};

/// NF_INET_FORWARD.
const HOOK_FORWARD: u32 = 2;
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
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host firewall: {} {}: it drops forwarded traffic netctx accepts (remedy: accept \
             netctx's mark first in that chain, `nft insert rule {} meta mark and {m:#x} == {m:#x} \
             accept`; with Docker, netctx keeps that rule in DOCKER-USER itself)",
            self.chain,
            self.what,
            self.chain,
            m = super::rules::FORWARD_MARK
        )
    }
}

/// Whether a condition holds for netctx's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Always,
    Never,
    Maybe,
}

impl Truth {
    fn and(self, o: Truth) -> Truth {
        match (self, o) {
            (Truth::Never, _) | (_, Truth::Never) => Truth::Never,
            (Truth::Always, Truth::Always) => Truth::Always,
            _ => Truth::Maybe,
        }
    }
}

/// What a register holds, as far as netctx's packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reg {
    Name,
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

/// The truth of one comparison of `reg` for netctx's packets, whose
/// interfaces are `ifaces` and whose mark has `mark` set.
fn compare(reg: &Reg, op: u32, data: &[u8], ifaces: &[String], mark: u32) -> Truth {
    let truth = match reg {
        Reg::Name => {
            let hits = ifaces.iter().filter(|i| name_matches(i, data)).count();
            match hits {
                0 => Truth::Never,
                n if n == ifaces.len() => Truth::Always,
                _ => Truth::Maybe,
            }
        }
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
        _ => Truth::Maybe,
    }
}

/// Whether the rule's matches hold for netctx's packets, and its verdict.
fn rule_truth<'a>(exprs: &'a [Expr], ifaces: &[String], mark: u32) -> (Truth, Option<&'a Verdict>) {
    let mut regs: std::collections::HashMap<u32, Reg> = std::collections::HashMap::new();
    let mut t = Truth::Always;
    let mut verdict = None;
    for e in exprs {
        match e {
            Expr::Load { dreg, what } => {
                let r = match what {
                    Load::IifName | Load::OifName => Reg::Name,
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
                t = t.and(compare(&r, *op, data, ifaces, mark));
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
    /// Back to the caller (or the policy, for a base chain).
    Through,
    Dropped(String),
}

fn walk(c: &ForeignChain, all: &[ForeignChain], ifaces: &[String], mark: u32, depth: u8) -> End {
    if depth > 16 {
        return End::Through;
    }
    let callee = |name: &str| {
        all.iter()
            .find(|o| o.family == c.family && o.table == c.table && o.name == name)
    };
    for (i, r) in c.rules.iter().enumerate() {
        let (t, v) = rule_truth(&r.exprs, ifaces, mark);
        if t == Truth::Never {
            continue;
        }
        let may = t == Truth::Maybe;
        let what = || format!("rule {} (handle {})", i + 1, r.handle);
        let says =
            |sure: &str, maybe: &str| format!("{} {}", what(), if may { maybe } else { sure });
        match v {
            Some(Verdict::Accept) if t == Truth::Always => return End::Accepted,
            Some(Verdict::Drop) => return End::Dropped(says("drops", "may drop")),
            Some(Verdict::Reject) => return End::Dropped(says("rejects", "may reject")),
            Some(Verdict::Jump(n)) | Some(Verdict::Goto(n)) => {
                let Some(sub) = callee(n) else { continue };
                match walk(sub, all, ifaces, mark, depth + 1) {
                    End::Accepted if t == Truth::Always => return End::Accepted,
                    End::Dropped(w) if may => {
                        return End::Dropped(format!("{} may go to {n}, whose {w}", what()));
                    }
                    End::Dropped(w) => {
                        return End::Dropped(format!("{}: {n} {w}", what()));
                    }
                    _ if matches!(v, Some(Verdict::Goto(_))) && t == Truth::Always => {
                        return End::Through
                    }
                    _ => {}
                }
            }
            Some(Verdict::Return) if t == Truth::Always => return End::Through,
            _ => {}
        }
    }
    End::Through
}

/// Every foreign base chain on the forward hook (type filter) that would
/// drop or reject netctx's forwarded packets. `ifaces`: netctx's host links
/// and uplinks.
pub fn findings(chains: &[ForeignChain], ifaces: &[String]) -> Vec<Finding> {
    let mark = super::rules::FORWARD_MARK;
    let mut out = Vec::new();
    if ifaces.is_empty() {
        return out;
    }
    for c in chains {
        let Some((hook, prio, kind)) = &c.hook else {
            continue;
        };
        if *hook != HOOK_FORWARD || kind != "filter" {
            continue;
        }
        // A chain that runs before netctx's dispatch sees no mark yet.
        let mark = if *prio > DISPATCH_PRIORITY { mark } else { 0 };
        match walk(c, chains, ifaces, mark, 0) {
            End::Accepted => {}
            End::Dropped(what) => out.push(Finding {
                chain: c.title(),
                what,
            }),
            End::Through if c.policy_drop => out.push(Finding {
                chain: c.title(),
                what: "has policy drop".into(),
            }),
            End::Through => {}
        }
    }
    out
}

/// Whether a rule is netctx's in `DOCKER-USER`: accept netctx's mark
/// (what `iptables -S` lists as `-m mark --mark M/M -j ACCEPT`).
pub fn is_docker_user_rule(exprs: &[Expr]) -> bool {
    let mark = super::rules::FORWARD_MARK;
    let (t, v) = rule_truth(exprs, &[], mark);
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
mod tests {
    use super::*;
    use crate::observe::firewall::{ForeignRule, NFPROTO_IPV4};

    fn chain(name: &str, hook: Option<u32>, drop: bool, rules: Vec<Vec<Expr>>) -> ForeignChain {
        ForeignChain {
            family: NFPROTO_IPV4,
            table: "filter".into(),
            name: name.into(),
            hook: hook.map(|h| (h, 0, "filter".to_string())),
            policy_drop: drop,
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(i, exprs)| ForeignRule {
                    handle: i as u64 + 2,
                    exprs,
                    comment: None,
                })
                .collect(),
        }
    }

    fn name(n: &str) -> Vec<u8> {
        let mut v = n.as_bytes().to_vec();
        v.resize(16, 0);
        v
    }

    fn iif(n: &str) -> Vec<Expr> {
        vec![
            Expr::Load {
                dreg: 1,
                what: Load::IifName,
            },
            Expr::Cmp {
                sreg: 1,
                op: 0,
                data: name(n),
            },
        ]
    }

    fn mark_rule() -> Vec<Expr> {
        let m = super::super::rules::FORWARD_MARK;
        vec![
            Expr::Load {
                dreg: 1,
                what: Load::Mark,
            },
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                mask: m.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp {
                sreg: 1,
                op: 0,
                data: m.to_ne_bytes().to_vec(),
            },
            Expr::Statement("counter".into()),
            Expr::Verdict(Verdict::Accept),
        ]
    }

    fn with(mut e: Vec<Expr>, v: Verdict) -> Vec<Expr> {
        e.push(Expr::Verdict(v));
        e
    }

    fn ifaces() -> Vec<String> {
        vec!["nx-web".into(), "up0".into()]
    }

    #[test]
    fn dockers_layout_drops_until_netctx_has_its_rule_in_docker_user() {
        let jump = vec![Expr::Verdict(Verdict::Jump(DOCKER_USER.into()))];
        let docker0 = with(iif("docker0"), Verdict::Accept);
        let forward = chain("FORWARD", Some(2), true, vec![jump, docker0]);
        let empty_user = chain(DOCKER_USER, None, false, vec![]);
        let f = findings(&[forward.clone(), empty_user], &ifaces());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].chain, "ip filter FORWARD");
        assert_eq!(f[0].what, "has policy drop");
        let user = chain(DOCKER_USER, None, false, vec![mark_rule()]);
        assert!(is_docker_user_rule(&user.rules[0].exprs));
        assert!(findings(&[forward, user], &ifaces()).is_empty());
    }

    #[test]
    fn rules_are_judged_by_interface_and_unknown_matches_may_drop() {
        // firewalld-like: reject what is not from its zones.
        let other = with(iif("eth9"), Verdict::Reject);
        let c = chain("filter_FORWARD", Some(2), false, vec![other]);
        assert!(findings(std::slice::from_ref(&c), &ifaces()).is_empty());
        let ours = with(iif("nx-web"), Verdict::Drop);
        let c = chain("fw", Some(2), false, vec![ours]);
        let f = findings(&[c], &ifaces());
        assert_eq!(f[0].what, "rule 1 (handle 2) may drop");
        // iptables' `-i nx-+`: a prefix, not NUL-padded.
        let mut prefix = iif("x");
        prefix[1] = Expr::Cmp {
            sreg: 1,
            op: 0,
            data: b"nx-".to_vec(),
        };
        let all = with(prefix, Verdict::Drop);
        let c = chain("fw", Some(2), false, vec![all]);
        assert_eq!(
            findings(&[c], &["nx-web".into()])[0].what,
            "rule 1 (handle 2) drops"
        );
        let unknown = vec![Expr::Lookup, Expr::Verdict(Verdict::Reject)];
        let c = chain("fw", Some(2), false, vec![unknown]);
        assert_eq!(
            findings(&[c], &ifaces())[0].what,
            "rule 1 (handle 2) may reject"
        );
        // An unconditional accept first settles it; a non-forward or a
        // nat chain is not judged.
        let c = chain(
            "fw",
            Some(2),
            true,
            vec![vec![Expr::Verdict(Verdict::Accept)]],
        );
        assert!(findings(&[c], &ifaces()).is_empty());
        let c = chain("INPUT", Some(1), true, vec![]);
        assert!(findings(&[c], &ifaces()).is_empty());
    }

    #[test]
    fn a_chain_before_netctxs_dispatch_sees_no_mark() {
        let mut early = chain("early", Some(2), true, vec![mark_rule()]);
        early.hook = Some((2, -100, "filter".into()));
        let f = findings(&[early], &ifaces());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].what, "has policy drop");
    }

    #[test]
    fn iptables_wildcards_match_by_prefix() {
        assert!(name_matches("nx-web", b"nx-"));
        assert!(!name_matches("up0", b"nx-"));
        assert!(name_matches("up0", &name("up0")));
        assert!(!name_matches("up01", &name("up0")));
    }
}
