//! The host's own firewall as nf_tables holds it: every table but netctx's
//! `inet netctx` in the families a forwarded or local IP packet meets (ip,
//! ip6, inet), with its chains (base chains with hook, priority and
//! policy) and rules, each rule's expressions decoded as far as `plan`'s
//! judgement needs (interface names, packet marks, verdicts) and the rest
//! kept by name. iptables-nft's tables (Docker's `ip filter`, ufw's) are
//! nf_tables tables like any other; iptables-legacy's are not (`legacy`).

use crate::kernel::netlink::wire::{cstr, parse_attrs};
use crate::kernel::netlink::NlError;
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::table::TABLE;
use crate::kernel::nft::wire::{attr, msg, Attrs};

pub use crate::kernel::nft::wire::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};

/// A verdict as a rule or a policy gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// `reject`, or iptables' REJECT target.
    Reject,
    Jump(String),
    Goto(String),
    Return,
    /// Anything else that ends the walk in this chain (queue, stolen).
    Other(String),
}

/// What a register is loaded with, as far as the judgement tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    IifName,
    OifName,
    Mark,
    /// Anything else (a payload, conntrack, another meta key): unknown to
    /// the judgement; named for the reader.
    Other(String),
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A load into register `dreg`.
    Load { dreg: u32, what: Load },
    /// `reg = (reg & mask) ^ xor`.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// A comparison of register `sreg` (`eq`: op 0, `neq`: op 1, …).
    Cmp { sreg: u32, op: u32, data: Vec<u8> },
    /// A set lookup (`… @set`, or iptables' `-m set`): unknown.
    Lookup,
    /// A verdict (an `immediate` to the verdict register, `reject`, or an
    /// iptables target).
    Verdict(Verdict),
    /// A statement that neither matches nor decides (counter, log, limit,
    /// a mark or NAT statement); by its name.
    Statement(String),
    /// A match the judgement cannot read (iptables' `-m …` extensions);
    /// by its name.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRule {
    pub handle: u64,
    pub exprs: Vec<Expr>,
    /// Its comment (nft's `comment`, iptables-nft's too).
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignChain {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// (hook number, priority, type) of a base chain.
    pub hook: Option<(u32, i32, String)>,
    /// A base chain's policy: `true` drop, `false` accept.
    pub policy_drop: bool,
    pub rules: Vec<ForeignRule>,
}

impl ForeignChain {
    /// `ip filter FORWARD`, as nft names it.
    pub fn title(&self) -> String {
        format!("{} {} {}", family_name(self.family), self.table, self.name)
    }
}

pub fn family_name(f: u8) -> &'static str {
    match f {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        _ => "?",
    }
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn nested(v: &[u8], ty: u16) -> Option<&[u8]> {
    parse_attrs(v).find(|(t, _)| *t == ty).map(|(_, d)| d)
}

fn data_value(v: &[u8]) -> Vec<u8> {
    nested(v, attr::DATA_VALUE).unwrap_or_default().to_vec()
}

const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
const NFT_CONTINUE: i32 = -1;

fn verdict(data: &[u8]) -> Option<Verdict> {
    verdict_of(nested(data, attr::DATA_VERDICT)?)
}

/// A verdict from its attributes (NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN):
/// none for `continue`.
pub fn verdict_of(v: &[u8]) -> Option<Verdict> {
    let code = be32(nested(v, attr::VERDICT_CODE)?)? as i32;
    let chain = || nested(v, attr::VERDICT_CHAIN).map(cstr).unwrap_or_default();
    Some(match code {
        NF_ACCEPT => Verdict::Accept,
        NF_DROP => Verdict::Drop,
        NFT_JUMP => Verdict::Jump(chain()),
        NFT_GOTO => Verdict::Goto(chain()),
        NFT_RETURN => Verdict::Return,
        NFT_CONTINUE => return None,
        c => Verdict::Other(format!("verdict {c}")),
    })
}

/// One expression from its name and data.
pub fn decode_expr(name: &str, d: &[u8]) -> Expr {
    let u = |ty| nested(d, ty).and_then(be32);
    match name {
        "meta" => match (u(1), u(2), u(3)) {
            // NFTA_META_DREG, NFTA_META_KEY: a load.
            (Some(dreg), Some(key), _) => Expr::Load {
                dreg,
                what: match key {
                    6 => Load::IifName,
                    7 => Load::OifName,
                    3 => Load::Mark,
                    15 => Load::Other("meta nfproto".into()),
                    16 => Load::Other("meta l4proto".into()),
                    k => Load::Other(format!("meta key {k}")),
                },
            },
            // NFTA_META_SREG: `meta … set`.
            _ => Expr::Statement("meta set".into()),
        },
        // `socket` and `hash` carry their destination register in attribute
        // 2 (NFTA_SOCKET_DREG, NFTA_HASH_DREG); the others in 1.
        "socket" | "hash" => match u(2) {
            Some(dreg) => Expr::Load {
                dreg,
                what: Load::Other(name.to_string()),
            },
            None => Expr::Statement(name.to_string()),
        },
        "payload" | "ct" | "exthdr" | "fib" | "rt" | "osf" | "numgen" => match u(1) {
            Some(dreg) if name != "ct" || nested(d, 4).is_none() => Expr::Load {
                dreg,
                what: Load::Other(match (name, u(2), u(3), u(4)) {
                    ("payload", Some(base), Some(off), Some(len)) => {
                        format!("payload @{base},{off},{len}")
                    }
                    ("ct", Some(0), _, _) => "ct state".into(),
                    _ => name.to_string(),
                }),
            },
            _ => Expr::Statement(format!("{name} set")),
        },
        "bitwise" => Expr::Bitwise {
            sreg: u(1).unwrap_or(0),
            dreg: u(2).unwrap_or(0),
            mask: nested(d, 4).map(data_value).unwrap_or_default(),
            xor: nested(d, 5).map(data_value).unwrap_or_default(),
        },
        "cmp" => Expr::Cmp {
            sreg: u(1).unwrap_or(0),
            op: u(2).unwrap_or(0),
            data: nested(d, 3).map(data_value).unwrap_or_default(),
        },
        "lookup" | "range" => Expr::Lookup,
        "immediate" => match (u(1), nested(d, 2).and_then(verdict)) {
            (Some(0), Some(v)) => Expr::Verdict(v),
            // Data for a statement that follows (a NAT's address, port):
            // said by that statement.
            _ => Expr::Statement(String::new()),
        },
        // NFTA_NAT_TYPE: NFT_NAT_SNAT 0, NFT_NAT_DNAT 1.
        "nat" => Expr::Statement(if u(1) == Some(1) { "dnat" } else { "snat" }.into()),
        "masq" => Expr::Statement("masquerade".into()),
        "reject" => Expr::Verdict(Verdict::Reject),
        // iptables-nft's extensions: `match` by name, `target` by name.
        "match" => Expr::Unknown(format!("-m {}", nested(d, 1).map(cstr).unwrap_or_default())),
        "target" => {
            let t = nested(d, 1).map(cstr).unwrap_or_default();
            match t.as_str() {
                "REJECT" => Expr::Verdict(Verdict::Reject),
                "DROP" => Expr::Verdict(Verdict::Drop),
                "ACCEPT" => Expr::Verdict(Verdict::Accept),
                _ => Expr::Statement(format!("-j {t}")),
            }
        }
        other => Expr::Statement(other.to_string()),
    }
}

fn decode_rule(exprs: &[u8]) -> Vec<Expr> {
    parse_attrs(exprs)
        .filter(|(t, _)| *t == attr::LIST_ELEM)
        .map(|(_, e)| {
            let name = nested(e, attr::EXPR_NAME).map(cstr).unwrap_or_default();
            decode_expr(&name, nested(e, attr::EXPR_DATA).unwrap_or_default())
        })
        .collect()
}

/// Every foreign table's chains and rules in the calling thread's
/// namespace (`inet netctx` left out).
pub fn read(nft: &mut Nft) -> Result<Vec<ForeignChain>, NlError> {
    read_tables(nft, false)
}

/// Every table's chains and rules (netctx's own too, with `with_ours`).
pub fn read_tables(nft: &mut Nft, with_ours: bool) -> Result<Vec<ForeignChain>, NlError> {
    let wanted = |family: u8| matches!(family, NFPROTO_INET | NFPROTO_IPV4 | NFPROTO_IPV6);
    let ours = |family: u8, table: &str| !with_ours && family == NFPROTO_INET && table == TABLE;
    let mut chains = Vec::new();
    for c in nft.get_all(msg::GETCHAIN)? {
        let table = c.get_str(attr::CHAIN_TABLE).unwrap_or_default();
        if !wanted(c.family) || ours(c.family, &table) {
            continue;
        }
        let hook = c.get(attr::CHAIN_HOOK).map(|h| {
            let num = nested(h, attr::HOOK_HOOKNUM)
                .and_then(be32)
                .unwrap_or(u32::MAX);
            let prio = nested(h, attr::HOOK_PRIORITY).and_then(be32).unwrap_or(0) as i32;
            (num, prio, c.get_str(attr::CHAIN_TYPE).unwrap_or_default())
        });
        chains.push(ForeignChain {
            family: c.family,
            table,
            name: c.get_str(attr::CHAIN_NAME).unwrap_or_default(),
            policy_drop: c.get(attr::CHAIN_POLICY).and_then(be32) == Some(0),
            hook,
            rules: Vec::new(),
        });
    }
    if chains.is_empty() {
        return Ok(chains);
    }
    // The rules of those tables only, a dump each: netctx's own table (12 MB
    // of rules with 1,000 contexts) is not read to be left out.
    let mut tables: Vec<(u8, String)> =
        chains.iter().map(|c| (c.family, c.table.clone())).collect();
    tables.sort();
    tables.dedup();
    let mut rules = Vec::new();
    for (family, table) in &tables {
        let mut filter = Attrs::default();
        filter.str(attr::RULE_TABLE, table);
        match nft.dump_in(msg::GETRULE, *family, &filter.0) {
            Ok(r) => rules.extend(r),
            // Gone between the two dumps: nothing of it to judge.
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
    }
    for r in rules {
        let table = r.get_str(attr::RULE_TABLE).unwrap_or_default();
        let chain = r.get_str(attr::RULE_CHAIN).unwrap_or_default();
        let Some(c) = chains
            .iter_mut()
            .find(|c| c.family == r.family && c.table == table && c.name == chain)
        else {
            continue;
        };
        c.rules.push(ForeignRule {
            handle: r
                .get(attr::RULE_HANDLE)
                .and_then(|h| Some(u64::from_be_bytes(h.get(..8)?.try_into().ok()?)))
                .unwrap_or(0),
            exprs: decode_rule(r.get(attr::RULE_EXPRESSIONS).unwrap_or_default()),
            comment: r
                .get(attr::RULE_USERDATA)
                .and_then(crate::kernel::nft::wire::udata_comment),
        });
    }
    Ok(chains)
}

/// A rule as a line a reader can follow: its matches (interface names,
/// marks, what else it loads and compares), statements and verdict.
pub fn render(exprs: &[Expr]) -> String {
    let mut regs: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
    let mut parts: Vec<String> = Vec::new();
    for e in exprs {
        match e {
            Expr::Load { dreg, what } => {
                let w = match what {
                    Load::IifName => "iifname".to_string(),
                    Load::OifName => "oifname".to_string(),
                    Load::Mark => "meta mark".to_string(),
                    Load::Other(n) => n.clone(),
                };
                regs.insert(*dreg, w);
            }
            Expr::Bitwise {
                sreg, dreg, mask, ..
            } => {
                let w = regs.get(sreg).cloned().unwrap_or_default();
                regs.insert(*dreg, format!("{w} & 0x{}", hex(mask)));
            }
            Expr::Cmp { sreg, op, data } => {
                let w = regs.get(sreg).cloned().unwrap_or_else(|| "?".into());
                let o = ["==", "!=", "<", "<=", ">", ">="]
                    .get(*op as usize)
                    .copied()
                    .unwrap_or("?");
                let v = if w.ends_with("ifname") {
                    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                    let star = if end == data.len() { "*" } else { "" };
                    format!("\"{}{star}\"", String::from_utf8_lossy(&data[..end]))
                } else {
                    format!("0x{}", hex(data))
                };
                parts.push(format!("{w} {o} {v}"));
            }
            Expr::Lookup => parts.push("@set".into()),
            Expr::Statement(n) if n.is_empty() => {}
            Expr::Unknown(n) | Expr::Statement(n) => parts.push(n.clone()),
            Expr::Verdict(v) => parts.push(verdict_text(v)),
        }
    }
    parts.join(" ")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A verdict as nft writes it.
pub fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject => "reject".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Return => "return".into(),
        Verdict::Other(o) => o.clone(),
    }
}
