//! Rules in `nft` syntax: what `plan -v` shows, and what the fixtures are
//! derived from (nft must encode the text exactly as `Rule::encode` does).

use std::fmt::Write;

use super::*;

impl Rule {
    /// The rule in `nft` syntax.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for m in &self.matches {
            render_match(&mut s, m);
        }
        match &self.action {
            Action::Accept => s.push_str("accept"),
            Action::Trace => s.push_str("meta nftrace set 1"),
            Action::MarkAccept(bit) => {
                write!(s, "meta mark set meta mark | {bit:#010x} accept").unwrap()
            }
            Action::Drop => s.push_str("counter drop"),
            Action::Jump(chain) => write!(s, "jump {chain}").unwrap(),
            Action::Reset => s.push_str("reject with tcp reset"),
            Action::Log {
                rate,
                prefix,
                group,
            } => write!(
                s,
                "limit rate {rate}/second burst {rate} packets counter log prefix \"{prefix}\" group {group}"
            )
            .unwrap(),
            Action::Masquerade => s.push_str("masquerade"),
            Action::Vmap { output, set, .. } => {
                let d = if *output { "oifname" } else { "iifname" };
                write!(s, "{d} vmap @{set}").unwrap()
            }
            Action::VmapConcat { key, set, .. } => {
                let k = match key {
                    ConcatKey::ProtoPort => "meta nfproto",
                    ConcatKey::AddrProtoPort { v6: false } => "ip daddr",
                    ConcatKey::AddrProtoPort { v6: true } => "ip6 daddr",
                };
                write!(s, "{k} . meta l4proto . th dport vmap @{set}").unwrap()
            }
            Action::Dnat { to: IpAddr::V4(a), port } => write!(s, "dnat ip to {a}:{port}").unwrap(),
            Action::Dnat { to: IpAddr::V6(a), port } => {
                write!(s, "dnat ip6 to [{a}]:{port}").unwrap()
            }
        }
        s
    }
}

/// `meta nfproto ipv4 ip daddr @set ` (with `ports`: `ip daddr . meta
/// l4proto . th dport @set `).
fn render_in_set(
    s: &mut String,
    (v6, dir, ports): (bool, Dir, bool),
    set: &str,
) -> std::fmt::Result {
    let (fam, ip) = if v6 { ("ipv6", "ip6") } else { ("ipv4", "ip") };
    let d = if dir == Dir::Src { "saddr" } else { "daddr" };
    let more = if ports {
        " . meta l4proto . th dport"
    } else {
        ""
    };
    write!(s, "meta nfproto {fam} {ip} {d}{more} @{set} ")
}

/// One match in `nft` syntax, with a space after it.
fn render_match(s: &mut String, m: &Match) {
    match m {
        Match::Nfproto { v6: false } => write!(s, "meta nfproto ipv4 "),
        Match::Nfproto { v6: true } => write!(s, "meta nfproto ipv6 "),
        Match::IifName(n) => write!(s, "iifname \"{n}\" "),
        Match::MarkBit(b) => write!(s, "meta mark & {b:#010x} == {b:#010x} "),
        Match::OifName(n) => write!(s, "oifname \"{n}\" "),
        Match::PktType(t) => {
            let name = if *t == PACKET_BROADCAST {
                "broadcast"
            } else {
                "multicast"
            };
            write!(s, "meta pkttype {name} ")
        }
        Match::InSet {
            v6,
            dir,
            ports,
            set,
            ..
        } => render_in_set(s, (*v6, *dir, *ports), set),
        Match::IfnameInSet { output, set, .. } => {
            let d = if *output { "oifname" } else { "iifname" };
            write!(s, "{d} @{set} ")
        }
        Match::Prefix { dir, cidr } => {
            let (fam, ip) = if cidr.is_v4() {
                ("ipv4", "ip")
            } else {
                ("ipv6", "ip6")
            };
            let d = if *dir == Dir::Src { "saddr" } else { "daddr" };
            if cidr.prefix == crate::model::max_prefix(cidr.addr) {
                write!(s, "meta nfproto {fam} {ip} {d} {} ", cidr.addr)
            } else {
                write!(s, "meta nfproto {fam} {ip} {d} {} ", cidr.subnet())
            }
        }
        Match::CtState(mask) => write!(s, "ct state {} ", ct_states(*mask)),
        Match::CtCountOver(n) => write!(s, "ct count over {n} "),
        Match::RateOver { rate, unit, burst } => write!(
            s,
            "limit rate over {rate}/{} burst {burst} packets ",
            per(*unit)
        ),
        Match::CtStatus(mask) => {
            let name = if *mask == CT_STATUS_DNAT {
                "dnat".to_string()
            } else {
                format!("{mask:#x}")
            };
            write!(s, "ct status {name} ")
        }
        Match::LocalNotLoopback { v6: false } => write!(
            s,
            "meta nfproto ipv4 fib daddr type local ip daddr != 127.0.0.0/8 "
        ),
        Match::LocalNotLoopback { v6: true } => {
            write!(
                s,
                "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 "
            )
        }
        Match::Dport { proto, port } => {
            let p = if *proto == IPPROTO_UDP { "udp" } else { "tcp" };
            write!(s, "{p} dport {port} ")
        }
        Match::DportRange { proto, lo, hi } => {
            let p = if *proto == IPPROTO_UDP { "udp" } else { "tcp" };
            write!(s, "{p} dport {lo}-{hi} ")
        }
        Match::NoOif => write!(s, "oif 0 "),
        Match::Icmp { v6, ty } => {
            let name = match (*v6, *ty) {
                (true, ND_ROUTER_ADVERT) => "nd-router-advert".to_string(),
                (true, ND_REDIRECT) => "nd-redirect".to_string(),
                (false, ICMP_REDIRECT) => "redirect".to_string(),
                (false, ICMP_ECHO_REQUEST) | (true, ICMPV6_ECHO_REQUEST) => {
                    "echo-request".to_string()
                }
                (true, ND_NEIGHBOR_SOLICIT) => "nd-neighbor-solicit".to_string(),
                (true, ND_NEIGHBOR_ADVERT) => "nd-neighbor-advert".to_string(),
                (_, t) => t.to_string(),
            };
            let fam = if *v6 { "icmpv6" } else { "icmp" };
            write!(s, "{fam} type {name} ")
        }
    }
    .unwrap();
}

/// nft's name of a limit's unit of seconds.
fn per(unit: u64) -> &'static str {
    match unit {
        60 => "minute",
        3600 => "hour",
        86400 => "day",
        _ => "second",
    }
}

/// The names of a `ct state` mask.
fn ct_states(mask: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (CT_NEW, "new"),
        (CT_ESTABLISHED, "established"),
        (CT_RELATED, "related"),
    ] {
        if mask & bit != 0 {
            names.push(name);
        }
    }
    names.join(",")
}
