//! `netctx explain`'s tracing table: `inet netctx-explain`, owned by the
//! netlink socket that makes it (NFT_TABLE_F_OWNER: the kernel removes it
//! when that socket closes, so a crash leaves nothing), with a chain on
//! prerouting and one on output ahead of every other (priority -400) that
//! sets `meta nftrace` on the probe's packets: every chain the kernel walks
//! them through then reports itself (NFT_MSG_TRACE). For a probe from a
//! source that is not the host's, the prerouting chain also traces the
//! answers to that source, and a chain on forward stops them: they must not
//! leave the host.

use super::expr::{Action, Match, Rule};
use super::table::{NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_PRE_ROUTING};
use super::wire::{attr, msg, Attrs, Msg, NLA_F_NESTED};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};

pub const EXPLAIN_TABLE: &str = "netctx-explain";
/// NFT_TABLE_F_OWNER.
const TABLE_F_OWNER: u32 = 0x2;
const PRIORITY: i32 = -400;

/// The table, its two chains and their tracing rules for packets matching
/// `matches`; with `answer`, a rule on prerouting that traces the packets
/// matching it and a chain on forward that stops them.
pub fn explain_msgs(matches: &[Match], answer: Option<&[Match]>) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut t = Attrs::default();
    t.str(attr::TABLE_NAME, EXPLAIN_TABLE)
        .be32(attr::TABLE_FLAGS, TABLE_F_OWNER);
    out.push(Msg::new(msg::NEWTABLE, NLM_F_CREATE, t));
    let rule = |matches: &[Match], action| Rule {
        matches: matches.to_vec(),
        action,
    };
    let hooks: &[(&str, u32)] = match answer {
        Some(_) => &[
            ("pre", NF_INET_PRE_ROUTING),
            ("out", NF_INET_LOCAL_OUT),
            ("answer", NF_INET_FORWARD),
        ],
        None => &[("pre", NF_INET_PRE_ROUTING), ("out", NF_INET_LOCAL_OUT)],
    };
    for &(name, hook) in hooks {
        let mut c = Attrs::default();
        c.str(attr::CHAIN_TABLE, EXPLAIN_TABLE)
            .str(attr::CHAIN_NAME, name)
            .str(attr::CHAIN_TYPE, "filter")
            .be32(attr::CHAIN_POLICY, 1)
            .nested(attr::CHAIN_HOOK, |h| {
                h.be32(attr::HOOK_HOOKNUM, hook).be32(
                    attr::HOOK_PRIORITY,
                    u32::from_ne_bytes(PRIORITY.to_ne_bytes()),
                );
            });
        out.push(Msg::new(msg::NEWCHAIN, NLM_F_CREATE, c));
        let mut rules = match (answer, hook) {
            // The answers, on their way to the source: a TCP one reset (so
            // that the context gives up its half-open connection instead of
            // repeating itself after the table is gone), any other dropped.
            (Some(a), NF_INET_FORWARD) => vec![rule(a, Action::Reset)],
            _ => vec![rule(matches, Action::Trace)],
        };
        if let (Some(a), NF_INET_PRE_ROUTING) = (answer, hook) {
            rules.push(rule(a, Action::Trace));
        }
        for rule in rules {
            let mut r = Attrs::default();
            r.str(attr::RULE_TABLE, EXPLAIN_TABLE)
                .str(attr::RULE_CHAIN, name)
                .bytes(attr::RULE_EXPRESSIONS | NLA_F_NESTED, &rule.encode().0);
            out.push(Msg::new(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r));
        }
    }
    out
}
