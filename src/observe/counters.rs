//! Traffic figures of a namespace, read only: the statistics of its links
//! (IFLA_STATS64 in a link dump) and the counters of netctx's drop and
//! logging rules (a dump of the rules of table `inet netctx`). Changes
//! nothing; `cli::stats` adds them up per context.

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage as M;

use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::nft::expr::{COUNTER, IMMEDIATE, LOG, NF_DROP};
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::table::TABLE;
use crate::kernel::nft::wire::{attr, msg, parse_attrs, Attrs};

/// Which read of [`read_here`] or [`host_rule_counts`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("opening a route socket")]
    RouteSocket(#[source] std::io::Error),
    #[error("opening a netfilter socket")]
    NftSocket(#[source] std::io::Error),
    #[error("reading link statistics")]
    Links(#[source] NlError),
    #[error("reading the rules' counters")]
    Rules(#[source] NlError),
    #[error("reading the qdiscs' statistics")]
    Qdiscs(#[source] NlError),
    #[error("reading the host's rules' counters")]
    HostRules(#[source] NlError),
}

/// The figures of the calling thread's namespace: its links' statistics
/// and its rules' counters.
pub fn read_here() -> Result<(Vec<LinkStats>, Vec<RuleCount>), CountError> {
    let mut nl = Rtnl::open().map_err(CountError::RouteSocket)?;
    let mut nft = Nft::open().map_err(CountError::NftSocket)?;
    let links = link_stats(&mut nl).map_err(CountError::Links)?;
    let rules = rule_counts(&mut nft).map_err(CountError::Rules)?;
    Ok((links, rules))
}

/// The rules' counters of the host's table (the calling thread is in the
/// host's namespace).
pub fn host_rule_counts() -> Result<Vec<RuleCount>, CountError> {
    let mut nft = Nft::open().map_err(CountError::NftSocket)?;
    rule_counts(&mut nft).map_err(CountError::HostRules)
}

/// What the fences of the calling thread's namespace show: packets its
/// token buckets dropped (their queue full), and its tracked connections
/// (`nf_conntrack_count`, per namespace: the context's own table; 0
/// where conntrack never started in it).
pub fn fences_here() -> Result<(u64, u64), CountError> {
    let mut nl = Rtnl::open().map_err(CountError::RouteSocket)?;
    let drops = super::qdisc::read(&mut nl)
        .map_err(CountError::Qdiscs)?
        .iter()
        .map(|o| o.drops)
        .sum();
    let entries = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Ok((drops, entries))
}

/// Packets dropped by netctx's token bucket of each host link, by name
/// (the calling thread is in the host's namespace).
pub fn host_qdisc_drops() -> Result<std::collections::HashMap<String, u64>, CountError> {
    let mut nl = Rtnl::open().map_err(CountError::RouteSocket)?;
    let ours = super::qdisc::read(&mut nl).map_err(CountError::Qdiscs)?;
    if ours.is_empty() {
        return Ok(Default::default());
    }
    let links = super::links::read_links_only(&mut nl).map_err(CountError::Links)?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            let o = ours.iter().find(|o| o.index == l.index)?;
            Some((l.name, o.drops))
        })
        .collect())
}

/// NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS.
const COUNTER_BYTES: u16 = 1;
const COUNTER_PACKETS: u16 = 2;
/// NFTA_IMMEDIATE_DATA.
const IMMEDIATE_DATA: u16 = 2;

/// What one link has received and sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Statistics of every link of the socket's namespace (one dump, with
/// statistics: the engine's dumps skip them).
pub fn link_stats(nl: &mut Rtnl) -> Result<Vec<LinkStats>, NlError> {
    let mut out = Vec::new();
    for m in nl.dump(M::GetLink(LinkMessage::default()))? {
        let M::NewLink(l) = m else { continue };
        let mut s = LinkStats::default();
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Stats64(st) => {
                    s.rx_packets = st.rx_packets;
                    s.rx_bytes = st.rx_bytes;
                    s.tx_packets = st.tx_packets;
                    s.tx_bytes = st.tx_bytes;
                }
                _ => {}
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// What a counted rule of netctx's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `counter drop`
    Drop,
    /// `limit … counter log …`: the packets sent to NFLOG.
    Log,
}

/// One counted rule as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    pub chain: String,
    pub kind: Counted,
    pub packets: u64,
    pub bytes: u64,
}

fn be64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The verdict code of an `immediate` expression's data, if it has one.
fn verdict_code(data: &[u8]) -> Option<u32> {
    let (_, d) = parse_attrs(data).find(|(t, _)| *t == IMMEDIATE_DATA)?;
    let (_, v) = parse_attrs(d).find(|(t, _)| *t == attr::DATA_VERDICT)?;
    let (_, c) = parse_attrs(v).find(|(t, _)| *t == attr::VERDICT_CODE)?;
    c.try_into().ok().map(u32::from_be_bytes)
}

/// A rule's NFTA_RULE_EXPRESSIONS: a drop or logging rule with a counter,
/// with its packets and bytes; `None` for any other rule.
pub fn classify(expressions: &[u8]) -> Option<(Counted, u64, u64)> {
    let (mut counter, mut log, mut drop) = (None, false, false);
    for (_, e) in parse_attrs(expressions) {
        let name = parse_attrs(e)
            .find(|(t, _)| *t == attr::EXPR_NAME)
            .map(|(_, v)| v.split(|b| *b == 0).next().unwrap_or_default());
        let data = parse_attrs(e)
            .find(|(t, _)| *t == attr::EXPR_DATA)
            .map_or(&[][..], |(_, v)| v);
        match name {
            Some(n) if n == COUNTER.as_bytes() => {
                let get = |ty| {
                    parse_attrs(data)
                        .find(|(t, _)| *t == ty)
                        .map_or(0, |(_, v)| be64(v))
                };
                counter = Some((get(COUNTER_PACKETS), get(COUNTER_BYTES)));
            }
            Some(n) if n == LOG.as_bytes() => log = true,
            Some(n) if n == IMMEDIATE.as_bytes() => drop |= verdict_code(data) == Some(NF_DROP),
            _ => {}
        }
    }
    let (packets, bytes) = counter?;
    match (log, drop) {
        (true, _) => Some((Counted::Log, packets, bytes)),
        (false, true) => Some((Counted::Drop, packets, bytes)),
        _ => None,
    }
}

/// The counted rules of table `inet netctx` in the socket's namespace;
/// empty when there is no such table.
pub fn rule_counts(nft: &mut Nft) -> Result<Vec<RuleCount>, NlError> {
    let mut filter = Attrs::default();
    filter.str(attr::RULE_TABLE, TABLE);
    let rules = match nft.get(msg::GETRULE, &filter.0, true) {
        Ok(r) => r,
        Err(e) if e.errno == libc::ENOENT => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(rules
        .iter()
        .filter(|r| r.get_str(attr::RULE_TABLE).as_deref() == Some(TABLE))
        .filter_map(|r| {
            let (kind, packets, bytes) = classify(r.get(attr::RULE_EXPRESSIONS)?)?;
            Some(RuleCount {
                chain: r.get_str(attr::RULE_CHAIN).unwrap_or_default(),
                kind,
                packets,
                bytes,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nft::expr::{Action, Match, Rule};

    /// What a dump gives back: the rule's expressions with the counter's
    /// data filled in by the kernel.
    fn dumped(r: &Rule, packets: u64, bytes: u64) -> Vec<u8> {
        let enc = r.encode().0;
        let mut out = Attrs::default();
        for (_, e) in parse_attrs(&enc) {
            let is_counter = parse_attrs(e)
                .any(|(t, v)| t == attr::EXPR_NAME && v.starts_with(COUNTER.as_bytes()));
            if is_counter {
                out.nested(attr::LIST_ELEM, |x| {
                    x.str(attr::EXPR_NAME, COUNTER)
                        .nested(attr::EXPR_DATA, |d| {
                            d.be64(COUNTER_BYTES, bytes).be64(COUNTER_PACKETS, packets);
                        });
                });
            } else {
                out.bytes(attr::LIST_ELEM, e);
            }
        }
        out.0
    }

    #[test]
    fn drop_and_log_rules_are_told_apart_and_their_counters_read() {
        let drop = Rule {
            matches: vec![],
            action: Action::Drop,
        };
        let log = Rule {
            matches: vec![],
            action: Action::Log {
                rate: 10,
                prefix: "CTX:DROP:".into(),
                group: 3,
            },
        };
        let accept = Rule {
            matches: vec![Match::IifName("lo".into())],
            action: Action::Accept,
        };
        assert_eq!(
            classify(&dumped(&drop, 7, 420)),
            Some((Counted::Drop, 7, 420))
        );
        assert_eq!(
            classify(&dumped(&log, 5, 300)),
            Some((Counted::Log, 5, 300))
        );
        assert_eq!(classify(&dumped(&accept, 0, 0)), None);
        // As sent (no counter data yet): zero.
        assert_eq!(classify(&drop.encode().0), Some((Counted::Drop, 0, 0)));
    }
}
