//! The rules netctx wants: the table `inet netctx` inside a context (address
//! sets, strict isolation, logging chains) and, on the host, one ingress chain
//! per host-side veth that drops sources the context does not own. Pure: from
//! the model to messages, `nft` text and a digest to compare with the kernel.

use std::fmt::Write;
use std::net::IpAddr;

use super::rule::{Action, Dir, Match, Rule, PACKET_BROADCAST, PACKET_MULTICAST};
use super::wire::{attr, comment_udata, msg, Attrs, Msg, NLM_F_APPEND, NLM_F_CREATE};
use crate::model::{Cidr, Context, Hook, Isolation, LinkKind};

pub const TABLE: &str = "netctx";
/// The address sets of a context's table.
pub const SET_NAMES: [&str; 2] = ["assigned4", "assigned6"];
/// Comment on the host's table: who made it.
pub const HOST_COMMENT: &str = "netctx";
/// Default for `log_rate`: packets a second each logging rule passes on.
pub const DEFAULT_LOG_RATE: u32 = 100;

const HOOK_INPUT: u32 = 1;
const HOOK_FORWARD: u32 = 2;
const HOOK_OUTPUT: u32 = 3;
const HOOK_INGRESS: u32 = 5;
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub v6: bool,
    pub id: u32,
    pub elems: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub hooknum: u32,
    /// Ingress chains are bound to a device.
    pub device: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub comment: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

/// What is compared with the kernel: chains with their hooks, the comments
/// of their rules (each a digest of the rule), and set elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    pub chains: Vec<(String, u32)>,
    pub rules: Vec<(String, String)>,
    pub sets: Vec<(String, Vec<Vec<u8>>)>,
}

fn fnv(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The comment a rule carries: a digest of its chain and expressions.
pub fn rule_comment(chain: &str, r: &Rule) -> String {
    let h = fnv(&r.encode().0, fnv(chain.as_bytes(), 0xcbf2_9ce4_8422_2325));
    format!("netctx:{h:016x}")
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn log_rule(ctx: &Context, prefix: &str) -> Rule {
    Rule {
        matches: vec![],
        action: Action::Log {
            rate: ctx.log_rate,
            prefix: prefix.to_string(),
            group: ctx.log_group,
        },
    }
}

fn accept(matches: Vec<Match>) -> Rule {
    Rule {
        matches,
        action: Action::Accept,
    }
}

fn drop_rules(ctx: &Context) -> [Rule; 2] {
    [
        log_rule(ctx, "CTX:DROP:"),
        Rule {
            matches: vec![],
            action: Action::Drop,
        },
    ]
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).expect("constant prefix")
}

/// The table inside the context; `None` when it needs none (isolation off
/// and no logging).
pub fn context_table(ctx: &Context) -> Option<Table> {
    let strict = ctx.isolation == Isolation::Strict;
    if !strict && ctx.log.is_empty() {
        return None;
    }
    let v4: Vec<IpAddr> = ctx
        .links
        .iter()
        .flat_map(|l| &l.addresses)
        .filter(|a| a.is_v4())
        .map(|a| a.addr)
        .collect();
    let v6: Vec<IpAddr> = ctx
        .links
        .iter()
        .flat_map(|l| &l.addresses)
        .filter(|a| !a.is_v4())
        .map(|a| a.addr)
        .collect();
    let sets = if strict {
        vec![
            Set {
                name: "assigned4".into(),
                v6: false,
                id: 1,
                elems: v4,
            },
            Set {
                name: "assigned6".into(),
                v6: true,
                id: 2,
                elems: v6,
            },
        ]
    } else {
        vec![]
    };
    let in_set = |v6: bool, dir: Dir| Match::InSet {
        v6,
        dir,
        set: if v6 { "assigned6" } else { "assigned4" }.into(),
        set_id: if v6 { 2 } else { 1 },
    };
    let mut chains = Vec::new();
    for (hook, hooknum, prefix) in [
        (Hook::Input, HOOK_INPUT, "CTX:INPUT:"),
        (Hook::Forward, HOOK_FORWARD, "CTX:FORWARD:"),
        (Hook::Output, HOOK_OUTPUT, "CTX:OUTPUT:"),
    ] {
        let mut rules = Vec::new();
        if ctx.log.contains(&hook) {
            rules.push(log_rule(ctx, prefix));
        }
        if strict && hook == Hook::Input {
            rules.push(accept(vec![Match::IifName("lo".into())]));
            rules.push(accept(vec![in_set(false, Dir::Dst)]));
            rules.push(accept(vec![in_set(true, Dir::Dst)]));
            // Subnet broadcast, and IPv6 neighbour discovery (multicast,
            // link-local).
            rules.push(accept(vec![Match::PktType(PACKET_BROADCAST)]));
            rules.push(accept(vec![Match::PktType(PACKET_MULTICAST)]));
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Dst,
                cidr: cidr("fe80::/10"),
            }]));
            rules.extend(drop_rules(ctx));
        }
        if strict && hook == Hook::Output {
            rules.push(accept(vec![Match::OifName("lo".into())]));
            rules.push(accept(vec![in_set(false, Dir::Src)]));
            rules.push(accept(vec![in_set(true, Dir::Src)]));
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Src,
                cidr: cidr("fe80::/10"),
            }]));
            // Duplicate address detection sends from ::.
            rules.push(accept(vec![Match::Prefix {
                dir: Dir::Src,
                cidr: cidr("::/128"),
            }]));
            rules.extend(drop_rules(ctx));
        }
        if !rules.is_empty() {
            chains.push(Chain {
                name: hook_name(hook).into(),
                hooknum,
                device: None,
                rules,
            });
        }
    }
    Some(Table {
        comment: format!("netctx context {}", ctx.name),
        sets,
        chains,
    })
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
    }
}

/// Prefix of the names of a context's chains in the host's table.
pub fn host_chain_prefix(ctx: &str) -> String {
    format!("{ctx}_")
}

/// The host's chains for a context: one per host-side veth, on its ingress,
/// accepting the context's sources (its addresses; with ip_forward also the
/// subnets of its links) and dropping the rest.
pub fn host_chains(ctx: &Context) -> Vec<Chain> {
    if ctx.isolation != Isolation::Strict {
        return Vec::new();
    }
    let mut sources: Vec<Cidr> = Vec::new();
    for l in &ctx.links {
        for a in &l.addresses {
            let own = Cidr {
                addr: a.addr,
                prefix: crate::model::max_prefix(a.addr),
            };
            let src = if ctx.ip_forward { a.subnet() } else { own };
            if !sources.contains(&src) {
                sources.push(src);
            }
        }
    }
    sources.push(cidr("fe80::/10"));
    sources.push(cidr("::/128"));
    ctx.links
        .iter()
        .filter(|l| l.kind == LinkKind::Veth)
        .filter_map(|l| l.host.clone())
        .map(|host| {
            let mut rules: Vec<Rule> = sources
                .iter()
                .map(|c| {
                    accept(vec![Match::Prefix {
                        dir: Dir::Src,
                        cidr: *c,
                    }])
                })
                .collect();
            rules.extend(drop_rules(ctx));
            Chain {
                name: format!("{}{host}", host_chain_prefix(&ctx.name)),
                hooknum: HOOK_INGRESS,
                device: Some(host),
                rules,
            }
        })
        .collect()
}

fn table_attrs(a: &mut Attrs) -> &mut Attrs {
    a.str(attr::TABLE_NAME, TABLE)
}

pub fn new_table(comment: Option<&str>) -> Msg {
    let mut a = Attrs::default();
    table_attrs(&mut a).be32(attr::TABLE_FLAGS, 0);
    if let Some(c) = comment {
        a.bytes(attr::TABLE_USERDATA, &comment_udata(c));
    }
    Msg::new(msg::NEWTABLE, NLM_F_CREATE, a)
}

pub fn del_table() -> Msg {
    let mut a = Attrs::default();
    table_attrs(&mut a);
    Msg::new(msg::DELTABLE, 0, a)
}

pub fn del_chain(name: &str) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::CHAIN_TABLE, TABLE).str(attr::CHAIN_NAME, name);
    Msg::new(msg::DELCHAIN, 0, a)
}

/// The messages that create a chain and its rules.
pub fn chain_msgs(c: &Chain, out: &mut Vec<Msg>) {
    let mut a = Attrs::default();
    a.str(attr::CHAIN_TABLE, TABLE)
        .str(attr::CHAIN_NAME, &c.name)
        .str(attr::CHAIN_TYPE, "filter")
        .be32(attr::CHAIN_POLICY, 1)
        .nested(attr::CHAIN_HOOK, |h| {
            h.be32(attr::HOOK_HOOKNUM, c.hooknum)
                .be32(attr::HOOK_PRIORITY, 0);
            if let Some(d) = &c.device {
                h.str(attr::HOOK_DEV, d);
            }
        });
    out.push(Msg::new(msg::NEWCHAIN, NLM_F_CREATE, a));
    for r in &c.rules {
        let mut a = Attrs::default();
        a.str(attr::RULE_TABLE, TABLE)
            .str(attr::RULE_CHAIN, &c.name)
            .bytes(
                attr::RULE_EXPRESSIONS | super::wire::NLA_F_NESTED,
                &r.encode().0,
            )
            .bytes(
                attr::RULE_USERDATA,
                &comment_udata(&rule_comment(&c.name, r)),
            );
        out.push(Msg::new(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a));
    }
}

pub fn set_msgs(s: &Set, out: &mut Vec<Msg>) {
    let mut a = Attrs::default();
    a.str(attr::SET_TABLE, TABLE)
        .str(attr::SET_NAME, &s.name)
        .be32(attr::SET_FLAGS, 0)
        .be32(
            attr::SET_KEY_TYPE,
            if s.v6 { TYPE_IPV6_ADDR } else { TYPE_IPV4_ADDR },
        )
        .be32(attr::SET_KEY_LEN, if s.v6 { 16 } else { 4 })
        .be32(attr::SET_ID, s.id);
    out.push(Msg::new(msg::NEWSET, NLM_F_CREATE, a));
    if s.elems.is_empty() {
        return;
    }
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, &s.name)
        .be32(attr::SET_ELEM_LIST_SET_ID, s.id)
        .nested(attr::SET_ELEM_LIST_ELEMENTS, |l| {
            // nft numbers the elements of the list 1, 2, 3…
            for (i, e) in s.elems.iter().enumerate() {
                l.nested(i as u16 + 1, |el| {
                    el.nested(attr::SET_ELEM_KEY, |k| {
                        k.bytes(attr::DATA_VALUE, &ip_bytes(e));
                    });
                });
            }
        });
    out.push(Msg::new(msg::NEWSETELEM, NLM_F_CREATE, a));
}

/// One transaction that replaces the context's table (or removes it when
/// `t` is None) with no moment without rules: create if missing, delete,
/// create anew. Without an existing table, only the creation.
pub fn replace_table(t: Option<&Table>, exists: bool) -> Vec<Msg> {
    let mut out = if exists {
        vec![new_table(None), del_table()]
    } else {
        Vec::new()
    };
    if let Some(t) = t {
        out.push(new_table(Some(&t.comment)));
        for s in &t.sets {
            set_msgs(s, &mut out);
        }
        for c in &t.chains {
            chain_msgs(c, &mut out);
        }
    }
    out
}

/// One transaction that replaces a context's chains in the host's table:
/// the old ones (`existing`) go, the new ones come.
pub fn replace_host_chains(existing: &[String], chains: &[Chain]) -> Vec<Msg> {
    let mut out = vec![new_table(Some(HOST_COMMENT))];
    for name in existing {
        out.push(del_chain(name));
    }
    for c in chains {
        chain_msgs(c, &mut out);
    }
    out
}

impl Table {
    pub fn digest(&self) -> Digest {
        digest_of(&self.chains, &self.sets)
    }

    /// The table in `nft -f` syntax.
    pub fn render(&self) -> String {
        let mut s = format!("table inet {TABLE} {{\n\tcomment \"{}\"\n", self.comment);
        for set in &self.sets {
            let ty = if set.v6 { "ipv6_addr" } else { "ipv4_addr" };
            write!(s, "\tset {} {{\n\t\ttype {ty}\n", set.name).unwrap();
            if !set.elems.is_empty() {
                let e: Vec<String> = set.elems.iter().map(|e| e.to_string()).collect();
                writeln!(s, "\t\telements = {{ {} }}", e.join(", ")).unwrap();
            }
            s.push_str("\t}\n");
        }
        for c in &self.chains {
            s.push_str(&render_chain(c));
        }
        s.push_str("}\n");
        s
    }
}

pub fn digest_of(chains: &[Chain], sets: &[Set]) -> Digest {
    let mut d = Digest::default();
    for c in chains {
        d.chains.push((c.name.clone(), c.hooknum));
        for r in &c.rules {
            d.rules.push((c.name.clone(), rule_comment(&c.name, r)));
        }
    }
    for s in sets {
        let mut e: Vec<Vec<u8>> = s.elems.iter().map(ip_bytes).collect();
        e.sort();
        d.sets.push((s.name.clone(), e));
    }
    super::observe::normalize(&mut d);
    d
}

pub fn render_chain(c: &Chain) -> String {
    let hook = match c.hooknum {
        HOOK_INPUT => "input".to_string(),
        HOOK_FORWARD => "forward".to_string(),
        HOOK_OUTPUT => "output".to_string(),
        _ => format!(
            "ingress device \"{}\"",
            c.device.as_deref().unwrap_or_default()
        ),
    };
    let mut s = format!(
        "\tchain {} {{\n\t\ttype filter hook {hook} priority 0; policy accept;\n",
        c.name
    );
    for r in &c.rules {
        writeln!(
            s,
            "\t\t{} comment \"{}\"",
            r.render(),
            rule_comment(&c.name, r)
        )
        .unwrap();
    }
    s.push_str("\t}\n");
    s
}
