//! `netctx explain CTX --to ADDR[:PORT[/PROTO]]`: one probe from inside the
//! context (a TCP connection attempt, a UDP datagram, or with no port an
//! ICMP echo request) — or with `--from ADDR[:PORT[/PROTO]]` one into it,
//! from another context, the host, or an address beyond the host (sent
//! from the host with that source, its answer stopped there) — traced by
//! nftables in every namespace it meets
//! (`kernel::nft::trace`'s table, owned by the socket that made it, so
//! nothing outlives the run), and every table, chain, rule and verdict
//! that judged it printed in order — netctx's own and the host's foreign
//! ones alike. Exit 0 when the probe passed, 2 when something dropped or
//! rejected it (or nothing answered), 1 on error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::Serialize;

use super::Exit;
use crate::kernel::netns;
use crate::model::{Config, Context, Proto};
use crate::observe::firewall::{self, render, verdict_text, ForeignChain};
use crate::observe::probe::{self, Source};
use crate::observe::trace::{answer_stopped, Probe, Step, Tracer, Tracing, EXPLAIN_TABLE};

#[derive(Args)]
pub struct ExplainArgs {
    /// The context the probe starts in
    pub context: String,
    /// Where the probe goes: ADDR, ADDR:PORT, ADDR:PORT/udp ([V6]:PORT)
    #[arg(long, value_name = "ADDR[:PORT[/PROTO]]", conflicts_with = "from")]
    pub to: Option<String>,
    /// Where a probe into the context comes from: another context's
    /// address, the host's, or one beyond the host; PORT is the
    /// context's (or the one it publishes for it)
    #[arg(long, value_name = "ADDR[:PORT[/PROTO]]")]
    pub from: Option<String>,
    /// One JSON document
    #[arg(long)]
    pub json: bool,
}

/// Where the probe goes: address, port (none: an ICMP echo request),
/// protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub proto: Proto,
}

/// `ADDR`, `ADDR:PORT`, `ADDR:PORT/udp`, `[V6]:PORT/tcp`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let bad =
        || format!("{s:?} is not ADDR[:PORT[/tcp|/udp]] (an IPv6 address with a port in brackets)");
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(Target {
            addr,
            port: None,
            proto: Proto::Tcp,
        });
    }
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some(_) => return Err(bad()),
        None => (s, Proto::Tcp),
    };
    let sa: SocketAddr = rest.parse().map_err(|_| bad())?;
    if sa.port() == 0 {
        return Err(bad());
    }
    Ok(Target {
        addr: sa.ip(),
        port: Some(sa.port()),
        proto,
    })
}

/// One step as printed.
#[derive(Serialize)]
struct StepOut {
    chain: String,
    family: &'static str,
    handle: Option<u64>,
    kind: &'static str,
    place: String,
    rule: Option<String>,
    table: String,
    verdict: Option<String>,
}

#[derive(Serialize)]
struct Doc<'a> {
    context: &'a str,
    /// `--from`'s source, as given.
    from: Option<&'a str>,
    /// How the probe differs from the real thing, if it does.
    note: Option<&'a str>,
    outcome: String,
    passed: bool,
    probe: String,
    steps: &'a [StepOut],
    /// Where the probe went: ADDR:PORT/PROTO, or ADDR (ICMP echo).
    to: String,
}

/// The first traced packet's steps (retransmissions are left out), in
/// order, with each rule's text from `tables`; netctx-explain's own left
/// out.
fn steps_of(place: &str, steps: &[Step], tables: &[ForeignChain]) -> Vec<StepOut> {
    let Some(first) = steps
        .iter()
        .find(|s| s.table != EXPLAIN_TABLE)
        .map(|s| s.id)
    else {
        return Vec::new();
    };
    steps
        .iter()
        .filter(|s| s.id == first && s.table != EXPLAIN_TABLE)
        .map(|s| {
            let rule = s.handle.and_then(|h| {
                tables
                    .iter()
                    .find(|c| c.family == s.family && c.table == s.table && c.name == s.chain)?
                    .rules
                    .iter()
                    .find(|r| r.handle == h)
                    .map(|r| render(&r.exprs))
            });
            StepOut {
                chain: s.chain.clone(),
                family: firewall::family_name(s.family),
                handle: s.handle,
                kind: s.kind,
                place: place.to_string(),
                rule,
                table: s.table.clone(),
                verdict: s.verdict.as_ref().map(verdict_text),
            }
        })
        .collect()
}

/// One probe: its source, where it goes, and the namespaces it meets.
struct Route {
    src: Source,
    to: Target,
    /// The namespaces traced besides the host's, with their labels, in
    /// the order the probe meets them. The probe starts in `before_host`'s
    /// when there is one, else on the host.
    before_host: Option<(std::fs::File, String)>,
    after_host: Option<(std::fs::File, String)>,
    /// Where the probe goes once inside the context, if not `to` (a
    /// published port's translation).
    inside: Option<Target>,
}

fn open_ns(name: &str) -> anyhow::Result<std::fs::File> {
    netns::open(name).with_context(|| format!("context {name} is not up"))
}

/// `--to`: from inside the context.
fn route_to(ctx: &Context, to: &str) -> anyhow::Result<Route> {
    let t = parse_target(to).map_err(anyhow::Error::msg)?;
    let label = format!("context {}", ctx.name);
    Ok(Route {
        src: Source::Any,
        to: t,
        before_host: Some((open_ns(&ctx.name)?, label)),
        after_host: None,
        inside: None,
    })
}

/// `--from SRC[:PORT[/PROTO]]`: into the context, to PORT of its first
/// address of SRC's family. From another context's address, the probe
/// starts in that context; from one of the host's, on the host; from any
/// other (the LAN, the world), on the host with SRC as its source, to the
/// port the context publishes for PORT where it publishes one (as the LAN
/// reaches it), its answer stopped at the host.
fn route_from(cfg: &Config, ctx: &Context, from: &str) -> anyhow::Result<Route> {
    let f = parse_target(from).map_err(anyhow::Error::msg)?;
    let v6 = f.addr.is_ipv6();
    let owner = cfg.contexts.iter().find(|c| {
        c.links
            .iter()
            .flat_map(|l| &l.addresses)
            .any(|a| a.addr == f.addr)
    });
    let ctx_addr = ctx.first_address(v6).with_context(|| {
        format!(
            "context {} has no IPv{} address for a probe from {}",
            ctx.name,
            if v6 { 6 } else { 4 },
            f.addr
        )
    })?;
    let direct = Target {
        addr: ctx_addr,
        ..f
    };
    let target = (open_ns(&ctx.name)?, format!("context {}", ctx.name));
    if let Some(o) = owner {
        if o.name == ctx.name {
            bail!(
                "{} is context {}'s own address: explain a probe from elsewhere",
                f.addr,
                ctx.name
            );
        }
        let label = format!("context {}", o.name);
        return Ok(Route {
            src: Source::Local(f.addr),
            to: direct,
            before_host: Some((open_ns(&o.name)?, label)),
            after_host: Some(target),
            inside: None,
        });
    }
    if probe::is_local(f.addr) {
        return Ok(Route {
            src: Source::Local(f.addr),
            to: direct,
            before_host: None,
            after_host: Some(target),
            inside: None,
        });
    }
    let to = published(ctx, &f)?;
    Ok(Route {
        src: Source::Foreign(f.addr),
        to: to.unwrap_or(direct),
        before_host: None,
        after_host: Some(target),
        inside: to.map(|_| direct),
    })
}

/// Where the LAN reaches port `f.port` of the context when it publishes
/// it: the published address (the uplink's first of the family when the
/// entry names none) and host port.
fn published(ctx: &Context, f: &Target) -> anyhow::Result<Option<Target>> {
    let (Some(port), Some(uplink)) = (f.port, &ctx.uplink) else {
        return Ok(None);
    };
    let v6 = f.addr.is_ipv6();
    let Some(p) = ctx.publish.iter().find(|p| {
        p.port == port && p.proto == f.proto && p.host_ip.is_none_or(|h| h.is_ipv6() == v6)
    }) else {
        return Ok(None);
    };
    let addr = match p.host_ip {
        Some(h) if !h.is_unspecified() => h,
        _ => {
            let addrs = probe::addresses_of(uplink)
                .with_context(|| format!("reading the addresses of uplink {uplink}"))?;
            let Some(a) = addrs.into_iter().find(|a| a.is_ipv6() == v6) else {
                return Ok(None);
            };
            a
        }
    };
    Ok(Some(Target {
        addr,
        port: Some(p.host_port),
        proto: p.proto,
    }))
}

/// A namespace's tracing while the probe runs.
struct Place {
    label: String,
    tracing: Tracing,
    tracer: Tracer,
}

fn start(label: &str, probe: &Probe) -> anyhow::Result<Place> {
    Ok(Place {
        label: label.to_string(),
        tracing: Tracing::start(probe).context("setting nftables tracing")?,
        tracer: Tracer::open().context("subscribing to nftables traces")?,
    })
}

fn start_in(ns: &std::fs::File, label: &str, probe: &Probe) -> anyhow::Result<Place> {
    netns::run_in(ns, || start(label, probe)).with_context(|| format!("entering {label}"))?
}

/// Trace every place the probe meets, send it, read what was traced.
fn run(r: &Route) -> anyhow::Result<(String, Vec<StepOut>, bool)> {
    let mut matches = Probe::new(r.to.addr, r.to.port, r.to.proto == Proto::Udp);
    if let Source::Foreign(a) = r.src {
        matches = matches.answered_to(a, r.inside.unwrap_or(r.to).addr);
    }
    let mut places = Vec::new();
    if let Some((ns, label)) = &r.before_host {
        places.push(start_in(ns, label, &matches)?);
    }
    places.push(start("host", &matches)?);
    if let Some((ns, label)) = &r.after_host {
        let inside = r
            .inside
            .map(|t| Probe::new(t.addr, t.port, t.proto == Proto::Udp));
        places.push(start_in(ns, label, inside.as_ref().unwrap_or(&matches))?);
    }
    let wait = Duration::from_millis(1500);
    let send = || probe::send(r.src, r.to.addr, r.to.port, r.to.proto == Proto::Udp, wait);
    let outcome = match &r.before_host {
        Some((ns, label)) => {
            netns::run_in(ns, send).with_context(|| format!("entering {label}"))?
        }
        None => send(),
    };
    let mut steps = Vec::new();
    let mut answered = false;
    for mut p in places {
        let raw = p
            .tracer
            .steps(Duration::from_millis(300), Duration::from_secs(3))
            .context("reading nftables traces")?;
        let tables = p.tracing.tables().context("reading nftables tables")?;
        if p.label == "host" {
            answered = answer_stopped(&raw);
        }
        steps.extend(steps_of(&p.label, &raw, &tables));
    }
    Ok((outcome, steps, answered))
}

pub fn explain(cfg: &Config, a: &ExplainArgs) -> anyhow::Result<Exit> {
    let ctx = cfg
        .get(&a.context)
        .with_context(|| format!("context {} is not declared", a.context))?;
    let r = match (&a.to, &a.from) {
        (Some(to), None) => route_to(ctx, to)?,
        (None, Some(from)) => route_from(cfg, ctx, from)?,
        _ => bail!(
            "name where the probe goes (--to ADDR[:PORT[/PROTO]]) or where it comes from \
             (--from ADDR[:PORT[/PROTO]])"
        ),
    };
    let (mut outcome, steps, answered) = run(&r)?;
    let mut note = None;
    if let Source::Foreign(src) = r.src {
        if answered {
            outcome = format!("answered (the answer was stopped at the host, not sent to {src})");
        }
        note = Some(format!(
            "sent from the host with source {src}: it met the host's output hook, where a \
             packet from {src} itself arrives through prerouting and forward"
        ));
    }
    let dropped = steps
        .iter()
        .find(|s| matches!(s.verdict.as_deref(), Some("drop") | Some("reject")));
    let silent = outcome == "no answer" || outcome.starts_with("failed");
    let passed = dropped.is_none() && !silent;
    let verdict = match dropped {
        Some(s) => format!(
            "dropped by {} {} {}{}",
            s.family,
            s.table,
            s.chain,
            s.handle
                .map(|h| format!(" rule handle {h}"))
                .unwrap_or_else(|| " policy".into())
        ),
        None if silent => "dropped or unanswered beyond what was traced".into(),
        None => "passed".into(),
    };
    let to = r.to.to_string();
    let said = match (&a.to, &a.from) {
        (Some(t), _) => format!("{t} from context {}", ctx.name),
        (_, Some(f)) => format!("{f} to context {} at {to}", ctx.name),
        _ => unreachable!("checked above"),
    };
    if a.json {
        let doc = Doc {
            context: &ctx.name,
            from: a.from.as_deref(),
            note: note.as_deref(),
            outcome: verdict,
            passed,
            probe: outcome,
            steps: &steps,
            to,
        };
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        print(&steps);
        println!("probe: {said}: {outcome}");
        if let Some(n) = &note {
            println!("note: {n}");
        }
        println!("verdict: {verdict}");
    }
    Ok(if passed { Exit::Ok } else { Exit::Finding })
}

fn print(steps: &[StepOut]) {
    let mut place = String::new();
    for s in steps {
        if s.place != place {
            place = s.place.clone();
            println!("{place}:");
        }
        let what = match (s.kind, s.handle) {
            ("policy", _) => "policy".to_string(),
            ("return", _) => "end of chain".to_string(),
            (_, Some(h)) => format!("rule handle {h}"),
            (_, None) => "rule".to_string(),
        };
        let rule = s
            .rule
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let v = s.verdict.as_deref().unwrap_or("continue");
        println!("  {} {} {}: {what}{rule}: {v}", s.family, s.table, s.chain);
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        match self.port {
            None => write!(f, "{} (ICMP echo)", self.addr),
            Some(p) => write!(f, "{}/{proto}", SocketAddr::new(self.addr, p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_publish_entries_do() {
        let t = parse_target("203.0.113.2:7000").unwrap();
        assert_eq!((t.port, t.proto), (Some(7000), Proto::Tcp));
        let t = parse_target("[2001:db8::1]:53/udp").unwrap();
        assert_eq!((t.port, t.proto), (Some(53), Proto::Udp));
        assert!(t.addr.is_ipv6());
        assert_eq!(parse_target("2001:db8::1").unwrap().port, None);
        for bad in ["x", "1.2.3.4:0", "1.2.3.4:80/icmp", "[2001:db8::1]"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
