//! `netctx explain CTX --to ADDR[:PORT[/PROTO]]`: one probe from inside the
//! context (a TCP connection attempt, a UDP datagram, or with no port an
//! ICMP echo request), traced by nftables in the context and on the host
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
use crate::model::{Config, Proto};
use crate::observe::firewall::{self, render, verdict_text, ForeignChain};
use crate::observe::trace::{Probe, Step, Tracer, Tracing, EXPLAIN_TABLE};

#[derive(Args)]
pub struct ExplainArgs {
    /// The context the probe starts in
    pub context: String,
    /// Where the probe goes: ADDR, ADDR:PORT, ADDR:PORT/udp ([V6]:PORT)
    #[arg(long, value_name = "ADDR[:PORT[/PROTO]]", conflicts_with = "from")]
    pub to: Option<String>,
    /// Where a probe into the context comes from (not built yet)
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

/// What the probe itself saw.
fn probe(t: &Target) -> String {
    let wait = Duration::from_millis(1500);
    match (t.port, t.proto) {
        (Some(p), Proto::Tcp) => {
            match std::net::TcpStream::connect_timeout(&SocketAddr::new(t.addr, p), wait) {
                Ok(_) => "connected".into(),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "refused (the destination answered: nothing listens there)".into()
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "no answer".into(),
                Err(e) => format!("failed: {e}"),
            }
        }
        (Some(p), Proto::Udp) => {
            let any: IpAddr = if t.addr.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let sent = std::net::UdpSocket::bind(SocketAddr::new(any, 0))
                .and_then(|u| u.send_to(b"netctx explain", SocketAddr::new(t.addr, p)));
            match sent {
                Ok(_) => "sent (UDP: no answer is expected)".into(),
                Err(e) => format!("failed: {e}"),
            }
        }
        (None, _) => crate::observe::trace::ping(t.addr, wait),
    }
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
    outcome: String,
    passed: bool,
    probe: String,
    steps: &'a [StepOut],
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

/// Trace in the calling thread's namespace around `f`: the tracing table
/// set, the steps read, the tables read for the rules' text.
fn traced<T>(
    probe: &Probe,
    f: impl FnOnce() -> T,
) -> anyhow::Result<(T, Vec<Step>, Vec<ForeignChain>, Tracing)> {
    let mut tracing = Tracing::start(probe).context("setting nftables tracing")?;
    let tracer = Tracer::open().context("subscribing to nftables traces")?;
    let out = f();
    let steps = tracer
        .steps(Duration::from_millis(300), Duration::from_secs(3))
        .context("reading nftables traces")?;
    let tables = tracing.tables().context("reading nftables tables")?;
    Ok((out, steps, tables, tracing))
}

pub fn explain(cfg: &Config, a: &ExplainArgs) -> anyhow::Result<Exit> {
    if a.from.is_some() {
        bail!("explain --from is not built yet: explain a probe from the context with --to");
    }
    let Some(to) = &a.to else {
        bail!("name where the probe goes: --to ADDR[:PORT[/PROTO]]");
    };
    let t = parse_target(to).map_err(anyhow::Error::msg)?;
    let ctx = cfg
        .get(&a.context)
        .with_context(|| format!("context {} is not declared", a.context))?;
    let ns = netns::open(&ctx.name).with_context(|| format!("context {} is not up", ctx.name))?;
    let matches = Probe::new(t.addr, t.port, t.proto == Proto::Udp);
    // The host traces first, so that it is listening when the probe
    // arrives; the context's tracing lives on its worker thread.
    let host = traced(&matches, || {
        netns::run_in(&ns, || traced(&matches, || probe(&t)))
    })?;
    let ((outcome, ctx_steps, ctx_tables, _ctx_tracing), host_steps, host_tables, _host) = (
        host.0.context("entering the context")??,
        host.1,
        host.2,
        host.3,
    );
    let mut steps = steps_of(&format!("context {}", ctx.name), &ctx_steps, &ctx_tables);
    steps.extend(steps_of("host", &host_steps, &host_tables));
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
    if a.json {
        let doc = Doc {
            context: &ctx.name,
            outcome: verdict,
            passed,
            probe: outcome,
            steps: &steps,
        };
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        let mut place = String::new();
        for s in &steps {
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
        println!("probe: {to} from context {}: {outcome}", ctx.name);
        println!("verdict: {verdict}");
    }
    Ok(if passed { Exit::Ok } else { Exit::Finding })
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
