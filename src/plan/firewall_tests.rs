use super::*;
use crate::observe::firewall::{ForeignRule, NFPROTO_IPV4};

fn chain(name: &str, hook: Option<u32>, drop: bool, rules: Vec<Vec<Expr>>) -> ForeignChain {
    ForeignChain {
        family: NFPROTO_IPV4,
        table: "filter".into(),
        name: name.into(),
        hook: hook.map(|h| (h, 0, "filter".to_string())),
        policy_drop: drop,
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, exprs)| ForeignRule {
                handle: i as u64 + 2,
                exprs,
                comment: None,
            })
            .collect(),
    }
}

fn name(n: &str) -> Vec<u8> {
    let mut v = n.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

fn iif(n: &str) -> Vec<Expr> {
    vec![
        Expr::Load {
            dreg: 1,
            what: Load::IifName,
        },
        Expr::Cmp {
            sreg: 1,
            op: 0,
            data: name(n),
        },
    ]
}

fn mark_rule() -> Vec<Expr> {
    let m = super::super::rules::FORWARD_MARK;
    vec![
        Expr::Load {
            dreg: 1,
            what: Load::Mark,
        },
        Expr::Bitwise {
            sreg: 1,
            dreg: 1,
            mask: m.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: 1,
            op: 0,
            data: m.to_ne_bytes().to_vec(),
        },
        Expr::Statement("counter".into()),
        Expr::Verdict(Verdict::Accept),
    ]
}

fn with(mut e: Vec<Expr>, v: Verdict) -> Vec<Expr> {
    e.push(Expr::Verdict(v));
    e
}

fn ifaces() -> Vec<String> {
    vec!["nx-web".into(), "up0".into()]
}

#[test]
fn dockers_layout_drops_until_netctx_has_its_rule_in_docker_user() {
    let jump = vec![Expr::Verdict(Verdict::Jump(DOCKER_USER.into()))];
    let docker0 = with(iif("docker0"), Verdict::Accept);
    let forward = chain("FORWARD", Some(2), true, vec![jump, docker0]);
    let empty_user = chain(DOCKER_USER, None, false, vec![]);
    let f = findings(&[forward.clone(), empty_user], &ifaces(), &[]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].chain, "ip filter FORWARD");
    assert_eq!(f[0].what, "has policy drop");
    let user = chain(DOCKER_USER, None, false, vec![mark_rule()]);
    assert!(is_docker_user_rule(&user.rules[0].exprs));
    assert!(findings(&[forward, user], &ifaces(), &[]).is_empty());
}

#[test]
fn rules_are_judged_by_interface_and_unknown_matches_may_drop() {
    // firewalld-like: reject what is not from its zones.
    let other = with(iif("eth9"), Verdict::Reject);
    let c = chain("filter_FORWARD", Some(2), false, vec![other]);
    assert!(findings(std::slice::from_ref(&c), &ifaces(), &[]).is_empty());
    let ours = with(iif("nx-web"), Verdict::Drop);
    let c = chain("fw", Some(2), false, vec![ours]);
    let f = findings(&[c], &ifaces(), &[]);
    assert_eq!(f[0].what, "rule 1 (handle 2) may drop");
    // iptables' `-i nx-+`: a prefix, not NUL-padded.
    let mut prefix = iif("x");
    prefix[1] = Expr::Cmp {
        sreg: 1,
        op: 0,
        data: b"nx-".to_vec(),
    };
    let all = with(prefix, Verdict::Drop);
    let c = chain("fw", Some(2), false, vec![all]);
    assert_eq!(
        findings(&[c], &["nx-web".into()], &[])[0].what,
        "rule 1 (handle 2) drops"
    );
    let unknown = vec![Expr::Lookup, Expr::Verdict(Verdict::Reject)];
    let c = chain("fw", Some(2), false, vec![unknown]);
    assert_eq!(
        findings(&[c], &ifaces(), &[])[0].what,
        "rule 1 (handle 2) may reject"
    );
    // An unconditional accept first settles it; a non-forward or a
    // nat chain is not judged.
    let c = chain(
        "fw",
        Some(2),
        true,
        vec![vec![Expr::Verdict(Verdict::Accept)]],
    );
    assert!(findings(&[c], &ifaces(), &[]).is_empty());
    let c = chain("INPUT", Some(1), true, vec![]);
    assert!(findings(&[c], &ifaces(), &[]).is_empty());
}

fn hooked(name: &str, hook: u32, drop: bool, rules: Vec<Vec<Expr>>) -> ForeignChain {
    chain(name, Some(hook), drop, rules)
}

fn oif(n: &str) -> Vec<Expr> {
    let mut e = iif(n);
    e[0] = Expr::Load {
        dreg: 1,
        what: Load::OifName,
    };
    e
}

#[test]
fn the_other_hooks_count_only_certain_drops() {
    let links = ["nx-web".to_string()];
    let judge = |c: ForeignChain| findings(&[c], &ifaces(), &links);
    // Input: a plain policy drop stops what contexts send the host.
    let f = judge(hooked("INPUT", NF_INET_LOCAL_IN, true, vec![]));
    assert_eq!(
        (f[0].hook, f[0].what.as_str()),
        (NF_INET_LOCAL_IN, "has policy drop")
    );
    assert!(
        f[0].to_string().contains("iifname \"nx-*\" accept"),
        "{}",
        f[0]
    );
    // ufw-like: accepts the judgement cannot read (ports, conntrack
    // states) come first; the drop is not certain.
    let maybe_accept = vec![Expr::Unknown("ct".into()), Expr::Verdict(Verdict::Accept)];
    let maybe_drop = vec![Expr::Unknown("ct".into()), Expr::Verdict(Verdict::Drop)];
    assert!(judge(hooked("INPUT", NF_INET_LOCAL_IN, true, vec![maybe_accept])).is_empty());
    assert!(judge(hooked("INPUT", NF_INET_LOCAL_IN, false, vec![maybe_drop])).is_empty());
    // Output: out by netctx's link, certain; by another, never.
    let f = judge(hooked(
        "OUTPUT",
        NF_INET_LOCAL_OUT,
        false,
        vec![with(oif("nx-web"), Verdict::Drop)],
    ));
    assert_eq!(f[0].what, "rule 1 (handle 2) drops");
    assert!(judge(hooked(
        "OUTPUT",
        NF_INET_LOCAL_OUT,
        false,
        vec![with(oif("eth9"), Verdict::Drop)]
    ))
    .is_empty());
    // On input there is no output interface, on output no input one.
    assert!(judge(hooked(
        "INPUT",
        NF_INET_LOCAL_IN,
        false,
        vec![with(oif("nx-web"), Verdict::Drop)]
    ))
    .is_empty());
    // Prerouting: firewalld's reverse-path check (a fib lookup) may
    // drop, but not certainly; an unconditional drop does.
    let rpf = vec![Expr::Unknown("fib".into()), Expr::Verdict(Verdict::Drop)];
    assert!(judge(hooked("pre", NF_INET_PRE_ROUTING, false, vec![rpf])).is_empty());
    let f = judge(hooked(
        "pre",
        NF_INET_PRE_ROUTING,
        false,
        vec![vec![Expr::Verdict(Verdict::Drop)]],
    ));
    assert_eq!(f[0].hook, NF_INET_PRE_ROUTING);
    // Postrouting: the input interface is unknown there.
    assert!(judge(hooked(
        "post",
        NF_INET_POST_ROUTING,
        false,
        vec![with(iif("nx-web"), Verdict::Drop)]
    ))
    .is_empty());
    let f = judge(hooked(
        "post",
        NF_INET_POST_ROUTING,
        false,
        vec![with(oif("up0"), Verdict::Drop)],
    ));
    assert_eq!(f.len(), 1);
    // No netctx links at all: nothing judged.
    assert!(findings(&[hooked("INPUT", NF_INET_LOCAL_IN, true, vec![])], &[], &[]).is_empty());
}

#[test]
fn a_chain_before_netctxs_dispatch_sees_no_mark() {
    let mut early = chain("early", Some(2), true, vec![mark_rule()]);
    early.hook = Some((2, -100, "filter".into()));
    let f = findings(&[early], &ifaces(), &[]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].what, "has policy drop");
}

#[test]
fn iptables_wildcards_match_by_prefix() {
    assert!(name_matches("nx-web", b"nx-"));
    assert!(!name_matches("up0", b"nx-"));
    assert!(name_matches("up0", &name("up0")));
    assert!(!name_matches("up01", &name("up0")));
}
