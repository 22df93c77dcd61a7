//! The host's table as `up` keeps it (/run/netctx/host-table.json): after
//! its one transaction on the host's table committed, `up` keeps the table
//! it read with its own change made, at the generation after it — what a
//! whole read of the kernel finds, field for field — so the next `status`
//! or `up` does not dump it again; anyone's edit after that moves the
//! generation and is drift. The sandbox is `uplink.rs`'s host (uplink
//! `up0` to the LAN namespace `lan`).

use serde_json::Value;

use crate::sandbox::Sandbox;
use crate::uplink::NET;

/// Three contexts: strict, NAT with a published port and ranges in
/// `reach`, and one with `accept_from` ranges. `REACH` is n's ranges.
const CFG: &str = r#"
[defaults]
uplink = "up0"

[context.s]
[[context.s.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.71.0.1/24"]
addresses = ["10.71.0.2/24"]

[context.n]
egress = "nat"
publish = ["8080:80"]
reach = [REACH]
[[context.n.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.72.0.1/24", "fd72::1/64"]
addresses = ["10.72.0.2/24", "fd72::2/64"]
[[context.n.route]]
to = "default"
via = "10.72.0.1"

[context.m]
accept_from = ["203.0.113.0/28:22", "s"]
[[context.m.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.73.0.1/24"]
addresses = ["10.73.0.2/24"]
"#;

fn cfg(reach: &str) -> String {
    CFG.replace("REACH", reach)
}

fn kept(sb: &Sandbox) -> Value {
    serde_json::from_str(&sb.ok("cat /run/netctx/host-table.json")).unwrap()
}

/// What `up` kept against what a whole read finds: the file removed,
/// `status` reads the table whole and keeps it at the same generation.
fn kept_is_what_a_read_finds(sb: &Sandbox, toml: &str, step: &str) {
    let by_up = kept(sb);
    sb.ok("rm /run/netctx/host-table.json");
    sb.netctx_with(toml, &["status"]).ok();
    let read = kept(sb);
    assert_eq!(
        by_up["generation"], read["generation"],
        "{step}: kept at another generation"
    );
    assert_eq!(by_up["netns"], read["netns"], "{step}");
    assert_eq!(by_up["live"], read["live"], "{step}: kept is not the table");
}

#[test]
fn up_keeps_the_host_table_it_wrote_as_a_read_finds_it() {
    let sb = Sandbox::new();
    sb.ok(NET);
    // From no table at all: up makes it, with the dispatch, chains and the
    // range sets of m's accept_from.
    let first = cfg(r#""203.0.113.2/32:7000", "[2001:db8:1::/64]:443", "s""#);
    sb.netctx_with(&first, &["up", "s", "m"]).ok();
    kept_is_what_a_read_finds(&sb, &first, "first up");
    // n comes: its NAT maps and base chains are made, and the uplink's
    // guard chain after them (a second transaction: that up keeps nothing
    // the next run could use, status reads whole).
    sb.netctx_with(&first, &["up"]).ok();
    sb.netctx_with(&first, &["status"]).ok();
    // Only n's ranges change (the sets' elements in place).
    let second = cfg(r#""203.0.113.3/32:7000", "[2001:db8:1::/64]:443", "s""#);
    sb.netctx_with(&second, &["up"]).ok();
    kept_is_what_a_read_finds(&sb, &second, "ranges changed");
    // n's chains replaced (its rules change), its range sets go.
    let third = cfg(r#""s""#);
    sb.netctx_with(&third, &["up"]).ok();
    kept_is_what_a_read_finds(&sb, &third, "chains replaced");
    // m down and up again: its chains and sets made anew, the dispatch's
    // elements for its veth.
    sb.netctx_with(&third, &["down", "m"]).ok();
    sb.netctx_with(&third, &["status"]).ok();
    sb.netctx_with(&third, &["up", "m"]).ok();
    kept_is_what_a_read_finds(&sb, &third, "m up again");
    sb.netctx_with(&third, &["down", "--all"]).ok();
}

/// Kept by `up`, then edited by hand: the edit moved the generation, so
/// `status` reads the table whole, reports the drift, and `up` repairs it.
#[test]
fn an_edit_after_up_kept_the_host_table_is_drift_and_up_repairs_it() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let toml = cfg(r#""203.0.113.2/32:7000""#);
    sb.netctx_with(&toml, &["up"]).ok();
    let before = kept(&sb)["generation"].clone();
    for (tamper, ctx) in [
        ("nft flush chain inet netctx s_forward", 's'),
        (
            "nft delete element inet netctx netctx-masquerade '{ \"nx-n\" }'",
            'n',
        ),
    ] {
        sb.ok(tamper);
        let st = sb.netctx_with(&toml, &["status"]);
        assert_eq!(st.code, 2, "{tamper}: {}", st.stdout);
        assert!(
            st.stdout
                .lines()
                .any(|l| l.starts_with(ctx) && l.contains("drifted")),
            "{tamper}: {}",
            st.stdout
        );
        sb.netctx_with(&toml, &["up"]).ok();
        assert_ne!(kept(&sb)["generation"], before);
        sb.netctx_with(&toml, &["status"]).ok();
        kept_is_what_a_read_finds(&sb, &toml, tamper);
    }
    sb.netctx_with(&toml, &["down", "--all"]).ok();
}

/// `up` and `status` read the configuration `up` compiled only while its
/// files are what they were: an edit in place that puts the modification
/// time back is still seen (status reports the drift it makes, `up`
/// applies it), never the stale compiled copy.
#[test]
fn up_and_status_see_an_edit_that_hides_its_modification_time() {
    let sb = Sandbox::new();
    sb.ok(NET);
    let path = sb.write_config("netctx.toml", &CFG.replace("REACH", ""));
    let p = path.to_str().unwrap();
    sb.netctx(&["-c", p, "up", "s"]).ok();
    sb.netctx(&["-c", p, "status", "s"]).ok();
    sb.ok(&format!(
        "touch -r {p} /run/stamp && sed 's#10.71.0.1/24#10.71.0.9/24#' {p} >/run/new && \
         cat /run/new >{p} && touch -r /run/stamp {p}"
    ));
    let st = sb.netctx(&["-c", p, "status", "s"]);
    assert_eq!(st.code, 2, "{}", st.stdout);
    sb.netctx(&["-c", p, "up", "s"]).ok();
    let addrs = sb.addrs(None, "nx-s");
    assert!(
        addrs.iter().any(|a| a.starts_with("10.71.0.9")),
        "{addrs:?}"
    );
    sb.netctx(&["-c", p, "status", "s"]).ok();
    sb.netctx(&["-c", p, "down", "--all"]).ok();
}
