//! Reading back netctx's table: its comment, chains, the comments of its
//! rules, and the elements of its sets, with one dump per kind.

use crate::kernel::netlink::NlError;
use crate::kernel::nft::dispatch::nat::{Group, NatKey, NatMap};
use crate::kernel::nft::dispatch::{dispatch_chains, key_name, DISPATCH, INPUT_DISPATCH};
use crate::kernel::nft::ranges::{parse_elems, ported_name, Elem};
use crate::kernel::nft::sock::Nft;
/// The name of netctx's table (`inet netctx`), in the host's namespace and
/// in each context's.
pub use crate::kernel::nft::table::TABLE;
use crate::kernel::nft::table::{digest_of, Digest, HOST_COMMENT};
use crate::kernel::nft::wire::{attr, msg, parse_attrs, udata_comment, Attrs};

/// The table `inet netctx` of one namespace as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Live {
    pub exists: bool,
    pub comment: Option<String>,
    pub digest: Digest,
    /// The host's forward dispatch map (`kernel::nft::dispatch`); `None`
    /// when there is no such map (read for the host only).
    pub dispatch: Option<Dispatch>,
    /// The NAT dispatch's maps (`kernel::nft::dispatch::nat`) as read for
    /// the host: those there and their elements.
    pub nat: NatLive,
    /// The names of the table's sets, sorted (read for the host only: the
    /// contexts' timed sets; their elements are not looked at).
    pub set_names: Vec<String>,
    /// The elements of the contexts' range sets (`kernel::nft::ranges`),
    /// by set name (read for the host only).
    pub ranges: std::collections::BTreeMap<String, Vec<Elem>>,
}

/// The elements of a dispatch map, (key — a host veth for the forward
/// dispatch —, chain jumped to), sorted by key, and the same sorted by
/// chain: what one context's elements are is binary searches, not a scan
/// of every context's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dispatch<K = String> {
    pub elems: Vec<(K, String)>,
    by_chain: Vec<(String, K)>,
}

impl<K> Default for Dispatch<K> {
    fn default() -> Self {
        Dispatch {
            elems: Vec::new(),
            by_chain: Vec::new(),
        }
    }
}

impl<K: Ord + Clone> From<Vec<(K, String)>> for Dispatch<K> {
    fn from(mut elems: Vec<(K, String)>) -> Self {
        elems.sort();
        let mut by_chain: Vec<(String, K)> =
            elems.iter().map(|(k, c)| (c.clone(), k.clone())).collect();
        by_chain.sort();
        Dispatch { elems, by_chain }
    }
}

/// The NAT dispatch's maps that are there, and their elements.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatLive {
    pub maps: Vec<NatMap>,
    pub elems: Dispatch<NatKey>,
}

impl NatLive {
    /// Whether every map of the group is there.
    pub fn has_maps(&self, g: Group) -> bool {
        g.maps().iter().all(|m| self.maps.contains(m))
    }
}

impl<K: Ord + Clone> Dispatch<K> {
    /// The elements of any of `veths` (keys) or jumping to a chain whose
    /// name starts with `prefix`, sorted.
    pub fn of(&self, veths: &[K], prefix: &str) -> Vec<(K, String)> {
        let mut out: Vec<(K, String)> = veths
            .iter()
            .flat_map(|v| {
                let start = self.elems.partition_point(|e| e.0 < *v);
                self.elems[start..].iter().take_while(move |e| e.0 == *v)
            })
            .cloned()
            .collect();
        out.extend(
            with_prefix(&self.by_chain, prefix)
                .iter()
                .map(|(c, k)| (k.clone(), c.clone())),
        );
        out.sort();
        out.dedup();
        out
    }
}

impl Live {
    /// Whether this, read in the host's namespace, is a table `inet netctx`
    /// that netctx did not make (its comment is not the host table's).
    pub fn foreign_host_table(&self) -> bool {
        self.exists && self.comment.as_deref() != Some(HOST_COMMENT)
    }

    /// The part of the digest about chains whose name starts with `prefix`
    /// (a context's chains in the host's table). The digest is normalized
    /// (sorted by chain name, as `read` and `digest_of` leave it), so these
    /// are one range of each list: a binary search, not a scan of the host's
    /// every rule for every context.
    pub fn only(&self, prefix: &str) -> Digest {
        Digest {
            chains: with_prefix(&self.digest.chains, prefix).to_vec(),
            rules: with_prefix(&self.digest.rules, prefix).to_vec(),
            sets: Vec::new(),
        }
    }

    /// Whether the dispatch's map and base chain are there as they must be
    /// (no context's chain begins with its name: context names are at most
    /// 11 characters).
    pub fn dispatch_ok(&self) -> bool {
        let [forward, input] = dispatch_chains();
        self.dispatch.is_some()
            && self.only(DISPATCH) == digest_of(&[forward], &[])
            && self.only(INPUT_DISPATCH) == digest_of(&[input], &[])
    }

    /// Whether the NAT dispatch's group `g` is there as it must be: its
    /// maps, and its base chains with their rules.
    pub fn nat_group_ok(&self, g: Group) -> bool {
        self.nat.has_maps(g)
            && g.chains()
                .iter()
                .all(|c| self.only(&c.name) == digest_of(std::slice::from_ref(c), &[]))
    }

    /// The names of the sets whose name starts with `prefix`.
    pub fn sets_named(&self, prefix: &str) -> Vec<String> {
        let start = self.set_names.partition_point(|n| n.as_str() < prefix);
        self.set_names[start..]
            .iter()
            .take_while(|n| n.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Whether a chain of that exact name is there.
    pub fn has_chain(&self, name: &str) -> bool {
        self.digest.chains.iter().any(|c| c.0 == name)
    }
}

/// The dispatch map's elements: `None` if there is no map.
pub fn read_dispatch(nft: &mut Nft) -> Result<Option<Dispatch>, NlError> {
    Ok(read_map(nft, DISPATCH)?.map(|e| {
        e.into_iter()
            .map(|(k, c)| (key_name(&k), c))
            .collect::<Vec<_>>()
            .into()
    }))
}

/// The NAT dispatch's maps and elements (keys netctx does not write are
/// left out).
pub fn read_nat(nft: &mut Nft) -> Result<NatLive, NlError> {
    let mut live = NatLive::default();
    let mut elems = Vec::new();
    for m in NatMap::ALL {
        if let Some(e) = read_map(nft, m.name())? {
            live.maps.push(m);
            elems.extend(
                e.into_iter()
                    .filter_map(|(k, c)| Some((NatKey::parse(m, &k)?, c))),
            );
        }
    }
    live.elems = elems.into();
    Ok(live)
}

/// A verdict map's elements: (key as the kernel holds it, chain jumped to).
type MapElems = Vec<(Vec<u8>, String)>;

/// A verdict map's elements: `None` if there is no such map.
fn read_map(nft: &mut Nft, name: &str) -> Result<Option<MapElems>, NlError> {
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, name);
    let answers = match nft.get(msg::GETSETELEM, &a.0, true) {
        Ok(a) => a,
        Err(e) if e.errno == libc::ENOENT => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for ans in answers {
        let Some(list) = ans.get(attr::SET_ELEM_LIST_ELEMENTS) else {
            continue;
        };
        for (_, elem) in parse_attrs(list) {
            let mut key = None;
            let mut chain = String::new();
            for (t, v) in parse_attrs(elem) {
                match t {
                    attr::SET_ELEM_KEY => {
                        key = parse_attrs(v)
                            .find(|(t, _)| *t == attr::DATA_VALUE)
                            .map(|(_, k)| k.to_vec());
                    }
                    attr::SET_ELEM_DATA => {
                        let verdict = parse_attrs(v).find(|(t, _)| *t == attr::DATA_VERDICT);
                        if let Some((_, vd)) = verdict {
                            chain = parse_attrs(vd)
                                .find(|(t, _)| *t == attr::VERDICT_CHAIN)
                                .map(|(_, c)| key_name(c))
                                .unwrap_or_default();
                        }
                    }
                    _ => {}
                }
            }
            out.extend(key.map(|k| (k, chain)));
        }
    }
    Ok(Some(out))
}

/// The entries of `sorted` (by name) whose name starts with `prefix`.
fn with_prefix<'a, T>(sorted: &'a [(String, T)], prefix: &str) -> &'a [(String, T)] {
    let start = sorted.partition_point(|e| e.0.as_str() < prefix);
    let len = sorted[start..].partition_point(|e| e.0.starts_with(prefix));
    &sorted[start..start + len]
}

pub fn read(nft: &mut Nft, sets: &[&str]) -> Result<Live, NlError> {
    let mut live = read_chains(nft)?;
    if !live.exists {
        return Ok(live);
    }
    read_rules_and_sets(nft, sets, &mut live)?;
    Digest::normalize(&mut live.digest);
    for name in live.set_names.clone() {
        if let Some(ports) = ported_name(&name) {
            let lists = set_elem_lists(nft, &name)?;
            let elems = parse_elems(ports, lists.iter().map(Vec::as_slice));
            live.ranges.insert(name, elems);
        }
    }
    Ok(live)
}

/// The names of the host table's sets, sorted; none when the table is not
/// there or not netctx's (a dump of its sets, not of every chain).
pub fn read_set_names(nft: &mut Nft) -> Result<Vec<String>, NlError> {
    let mut name = Attrs::default();
    name.str(attr::TABLE_NAME, TABLE);
    let tables = match nft.get(msg::GETTABLE, &name.0, false) {
        Ok(t) => t,
        Err(e) if e.errno == libc::ENOENT => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let ours = tables
        .first()
        .and_then(|t| t.get(attr::TABLE_USERDATA).and_then(udata_comment));
    if ours.as_deref() != Some(HOST_COMMENT) {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = nft
        .get(msg::GETSET, &name.0, true)?
        .iter()
        .filter(|s| s.get_str(attr::SET_TABLE).as_deref() == Some(TABLE))
        .filter_map(|s| s.get_str(attr::SET_NAME))
        .collect();
    names.sort();
    Ok(names)
}

/// The elements of one range set of the host's table (`ports`: with
/// protocol and port); `None` when there is no such set.
pub fn read_range_set(nft: &mut Nft, set: &str, ports: bool) -> Result<Option<Vec<Elem>>, NlError> {
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, set);
    match nft.get(msg::GETSETELEM, &a.0, true) {
        Ok(answers) => {
            let lists: Vec<&[u8]> = answers
                .iter()
                .filter_map(|a| a.get(attr::SET_ELEM_LIST_ELEMENTS))
                .collect();
            Ok(Some(parse_elems(ports, lists.into_iter())))
        }
        Err(e) if e.errno == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// The element lists of a set's dump (none when it is gone meanwhile).
fn set_elem_lists(nft: &mut Nft, set: &str) -> Result<Vec<Vec<u8>>, NlError> {
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, set);
    match nft.get(msg::GETSETELEM, &a.0, true) {
        Ok(answers) => Ok(answers
            .iter()
            .filter_map(|a| a.get(attr::SET_ELEM_LIST_ELEMENTS).map(<[u8]>::to_vec))
            .collect()),
        Err(e) if e.errno == libc::ENOENT => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The table and its chains, without rules or sets (what `down` needs:
/// dumping every rule costs the kernel far more).
pub fn read_chains(nft: &mut Nft) -> Result<Live, NlError> {
    let mut name = Attrs::default();
    name.str(attr::TABLE_NAME, TABLE);
    let tables = match nft.get(msg::GETTABLE, &name.0, false) {
        Ok(t) => t,
        Err(e) if e.errno == libc::ENOENT => return Ok(Live::default()),
        Err(e) => return Err(e),
    };
    let Some(t) = tables.first() else {
        return Ok(Live::default());
    };
    let mut live = Live {
        exists: true,
        comment: t.get(attr::TABLE_USERDATA).and_then(udata_comment),
        digest: Digest::default(),
        dispatch: None,
        nat: NatLive::default(),
        set_names: Vec::new(),
        ranges: Default::default(),
    };
    for c in nft.get(msg::GETCHAIN, &[], true)? {
        if c.get_str(attr::CHAIN_TABLE).as_deref() != Some(TABLE) {
            continue;
        }
        let hooknum = c
            .get(attr::CHAIN_HOOK)
            .and_then(|h| parse_attrs(h).find(|(t, _)| *t == attr::HOOK_HOOKNUM))
            .and_then(|(_, v)| v.try_into().ok().map(u32::from_be_bytes))
            .unwrap_or(u32::MAX);
        live.digest
            .chains
            .push((c.get_str(attr::CHAIN_NAME).unwrap_or_default(), hooknum));
    }
    live.digest.chains.sort();
    if live.comment.as_deref() == Some(HOST_COMMENT) {
        for s in nft.get(msg::GETSET, &name.0, true)? {
            if s.get_str(attr::SET_TABLE).as_deref() == Some(TABLE) {
                live.set_names.extend(s.get_str(attr::SET_NAME));
            }
        }
        live.set_names.sort();
    }
    Ok(live)
}

fn read_rules_and_sets(nft: &mut Nft, sets: &[&str], live: &mut Live) -> Result<(), NlError> {
    let mut filter = Attrs::default();
    filter.str(attr::RULE_TABLE, TABLE);
    for r in nft.get(msg::GETRULE, &filter.0, true)? {
        let chain = r.get_str(attr::RULE_CHAIN).unwrap_or_default();
        let comment = r
            .get(attr::RULE_USERDATA)
            .and_then(udata_comment)
            .unwrap_or_default();
        live.digest.rules.push((chain, comment));
    }
    for s in sets {
        let mut a = Attrs::default();
        a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
            .str(attr::SET_ELEM_LIST_SET, s);
        let mut elems = Vec::new();
        let answers = match nft.get(msg::GETSETELEM, &a.0, true) {
            Ok(a) => a,
            Err(e) if e.errno == libc::ENOENT => continue,
            Err(e) => return Err(e),
        };
        for ans in answers {
            let Some(list) = ans.get(attr::SET_ELEM_LIST_ELEMENTS) else {
                continue;
            };
            for (_, elem) in parse_attrs(list) {
                let key = parse_attrs(elem)
                    .find(|(t, _)| *t == attr::SET_ELEM_KEY)
                    .and_then(|(_, k)| parse_attrs(k).find(|(t, _)| *t == attr::DATA_VALUE))
                    .map(|(_, v)| v.to_vec());
                elems.extend(key);
            }
        }
        elems.sort();
        live.digest.sets.push((s.to_string(), elems));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contexts_dispatch_elements_are_what_a_scan_finds() {
        let pairs = [
            ("nx1", "c1_forward"),
            ("nx10", "c10_forward"),
            ("nx2", "c1_forward"), // another veth jumping to c1's chain
            ("eth9", "c1_forward"),
            ("nx1x", "c2_forward"),
            ("nx3", "c3_forward"),
        ];
        let elems: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, c)| (k.to_string(), c.to_string()))
            .collect();
        let d = Dispatch::from(elems.clone());
        for (veths, prefix) in [
            (vec!["nx1"], "c1_"),
            (vec!["nx10"], "c10_"),
            (vec!["nx3", "nx1x"], "c3_"),
            (vec!["nx9"], "c9_"),
            (vec![], "c1_"),
        ] {
            let veths: Vec<String> = veths.into_iter().map(String::from).collect();
            let mut scan: Vec<(String, String)> = elems
                .iter()
                .filter(|(k, c)| veths.contains(k) || c.starts_with(prefix))
                .cloned()
                .collect();
            scan.sort();
            assert_eq!(d.of(&veths, prefix), scan, "{veths:?} {prefix}");
        }
    }

    #[test]
    fn only_is_the_range_of_one_prefix_however_names_sort_around_it() {
        let names = [
            "c1_forward",
            "c1_nx1",
            "c10_nx10",
            "c1x",
            "c0_nx0",
            "c2_nx2",
            "c1_",
        ];
        let mut live = Live::default();
        for n in names {
            live.digest.chains.push((n.to_string(), 5));
            live.digest.rules.push((n.to_string(), format!("r-{n}")));
            live.digest.rules.push((n.to_string(), format!("s-{n}")));
        }
        live.digest.normalize();
        for prefix in ["c1_", "c10_", "c0_", "c3_", "c", ""] {
            fn scan<T>(v: &[(String, T)], prefix: &str) -> Vec<String> {
                v.iter()
                    .filter(|e| e.0.starts_with(prefix))
                    .map(|e| e.0.clone())
                    .collect()
            }
            let got = live.only(prefix);
            let chains: Vec<String> = got.chains.iter().map(|c| c.0.clone()).collect();
            assert_eq!(chains, scan(&live.digest.chains, prefix), "{prefix}");
            let rules: Vec<String> = got.rules.iter().map(|c| c.0.clone()).collect();
            assert_eq!(rules, scan(&live.digest.rules, prefix), "{prefix}");
        }
    }
}
