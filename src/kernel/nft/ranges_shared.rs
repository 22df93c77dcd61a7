//! The administrator's floor (`deny`) as a few interval sets shared by
//! every context of the host's table, not a set a context: nf_tables keeps
//! a table's sets in a list searched by name at every set, element batch
//! and rule made, so a set a context made `up` of 10,000 contexts
//! quadratic; a few shared ones cost nothing of the kind, and their
//! elements change in place for every context at once.
//!
//! Per family, one set of the ranges without ports and one of those with
//! (`netctx-deny4`, `netctx-deny6`, `netctx-denyp4`, `netctx-denyp6`), for
//! the declared contexts (`[defaults] deny`); CNI attachments, whose floor
//! is always the default, share sets of their own (`netctx-cni-deny4`…),
//! so that neither front end rewrites the other's floor. No `_` in the
//! names: nobody's (a context's objects are `CTX_…`).

use super::{Elem, RangeChange, RangeSet};

/// The first id of the shared sets within a transaction: after the forward
/// dispatch's map (1) and the NAT dispatch's (2 to 5), as nft numbers the
/// sets of a file in order; the contexts' own range sets come after them.
const FIRST_ID: u32 = 6;
/// How many there are of one front end: two families, with ports or not.
pub const COUNT: u32 = 4;

/// The name of a shared deny set (`attachments`: the CNI attachments').
pub fn name(attachments: bool, v6: bool, ports: bool) -> String {
    let cni = if attachments { "cni-" } else { "" };
    let p = if ports { "p" } else { "" };
    format!("netctx-{cni}deny{p}{}", if v6 { 6 } else { 4 })
}

/// Its id within a transaction: deny4, deny6, denyp4, denyp6.
pub fn id(v6: bool, ports: bool) -> u32 {
    FIRST_ID + 2 * u32::from(ports) + u32::from(v6)
}

/// Whether a set of the host's table is a shared deny set, and whose:
/// `Some(true)` the attachments', `Some(false)` the declared contexts'.
pub fn scope(name: &str) -> Option<bool> {
    let rest = name.strip_prefix("netctx-")?;
    let (attachments, rest) = match rest.strip_prefix("cni-") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let tail = rest.strip_prefix("deny")?;
    matches!(tail, "4" | "6" | "p4" | "p6").then_some(attachments)
}

/// Whether a shared deny set holds ports (its name says it).
pub fn ported(name: &str) -> Option<bool> {
    scope(name).map(|_| name.contains("denyp"))
}

impl RangeChange {
    /// What brings a set whose elements are `have` (`None`: it is missing)
    /// to `set`: made with its elements, or its elements changed in place;
    /// `None` when it is as it must be.
    pub fn against(set: RangeSet, have: Option<&[Elem]>) -> Option<RangeChange> {
        let Some(have) = have else {
            return Some(RangeChange {
                set,
                create: true,
                del: Vec::new(),
                add: Vec::new(),
            });
        };
        let del: Vec<Elem> = have
            .iter()
            .filter(|e| !set.elems.contains(e))
            .cloned()
            .collect();
        let add: Vec<Elem> = set
            .elems
            .iter()
            .filter(|e| !have.contains(e))
            .cloned()
            .collect();
        (!del.is_empty() || !add.is_empty()).then_some(RangeChange {
            set,
            create: false,
            del,
            add,
        })
    }

    /// Whether it is about a shared set (not one context's).
    pub fn shared(&self) -> bool {
        scope(&self.set.name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_ids_and_scopes() {
        let all: Vec<(String, u32)> = [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .map(|(v6, p)| (name(false, v6, p), id(v6, p)))
            .collect();
        assert_eq!(
            all,
            [
                ("netctx-deny4".to_string(), 6),
                ("netctx-deny6".to_string(), 7),
                ("netctx-denyp4".to_string(), 8),
                ("netctx-denyp6".to_string(), 9)
            ]
        );
        assert_eq!(name(true, true, true), "netctx-cni-denyp6");
        assert_eq!(scope("netctx-deny4"), Some(false));
        assert_eq!(scope("netctx-cni-denyp4"), Some(true));
        assert_eq!(ported("netctx-cni-denyp4"), Some(true));
        assert_eq!(ported("netctx-deny6"), Some(false));
        for other in [
            "netctx-forward",
            "netctx-deny",
            "web_deny4",
            "netctx-denyx4",
        ] {
            assert_eq!(scope(other), None, "{other}");
        }
    }
}
