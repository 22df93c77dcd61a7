//! The host's forward dispatch. Every context has a forward chain in the
//! host's table; one base chain on the forward hook sends a packet to the
//! chain of the context whose host veth it came in by (or, failing that,
//! goes out by), through a verdict map keyed by interface name:
//!
//! ```text
//! map netctx-forward { type ifname : verdict; elements = { "nx-web" : jump web_forward, … } }
//! chain netctx-forward { type filter hook forward priority -10; policy accept;
//!     iifname vmap @netctx-forward
//!     oifname vmap @netctx-forward }
//! ```
//!
//! The same map dispatches the input hook (`netctx-input`: `iifname vmap
//! @netctx-forward`), so what a context sends to the host's own addresses
//! is judged by its chain too (there the output interface is none).
//!
//! A base chain a context would hit the kernel's limit of 1,024 hook entries
//! a hook point (E2BIG at the 1,025th context) and walk every context's chain
//! for every forwarded packet; the map is one lookup.

use super::expr::{Action, Rule};
use super::table::{
    chain_msgs, del_chain, flush_chain, Chain, ChainKind, NF_INET_FORWARD, NF_INET_LOCAL_IN, TABLE,
};
use super::wire::{attr, msg, Attrs, Msg};
use netlink_packet_core::NLM_F_CREATE;

pub mod nat;

/// The base chain and the map (one name: chains and sets are apart).
pub const DISPATCH: &str = "netctx-forward";
/// The input hook's base chain (nobody's: no `_` in the name).
pub const INPUT_DISPATCH: &str = "netctx-input";
/// The dispatch's priority on the forward hook.
pub const DISPATCH_PRIORITY: i32 = -10;
/// The map's id within a transaction.
const DISPATCH_ID: u32 = 1;
const SET_MAP: u32 = 0x8;
const TYPE_IFNAME: u32 = 41;
/// NFT_DATA_VERDICT, the data type of a verdict map.
const DATA_VERDICT_TYPE: u32 = 0xffff_ff00;
/// NFTNL_UDATA_SET_KEYBYTEORDER = host, DATABYTEORDER = network,
/// MERGE_ELEMENTS = no, as nft sends them for `type ifname : verdict`.
pub const IFNAME_UDATA: [u8; 18] = [0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0];
/// NFT_JUMP as the kernel's signed verdict code.
const NFT_JUMP: i32 = -3;

/// What a run changes in the dispatch, for one context or several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchChange {
    /// Make the map (it is missing).
    pub create_map: bool,
    /// Make the base chains; those named are there, not as they should be,
    /// and are replaced.
    pub chain: Option<Vec<String>>,
    /// Elements (host veths) that go, before the chains they jump to.
    pub remove: Vec<String>,
    /// Elements (host veth, chain) that come, after the chains.
    pub add: Vec<(String, String)>,
    /// The NAT dispatch's change (`nat`).
    pub nat: nat::NatChange,
}

impl DispatchChange {
    pub fn is_empty(&self) -> bool {
        !self.create_map
            && self.chain.is_none()
            && self.remove.is_empty()
            && self.add.is_empty()
            && self.nat.is_empty()
    }
}

/// The map and its elements in `nft -f` syntax.
pub fn render_map(elems: &[(String, String)]) -> String {
    let mut s = format!("\tmap {DISPATCH} {{\n\t\ttype ifname : verdict\n");
    if !elems.is_empty() {
        let e: Vec<String> = elems
            .iter()
            .map(|(k, c)| format!("\"{k}\" : jump {c}"))
            .collect();
        s.push_str(&format!("\t\telements = {{ {} }}\n", e.join(", ")));
    }
    s.push_str("\t}\n");
    s
}

/// The base chains as they must be: forward, then input.
pub fn dispatch_chains() -> [Chain; 2] {
    let input = Chain {
        name: INPUT_DISPATCH.into(),
        kind: ChainKind::FilterAt(DISPATCH_PRIORITY),
        hooknum: NF_INET_LOCAL_IN,
        device: None,
        rules: vec![Rule {
            matches: vec![],
            action: Action::Vmap {
                output: false,
                set: DISPATCH.into(),
                set_id: DISPATCH_ID,
            },
        }],
    };
    [dispatch_chain(), input]
}

/// Whether a chain of the host's table is one of the dispatch's (the
/// forward's or the NAT's): nobody's.
pub fn is_dispatch(chain: &str) -> bool {
    chain == DISPATCH || chain == INPUT_DISPATCH || nat::is_nat_dispatch(chain)
}

/// The forward hook's base chain as it must be.
pub fn dispatch_chain() -> Chain {
    let vmap = |output| Rule {
        matches: vec![],
        action: Action::Vmap {
            output,
            set: DISPATCH.into(),
            set_id: DISPATCH_ID,
        },
    };
    Chain {
        name: DISPATCH.into(),
        // Before the host's own filter chains (iptables' and firewalld's
        // at 0): what netctx accepts is marked by then.
        kind: ChainKind::FilterAt(DISPATCH_PRIORITY),
        hooknum: NF_INET_FORWARD,
        device: None,
        rules: vec![vmap(false), vmap(true)],
    }
}

fn ifname_key(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

fn map_msg() -> Msg {
    let mut a = Attrs::default();
    a.str(attr::SET_TABLE, TABLE)
        .str(attr::SET_NAME, DISPATCH)
        .be32(attr::SET_FLAGS, SET_MAP)
        .be32(attr::SET_KEY_TYPE, TYPE_IFNAME)
        .be32(attr::SET_KEY_LEN, 16)
        .be32(attr::SET_DATA_TYPE, DATA_VERDICT_TYPE)
        .be32(attr::SET_DATA_LEN, 0)
        .be32(attr::SET_ID, DISPATCH_ID)
        // nft's user data, so that `nft list` shows the names: keys in
        // host byte order (strings), data in network order.
        .bytes(attr::SET_USERDATA, &IFNAME_UDATA);
    Msg::new(msg::NEWSET, NLM_F_CREATE, a)
}

/// A shared base chain, made so that two transactions planned from one
/// observation (contexts made at once, `watch`'s first converge) leave it
/// whole: made (a no-op when there), emptied, then its rules — whichever
/// comes second does not append them again.
pub(super) fn base_chain_msgs(c: &Chain, out: &mut Vec<Msg>) {
    let bare = Chain {
        rules: Vec::new(),
        ..c.clone()
    };
    chain_msgs(&bare, out);
    out.push(flush_chain(&c.name));
    chain_msgs(c, out);
}

/// Elements of map `set` (id `set_id`) added (with the chain each jumps
/// to) or, without, deleted.
fn elems_msg(set: &str, set_id: u32, ty: u16, elems: &[(&[u8], Option<&str>)]) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, set);
    if ty == msg::NEWSETELEM {
        // Found by name when the map is there already, by id when it is
        // made in the same transaction.
        a.be32(attr::SET_ELEM_LIST_SET_ID, set_id);
    }
    a.nested(attr::SET_ELEM_LIST_ELEMENTS, |l| {
        for (i, (key, chain)) in elems.iter().enumerate() {
            let index = u16::try_from(i + 1).unwrap_or(u16::MAX);
            l.nested(index, |el| {
                el.nested(attr::SET_ELEM_KEY, |k| {
                    k.bytes(attr::DATA_VALUE, key);
                });
                if let Some(chain) = chain {
                    el.nested(attr::SET_ELEM_DATA, |d| {
                        d.nested(attr::DATA_VERDICT, |v| {
                            v.be32(
                                attr::VERDICT_CODE,
                                u32::from_ne_bytes(NFT_JUMP.to_ne_bytes()),
                            )
                            .str(attr::VERDICT_CHAIN, chain);
                        });
                    });
                }
            });
        }
    });
    let flags = if ty == msg::NEWSETELEM {
        NLM_F_CREATE
    } else {
        0
    };
    Msg::new(ty, flags, a)
}

/// The messages of a change to the host's chains with the dispatch: the
/// map if missing, the elements that go, the chains that go (`remove`) and
/// come (`chains`), the base chain if needed, the elements that come.
pub fn host_change_msgs(
    remove: &[String],
    chains: &[Chain],
    d: &DispatchChange,
    out: &mut Vec<Msg>,
) {
    if d.create_map {
        out.push(map_msg());
    }
    // Chunks keep each message well under the kernel's limit.
    for part in d.remove.chunks(512) {
        let keys: Vec<Vec<u8>> = part.iter().map(|k| ifname_key(k)).collect();
        let e: Vec<(&[u8], Option<&str>)> = keys.iter().map(|k| (k.as_slice(), None)).collect();
        out.push(elems_msg(DISPATCH, DISPATCH_ID, msg::DELSETELEM, &e));
    }
    d.nat.before_msgs(out);
    out.extend(remove.iter().map(|c| del_chain(c)));
    for c in chains {
        chain_msgs(c, out);
    }
    if let Some(present) = &d.chain {
        out.extend(present.iter().map(|c| del_chain(c)));
        for c in dispatch_chains() {
            base_chain_msgs(&c, out);
        }
    }
    for part in d.add.chunks(512) {
        let keys: Vec<(Vec<u8>, &str)> = part
            .iter()
            .map(|(k, c)| (ifname_key(k), c.as_str()))
            .collect();
        let e: Vec<(&[u8], Option<&str>)> =
            keys.iter().map(|(k, c)| (k.as_slice(), Some(*c))).collect();
        out.push(elems_msg(DISPATCH, DISPATCH_ID, msg::NEWSETELEM, &e));
    }
    d.nat.after_msgs(out);
}

/// A NUL-padded name as the kernel holds it (an element's key, a
/// verdict's chain), back to a string.
pub fn key_name(key: &[u8]) -> String {
    let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}
