//! A context's fences on its traffic (docs/fences.md), pure: the token
//! bucket on each end of its veths (`limits.bandwidth`), and in its own
//! table the count of its tracked connections (`limits.connections`,
//! `ct count over N`) and the rate of the new ones it opens
//! (`limits.new_connections`, `limit rate over`), whose refusals are
//! logged `CTX:LIMIT:` and dropped in chains of their own (what `stats`
//! counts). A context without these limits gets nothing of this.

use super::rules::log_drop;
use super::{Action, Made, Side};
use crate::kernel::nft::expr::{Action as Verdict, Match, Rule, CT_NEW};
use crate::kernel::nft::table::{Chain, ChainKind, REGULAR};
use crate::model::{Context, Hook, LinkKind, Per, Tbf};
use crate::observe::links::{NsState, ObsLink};

/// The chain that counts the context's tracked connections (jumped to
/// from input, forward and output: one count for all).
pub const CONNECTIONS: &str = "connections";
/// The chains that log (`CTX:LIMIT:`) and drop what a fence refused.
pub const LIMIT_CONNECTIONS: &str = "limit_connections";
pub const LIMIT_NEW_CONNECTIONS: &str = "limit_new_connections";
/// The prefix of the refusals' log lines.
pub const LIMIT_PREFIX: &str = "CTX:LIMIT:";

/// Whether the context's table needs fences.
pub fn fenced(ctx: &Context) -> bool {
    ctx.limits.connections.is_some() || ctx.limits.new_connections.is_some()
}

/// Whether a chain of the context's table is a fence's refusal chain.
pub fn is_limit_chain(chain: &str) -> bool {
    chain == LIMIT_CONNECTIONS || chain == LIMIT_NEW_CONNECTIONS
}

/// Bits a second as tc writes them: `100mbit`, `1gbit`, `1500kbit`.
pub fn rate_text(bits: u64) -> String {
    match bits {
        b if b % 1_000_000_000 == 0 => format!("{}gbit", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{}mbit", b / 1_000_000),
        b if b % 1_000 == 0 => format!("{}kbit", b / 1_000),
        b => format!("{b}bit"),
    }
}

fn seconds(p: Per) -> u64 {
    match p {
        Per::Second => 1,
        Per::Minute => 60,
        Per::Hour => 3600,
        Per::Day => 86_400,
    }
}

fn jump(matches: Vec<Match>, chain: &str) -> Rule {
    Rule {
        matches,
        action: Verdict::Jump(chain.into()),
    }
}

/// The regular chains, first in the table (a jump needs its chain).
pub fn chains(ctx: &Context) -> Vec<Chain> {
    let l = &ctx.limits;
    let regular = |name: &str, rules: Vec<Rule>| Chain {
        name: name.into(),
        kind: ChainKind::Filter,
        hooknum: REGULAR,
        device: None,
        rules,
    };
    let mut out = Vec::new();
    if let Some(n) = l.connections {
        out.push(regular(
            LIMIT_CONNECTIONS,
            log_drop(ctx, LIMIT_PREFIX).to_vec(),
        ));
        // One rule, so one list of connections, whichever hook jumps here.
        let over = Match::CtCountOver(u32::try_from(n).unwrap_or(u32::MAX));
        out.push(regular(
            CONNECTIONS,
            vec![jump(vec![over], LIMIT_CONNECTIONS)],
        ));
    }
    if l.new_connections.is_some() {
        out.push(regular(
            LIMIT_NEW_CONNECTIONS,
            log_drop(ctx, LIMIT_PREFIX).to_vec(),
        ));
    }
    out
}

/// The rules a hook's chain starts with (after its logging rule): new
/// connections it opens over the rate (output), then the count of every
/// new connection from, to and through it.
pub fn hook_rules(ctx: &Context, hook: Hook) -> Vec<Rule> {
    let l = &ctx.limits;
    let mut out = Vec::new();
    if let (Some((n, per)), Hook::Output) = (l.new_connections, hook) {
        let unit = seconds(per);
        // A burst of one second's worth (at least one connection).
        let burst = u32::try_from(n.div_ceil(unit).max(1)).unwrap_or(u32::MAX);
        let over = Match::RateOver {
            rate: n,
            unit,
            burst,
        };
        out.push(jump(
            vec![Match::CtState(CT_NEW), over],
            LIMIT_NEW_CONNECTIONS,
        ));
    }
    if l.connections.is_some() {
        out.push(jump(vec![Match::CtState(CT_NEW)], CONNECTIONS));
    }
    out
}

/// Whether a link's bucket is as wanted (`None`: no bucket of netctx's).
fn bucket_ok(want: Option<Tbf>, have: Option<&ObsLink>) -> bool {
    want == have.and_then(|l| l.tbf)
}

/// The token bucket of each end of each veth: set where it is missing or
/// differs from `bandwidth`, removed where `bandwidth` is gone.
pub(super) fn qdiscs(
    ctx: &Context,
    host: &crate::observe::links::HostLinks,
    ns: &NsState,
    made: &Made,
    acts: &mut Vec<Action>,
) {
    let bits = ctx.limits.bandwidth;
    let want = bits.map(Tbf::for_bits);
    for l in ctx.links.iter().filter(|l| l.kind == LinkKind::Veth) {
        let fresh = made.fresh.contains(&l.name.as_str());
        let mut ends = vec![(Side::Ctx, l.name.as_str(), ns.link(&l.name))];
        if let Some(h) = l.host.as_deref() {
            ends.push((Side::Host, h, host.get(h)));
        }
        for (side, link, have) in ends {
            let have = have.filter(|_| !fresh);
            if !bucket_ok(want, have) {
                acts.push(Action::Qdisc {
                    side,
                    link: link.to_string(),
                    bandwidth: bits,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_sources;

    fn ctx(limits: &str) -> Context {
        let toml = format!(
            "[context.web]\n[[context.web.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             host = \"nx-web\"\naddresses = [\"10.1.0.2/24\"]\n[context.web.limits]\n{limits}\n"
        );
        let files = [(std::path::PathBuf::from("t.toml"), toml)];
        load_sources(&files).unwrap().contexts[0].clone()
    }

    fn link(name: &str, bits: Option<u64>) -> ObsLink {
        ObsLink {
            index: 3,
            name: name.into(),
            kind: Some("veth".into()),
            up: true,
            alias: None,
            addrs: vec![],
            link_local: vec![],
            mac: None,
            qdisc: Some(if bits.is_some() { "tbf" } else { "noqueue" }.into()),
            tbf: bits.map(Tbf::for_bits),
        }
    }

    /// The plan's qdisc actions with both ends observed with `have`.
    fn plan(c: &Context, have: Option<u64>, fresh: bool) -> Vec<String> {
        let host: std::collections::HashMap<_, _> =
            [("nx-web".to_string(), link("nx-web", have))].into();
        let ns = NsState {
            links: vec![link("eth0", have)],
            ..NsState::default()
        };
        let made = Made {
            gone: vec![],
            fresh: if fresh { vec!["eth0"] } else { vec![] },
        };
        let mut acts = Vec::new();
        qdiscs(c, &host.into(), &ns, &made, &mut acts);
        acts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_changed_or_gone_rate_is_planned_on_both_ends_and_an_equal_one_is_not() {
        let capped = ctx("bandwidth = \"20mbit\"");
        assert!(plan(&capped, Some(20_000_000), false).is_empty());
        assert_eq!(
            plan(&capped, Some(40_000_000), false),
            [
                "set the rate of link eth0 to 20mbit (limits.bandwidth)",
                "set the rate of host link nx-web to 20mbit (limits.bandwidth)"
            ]
        );
        assert_eq!(plan(&capped, None, false).len(), 2);
        // A link made anew has no bucket, whatever the old one had.
        assert_eq!(plan(&capped, Some(20_000_000), true).len(), 2);
        let free = ctx("");
        assert!(plan(&free, None, false).is_empty());
        assert_eq!(
            plan(&free, Some(20_000_000), false),
            [
                "remove the rate limit of link eth0",
                "remove the rate limit of host link nx-web"
            ]
        );
        assert_eq!(rate_text(1_500_000), "1500kbit");
        assert_eq!(rate_text(1_000_000_000), "1gbit");
    }
}
