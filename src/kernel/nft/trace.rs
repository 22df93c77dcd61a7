//! `netctx explain`'s tracing table: `inet netctx-explain`, owned by the
//! netlink socket that makes it (NFT_TABLE_F_OWNER: the kernel removes it
//! when that socket closes, so a crash leaves nothing), with a chain on
//! prerouting and one on output ahead of every other (priority -400) that
//! sets `meta nftrace` on the probe's packets: every chain the kernel walks
//! them through then reports itself (NFT_MSG_TRACE).

use super::expr::{Match, Rule};
use super::table::{NF_INET_LOCAL_OUT, NF_INET_PRE_ROUTING};
use super::wire::{attr, msg, Attrs, Msg, NLA_F_NESTED};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};

pub const EXPLAIN_TABLE: &str = "netctx-explain";
/// NFT_TABLE_F_OWNER.
const TABLE_F_OWNER: u32 = 0x2;
const PRIORITY: i32 = -400;

/// The table, its two chains and their tracing rules for packets matching
/// `matches`.
pub fn explain_msgs(matches: &[Match]) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut t = Attrs::default();
    t.str(attr::TABLE_NAME, EXPLAIN_TABLE)
        .be32(attr::TABLE_FLAGS, TABLE_F_OWNER);
    out.push(Msg::new(msg::NEWTABLE, NLM_F_CREATE, t));
    let rule = Rule {
        matches: matches.to_vec(),
        action: super::expr::Action::Trace,
    };
    for (name, hook) in [("pre", NF_INET_PRE_ROUTING), ("out", NF_INET_LOCAL_OUT)] {
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
        let mut r = Attrs::default();
        r.str(attr::RULE_TABLE, EXPLAIN_TABLE)
            .str(attr::RULE_CHAIN, name)
            .bytes(attr::RULE_EXPRESSIONS | NLA_F_NESTED, &rule.encode().0);
        out.push(Msg::new(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r));
    }
    out
}
