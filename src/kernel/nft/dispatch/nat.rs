//! The host's NAT dispatch (docs/uplink.md): each context's NAT chains are
//! regular chains (`CTX_post` masquerades, `CTX_pre` DNATs its published
//! ports), reached from one base chain a hook through verdict maps:
//!
//! ```text
//! map netctx-masquerade { type ifname : verdict; elements = { "nx-web" : jump web_post } }
//! map netctx-publish { type nf_proto . inet_proto . inet_service : verdict;
//!     elements = { ipv4 . tcp . 8080 : jump web_pre, ipv6 . tcp . 8080 : jump web_pre } }
//! map netctx-publish4 { type ipv4_addr . inet_proto . inet_service : verdict; … }
//! map netctx-publish6 { type ipv6_addr . inet_proto . inet_service : verdict; … }
//! chain netctx-postrouting { type nat hook postrouting priority 100; iifname vmap @netctx-masquerade }
//! chain netctx-prerouting { type nat hook prerouting priority -100;
//!     ip daddr . meta l4proto . th dport vmap @netctx-publish4
//!     ip6 daddr . meta l4proto . th dport vmap @netctx-publish6
//!     meta nfproto . meta l4proto . th dport vmap @netctx-publish }
//! chain netctx-output { type nat hook output priority -100; (the same three) }
//! ```
//!
//! A base chain a context hit the kernel's limit of 1,024 hook entries a
//! hook point (E2BIG at the 1,025th uplink context). The context's chain
//! checks again what its element only selects (address, protocol, port,
//! uplink), so an element never widens what a rule allows. The masquerade
//! group (its map and base chain) exists while a context masquerades, the
//! publish group (three maps, two base chains) while one publishes.

use std::net::IpAddr;

use super::elems_msg;
use crate::kernel::nft::expr::{Action, ConcatKey, Rule, IPPROTO_TCP, IPPROTO_UDP};
use crate::kernel::nft::table::{
    del_chain, del_set, Chain, ChainKind, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING, PRIORITY_DSTNAT, PRIORITY_SRCNAT, TABLE,
};
use crate::kernel::nft::wire::{attr, msg, Attrs, Msg};
use netlink_packet_core::NLM_F_CREATE;

/// The base chains (no `_`: nobody's; longer than a context's name, so no
/// context's chain begins with one).
pub const POSTROUTING: &str = "netctx-postrouting";
pub const PREROUTING: &str = "netctx-prerouting";
pub const OUTPUT: &str = "netctx-output";

/// A NAT dispatch map.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum NatMap {
    /// Host veth → `CTX_post`.
    Masquerade,
    /// Family . protocol . host port → `CTX_pre` (a publish on every
    /// address of the host but loopback, or of one family).
    Publish,
    /// IPv4 host address . protocol . host port → `CTX_pre`.
    Publish4,
    /// The same for IPv6.
    Publish6,
}

/// The maps and base chains that come and go together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Masquerade,
    Publish,
}

/// nftables' user data of a map `type A . B . C : verdict` (byte orders,
/// as nft 1.0 sends them), so that `nft list` shows the types.
const CONCAT_UDATA: [u8; 28] = [
    0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
];
/// nft's datatype numbers (datatype.h) and TYPE_BITS, for concatenations.
const TYPE_NFPROTO: u32 = 2;
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;

fn concat(first: u32) -> u32 {
    (((first << 6) | TYPE_INET_PROTOCOL) << 6) | TYPE_INET_SERVICE
}

impl NatMap {
    pub const ALL: [NatMap; 4] = [
        NatMap::Masquerade,
        NatMap::Publish,
        NatMap::Publish4,
        NatMap::Publish6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NatMap::Masquerade => "netctx-masquerade",
            NatMap::Publish => "netctx-publish",
            NatMap::Publish4 => "netctx-publish4",
            NatMap::Publish6 => "netctx-publish6",
        }
    }

    /// Its id within a transaction: after the forward map's 1, as nft
    /// numbers them in the order of a file.
    pub fn id(self) -> u32 {
        2 + self as u32
    }

    pub fn group(self) -> Group {
        match self {
            NatMap::Masquerade => Group::Masquerade,
            _ => Group::Publish,
        }
    }

    /// (nft's key type, key length in bytes).
    fn key(self) -> (u32, u32) {
        match self {
            NatMap::Masquerade => (TYPE_IFNAME, 16),
            NatMap::Publish => (concat(TYPE_NFPROTO), 12),
            NatMap::Publish4 => (concat(TYPE_IPADDR), 12),
            NatMap::Publish6 => (concat(TYPE_IP6ADDR), 24),
        }
    }

    fn type_text(self) -> &'static str {
        match self {
            NatMap::Masquerade => "ifname",
            NatMap::Publish => "nf_proto . inet_proto . inet_service",
            NatMap::Publish4 => "ipv4_addr . inet_proto . inet_service",
            NatMap::Publish6 => "ipv6_addr . inet_proto . inet_service",
        }
    }

    fn create_msg(self) -> Msg {
        let (ty, len) = self.key();
        let udata: &[u8] = match self {
            NatMap::Masquerade => &super::IFNAME_UDATA,
            _ => &CONCAT_UDATA,
        };
        let mut a = Attrs::default();
        a.str(attr::SET_TABLE, TABLE)
            .str(attr::SET_NAME, self.name())
            .be32(attr::SET_FLAGS, super::SET_MAP)
            .be32(attr::SET_KEY_TYPE, ty)
            .be32(attr::SET_KEY_LEN, len)
            .be32(attr::SET_DATA_TYPE, super::DATA_VERDICT_TYPE)
            .be32(attr::SET_DATA_LEN, 0)
            .be32(attr::SET_ID, self.id())
            .bytes(attr::SET_USERDATA, udata);
        Msg::new(msg::NEWSET, NLM_F_CREATE, a)
    }

    /// The map in `nft -f` syntax, with these elements.
    pub fn render(self, elems: &[(NatKey, String)]) -> String {
        let mut s = format!(
            "\tmap {} {{\n\t\ttype {} : verdict\n",
            self.name(),
            self.type_text()
        );
        if !elems.is_empty() {
            let e: Vec<String> = elems.iter().map(|(k, c)| elem_text(k, c)).collect();
            s.push_str(&format!("\t\telements = {{ {} }}\n", e.join(", ")));
        }
        s.push_str("\t}\n");
        s
    }
}

/// `KEY : jump CHAIN` in nft syntax.
pub fn elem_text(k: &NatKey, chain: &str) -> String {
    format!("{} : jump {chain}", k.render())
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Masquerade, Group::Publish];

    pub fn maps(self) -> &'static [NatMap] {
        match self {
            Group::Masquerade => &[NatMap::Masquerade],
            Group::Publish => &[NatMap::Publish, NatMap::Publish4, NatMap::Publish6],
        }
    }

    /// Its base chains as they must be.
    pub fn chains(self) -> Vec<Chain> {
        let vmap = |key, m: NatMap| Rule {
            matches: vec![],
            action: Action::VmapConcat {
                key,
                set: m.name().into(),
                set_id: m.id(),
            },
        };
        let base = |name: &str, hooknum, prio, rules| Chain {
            name: name.into(),
            kind: ChainKind::Nat(prio),
            hooknum,
            device: None,
            rules,
        };
        match self {
            Group::Masquerade => vec![base(
                POSTROUTING,
                NF_INET_POST_ROUTING,
                PRIORITY_SRCNAT,
                vec![Rule {
                    matches: vec![],
                    action: Action::Vmap {
                        output: false,
                        set: NatMap::Masquerade.name().into(),
                        set_id: NatMap::Masquerade.id(),
                    },
                }],
            )],
            Group::Publish => {
                let rules = vec![
                    vmap(ConcatKey::AddrProtoPort { v6: false }, NatMap::Publish4),
                    vmap(ConcatKey::AddrProtoPort { v6: true }, NatMap::Publish6),
                    vmap(ConcatKey::ProtoPort, NatMap::Publish),
                ];
                vec![
                    base(
                        PREROUTING,
                        NF_INET_PRE_ROUTING,
                        PRIORITY_DSTNAT,
                        rules.clone(),
                    ),
                    base(OUTPUT, NF_INET_LOCAL_OUT, PRIORITY_DSTNAT, rules),
                ]
            }
        }
    }

    /// The group's base chains (its maps are made before): those named in
    /// `present` deleted, each made whole (`base_chain_msgs`).
    fn make_msgs(self, present: &[String], out: &mut Vec<Msg>) {
        out.extend(present.iter().map(|c| del_chain(c)));
        for c in self.chains() {
            super::base_chain_msgs(&c, out);
        }
    }

    /// The messages that remove the group: base chains (`present`), maps.
    pub fn remove_msgs(self, present: &[String], out: &mut Vec<Msg>) {
        out.extend(present.iter().map(|c| del_chain(c)));
        out.extend(self.maps().iter().map(|m| del_set(m.name())));
    }
}

/// Whether a chain of the host's table is a NAT dispatch base chain.
pub fn is_nat_dispatch(chain: &str) -> bool {
    [POSTROUTING, PREROUTING, OUTPUT].contains(&chain)
}

/// An element's key.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum NatKey {
    /// A host veth (masquerade).
    Iif(String),
    /// A published host port on every address of a family.
    Port { v6: bool, proto: u8, port: u16 },
    /// A published host port on one address.
    AddrPort { addr: IpAddr, proto: u8, port: u16 },
}

/// A value of a concatenation, in its 4-byte-aligned field.
fn field(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(v);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

impl NatKey {
    pub fn map(&self) -> NatMap {
        match self {
            NatKey::Iif(_) => NatMap::Masquerade,
            NatKey::Port { .. } => NatMap::Publish,
            NatKey::AddrPort { addr, .. } if addr.is_ipv6() => NatMap::Publish6,
            NatKey::AddrPort { .. } => NatMap::Publish4,
        }
    }

    /// The key as the kernel holds it.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let (proto, port) = match self {
            NatKey::Iif(name) => {
                let mut k = name.as_bytes().to_vec();
                k.resize(16, 0);
                return k;
            }
            NatKey::Port { v6, proto, port } => {
                field(&mut v, &[if *v6 { 10 } else { 2 }]);
                (*proto, *port)
            }
            NatKey::AddrPort { addr, proto, port } => {
                match addr {
                    IpAddr::V4(a) => field(&mut v, &a.octets()),
                    IpAddr::V6(a) => field(&mut v, &a.octets()),
                }
                (*proto, *port)
            }
        };
        field(&mut v, &[proto]);
        field(&mut v, &port.to_be_bytes());
        v
    }

    /// A key of `map` read back from the kernel; `None` when it is not one
    /// netctx writes.
    pub fn parse(map: NatMap, b: &[u8]) -> Option<NatKey> {
        let tail = |at: usize| -> Option<(u8, u16)> {
            let p = b.get(at..at + 8)?;
            Some((p[0], u16::from_be_bytes([p[4], p[5]])))
        };
        match map {
            NatMap::Masquerade => Some(NatKey::Iif(super::key_name(b))),
            NatMap::Publish if b.len() == 12 => {
                let v6 = match b[0] {
                    2 => false,
                    10 => true,
                    _ => return None,
                };
                let (proto, port) = tail(4)?;
                Some(NatKey::Port { v6, proto, port })
            }
            NatMap::Publish4 if b.len() == 12 => {
                let a: [u8; 4] = b[..4].try_into().ok()?;
                let (proto, port) = tail(4)?;
                let addr = IpAddr::from(a);
                Some(NatKey::AddrPort { addr, proto, port })
            }
            NatMap::Publish6 if b.len() == 24 => {
                let a: [u8; 16] = b[..16].try_into().ok()?;
                let (proto, port) = tail(16)?;
                let addr = IpAddr::from(a);
                Some(NatKey::AddrPort { addr, proto, port })
            }
            _ => None,
        }
    }

    /// In nft syntax.
    pub fn render(&self) -> String {
        let p = |proto: &u8| match *proto {
            IPPROTO_TCP => "tcp".to_string(),
            IPPROTO_UDP => "udp".to_string(),
            n => n.to_string(),
        };
        match self {
            NatKey::Iif(n) => format!("\"{n}\""),
            NatKey::Port { v6, proto, port } => {
                let f = if *v6 { "ipv6" } else { "ipv4" };
                format!("{f} . {} . {port}", p(proto))
            }
            NatKey::AddrPort { addr, proto, port } => format!("{addr} . {} . {port}", p(proto)),
        }
    }
}

/// What a run changes in the NAT dispatch, for one context or several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatChange {
    /// Groups to make (missing, or not as they must be), each with those
    /// of its base chains that are there and are replaced.
    pub make: Vec<(Group, Vec<String>)>,
    /// Elements that go, before the chains they jump to.
    pub remove: Vec<NatKey>,
    /// Elements (key, chain) that come, after the chains.
    pub add: Vec<(NatKey, String)>,
}

impl NatChange {
    pub fn is_empty(&self) -> bool {
        self.make.is_empty() && self.remove.is_empty() && self.add.is_empty()
    }

    /// The maps made and elements removed: before the chains go.
    pub fn before_msgs(&self, out: &mut Vec<Msg>) {
        for (g, _) in &self.make {
            out.extend(g.maps().iter().map(|m| m.create_msg()));
        }
        for m in NatMap::ALL {
            let keys: Vec<Vec<u8>> = self
                .remove
                .iter()
                .filter(|k| k.map() == m)
                .map(NatKey::bytes)
                .collect();
            for part in keys.chunks(512) {
                let e: Vec<(&[u8], Option<&str>)> =
                    part.iter().map(|k| (k.as_slice(), None)).collect();
                out.push(elems_msg(m.name(), m.id(), msg::DELSETELEM, &e));
            }
        }
    }

    /// The base chains made and the elements added: after the chains come.
    pub fn after_msgs(&self, out: &mut Vec<Msg>) {
        for (g, present) in &self.make {
            g.make_msgs(present, out);
        }
        for m in NatMap::ALL {
            let elems: Vec<(Vec<u8>, &str)> = self
                .add
                .iter()
                .filter(|(k, _)| k.map() == m)
                .map(|(k, c)| (k.bytes(), c.as_str()))
                .collect();
            for part in elems.chunks(512) {
                let e: Vec<(&[u8], Option<&str>)> =
                    part.iter().map(|(k, c)| (k.as_slice(), Some(*c))).collect();
                out.push(elems_msg(m.name(), m.id(), msg::NEWSETELEM, &e));
            }
        }
    }

    /// The elements added, in `nft -f` syntax (`plan -v`).
    pub fn render(&self) -> String {
        NatMap::ALL
            .iter()
            .map(|m| {
                let e: Vec<(NatKey, String)> = self
                    .add
                    .iter()
                    .filter(|(k, _)| k.map() == *m)
                    .cloned()
                    .collect();
                if e.is_empty() {
                    String::new()
                } else {
                    m.render(&e)
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "nat_tests.rs"]
mod tests;
