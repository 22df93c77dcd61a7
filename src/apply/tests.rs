//! apply against a recording fake of the kernel: phase order, errno
//! handling, journal replay order, and what a new context rolls back. The
//! integration tests run the same code against the real kernel.

use std::io;
use std::path::PathBuf;

use netlink_packet_route::RouteNetlinkMessage as M;

use super::journal::{rollback, undo_new};
use super::kernel::Kernel;
use super::*;
use crate::config::load_sources;
use crate::kernel::netlink::{NlError, Request};
use crate::kernel::nft::wire::Msg;
use crate::plan::{Observed, Side};

const WEB: &str = r#"
[context.web]
ip_forward = true
[[context.web.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.100.0.1/24"]
addresses = ["10.100.0.2/24"]
[[context.web.link]]
kind = "dummy"
name = "dummy0"
addresses = ["10.200.0.1/32"]
[[context.web.route]]
to = "default"
via = "10.100.0.1"
"#;

fn ctx() -> Context {
    let c = load_sources(&[(PathBuf::from("t.toml"), WEB.to_string())]).unwrap();
    c.contexts[0].clone()
}

/// One thing apply asked of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Exec(Side, Vec<&'static str>),
    NsLinks,
    HostLink(String),
    WriteSysctl(String, bool),
    Nft(Side, usize),
}

#[derive(Default)]
struct Fake {
    calls: Vec<Call>,
    /// The first request of this side and kind fails with this errno.
    fail: Option<(Side, &'static str, i32)>,
    /// Every undo fails (for rollback reports).
    undo_fails: bool,
    rolling_back: bool,
    /// The next nf_tables transactions fail with these errnos, in order.
    nft_fails: Vec<i32>,
    /// What a host set holds when read (`host_set`).
    set: Option<Vec<crate::kernel::nft::ranges::Elem>>,
}

fn kind(r: &Request) -> &'static str {
    match &r.msg {
        M::NewLink(_) => "NewLink",
        M::SetLink(_) => "SetLink",
        M::DelLink(_) => "DelLink",
        M::NewAddress(_) => "NewAddress",
        M::DelAddress(_) => "DelAddress",
        M::NewRoute(_) => "NewRoute",
        M::DelRoute(_) => "DelRoute",
        _ => "other",
    }
}

impl Kernel for Fake {
    fn exec(&mut self, side: Side, reqs: Vec<Request>) -> Vec<Result<(), NlError>> {
        let kinds: Vec<&'static str> = reqs.iter().map(kind).collect();
        self.calls.push(Call::Exec(side, kinds.clone()));
        kinds
            .iter()
            .map(|k| {
                if self.rolling_back && self.undo_fails {
                    return Err(NlError {
                        errno: libc::EBUSY,
                        extack: None,
                    });
                }
                match self.fail {
                    Some((s, f, errno)) if s == side && f == *k => {
                        self.fail = None;
                        Err(NlError {
                            errno,
                            extack: None,
                        })
                    }
                    _ => Ok(()),
                }
            })
            .collect()
    }
    fn ns_links(&mut self) -> Result<Vec<(String, u32)>, NlError> {
        self.calls.push(Call::NsLinks);
        Ok(vec![
            ("lo".into(), 1),
            ("eth0".into(), 2),
            ("dummy0".into(), 3),
        ])
    }
    fn host_link(&mut self, name: &str) -> Result<Option<u32>, NlError> {
        self.calls.push(Call::HostLink(name.into()));
        Ok(Some(7))
    }
    fn read_sysctl(&mut self, _path: &str) -> Option<String> {
        Some("0".into())
    }
    fn write_sysctl(&mut self, path: &str, value: &str) -> io::Result<()> {
        self.calls
            .push(Call::WriteSysctl(path.into(), value == "1"));
        Ok(())
    }
    fn nft(&mut self, side: Side, msgs: &[Msg]) -> Result<(), (usize, NlError)> {
        self.calls.push(Call::Nft(side, msgs.len()));
        if self.nft_fails.is_empty() {
            return Ok(());
        }
        let errno = self.nft_fails.remove(0);
        Err((
            0,
            NlError {
                errno,
                extack: None,
            },
        ))
    }
    fn host_chains(&mut self, _prefix: &str) -> Result<Vec<String>, NlError> {
        Ok(Vec::new())
    }
    fn host_set(
        &mut self,
        _name: &str,
        _ports: bool,
    ) -> Result<Option<Vec<crate::kernel::nft::ranges::Elem>>, NlError> {
        Ok(self.set.clone())
    }
}

/// The plan `up` makes for a new context.
fn new_context_plan(c: &Context) -> Vec<Action> {
    let links = crate::observe::links::HostLinks::default();
    let live = crate::observe::nft::Live::default();
    let obs = Observed {
        owner: NsOwner::Absent,
        ns: NsState::default(),
        host: &links,
        host_nft: &live,
        host_sysctls: &std::collections::BTreeMap::new(),
        host_routed: &Default::default(),
    };
    plan(c, &obs).unwrap()
}

fn null() -> File {
    File::open("/dev/null").unwrap()
}

#[test]
fn phases_run_in_order_links_sysctls_addresses_rules() {
    let c = ctx();
    let acts = new_context_plan(&c);
    let mut k = Fake::default();
    let mut journal = Vec::new();
    apply(&c, &acts, &null(), &mut k, &mut journal, false).unwrap();
    use Call::*;
    let fwd = |p: &str| WriteSysctl(p.into(), true);
    assert_eq!(
        k.calls,
        vec![
            // Phase 1: the veth (made with its peer inside) and its alias,
            // then the dummy inside.
            Exec(Side::Host, vec!["NewLink", "SetLink"]),
            Exec(Side::Ctx, vec!["NewLink"]),
            // Phase 2: ifindexes.
            NsLinks,
            HostLink("nx-web".into()),
            fwd("net/ipv4/ip_forward"),
            WriteSysctl("net/ipv4/ping_group_range".into(), false),
            WriteSysctl("net/ipv4/ip_unprivileged_port_start".into(), false),
            fwd("net/ipv6/conf/all/forwarding"),
            // Phase 3: host side first, then the inside, routes last.
            Exec(Side::Host, vec!["NewAddress", "SetLink"]),
            Exec(
                Side::Ctx,
                vec![
                    "NewAddress",
                    "SetLink",
                    "NewAddress",
                    "SetLink",
                    "SetLink",
                    "NewRoute"
                ]
            ),
            // Phase 4: the table inside, then the host's chains.
            // (table, 2 sets, 2 elements, 3 chains and 13 rules)
            Nft(Side::Ctx, 21),
            // (table; the dispatch's map; the shared deny sets, 4 and 6,
            // and their elements; the ingress chain and its 12 rules; the
            // forward chain and its 3 rules; the dispatch's chains, each
            // emptied, and their rules; the map's element)
            Nft(Side::Host, 44),
        ]
    );
    // Every creation is journalled with its undo.
    assert_eq!(journal.len(), 1 + 1 + 4 + 2 + 5 + 1);
}

#[test]
fn tolerated_errnos_are_success_and_a_missing_dummy_driver_is_named() {
    let c = ctx();
    let acts = new_context_plan(&c);
    let mut k = Fake {
        fail: Some((Side::Ctx, "NewLink", libc::EOPNOTSUPP)),
        ..Fake::default()
    };
    let e = apply(&c, &acts, &null(), &mut k, &mut Vec::new(), false).unwrap_err();
    assert_eq!(
        e.chain(),
        "link dummy0: this kernel cannot create dummy links (CONFIG_DUMMY)"
    );
    // A link already gone is what deleting it wanted.
    let del = vec![Action::DeleteLink {
        side: Side::Ctx,
        name: "old0".into(),
    }];
    let mut k = Fake {
        fail: Some((Side::Ctx, "DelLink", libc::ENODEV)),
        ..Fake::default()
    };
    apply(&c, &del, &null(), &mut k, &mut Vec::new(), false).unwrap();
    // Any other errno is an error naming the object, with the kernel's cause.
    let mut k = Fake {
        fail: Some((Side::Host, "NewAddress", libc::EACCES)),
        ..Fake::default()
    };
    let e = apply(&c, &acts, &null(), &mut k, &mut Vec::new(), false).unwrap_err();
    assert_eq!(
        e.chain(),
        "address 10.100.0.1/24 on host link nx-web: Permission denied"
    );
}

#[test]
fn a_failure_replays_the_journal_backwards_and_reports_failed_undos() {
    let c = ctx();
    let acts = new_context_plan(&c);
    let mut k = Fake {
        fail: Some((Side::Ctx, "NewRoute", libc::ENETUNREACH)),
        ..Fake::default()
    };
    let mut journal = Vec::new();
    let e = apply(&c, &acts, &null(), &mut k, &mut journal, false).unwrap_err();
    assert!(matches!(e, CtxError::Kernel { .. }));
    let before = k.calls.len();
    let e = rollback(&mut k, journal.clone(), e);
    assert_eq!(
        e.chain(),
        "route default via 10.100.0.1: Network is unreachable"
    );
    let undone: Vec<Call> = k.calls[before..].to_vec();
    use Call::*;
    assert_eq!(
        undone,
        vec![
            // The inside's link states and addresses, last first …
            Exec(Side::Ctx, vec!["SetLink"]),
            Exec(Side::Ctx, vec!["SetLink"]),
            Exec(Side::Ctx, vec!["DelAddress"]),
            Exec(Side::Ctx, vec!["SetLink"]),
            Exec(Side::Ctx, vec!["DelAddress"]),
            // … the host's …
            Exec(Side::Host, vec!["SetLink"]),
            Exec(Side::Host, vec!["DelAddress"]),
            // … the switches, then the links.
            WriteSysctl("net/ipv6/conf/all/forwarding".into(), false),
            WriteSysctl("net/ipv4/ip_unprivileged_port_start".into(), false),
            WriteSysctl("net/ipv4/ping_group_range".into(), false),
            WriteSysctl("net/ipv4/ip_forward".into(), false),
            Exec(Side::Ctx, vec!["DelLink"]),
            Exec(Side::Host, vec!["DelLink"]),
        ]
    );
    // Undos that fail are listed after the original error.
    let mut k = Fake {
        undo_fails: true,
        rolling_back: true,
        ..Fake::default()
    };
    let e = rollback(
        &mut k,
        journal[..1].to_vec(),
        CtxError::Missing("link x".into()),
    );
    assert_eq!(
        e.chain(),
        "link x is missing; rolling back failed to undo link eth0 (veth, host side nx-web) (Device or resource busy)"
    );
}

#[test]
fn a_new_context_rolls_back_only_its_own_host_links() {
    let c = ctx();
    let acts = new_context_plan(&c);
    let mut k = Fake {
        fail: Some((Side::Ctx, "NewRoute", libc::ENETUNREACH)),
        ..Fake::default()
    };
    let mut journal = Vec::new();
    let e = apply(&c, &acts, &null(), &mut k, &mut journal, false).unwrap_err();
    let before = k.calls.len();
    undo_new(&mut k, journal, e);
    // The namespace takes its links, addresses and switches with it; only
    // the host side of this context's veth is deleted (its address and state
    // go with it).
    let host_undos: Vec<Call> = k.calls[before..].to_vec();
    assert_eq!(
        host_undos,
        vec![
            Call::Exec(Side::Host, vec!["SetLink"]),
            Call::Exec(Side::Host, vec!["DelAddress"]),
            Call::Exec(Side::Host, vec!["DelLink"]),
        ]
    );
    assert!(!host_undos
        .iter()
        .any(|c| matches!(c, Call::Exec(Side::Ctx, _) | Call::WriteSysctl(..))));
}

/// A CNI attachment: one point-to-point veth in a runtime's namespace.
fn attachment() -> Context {
    let mut c = ctx();
    c.name = "cni0000abcd".into();
    c.ip_forward = false;
    c.links.truncate(1);
    c.links[0].ptp = true;
    c.links[0].host = Some("nxc000000000001".into());
    c.links[0].host_addresses = vec![crate::model::Cidr::parse("10.100.0.1/32").unwrap()];
    c.routes[0].to = crate::model::Cidr::parse("10.100.0.0/24").unwrap();
    c.netns = crate::model::Netns::Runtime {
        path: "/proc/1/ns/net".into(),
        alias: "netctx-cni:cni0000abcd:100:nx:eth0:c0ffee".into(),
        held: None,
    };
    c
}

#[test]
fn an_attachment_leaves_the_runtimes_links_alone_and_rolls_back_whole() {
    use crate::observe::links::{ObsLink, ObsRoute};
    let c = attachment();
    let other = |name: &str, index| ObsLink {
        index,
        name: name.into(),
        kind: Some("veth".into()),
        up: true,
        alias: None,
        addrs: vec![crate::model::Cidr::parse("198.51.100.7/24").unwrap()],
        link_local: Vec::new(),
        mac: None,
        qdisc: None,
        tbf: None,
    };
    // The runtime's namespace: lo and another plugin's eth1 with a route.
    let ns = NsState {
        links: vec![other("lo", 1), other("eth1", 5)],
        routes: vec![ObsRoute {
            to: crate::model::Cidr::parse("0.0.0.0/0").unwrap(),
            via: Some("198.51.100.1".parse().unwrap()),
            oif: Some(5),
            protocol: netlink_packet_route::route::RouteProtocol::Boot,
        }],
        ..NsState::default()
    };
    let links = crate::observe::links::HostLinks::default();
    let live = crate::observe::nft::Live::default();
    let obs = Observed {
        owner: NsOwner::Ours,
        ns,
        host: &links,
        host_nft: &live,
        host_sysctls: &std::collections::BTreeMap::new(),
        host_routed: &Default::default(),
    };
    let acts = plan(&c, &obs).unwrap();
    let text: Vec<String> = acts.iter().map(|a| a.to_string()).collect();
    assert!(
        !text
            .iter()
            .any(|t| t.contains("eth1") || t.contains("198.51.100")),
        "{text:?}"
    );
    assert!(!text.iter().any(|t| t.contains("namespace")), "{text:?}");
    assert!(
        text.contains(&"add route 10.100.0.1/32 dev eth0".to_string()),
        "{text:?}"
    );
    assert!(
        text.contains(&"add host route 10.100.0.2/32 dev nxc000000000001".to_string()),
        "{text:?}"
    );
    // Only the switches of its own link inside.
    assert!(acts.iter().all(|a| match a {
        Action::Sysctl { path, .. } => path.contains("/conf/eth0/"),
        _ => true,
    }));
    // The host's route to the address fails, last of phase 3: everything
    // before it is undone, the veth (made here) last.
    let mut k = Fake {
        fail: Some((Side::Host, "NewRoute", libc::ENETUNREACH)),
        ..Fake::default()
    };
    let mut journal = Vec::new();
    let e = apply(&c, &acts, &null(), &mut k, &mut journal, false).unwrap_err();
    use Call::*;
    // Both ends carry the attachment's alias.
    assert_eq!(k.calls[0], Exec(Side::Host, vec!["NewLink", "SetLink"]));
    assert_eq!(k.calls[1], Exec(Side::Ctx, vec!["SetLink"]));
    assert!(
        k.calls.iter().all(|c| !matches!(c, Nft(..))),
        "no rules before the routes"
    );
    let before = k.calls.len();
    let e = rollback(&mut k, journal, e);
    assert_eq!(
        e.chain(),
        "host route 10.100.0.2/32 dev nxc000000000001: Network is unreachable"
    );
    let undone = &k.calls[before..];
    assert_eq!(undone.last(), Some(&Exec(Side::Host, vec!["DelLink"])));
    assert!(undone.contains(&Exec(Side::Ctx, vec!["DelRoute"])));
    assert!(undone.contains(&Exec(Side::Ctx, vec!["DelAddress"])));
}

/// A shared deny set of `c` changed in place: its ranges now `deny` (one
/// IPv4 range) where they were `was`.
fn deny_change(c: &Context, was: &str, deny: &str) -> crate::kernel::nft::ranges::RangeChange {
    use crate::config::{parse_entry, EntryKind};
    let mut c = c.clone();
    c.deny = vec![parse_entry(was, EntryKind::Deny).unwrap()];
    let old = crate::plan::deny_sets(&c).remove(0);
    c.deny = vec![parse_entry(deny, EntryKind::Deny).unwrap()];
    let new = crate::plan::deny_sets(&c).remove(0);
    crate::kernel::nft::ranges::RangeChange::against(new, Some(&old.elems)).unwrap()
}

#[test]
fn the_shared_deny_sets_are_made_and_changed_once_in_ups_transaction() {
    let web = ctx();
    let mut db = ctx();
    db.name = "db".into();
    let (pw, pd) = (new_context_plan(&web), new_context_plan(&db));
    let items = [(&web, &pw[..]), (&db, &pd[..])];
    let p = super::rules::pending(&items);
    let made = |i: usize| -> Vec<(String, bool)> {
        p[i].3
            .shared
            .iter()
            .map(|r| (r.set.name.clone(), r.create))
            .collect()
    };
    // Both planned them from one look; the first makes them.
    assert_eq!(
        made(0),
        [
            ("netctx-deny4".to_string(), true),
            ("netctx-deny6".to_string(), true)
        ]
    );
    assert!(made(1).is_empty());
    // Their elements changed in place: by the first context only.
    let change = deny_change(&web, "169.254.0.0/16", "203.0.113.0/24");
    assert_eq!((change.del.len(), change.add.len()), (1, 1));
    let up = [Action::UpdateHostSets(vec![change.clone()])];
    let items = [(&web, &up[..]), (&db, &up[..])];
    let p = super::rules::pending(&items);
    assert_eq!(p[0].3.shared, [change]);
    assert!(p[1].3.shared.is_empty() && p[1].3.ranges.is_empty());
}

#[test]
fn a_shared_change_another_context_made_first_is_looked_at_again_not_failed() {
    let change = deny_change(&ctx(), "169.254.0.0/16", "203.0.113.0/24");
    // Another context of the same run changed them first: its deletion
    // finds the element gone; the set is as wanted, nothing more is sent.
    let mut k = Fake {
        nft_fails: vec![libc::ENOENT],
        set: Some(change.set.elems.clone()),
        ..Fake::default()
    };
    super::rules::shared_sets(&mut k, vec![change.clone()]).unwrap();
    assert_eq!(k.calls, [Call::Nft(Side::Host, 3)]);
    // Someone emptied it meanwhile: the wanted elements are added.
    let mut k = Fake {
        nft_fails: vec![libc::ENOENT],
        set: Some(Vec::new()),
        ..Fake::default()
    };
    super::rules::shared_sets(&mut k, vec![change.clone()]).unwrap();
    assert_eq!(k.calls.len(), 2);
    // Another error is the error.
    let mut k = Fake {
        nft_fails: vec![libc::EPERM],
        ..Fake::default()
    };
    let e = super::rules::shared_sets(&mut k, vec![change]).unwrap_err();
    assert!(
        e.chain()
            .starts_with("host nftables sets in table inet netctx"),
        "{}",
        e.chain()
    );
}
