//! Every context's user-id range (docs/guests.md) is its own, and none
//! is a range `/etc/subuid` or `/etc/subgid` hands to rootless containers.

use std::collections::HashMap;

use super::parse::CtxDecl;
use super::validate::Errors;
use super::{Diag, Loc};

/// `/etc/subuid` and `/etc/subgid`, as (file, text): ranges handed to
/// users' rootless containers, which no context may take.
pub(super) fn subordinate_ids() -> Vec<(String, String)> {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|f| Some((f.to_string(), std::fs::read_to_string(f).ok()?)))
        .collect()
}

/// Every context's user-id range (docs/guests.md) is its own: no two
/// contexts share one, and none overlaps a range of `/etc/subuid` or
/// `/etc/subgid`.
pub(super) fn id_ranges(decls: &[CtxDecl], sub: &[(String, String)], diags: &mut Vec<Diag>) {
    let err = &mut Errors(diags);
    let mut taken: HashMap<u16, (String, Loc, bool)> = HashMap::new();
    for c in decls {
        let (n, loc) = match &c.id {
            Some((i, loc)) => (*i, loc),
            None => (crate::model::derived_idmap(&c.name), &c.loc),
        };
        let (first, count) = crate::model::id_range(n);
        let last = u64::from(first) + u64::from(count) - 1;
        let how = match c.id {
            Some(_) => format!("id {n}"),
            None => format!("range {n}, derived from its name"),
        };
        if let Some((other, at, explicit)) = taken.get(&n) {
            if c.id.is_some() && *explicit {
                // Two equal ids: said already by `unique_contexts`.
                continue;
            }
            err.at(
                loc,
                format!(
                    "context {}: user ids {first}-{last} ({how}) are already context \
                     {other}'s (at {at}); give one of them another `id`",
                    c.name
                ),
            );
            continue;
        }
        taken.insert(n, (c.name.clone(), loc.clone(), c.id.is_some()));
        for (file, text) in sub {
            for (i, line) in text.lines().enumerate() {
                let f: Vec<&str> = line.trim().split(':').collect();
                let (Some(start), Some(len)) = (
                    f.get(1).and_then(|x| x.parse::<u64>().ok()),
                    f.get(2).and_then(|x| x.parse::<u64>().ok()),
                ) else {
                    continue;
                };
                if len > 0 && start <= last && u64::from(first) < start + len {
                    err.at(
                        loc,
                        format!(
                            "context {}: user ids {first}-{last} ({how}) overlap {file} line {} \
                             ({}: {start}-{}); give the context another `id`",
                            c.name,
                            i + 1,
                            f[0],
                            start + len - 1
                        ),
                    );
                }
            }
        }
    }
}
