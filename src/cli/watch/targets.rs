//! Which contexts a kernel event concerns: pure, from the event, where it
//! was seen, and what is known of the host's links.

use std::collections::HashMap;

use super::readers::Place;
use crate::model::Config;
use crate::observe::events::Event;
use crate::observe::nft::TABLE;

/// Which contexts an event may have made drift.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Nobody,
    All,
    One(String),
    /// A host address change on a link whose owner is not known yet.
    HostIndex(u32),
}

/// The owner of a host link, from its alias or its declared name.
pub fn host_owner(
    name: Option<&str>,
    alias: Option<&str>,
    declared: &HashMap<String, String>,
) -> Option<String> {
    alias
        .and_then(crate::model::alias_owner)
        .map(str::to_string)
        .or_else(|| name.and_then(|n| declared.get(n).cloned()))
}

/// Pure: the contexts `ev`, seen in `place`, is about. `index` maps host
/// ifindexes to contexts; `declared` host-side names to contexts.
pub fn target(
    place: &Place,
    ev: &Event,
    index: &HashMap<u32, String>,
    declared: &HashMap<String, String>,
) -> Target {
    let nft_ours = |table: &str| table == TABLE;
    match (place, ev) {
        (_, Event::Lost) => match place {
            Place::Host => Target::All,
            Place::Ctx(n, _) => Target::One(n.clone()),
        },
        (Place::Ctx(_, _), Event::Nft { table, .. }) if !nft_ours(table) => Target::Nobody,
        (Place::Ctx(n, _), _) => Target::One(n.clone()),
        (Place::Host, Event::Nft { table, chain }) if nft_ours(table) => match chain {
            Some(c) => c
                .split_once('_')
                .map_or(Target::All, |(ctx, _)| Target::One(ctx.to_string())),
            None => Target::All,
        },
        // A host route over a host link (an announced or routed address's):
        // that link's context.
        (Place::Host, Event::Route { oif: Some(i), .. }) => match index.get(i) {
            Some(c) => Target::One(c.clone()),
            None => Target::HostIndex(*i),
        },
        (Place::Host, Event::Nft { .. }) | (Place::Host, Event::Route { .. }) => Target::Nobody,
        (Place::Host, Event::Link { name, alias, .. }) => {
            match host_owner(name.as_deref(), alias.as_deref(), declared) {
                Some(c) => Target::One(c),
                None => Target::Nobody,
            }
        }
        (Place::Host, Event::Addr { index: i, .. }) => match index.get(i) {
            Some(c) => Target::One(c.clone()),
            None => Target::HostIndex(*i),
        },
    }
}

/// Declared host-side link names and their contexts.
pub fn declared_hosts(cfg: &Config) -> HashMap<String, String> {
    cfg.contexts
        .iter()
        .flat_map(|c| {
            c.links
                .iter()
                .filter_map(|l| l.host.clone().map(|h| (h, c.name.clone())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(n: &str) -> Place {
        Place::Ctx(n.into(), 1)
    }

    #[test]
    fn events_are_mapped_to_the_contexts_they_concern() {
        let idx: HashMap<u32, String> = [(7, "web".to_string())].into();
        let decl: HashMap<String, String> = [("nx-db".to_string(), "db".to_string())].into();
        let t = |p: &Place, e: Event| target(p, &e, &idx, &decl);
        let nft = |table: &str, chain: Option<&str>| Event::Nft {
            table: table.into(),
            chain: chain.map(str::to_string),
        };
        // Inside a context: everything but other tables is about it.
        assert_eq!(
            t(
                &ctx("a"),
                Event::Route {
                    deleted: true,
                    oif: None
                }
            ),
            Target::One("a".into())
        );
        assert_eq!(t(&ctx("a"), nft("netctx", None)), Target::One("a".into()));
        assert_eq!(t(&ctx("a"), nft("other", None)), Target::Nobody);
        // On the host: chains by their prefix, the table for everyone.
        assert_eq!(
            t(&Place::Host, nft("netctx", Some("web_nx-web"))),
            Target::One("web".into())
        );
        assert_eq!(t(&Place::Host, nft("netctx", None)), Target::All);
        assert_eq!(
            t(&Place::Host, nft("filter", Some("input"))),
            Target::Nobody
        );
        assert_eq!(t(&Place::Host, Event::Lost), Target::All);
        assert_eq!(
            t(
                &Place::Host,
                Event::Route {
                    deleted: true,
                    oif: None
                }
            ),
            Target::Nobody
        );
        // A host route over a context's host link (announce, routed).
        let route = |oif| Event::Route { deleted: true, oif };
        assert_eq!(t(&Place::Host, route(Some(7))), Target::One("web".into()));
        assert_eq!(t(&Place::Host, route(Some(8))), Target::HostIndex(8));
        // Host links: by alias, else by declared name; addresses by index.
        let link = |name: &str, alias: Option<&str>| Event::Link {
            index: 9,
            name: Some(name.into()),
            alias: alias.map(str::to_string),
            up: false,
            deleted: true,
        };
        assert_eq!(
            t(&Place::Host, link("nx-web", Some("netctx:web"))),
            Target::One("web".into())
        );
        assert_eq!(
            t(&Place::Host, link("nx-db", None)),
            Target::One("db".into())
        );
        assert_eq!(t(&Place::Host, link("eth0", None)), Target::Nobody);
        let addr = |index| Event::Addr {
            index,
            deleted: true,
        };
        assert_eq!(t(&Place::Host, addr(7)), Target::One("web".into()));
        assert_eq!(t(&Place::Host, addr(8)), Target::HostIndex(8));
    }
}
