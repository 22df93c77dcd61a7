//! `netctx stats`: per context, packets and bytes received and sent on its
//! links (inside its namespace), packets dropped by isolation inside it and
//! on the host (its host chains), and packets logged by its rules (context
//! table and host chains: what `netctx logs` shows); CNI attachments too,
//! counted on their interface in the runtime's namespace. Plain table,
//! `--json`, or the Prometheus text format.

use std::fmt::Write as _;
use std::fs::File;

use anyhow::Context as _;

use super::engine::select;
use super::{Exit, StatsArgs};
use crate::kernel::{netns, pool};
use crate::model::Config;
use crate::observe::counters::{self, Counted, RuleCount};
use crate::observe::owner::{self, NsOwner};
use crate::plan::{fences, rules};

/// One context's figures; serialized in this order for `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Figures {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub dropped_inside: u64,
    pub dropped_host: u64,
    pub logged: u64,
    /// New connections dropped over `limits.connections` (`CTX:LIMIT:`).
    pub limit_connections_refused: u64,
    /// New connections dropped over `limits.new_connections`.
    pub limit_new_connections_refused: u64,
    /// Packets the token buckets of its veths (`limits.bandwidth`) dropped,
    /// both ends.
    pub limit_bandwidth_dropped_packets: u64,
    /// Connections its namespace's conntrack table holds now.
    pub conntrack_entries: u64,
    /// A CNI attachment's `NAMESPACE/POD` (absent for the rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

fn sum(rules: &[RuleCount], kind: Counted, chain: impl Fn(&str) -> bool) -> u64 {
    rules
        .iter()
        .filter(|r| r.kind == kind && chain(&r.chain))
        .map(|r| r.packets)
        .sum()
}

/// A namespace to read: a context's, or a CNI attachment's (the runtime's
/// namespace, where only the attachment's interface is netctx's).
struct Place {
    name: String,
    netns: File,
    only: Option<String>,
    pod: Option<String>,
}

/// Read one namespace (on a thread of its own that enters it).
fn inside(p: &Place) -> anyhow::Result<Figures> {
    let read = netns::run_in(&p.netns, || -> anyhow::Result<Figures> {
        let (links, rules) = counters::read_here()?;
        let mut f = Figures {
            name: p.name.clone(),
            pod: p.pod.clone(),
            ..Figures::default()
        };
        for l in links {
            let ours = match &p.only {
                Some(ifname) => l.name == *ifname,
                None => l.name != "lo",
            };
            if ours {
                f.rx_packets += l.rx_packets;
                f.rx_bytes += l.rx_bytes;
                f.tx_packets += l.tx_packets;
                f.tx_bytes += l.tx_bytes;
            }
        }
        f.dropped_inside = sum(&rules, Counted::Drop, |c| !fences::is_limit_chain(c));
        f.logged = sum(&rules, Counted::Log, |_| true);
        f.limit_connections_refused =
            sum(&rules, Counted::Drop, |c| c == fences::LIMIT_CONNECTIONS);
        f.limit_new_connections_refused = sum(&rules, Counted::Drop, |c| {
            c == fences::LIMIT_NEW_CONNECTIONS
        });
        // A runtime's namespace is not the attachment's alone.
        if p.only.is_none() {
            (f.limit_bandwidth_dropped_packets, f.conntrack_entries) = counters::fences_here()?;
        }
        Ok(f)
    })
    .with_context(|| format!("entering the namespace of {}", p.name))?;
    read.with_context(|| format!("context {}", p.name))
}

/// The namespaces to read: the declared contexts selected that are up, and
/// the CNI attachments (`cni` + 8 hex digits) selected.
fn places(cfg: &Config, names: &[String]) -> anyhow::Result<Vec<Place>> {
    let sel = crate::observe::attachments::split_names(names);
    let mut out = Vec::new();
    let declared = match &sel.declared {
        Some(n) => select(cfg, n)?,
        None => Vec::new(),
    };
    for c in declared {
        match owner::ns_owner(&c.name).with_context(|| format!("context {}", c.name))? {
            NsOwner::Ours => out.push(Place {
                name: c.name.clone(),
                netns: netns::open(&c.name)
                    .with_context(|| format!("opening namespace {}", c.name))?,
                only: None,
                pod: None,
            }),
            _ if !names.is_empty() => eprintln!("netctx: context {} is not up", c.name),
            _ => {}
        }
    }
    let attachments = sel
        .attachments
        .as_deref()
        .map(crate::observe::attachments::sources)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    out.extend(attachments.unwrap_or_default().into_iter().map(|s| Place {
        name: s.name,
        netns: s.netns,
        only: Some(s.ifname),
        pod: s.pod,
    }));
    Ok(out)
}

pub fn stats(cfg: &Config, a: &StatsArgs) -> anyhow::Result<Exit> {
    let ctxs = places(cfg, &a.contexts)?;
    let host_rules = counters::host_rule_counts()?;
    let host_drops = counters::host_qdisc_drops()?;
    let results = pool::map(&ctxs, None, || Ok(()), |(), c| inside(c))?;
    let mut figures = Vec::new();
    let mut failed = false;
    for r in results {
        match r {
            Ok(mut f) => {
                let prefix = rules::host_chain_prefix(&f.name);
                let ours = |chain: &str| chain.starts_with(&prefix);
                f.dropped_host = sum(&host_rules, Counted::Drop, ours);
                f.logged += sum(&host_rules, Counted::Log, ours);
                let ctx = cfg.contexts.iter().find(|c| c.name == f.name);
                f.limit_bandwidth_dropped_packets += ctx
                    .map(rules::host_veths)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| host_drops.get(v))
                    .sum::<u64>();
                figures.push(f);
            }
            Err(e) => {
                eprintln!("netctx: error: {e:#}");
                failed = true;
            }
        }
    }
    let out = if a.json {
        to_json(&figures)
    } else if a.prometheus {
        to_prometheus(&figures)
    } else {
        to_table(&figures)
    };
    print!("{out}");
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

fn values(f: &Figures) -> [u64; 11] {
    [
        f.rx_packets,
        f.rx_bytes,
        f.tx_packets,
        f.tx_bytes,
        f.dropped_inside,
        f.dropped_host,
        f.logged,
        f.limit_connections_refused,
        f.limit_new_connections_refused,
        f.limit_bandwidth_dropped_packets,
        f.conntrack_entries,
    ]
}

const KEYS: [&str; 11] = [
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "dropped_inside",
    "dropped_host",
    "logged",
    "limit_connections_refused",
    "limit_new_connections_refused",
    "limit_bandwidth_dropped_packets",
    "conntrack_entries",
];

pub fn to_json(figs: &[Figures]) -> String {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        contexts: &'a [Figures],
    }
    let doc = serde_json::to_string(&Doc { contexts: figs }).expect("plain data serializes");
    format!("{doc}\n")
}

pub fn to_table(figs: &[Figures]) -> String {
    let mut s = format!("{:<12}", "CONTEXT");
    let width = |k: &str| k.len().max(14);
    for k in KEYS {
        write!(s, " {:>w$}", k.to_uppercase(), w = width(k)).unwrap();
    }
    // CNI attachments' pods, in a last column when there are any.
    let pods = figs.iter().any(|f| f.pod.is_some());
    if pods {
        s.push_str(" POD");
    }
    s.push('\n');
    for f in figs {
        write!(s, "{:<12}", f.name).unwrap();
        for (v, k) in values(f).into_iter().zip(KEYS) {
            write!(s, " {v:>w$}", w = width(k)).unwrap();
        }
        if pods {
            write!(s, " {}", f.pod.as_deref().unwrap_or("-")).unwrap();
        }
        s.push('\n');
    }
    s
}

/// A label value in the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics: name, help, type, and how to get the value with its extra
/// label.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Figures) -> Vec<(&'static str, u64)>,
);

const METRICS: [Metric; 10] = [
    (
        "netctx_rx_packets_total",
        "Packets received on the context's links.",
        "counter",
        |f| vec![("", f.rx_packets)],
    ),
    (
        "netctx_rx_bytes_total",
        "Bytes received on the context's links.",
        "counter",
        |f| vec![("", f.rx_bytes)],
    ),
    (
        "netctx_tx_packets_total",
        "Packets sent on the context's links.",
        "counter",
        |f| vec![("", f.tx_packets)],
    ),
    (
        "netctx_tx_bytes_total",
        "Bytes sent on the context's links.",
        "counter",
        |f| vec![("", f.tx_bytes)],
    ),
    (
        "netctx_dropped_packets_total",
        "Packets dropped by strict isolation, inside the context or on the host.",
        "counter",
        |f| {
            vec![
                (",side=\"inside\"", f.dropped_inside),
                (",side=\"host\"", f.dropped_host),
            ]
        },
    ),
    (
        "netctx_logged_packets_total",
        "Packets the context's rules sent to NFLOG.",
        "counter",
        |f| vec![("", f.logged)],
    ),
    (
        "netctx_limit_connections_refused_total",
        "New connections dropped over limits.connections.",
        "counter",
        |f| vec![("", f.limit_connections_refused)],
    ),
    (
        "netctx_limit_new_connections_refused_total",
        "New connections dropped over limits.new_connections.",
        "counter",
        |f| vec![("", f.limit_new_connections_refused)],
    ),
    (
        "netctx_limit_bandwidth_dropped_packets_total",
        "Packets the token buckets of the context's veths (limits.bandwidth) dropped.",
        "counter",
        |f| vec![("", f.limit_bandwidth_dropped_packets)],
    ),
    (
        "netctx_conntrack_entries",
        "Connections the context's conntrack table holds.",
        "gauge",
        |f| vec![("", f.conntrack_entries)],
    ),
];

/// The Prometheus text exposition format (version 0.0.4), as node_exporter's
/// textfile collector reads it: HELP and TYPE once per metric, one sample a
/// context (and side).
pub fn to_prometheus(figs: &[Figures]) -> String {
    let mut s = String::new();
    for (name, help, ty, get) in METRICS {
        writeln!(s, "# HELP {name} {help}").unwrap();
        writeln!(s, "# TYPE {name} {ty}").unwrap();
        for f in figs {
            for (extra, v) in get(f) {
                let pod = f
                    .pod
                    .as_deref()
                    .map(|p| format!(",pod=\"{}\"", label(p)))
                    .unwrap_or_default();
                writeln!(
                    s,
                    "{name}{{context=\"{}\"{pod}{extra}}} {v}",
                    label(&f.name)
                )
                .unwrap();
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Figures {
        Figures {
            name: "web".into(),
            rx_packets: 3,
            rx_bytes: 252,
            tx_packets: 4,
            tx_bytes: 336,
            dropped_inside: 1,
            dropped_host: 2,
            logged: 5,
            limit_connections_refused: 6,
            limit_new_connections_refused: 7,
            limit_bandwidth_dropped_packets: 8,
            conntrack_entries: 9,
            pod: None,
        }
    }

    #[test]
    fn attachments_carry_their_pod() {
        let f = Figures {
            name: "cni0011aabb".into(),
            pod: Some("default/web-0".into()),
            ..web()
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&[f.clone(), web()])).unwrap();
        assert_eq!(v["contexts"][0]["pod"], "default/web-0");
        assert!(v["contexts"][1].get("pod").is_none());
        let t = to_table(&[f.clone(), web()]);
        assert!(t.lines().next().unwrap().ends_with(" POD"));
        assert!(t.lines().nth(1).unwrap().ends_with(" default/web-0"));
        assert!(t.lines().nth(2).unwrap().ends_with(" -"));
        let p = to_prometheus(&[f]);
        assert!(p.contains(
            "netctx_rx_packets_total{context=\"cni0011aabb\",pod=\"default/web-0\"} 3\n"
        ));
    }

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&[web()])).unwrap();
        let c = v["contexts"][0].as_object().unwrap();
        let mut keys: Vec<&str> = c.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = KEYS.to_vec();
        want.push("name");
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(c["dropped_host"], 2);
        assert_eq!(v.as_object().unwrap().len(), 1);
        // In the documented order.
        assert!(to_json(&[web()]).starts_with("{\"contexts\":[{\"name\":\"web\",\"rx_packets\":3,"));
    }

    #[test]
    fn prometheus_has_help_and_type_and_labelled_samples() {
        let p = to_prometheus(&[web()]);
        assert!(p.contains("# HELP netctx_rx_packets_total "));
        assert!(p.contains("# TYPE netctx_rx_packets_total counter\n"));
        assert!(p.contains("netctx_rx_packets_total{context=\"web\"} 3\n"));
        assert!(p.contains("netctx_dropped_packets_total{context=\"web\",side=\"host\"} 2\n"));
        assert!(p.ends_with('\n'));
        assert!(p.contains("netctx_limit_connections_refused_total{context=\"web\"} 6\n"));
        assert!(p.contains("# TYPE netctx_conntrack_entries gauge\n"));
        assert!(p.contains("netctx_conntrack_entries{context=\"web\"} 9\n"));
        assert_eq!(label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
        // Every sample line follows its metric's TYPE line.
        assert_eq!(p.matches("# TYPE").count(), METRICS.len());
    }

    #[test]
    fn table_has_a_header_and_a_row_per_context() {
        let t = to_table(&[web()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("CONTEXT") && lines[0].contains("DROPPED_HOST"));
        assert!(lines[1].starts_with("web") && lines[1].trim_end().ends_with('9'));
        assert!(lines[0].contains("LIMIT_CONNECTIONS_REFUSED"));
    }
}
