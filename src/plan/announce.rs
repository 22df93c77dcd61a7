//! `announce = true` (docs/cluster.md): each of the context's addresses
//! gets a host route `ADDR/32` (`/128`) over the host veth of its link, of
//! protocol netctx, for a routing daemon to export. Routes of protocol
//! netctx over the context's host veths that are not wanted (announce
//! turned off, an address gone) go. Pure.

use std::net::IpAddr;

use super::{Action, Made, Observed};
use crate::model::{Context, LinkKind};

/// The announced addresses of `ctx`, each with the host veth of its link.
pub fn wanted(ctx: &Context) -> Vec<(IpAddr, String)> {
    if !ctx.announce {
        return Vec::new();
    }
    ctx.links
        .iter()
        .filter(|l| l.kind == LinkKind::Veth)
        .filter_map(|l| l.host.as_ref().map(|h| (l, h)))
        .flat_map(|(l, h)| l.addresses.iter().map(move |a| (a.addr, h.clone())))
        .collect()
}

/// Announced routes missing (or over a veth made by this plan) are added;
/// routes of protocol netctx over the context's host veths that no address
/// wants are removed.
pub(super) fn plan(ctx: &Context, obs: &Observed, made: &Made, acts: &mut Vec<Action>) {
    let want = wanted(ctx);
    // The context's host veths that are there and kept: name, ifindex.
    let kept: Vec<(&str, u32)> = ctx
        .links
        .iter()
        .filter(|l| !made.fresh.contains(&l.name.as_str()))
        .filter_map(|l| l.host.as_deref())
        .filter_map(|h| obs.host.get(h).map(|o| (h, o.index)))
        .collect();
    for (link, index) in &kept {
        for (addr, i) in &obs.host_routed.announced {
            if i == index && !want.iter().any(|(a, h)| a == addr && h == link) {
                acts.push(Action::Unannounce {
                    link: link.to_string(),
                    addr: *addr,
                });
            }
        }
    }
    for (addr, link) in want {
        let index = kept.iter().find(|(h, _)| *h == link).map(|(_, i)| *i);
        let there = index.is_some_and(|i| obs.host_routed.announced.contains(&(addr, i)));
        if !there {
            acts.push(Action::Announce { link, addr });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::load_sources;
    use crate::observe::links::{HostLinks, ObsLink, RoutedObs};
    use crate::observe::nft::Live;
    use crate::observe::owner::NsOwner;

    fn ctx(announce: bool) -> Context {
        let text = format!(
            "[context.web]\nannounce = {announce}\n[[context.web.link]]\nkind = \"veth\"\n\
             name = \"eth0\"\naddresses = [\"10.70.0.2/24\", \"fd70::2/64\"]\n"
        );
        load_sources(&[(PathBuf::from("t.toml"), text)])
            .unwrap()
            .contexts[0]
            .clone()
    }

    fn host() -> HostLinks {
        let l = ObsLink {
            index: 7,
            name: "nx-web".into(),
            kind: Some("veth".into()),
            up: true,
            alias: None,
            addrs: vec![],
            link_local: vec![],
            mac: None,
            qdisc: None,
            tbf: None,
        };
        [(l.name.clone(), l)]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
            .into()
    }

    fn acts(c: &Context, announced: &[(&str, u32)], fresh: bool) -> Vec<String> {
        let links = host();
        let (nft, sysctls) = (Live::default(), BTreeMap::new());
        let routed = RoutedObs {
            announced: announced
                .iter()
                .map(|(a, i)| (a.parse().unwrap(), *i))
                .collect(),
            ..Default::default()
        };
        let obs = Observed {
            owner: NsOwner::Ours,
            ns: Default::default(),
            host: &links,
            host_nft: &nft,
            host_sysctls: &sysctls,
            host_routed: &routed,
        };
        let made = Made {
            gone: vec![],
            fresh: if fresh { vec!["eth0"] } else { vec![] },
        };
        let mut a = Vec::new();
        plan(c, &obs, &made, &mut a);
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_address_is_announced_over_its_host_veth() {
        let c = ctx(true);
        assert_eq!(
            acts(&c, &[], false),
            [
                "add host route 10.70.0.2/32 dev nx-web proto netctx (announce)",
                "add host route fd70::2/128 dev nx-web proto netctx (announce)",
            ]
        );
        assert!(acts(&c, &[("10.70.0.2", 7), ("fd70::2", 7)], false).is_empty());
        // Over another link, or a veth this plan makes anew: not there.
        assert_eq!(
            acts(&c, &[("10.70.0.2", 9), ("fd70::2", 7)], false).len(),
            1
        );
        assert_eq!(acts(&c, &[("10.70.0.2", 7), ("fd70::2", 7)], true).len(), 2);
    }

    #[test]
    fn routes_no_address_wants_go_and_only_over_the_contexts_veths() {
        assert_eq!(
            acts(&ctx(false), &[("10.70.0.2", 7), ("10.9.9.9", 3)], false),
            ["remove host route 10.70.0.2/32 dev nx-web proto netctx (no longer announced)"]
        );
        assert_eq!(
            acts(
                &ctx(true),
                &[("10.70.0.2", 7), ("fd70::2", 7), ("10.70.0.9", 7)],
                false
            ),
            ["remove host route 10.70.0.9/32 dev nx-web proto netctx (no longer announced)"]
        );
    }
}
