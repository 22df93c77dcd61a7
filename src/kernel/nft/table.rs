//! nf_tables tables, chains and sets as data, and their encoding: the
//! messages that create or replace them, their `nft` text, and the digest
//! compared with what the kernel holds. No policy: which rules a context gets
//! is `plan::rules`.

use std::fmt::Write;
use std::net::IpAddr;

use super::expr::Rule;
pub use super::ranges::{host_context_msgs, HostSets};
use super::wire::{attr, comment_udata, msg, Attrs, Msg, NLA_F_NESTED, NLM_F_APPEND, NLM_F_CREATE};

/// The name of netctx's table, in every namespace.
pub const TABLE: &str = "netctx";
/// Comment on the host's table: who made it.
pub const HOST_COMMENT: &str = "netctx";
/// The address sets of a context's table.
pub const SETS: [&str; 2] = ["assigned4", "assigned6"];

/// Hook numbers (enum nf_inet_hooks, linux/netfilter.h; NF_NETDEV_INGRESS).
pub const NF_INET_PRE_ROUTING: u32 = 0;
pub const NF_INET_LOCAL_IN: u32 = 1;
pub const NF_INET_FORWARD: u32 = 2;
pub const NF_INET_LOCAL_OUT: u32 = 3;
pub const NF_INET_POST_ROUTING: u32 = 4;
pub const NF_INET_INGRESS: u32 = 5;
/// The `hooknum` of a regular chain (no hook: reached by a jump), as a
/// chain dump without a hook reads.
pub const REGULAR: u32 = u32::MAX;
/// nft's `dstnat` and `srcnat` priorities.
pub const PRIORITY_DSTNAT: i32 = -100;
pub const PRIORITY_SRCNAT: i32 = 100;
/// Set key types (nft's datatype numbers, as in nftables' datatype.h).
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_IFNAME: u32 = 41;
/// NF_ACCEPT as a chain policy.
const POLICY_ACCEPT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub v6: bool,
    pub id: u32,
    pub elems: Vec<IpAddr>,
}

/// A set of addresses whose elements come and go at run time with a
/// timeout each (`flags timeout`): what netctx's resolver allowed a
/// context. Its elements are never part of the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedSet {
    pub name: String,
    pub v6: bool,
}

/// NFT_SET_TIMEOUT.
const SET_TIMEOUT_FLAG: u32 = 0x10;

impl TimedSet {
    /// Its id within a transaction (the rules look it up by name first).
    pub fn id(&self) -> u32 {
        let h = fnv(self.name.as_bytes(), 0xcbf2_9ce4_8422_2325);
        0x4000_0000 | (u32::try_from(h & 0x3fff_ffff).unwrap_or(0))
    }

    /// Create it, or leave it as it is (elements included) when it is
    /// there already: no NLM_F_EXCL.
    pub fn create_msg(&self) -> Msg {
        let key = if self.v6 {
            (TYPE_IP6ADDR, 16)
        } else {
            (TYPE_IPADDR, 4)
        };
        let mut a = Attrs::default();
        a.str(attr::SET_TABLE, TABLE)
            .str(attr::SET_NAME, &self.name)
            .be32(attr::SET_FLAGS, SET_TIMEOUT_FLAG)
            .be32(attr::SET_KEY_TYPE, key.0)
            .be32(attr::SET_KEY_LEN, key.1)
            .be32(attr::SET_ID, self.id());
        Msg::new(msg::NEWSET, NLM_F_CREATE, a)
    }

    /// In `nft -f` syntax (`plan -v`).
    pub fn render(&self) -> String {
        let ty = if self.v6 { "ipv6_addr" } else { "ipv4_addr" };
        format!(
            "\tset {} {{\n\t\ttype {ty}\n\t\tflags timeout\n\t}}\n",
            self.name
        )
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainKind {
    /// `type filter`, priority 0.
    #[default]
    Filter,
    /// `type nat` at this priority.
    Nat(i32),
    /// `type filter` at this priority (before the host's own filter chains
    /// at 0, when negative).
    FilterAt(i32),
}

impl ChainKind {
    fn name(self) -> &'static str {
        match self {
            ChainKind::Filter | ChainKind::FilterAt(_) => "filter",
            ChainKind::Nat(_) => "nat",
        }
    }

    fn priority(self) -> i32 {
        match self {
            ChainKind::Filter => 0,
            ChainKind::Nat(p) | ChainKind::FilterAt(p) => p,
        }
    }
}

/// A set of interface names (`type ifname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfnameSet {
    pub name: String,
    pub id: u32,
    pub elems: Vec<String>,
}

impl IfnameSet {
    /// Each element as the kernel holds it (16 bytes, NUL-padded), sorted.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self.elems.iter().map(|e| ifname_key(e)).collect();
        k.sort();
        k
    }
}

fn ifname_key(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

/// The messages that create an interface name set and its elements.
pub fn ifname_set_msgs(s: &IfnameSet, out: &mut Vec<Msg>) {
    let keys: Vec<Vec<u8>> = s.elems.iter().map(|e| ifname_key(e)).collect();
    typed_set_msgs(&s.name, s.id, (TYPE_IFNAME, 16), &keys, out);
}

pub fn del_set(name: &str) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::SET_TABLE, TABLE).str(attr::SET_NAME, name);
    Msg::new(msg::DELSET, 0, a)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub kind: ChainKind,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub chains: Vec<(String, u32)>,
    pub rules: Vec<(String, String)>,
    pub sets: Vec<(String, Vec<Vec<u8>>)>,
}

impl Digest {
    /// Rules grouped by chain name, in their order inside each chain.
    pub fn normalize(&mut self) {
        self.chains.sort();
        self.rules.sort_by(|a, b| a.0.cmp(&b.0));
        self.sets.sort();
    }
}

fn fnv(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A rule of `rule` at the head of a foreign chain (`family` `table`
/// `chain`, Docker's `ip filter DOCKER-USER`), with `comment`.
pub fn insert_foreign_rule(
    family: u8,
    table: &str,
    chain: &str,
    rule: &Rule,
    comment: &str,
) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::RULE_TABLE, table)
        .str(attr::RULE_CHAIN, chain)
        .bytes(attr::RULE_EXPRESSIONS | NLA_F_NESTED, &rule.encode().0)
        .bytes(attr::RULE_USERDATA, &comment_udata(comment));
    // Without NLM_F_APPEND: at the head of the chain.
    Msg::new(msg::NEWRULE, NLM_F_CREATE, a).in_family(family)
}

/// Delete rule `handle` of a foreign chain.
pub fn del_foreign_rule(family: u8, table: &str, chain: &str, handle: u64) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::RULE_TABLE, table)
        .str(attr::RULE_CHAIN, chain)
        .bytes(attr::RULE_HANDLE, &handle.to_be_bytes());
    Msg::new(msg::DELRULE, 0, a).in_family(family)
}

impl Chain {
    /// What a rule's comment digests of its chain: the name, and a base
    /// filter chain's priority other than 0 (a chain moved to another
    /// priority is made anew).
    pub fn comment_key(&self) -> String {
        match self.kind {
            ChainKind::FilterAt(p) if p != 0 => format!("{}@{p}", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The comment a rule carries: a digest of its chain and expressions.
pub fn rule_comment(chain: &str, r: &Rule) -> String {
    let h = fnv(&r.encode().0, fnv(chain.as_bytes(), 0xcbf2_9ce4_8422_2325));
    format!("netctx:{h:016x}")
}

pub fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
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

/// Delete every rule of a chain of netctx's table (`nft flush chain`).
pub fn flush_chain(name: &str) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::RULE_TABLE, TABLE).str(attr::RULE_CHAIN, name);
    Msg::new(msg::DELRULE, 0, a)
}

/// The messages that create a chain and its rules.
pub fn chain_msgs(c: &Chain, out: &mut Vec<Msg>) {
    let mut a = Attrs::default();
    a.str(attr::CHAIN_TABLE, TABLE)
        .str(attr::CHAIN_NAME, &c.name);
    if c.hooknum != REGULAR {
        a.str(attr::CHAIN_TYPE, c.kind.name())
            .be32(attr::CHAIN_POLICY, POLICY_ACCEPT)
            .nested(attr::CHAIN_HOOK, |h| {
                // The priority goes as its two's complement (nft's -100).
                let prio = u32::from_ne_bytes(c.kind.priority().to_ne_bytes());
                h.be32(attr::HOOK_HOOKNUM, c.hooknum)
                    .be32(attr::HOOK_PRIORITY, prio);
                if let Some(d) = &c.device {
                    h.str(attr::HOOK_DEV, d);
                }
            });
    }
    out.push(Msg::new(msg::NEWCHAIN, NLM_F_CREATE, a));
    for r in &c.rules {
        let mut a = Attrs::default();
        a.str(attr::RULE_TABLE, TABLE)
            .str(attr::RULE_CHAIN, &c.name)
            .bytes(attr::RULE_EXPRESSIONS | NLA_F_NESTED, &r.encode().0)
            .bytes(
                attr::RULE_USERDATA,
                &comment_udata(&rule_comment(&c.comment_key(), r)),
            );
        out.push(Msg::new(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a));
    }
}

pub fn set_msgs(s: &Set, out: &mut Vec<Msg>) {
    let key = if s.v6 {
        (TYPE_IP6ADDR, 16)
    } else {
        (TYPE_IPADDR, 4)
    };
    let keys: Vec<Vec<u8>> = s.elems.iter().map(ip_bytes).collect();
    typed_set_msgs(&s.name, s.id, key, &keys, out);
}

/// A set of keys of one type (datatype number, length) and its elements.
fn typed_set_msgs(name: &str, id: u32, key: (u32, u32), keys: &[Vec<u8>], out: &mut Vec<Msg>) {
    let mut a = Attrs::default();
    a.str(attr::SET_TABLE, TABLE)
        .str(attr::SET_NAME, name)
        .be32(attr::SET_FLAGS, 0)
        .be32(attr::SET_KEY_TYPE, key.0)
        .be32(attr::SET_KEY_LEN, key.1)
        .be32(attr::SET_ID, id);
    out.push(Msg::new(msg::NEWSET, NLM_F_CREATE, a));
    if keys.is_empty() {
        return;
    }
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, name)
        .be32(attr::SET_ELEM_LIST_SET_ID, id)
        .nested(attr::SET_ELEM_LIST_ELEMENTS, |l| {
            // nft numbers the elements of the list 1, 2, 3…
            for (i, k) in keys.iter().enumerate() {
                // Over 65,535 elements the list is too long anyway (Attrs refuses it).
                let index = u16::try_from(i + 1).unwrap_or(u16::MAX);
                l.nested(index, |el| {
                    el.nested(attr::SET_ELEM_KEY, |kk| {
                        kk.bytes(attr::DATA_VALUE, k);
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
/// the old ones (`existing`) go, the new ones come, with the dispatch's
/// change (`super::dispatch`).
pub fn replace_host_chains(
    existing: &[String],
    chains: &[Chain],
    dispatch: &super::dispatch::DispatchChange,
    sets: &HostSets,
) -> Vec<Msg> {
    let mut out = vec![new_table(Some(HOST_COMMENT))];
    host_context_msgs(existing, chains, dispatch, sets, &mut out);
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
            d.rules
                .push((c.name.clone(), rule_comment(&c.comment_key(), r)));
        }
    }
    for s in sets {
        let mut e: Vec<Vec<u8>> = s.elems.iter().map(ip_bytes).collect();
        e.sort();
        d.sets.push((s.name.clone(), e));
    }
    d.normalize();
    d
}

pub fn render_chain(c: &Chain) -> String {
    let mut s = format!("\tchain {} {{\n", c.name);
    if c.hooknum != REGULAR {
        writeln!(
            s,
            "\t\ttype {} hook {} priority {}; policy accept;",
            c.kind.name(),
            hook_name(c),
            c.kind.priority()
        )
        .unwrap();
    }
    for r in &c.rules {
        writeln!(
            s,
            "\t\t{} comment \"{}\"",
            r.render(),
            rule_comment(&c.comment_key(), r)
        )
        .unwrap();
    }
    s.push_str("\t}\n");
    s
}

fn hook_name(c: &Chain) -> String {
    match c.hooknum {
        NF_INET_PRE_ROUTING => "prerouting".to_string(),
        NF_INET_POST_ROUTING => "postrouting".to_string(),
        NF_INET_LOCAL_IN => "input".to_string(),
        NF_INET_FORWARD => "forward".to_string(),
        NF_INET_LOCAL_OUT => "output".to_string(),
        _ => format!(
            "ingress device \"{}\"",
            c.device.as_deref().unwrap_or_default()
        ),
    }
}
