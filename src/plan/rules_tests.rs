//! The encoder against fixtures derived from the real `nft` (see
//! fixtures/derive.py): for a context with strict isolation, logging on all
//! hooks and forwarding, and for the host's chains, every table, set,
//! element, chain and rule message must be byte for byte what `nft -f` sends
//! for the same ruleset in `nft` syntax.

use crate::kernel::nft::dispatch;
use crate::kernel::nft::ranges::RangeChange;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{context_table, host_chains};
use crate::config::load_sources;
use crate::kernel::nft::table::{self, render_chain, Table};
use crate::kernel::nft::wire::{attr, msg, parse_attrs, Attrs, Msg};
use crate::model::Context;

const CTX: &str = r#"
[defaults]
deny = ["169.254.0.0/16", "fd00:ec2::254/128", "10.9.0.0/16:22", "[fd00:ec2::254]:80-90"]
[context.web]
reach = ["host:22", "host:5000-5100/udp", "10.20.0.0/16:443", "[2001:db8::/32]:80-90/udp"]
ip_forward = true
log = ["input", "forward", "output"]
log_group = 7
log_rate = 50
uplink = "up0"
egress = "nat"
publish = ["8080:80", "203.0.113.1:8443:443/tcp", "[::]:5353:53/udp"]
[context.web.limits]
connections = 100
new_connections = "20/second"
[[context.web.link]]
kind = "veth"
name = "eth0"
host = "nx-web"
host_addresses = ["10.100.0.1/24"]
addresses = ["10.100.0.2/24", "fd00:100::2/64"]
[[context.web.link]]
kind = "veth"
name = "eth1"
host = "nx-web1"
addresses = ["10.4.0.1/22"]
"#;

fn ctx() -> Context {
    load_sources(&[(PathBuf::from("t.toml"), CTX.into())])
        .unwrap()
        .contexts[0]
        .clone()
}

/// The fixture's context without its uplink.
fn plain_ctx() -> Context {
    let mut c = ctx();
    c.uplink = None;
    c.egress = crate::model::Egress::None;
    c.publish.clear();
    c.reach.clear();
    c.limits = Default::default();
    c.deny = crate::model::DEFAULT_DENY
        .iter()
        .map(|d| crate::config::parse_entry(d, crate::config::EntryKind::Deny).unwrap())
        .collect();
    c
}

fn fixture(name: &str, rendered: &str) -> &'static str {
    let (nft, hex) = match name {
        "context" => (
            include_str!("fixtures/context.nft"),
            include_str!("fixtures/context.nft.hex"),
        ),
        _ => (
            include_str!("fixtures/host.nft"),
            include_str!("fixtures/host.nft.hex"),
        ),
    };
    if std::env::var_os("NETCTX_UPDATE_FIXTURES").is_some() {
        std::fs::write(format!("src/plan/fixtures/{name}.nft"), rendered).unwrap();
    }
    assert_eq!(
        rendered, nft,
        "the ruleset changed: rerun with NETCTX_UPDATE_FIXTURES=1, then derive.py"
    );
    hex
}

/// Messages keyed by what they create, so that order does not matter.
fn keyed(msgs: impl Iterator<Item = (u16, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut rule_n: BTreeMap<String, usize> = BTreeMap::new();
    for (ty, attrs) in msgs {
        let s = |t: u16| {
            parse_attrs(&attrs)
                .find(|(a, _)| *a == t)
                .map(|(_, v)| {
                    String::from_utf8_lossy(v)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_default()
        };
        let key = match ty {
            msg::NEWTABLE => "table".to_string(),
            msg::NEWCHAIN => format!("chain {}", s(attr::CHAIN_NAME)),
            msg::NEWRULE => {
                let c = s(attr::RULE_CHAIN);
                let n = rule_n.entry(c.clone()).or_default();
                *n += 1;
                format!("rule {c} #{n}")
            }
            msg::NEWSET => format!("set {}", s(attr::SET_NAME)),
            msg::NEWSETELEM => format!("elements {}", s(attr::SET_ELEM_LIST_SET)),
            _ => continue,
        };
        // nft adds its own user data to sets (key byte order and such).
        let attrs = if ty == msg::NEWSET {
            let mut a = Attrs::default();
            for (t, v) in parse_attrs(&attrs).filter(|(t, _)| *t != 13) {
                a.bytes(t, v);
            }
            a.0
        } else {
            attrs
        };
        out.insert(key, attrs);
    }
    out
}

fn from_hex(text: &str) -> BTreeMap<String, Vec<u8>> {
    keyed(text.lines().filter(|l| !l.is_empty()).map(|l| {
        let (ty, hex) = l.split_once(' ').unwrap();
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (ty.parse().unwrap(), bytes)
    }))
}

fn ours(msgs: &[Msg]) -> BTreeMap<String, Vec<u8>> {
    // Only the creating half: the first NEWTABLE of a replacement has no
    // comment and is there to make the DELTABLE safe.
    let skip = msgs
        .iter()
        .position(|m| m.ty == msg::DELTABLE)
        .map_or(0, |i| i + 1);
    keyed(msgs[skip..].iter().map(|m| (m.ty, m.attrs.0.clone())))
}

fn compare(ours: BTreeMap<String, Vec<u8>>, nft: BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        nft.keys().collect::<Vec<_>>()
    );
    for (k, v) in &nft {
        assert_eq!(&ours[k], v, "{k} differs from what nft sends");
    }
}

#[test]
fn context_table_is_encoded_as_nft_encodes_it() {
    let t: Table = context_table(&ctx()).unwrap();
    let hex = fixture("context", &t.render());
    compare(ours(&table::replace_table(Some(&t), true)), from_hex(hex));
    compare(ours(&table::replace_table(Some(&t), false)), from_hex(hex));
}

#[test]
fn host_chains_are_encoded_as_nft_encodes_them() {
    use crate::kernel::nft::dispatch::nat::{Group, NatChange, NatMap};
    let chains = host_chains(&ctx());
    let mut text = format!(
        "table inet netctx {{\n\tcomment \"{}\"\n",
        table::HOST_COMMENT
    );
    let elems = crate::plan::rules::dispatch_elems(&ctx(), &chains);
    let nat = crate::plan::nat::nat_elems(&ctx(), &chains);
    // The dispatches' maps and the range sets first: nft reads the file in
    // order.
    text.push_str(&dispatch::render_map(&[]));
    for m in NatMap::ALL {
        text.push_str(&m.render(&[]));
    }
    let shared = crate::plan::policy::shared_sets(&ctx(), &chains);
    let ranges = crate::plan::policy::range_sets(&ctx(), &chains);
    for s in shared.iter().chain(&ranges) {
        text.push_str(&s.render());
    }
    for c in &chains {
        text.push_str(&render_chain(c));
    }
    for c in dispatch::dispatch_chains() {
        text.push_str(&render_chain(&c));
    }
    for g in Group::ALL {
        g.chains()
            .iter()
            .for_each(|c| text.push_str(&render_chain(c)));
    }
    text.push_str("}\n");
    text.push_str(&format!(
        "add element inet netctx {} {{ {} }}\n",
        dispatch::DISPATCH,
        elems
            .iter()
            .map(|(k, c)| format!("\"{k}\" : jump {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for m in NatMap::ALL {
        let e: Vec<String> = nat
            .iter()
            .filter(|(k, _)| k.map() == m)
            .map(|(k, c)| dispatch::nat::elem_text(k, c))
            .collect();
        if e.is_empty() {
            continue;
        }
        text.push_str(&format!(
            "add element inet netctx {} {{ {} }}\n",
            m.name(),
            e.join(", ")
        ));
    }
    let hex = fixture("host", &text);
    let d = dispatch::DispatchChange {
        create_map: true,
        chain: Some(vec![]),
        remove: vec![],
        add: elems,
        nat: NatChange {
            make: Group::ALL.iter().map(|g| (*g, vec![])).collect(),
            remove: vec![],
            add: nat,
        },
    };
    compare(
        ours(&table::replace_host_chains(
            &[],
            &chains,
            &d,
            &table::HostSets {
                ranges: ranges
                    .into_iter()
                    .filter_map(|set| RangeChange::against(set, None))
                    .collect(),
                shared: shared
                    .into_iter()
                    .filter_map(|set| RangeChange::against(set, None))
                    .collect(),
                ..Default::default()
            },
        )),
        from_hex(hex),
    );
}

#[test]
fn strict_context_table_has_the_expected_shape() {
    let mut c = ctx();
    c.limits = Default::default();
    let t = context_table(&c).unwrap();
    let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["input", "forward", "output"]);
    assert_eq!(
        t.sets[0].elems,
        [
            "10.100.0.2".parse::<std::net::IpAddr>().unwrap(),
            "10.4.0.1".parse().unwrap()
        ]
    );
    assert_eq!(t.sets[1].elems.len(), 1);
    // forward: only logging (a routing context forwards).
    assert_eq!(t.chains[1].rules.len(), 1);
    let text = t.render();
    assert!(text.contains("log prefix \"CTX:INPUT:\" group 7"));
    assert!(text.contains(
        "limit rate 50/second burst 50 packets counter log prefix \"CTX:DROP:\" group 7"
    ));
    // Host side: one chain per veth; routing context: its subnets too;
    // and one forward chain.
    let hc = host_chains(&plain_ctx());
    assert_eq!(
        hc.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["web_nx-web", "web_nx-web1", "web_forward"]
    );
    let names: Vec<String> = host_chains(&ctx()).into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "web_nx-web",
            "web_nx-web1",
            "web_forward",
            "web_post",
            "web_pre"
        ]
    );
    let h = render_chain(&hc[0]);
    assert!(h.contains("ip saddr 10.100.0.0/24 accept"), "{h}");
    assert!(h.contains("ip saddr 10.4.0.0/22 accept"), "{h}");
    // Router advertisements and redirects are dropped before any source is
    // accepted.
    let ra = h.find("icmpv6 type nd-router-advert counter drop").unwrap();
    assert!(ra < h.find("ip6 saddr fe80::/10 accept").unwrap(), "{h}");
    assert!(h.contains("icmp type redirect counter drop"), "{h}");
}

#[test]
fn the_forward_chain_passes_replies_and_reach_and_drops_the_rest() {
    let mut c = plain_ctx();
    let f = |c: &Context| unmarked(&render_chain(host_chains(c).last().unwrap()));
    let text = f(&c);
    // A regular chain: the dispatch jumps to it, for the context's veths.
    assert!(!text.contains("hook"), "{text}");
    assert_eq!(
        crate::plan::rules::dispatch_elems(&c, &host_chains(&c)),
        [
            ("nx-web".to_string(), "web_forward".to_string()),
            ("nx-web1".to_string(), "web_forward".to_string())
        ]
    );
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    assert!(
        lines[0].starts_with("iifname \"nx-web\" ct state established,related accept"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("iifname \"nx-web1\" ct state established,related accept"),
        "{text}"
    );
    // The floor first: the default deny, logged and dropped, looked up in
    // the shared sets (one rule pair a veth and set, not an entry).
    assert!(
        lines[2]
            .starts_with("iifname \"nx-web\" meta nfproto ipv4 ip daddr @netctx-deny4 limit rate"),
        "{text}"
    );
    assert!(
        text.contains("iifname \"nx-web\" meta nfproto ipv6 ip6 daddr @netctx-deny6 counter drop"),
        "{text}"
    );
    assert!(crate::plan::policy::range_sets(&c, &host_chains(&c)).is_empty());
    // The host: echo to its host side, neighbour discovery, nothing else.
    assert!(
        text.contains("iifname \"nx-web\" oif 0 icmp type echo-request meta nfproto ipv4 ip daddr 10.100.0.1 accept"),
        "{text}"
    );
    assert!(
        text.contains("iifname \"nx-web1\" oif 0 icmpv6 type nd-neighbor-solicit accept"),
        "{text}"
    );
    assert!(!text.contains("oif 0 accept"), "{text}");
    // Into the context: replies, the rest dropped.
    assert!(
        text.contains("oifname \"nx-web\" ct state established,related accept"),
        "{text}"
    );
    let last = text.lines().rev().nth(1).unwrap_or_default();
    assert!(
        last.trim().starts_with("oifname \"nx-web1\" counter drop"),
        "{text}"
    );
    let admit = |ports| vec![crate::model::Admit { from: None, ports }];
    let udp53 = Some(crate::model::Ports {
        lo: 53,
        hi: 53,
        proto: crate::model::Proto::Udp,
    });
    let mut db = crate::model::Reach::new(crate::model::Peer::Context("db".into()), None);
    db.links = vec!["nx-db".into()];
    db.admit = admit(None);
    let mut dns = crate::model::Reach::new(crate::model::Peer::Context("dns".into()), udp53);
    dns.links = vec!["nx-dns".into()];
    dns.admit = admit(udp53);
    let mut host = crate::model::Reach::new(crate::model::Peer::Host, None);
    host.ports = Some(crate::model::Ports {
        lo: 8000,
        hi: 8100,
        proto: crate::model::Proto::Tcp,
    });
    c.reach = vec![db, dns, host];
    let text = f(&c);
    assert!(
        text.contains("iifname \"nx-web\" oifname \"nx-db\" accept"),
        "{text}"
    );
    assert!(
        text.contains("iifname \"nx-web1\" oifname \"nx-dns\" udp dport 53 accept"),
        "{text}"
    );
    assert!(
        text.contains("iifname \"nx-web1\" oif 0 tcp dport 8000-8100 accept"),
        "{text}"
    );
    // The receiver's accept_from admits nothing of it: no rule.
    c.reach[0].admit.clear();
    assert!(!f(&c).contains("nx-db"));
    // Accepts come before the drops of the context's own packets.
    let last_accept = text.rfind("iifname \"nx-web1\" oif 0 tcp").unwrap();
    assert!(
        last_accept < text.find("iifname \"nx-web\" counter drop").unwrap(),
        "{text}"
    );
}

#[test]
fn isolation_off_without_logs_needs_no_table_and_no_host_chains() {
    let mut c = plain_ctx();
    c.isolation = crate::model::Isolation::Off;
    c.log.clear();
    assert_eq!(context_table(&c), None);
    assert!(host_chains(&c).is_empty());
    // Naming a context in reach: a chain with the floor and that context,
    // nothing dropped beyond the floor (the rest falls through).
    let mut db = crate::model::Reach::new(crate::model::Peer::Context("db".into()), None);
    db.links = vec!["nx-db".into()];
    db.admit = vec![crate::model::Admit {
        from: None,
        ports: None,
    }];
    let mut r = c.clone();
    r.reach = vec![db];
    let chains = host_chains(&r);
    assert_eq!(chains.len(), 1);
    let text = unmarked(&render_chain(&chains[0]));
    assert!(
        text.contains("iifname \"nx-web\" oifname \"nx-db\" accept"),
        "{text}"
    );
    assert_eq!(text.matches("counter drop").count(), 4, "{text}");
    // Only logging: no sets, no drops.
    c.log = vec![crate::model::Hook::Output];
    let t = context_table(&c).unwrap();
    assert!(t.sets.is_empty());
    assert_eq!(t.chains.len(), 1);
    assert!(!t.render().contains("drop"));
}

#[test]
fn a_non_forwarding_context_is_allowed_only_its_own_addresses_on_the_host() {
    let mut c = ctx();
    c.ip_forward = false;
    let h = render_chain(&host_chains(&c)[0]);
    assert!(h.contains("ip saddr 10.100.0.2 accept"), "{h}");
    assert!(!h.contains("10.100.0.0/24"), "{h}");
}

/// The chain of `ctx`'s host chains called `name`, in nft syntax.
fn chain_text(c: &Context, name: &str) -> String {
    let chains = host_chains(c);
    let ch = chains.iter().find(|ch| ch.name == name);
    unmarked(&ch.map(render_chain).unwrap_or_default())
}

/// A forward chain's text with its accepts' mark left out (checked on its
/// own: `forward_accepts_are_marked`).
fn unmarked(text: &str) -> String {
    text.replace(" meta mark set meta mark | 0x00002000 accept", " accept")
}

#[test]
fn forward_accepts_are_marked() {
    let text = render_chain(
        host_chains(&ctx())
            .iter()
            .find(|c| c.name == "web_forward")
            .unwrap(),
    );
    let accepts = text.matches(" accept").count();
    assert!(accepts >= 5, "{text}");
    assert_eq!(
        text.matches(" meta mark set meta mark | 0x00002000 accept")
            .count(),
        accepts,
        "{text}"
    );
    // The ingress chains' accepts are not forwarding: unmarked.
    let ingress = render_chain(&host_chains(&ctx())[0]);
    assert!(!ingress.contains("mark"), "{ingress}");
}

#[test]
fn uplink_forward_rules_stay_between_the_uplink_and_the_contexts_veths() {
    use crate::model::Egress;
    let mut c = ctx();
    // Address ranges in reach limit the world to them.
    let limited = chain_text(&c, "web_forward");
    assert!(
        limited.contains("iifname \"nx-web\" oifname \"up0\" meta nfproto ipv4 ip daddr . meta l4proto . th dport @web_reachp4 accept"),
        "{limited}"
    );
    assert!(!limited.contains("oifname \"up0\" accept"), "{limited}");
    c.reach.clear();
    let text = chain_text(&c, "web_forward");
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {text}"))
    };
    // Out, replies, published (DNATed), then the rest from the uplink
    // dropped; the context's own drops last.
    let out = at("iifname \"nx-web\" oifname \"up0\" accept");
    let replies = at("oifname \"nx-web\" ct state established,related accept");
    let dnat = at("oifname \"nx-web\" ct status dnat accept");
    let drop = at("iifname \"up0\" oifname \"nx-web\" counter drop");
    let own = at("iifname \"nx-web\" counter drop");
    assert!(
        out < replies && replies < dnat && dnat < drop && drop < own,
        "{text}"
    );
    // Every rule names one of the context's veths.
    for l in text.lines().skip(2).filter(|l| l.contains("comment")) {
        assert!(l.contains("\"nx-web\"") || l.contains("\"nx-web1\""), "{l}");
    }
    assert!(!text.contains("iifname \"up0\" oifname \"nx-web\" accept"));
    // Routed: anything from the uplink to the context; no masquerade.
    c.egress = Egress::Routed;
    let text = chain_text(&c, "web_forward");
    assert!(
        text.contains("iifname \"up0\" oifname \"nx-web\" accept"),
        "{text}"
    );
    assert!(chain_text(&c, "web_post").is_empty());
    // No egress: nothing out, published ports still in.
    c.egress = Egress::None;
    let text = chain_text(&c, "web_forward");
    assert!(!text.contains("oifname \"up0\" accept"), "{text}");
    assert!(text.contains("ct status dnat accept"), "{text}");
    // No uplink in use: no NAT chains, no uplink rules.
    c.publish.clear();
    assert!(!chain_text(&c, "web_forward").contains("up0"));
    assert!(chain_text(&c, "web_pre").is_empty());
    // Announced: reached from beyond the uplink, nothing out without
    // egress (what it may reach there is its `reach`'s).
    c.announce = true;
    let text = chain_text(&c, "web_forward");
    assert!(
        text.contains("iifname \"up0\" oifname \"nx-web\" accept"),
        "{text}"
    );
    assert!(!text.contains("oifname \"up0\" accept"), "{text}");
}

#[test]
fn published_ports_go_to_the_first_address_of_their_family() {
    let mut c = ctx();
    let pre = chain_text(&c, "web_pre");
    // A regular chain, reached from outside (prerouting) and from the host
    // itself (output) through the NAT dispatch's maps, one element a key.
    assert!(!pre.contains("type nat"), "{pre}");
    let keys: Vec<String> = crate::plan::nat::nat_elems(&c, &host_chains(&c))
        .iter()
        .map(|(k, ch)| crate::kernel::nft::dispatch::nat::elem_text(k, ch))
        .collect();
    assert_eq!(
        keys,
        [
            "\"nx-web\" : jump web_post",
            "\"nx-web1\" : jump web_post",
            "ipv4 . tcp . 8080 : jump web_pre",
            "ipv6 . tcp . 8080 : jump web_pre",
            "ipv6 . udp . 5353 : jump web_pre",
            "203.0.113.1 . tcp . 8443 : jump web_pre",
        ]
    );
    let rules: Vec<&str> = pre
        .lines()
        .filter(|l| l.contains("dnat"))
        .map(|l| l.trim().split(" comment").next().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "meta nfproto ipv4 fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.100.0.2:80",
            "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd00:100::2]:80",
            "meta nfproto ipv4 ip daddr 203.0.113.1 tcp dport 8443 dnat ip to 10.100.0.2:443",
            "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 udp dport 5353 dnat ip6 to [fd00:100::2]:53",
        ]
    );
    // Without an IPv6 address, the wildcard publishes IPv4 only.
    for l in &mut c.links {
        l.addresses.retain(|a| a.is_v4());
    }
    let pre = chain_text(&c, "web_pre");
    assert!(!pre.contains("ip6"), "{pre}");
    let keys = crate::plan::nat::nat_elems(&c, &host_chains(&c));
    assert!(
        keys.iter().all(|(k, _)| !matches!(
            k,
            crate::kernel::nft::dispatch::nat::NatKey::Port { v6: true, .. }
        )),
        "{keys:?}"
    );
    assert!(
        pre.contains("tcp dport 8080 dnat ip to 10.100.0.2:80"),
        "{pre}"
    );
}

#[test]
fn fences_count_every_new_connection_in_one_rule_and_rate_the_ones_it_opens() {
    use crate::plan::fences::{CONNECTIONS, LIMIT_CONNECTIONS, LIMIT_NEW_CONNECTIONS};
    let t = context_table(&ctx()).unwrap();
    let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
    // Regular chains first: the hooks' rules jump to them.
    assert_eq!(
        names,
        [
            LIMIT_CONNECTIONS,
            CONNECTIONS,
            LIMIT_NEW_CONNECTIONS,
            "input",
            "forward",
            "output"
        ]
    );
    let text = t.render();
    // One `ct count` rule (one list of connections) for all hooks.
    assert_eq!(text.matches("ct count over 100 ").count(), 1, "{text}");
    assert_eq!(text.matches("ct state new jump connections").count(), 3);
    // The rate only on what it opens, a burst of one second's worth.
    assert_eq!(
        text.matches("limit rate over 20/second burst 20 packets")
            .count(),
        1
    );
    assert!(text.contains(
        "ct state new limit rate over 20/second burst 20 packets jump limit_new_connections"
    ));
    assert_eq!(text.matches("prefix \"CTX:LIMIT:\"").count(), 2);
    // Without isolation or logging, the fences alone make a table.
    let mut c = plain_ctx();
    c.isolation = crate::model::Isolation::Off;
    c.log.clear();
    assert_eq!(context_table(&c), None);
    c.limits.new_connections = Some((90, crate::model::Per::Minute));
    let text = context_table(&c).unwrap().render();
    assert!(
        text.contains("limit rate over 90/minute burst 2 packets"),
        "{text}"
    );
    assert!(!text.contains("ct count"));
}
