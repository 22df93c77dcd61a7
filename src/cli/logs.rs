//! `netctx logs`: one reader thread per context namespace (and one in the
//! host's for the drops of the host's chains), merged into one stream.

mod line;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::engine::select;
use super::Exit;
use super::LogsArgs;
use crate::kernel::netns;
use crate::model::{Config, Context, Isolation};
use crate::observe::nflog::{self, link_names, Subscription};
use crate::observe::owner::{self, NsOwner};

enum Msg {
    Ready,
    Line(String),
    /// A reader could not start: fatal for a context's, a warning for the
    /// host's (another program may read that group there).
    Failed(String, bool),
}

/// Read one group in the calling thread's namespace until the channel
/// closes. `ctx` names the context; `None` for the host, where a packet's
/// context is the owner of its input link (else of its output link).
/// `pods`: the `NAMESPACE/POD` of attachments, by context name.
fn read(
    group: u16,
    ctx: Option<&str>,
    wanted: &[String],
    pods: &HashMap<String, String>,
    json: bool,
    tx: &mpsc::Sender<Msg>,
) {
    let sub = match Subscription::bind(group) {
        Ok(s) => s,
        Err(e) => {
            let place = ctx.map_or("the host".to_string(), |c| format!("context {c}"));
            let why = if e.raw_os_error() == Some(libc::EPERM) {
                format!("another reader holds group {group} in {place}")
            } else {
                format!("cannot read NFLOG group {group} in {place}: {e}")
            };
            let _ = tx.send(Msg::Failed(why, ctx.is_some()));
            return;
        }
    };
    let _ = tx.send(Msg::Ready);
    let mut names = link_names();
    loop {
        let Ok(packets) = sub.recv() else { return };
        for p in packets {
            let mut name = |i: Option<u32>| -> (String, Option<String>) {
                let Some(i) = i else {
                    return (String::new(), None);
                };
                if !names.contains_key(&i) {
                    names = link_names();
                }
                names.get(&i).cloned().unwrap_or((i.to_string(), None))
            };
            let (indev, in_owner) = name(p.indev);
            let (outdev, out_owner) = name(p.outdev);
            // From the uplink to a context: the output link's owner.
            let in_owner = in_owner.or(out_owner);
            let chain = line::chain_of(&p.prefix).to_string();
            let who = match ctx {
                Some(c) => c.to_string(),
                // The host logs only the drops of its chains, by input link
                // (or output link, for drops on the way in from an uplink).
                None => match in_owner {
                    Some(o) if chain == "DROP" && wanted.contains(&o) => o,
                    _ => continue,
                },
            };
            let h = nflog::parse_headers(&p.payload);
            let pod = pods.get(&who).map(String::as_str);
            let line = if json {
                serde_json::to_string(&line::to_json(&who, pod, &chain, &indev, &outdev, &h))
                    .unwrap_or_default()
            } else {
                line::format_line(&line::label(&who, pod), &chain, &indev, &outdev, &h)
            };
            if tx.send(Msg::Line(line)).is_err() {
                return;
            }
        }
    }
}

/// One reader in the namespace of each CNI attachment; how many, and their
/// log groups (their drops on the host go to those).
fn read_attachments(
    sources: Vec<crate::observe::attachments::Source>,
    json: bool,
    tx: &mpsc::Sender<Msg>,
) -> (usize, Vec<u16>) {
    let groups = sources.iter().map(|s| s.log_group).collect();
    let n = sources.len();
    for src in sources {
        let (tx, name, group) = (tx.clone(), src.name, src.log_group);
        let pods: HashMap<String, String> =
            src.pod.map(|p| (name.clone(), p)).into_iter().collect();
        std::thread::spawn(move || {
            if let Err(e) = nix::sched::setns(&src.netns, nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Msg::Failed(format!("attachment {name}: {e}"), true));
                return;
            }
            read(group, Some(&name), &[], &pods, json, &tx);
        });
    }
    (n, groups)
}

/// One reader in the namespace of each declared context that is up; how
/// many.
fn read_contexts(ctxs: &[&Context], json: bool, tx: &mpsc::Sender<Msg>) -> anyhow::Result<usize> {
    let mut readers = 0;
    for c in ctxs {
        if owner::ns_owner(&c.name)? != NsOwner::Ours {
            eprintln!("netctx: context {} is not up; not reading it", c.name);
            continue;
        }
        let file = netns::open(&c.name)?;
        let (tx, name, group, json) = (tx.clone(), c.name.clone(), c.log_group, json);
        // A thread of its own, in the context's namespace until it ends.
        std::thread::spawn(move || {
            if let Err(e) = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
                let why = format!("context {name}: entering its namespace: {e}");
                let _ = tx.send(Msg::Failed(why, true));
                return;
            }
            read(group, Some(&name), &[], &HashMap::new(), json, &tx);
        });
        readers += 1;
    }
    Ok(readers)
}

/// The names netctx's resolver refused (`CTX DENY: NAME=… SRC=…`), from
/// the DNS log `watch` writes, as they come.
fn follow_dns_log(names: &[String], json: bool, tx: &mpsc::Sender<Msg>) {
    use std::io::{Read, Seek};
    let path = crate::apply::dns::log_path();
    let mut at = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut rest = String::new();
    if tx.send(Msg::Ready).is_err() {
        return;
    }
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < at {
            at = 0; // started again
        }
        let mut buf = String::new();
        if f.seek(std::io::SeekFrom::Start(at)).is_err() || f.read_to_string(&mut buf).is_err() {
            continue;
        }
        at += buf.len() as u64;
        rest.push_str(&buf);
        while let Some(i) = rest.find('\n') {
            let line: String = rest.drain(..=i).collect();
            let line = line.trim_end();
            let ctx = line.split(' ').next().unwrap_or_default();
            if !names.iter().any(|n| n == ctx) {
                continue;
            }
            let out = if json {
                let name = line
                    .split(' ')
                    .find_map(|w| w.strip_prefix("NAME="))
                    .unwrap_or_default();
                serde_json::json!({"chain": "DENY", "context": ctx, "line": line, "name": name})
                    .to_string()
            } else {
                line.to_string()
            };
            if tx.send(Msg::Line(out)).is_err() {
                return;
            }
        }
    }
}

pub fn logs(cfg: &Config, a: &LogsArgs) -> anyhow::Result<Exit> {
    // CNI attachments (`cni` + 8 hex digits) are read in the runtime's
    // namespaces; the rest are declared contexts.
    let sel = crate::observe::attachments::split_names(&a.contexts);
    let ctxs: Vec<&Context> = match &sel.declared {
        Some(names) => select(cfg, names)?,
        None => Vec::new(),
    };
    let sources = sel
        .attachments
        .as_deref()
        .map(crate::observe::attachments::sources)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel();
    let mut wanted: Vec<String> = ctxs.iter().map(|c| c.name.clone()).collect();
    wanted.extend(sources.iter().map(|s| s.name.clone()));
    let pods: HashMap<String, String> = sources
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.pod.clone()?)))
        .collect();
    let mut readers = read_contexts(&ctxs, a.json, &tx)?;
    let mut host_groups: Vec<u16> = ctxs
        .iter()
        .filter(|c| c.isolation == Isolation::Strict)
        .map(|c| c.log_group)
        .collect();
    let (n, groups) = read_attachments(sources, a.json, &tx);
    readers += n;
    host_groups.extend(groups);
    host_groups.sort();
    host_groups.dedup();
    for group in host_groups {
        let (tx, wanted, pods, json) = (tx.clone(), wanted.clone(), pods.clone(), a.json);
        std::thread::spawn(move || read(group, None, &wanted, &pods, json, &tx));
        readers += 1;
    }
    // Attachments whose reach names domains have a resolver record.
    let records = crate::apply::dns::read_records();
    let resolved = |n: &String| records.iter().any(|r| r.ctx == *n);
    if ctxs.iter().any(|c| c.needs_resolver()) || wanted.iter().any(resolved) {
        let (tx, json) = (tx.clone(), a.json);
        let names = wanted.clone();
        std::thread::spawn(move || follow_dns_log(&names, json, &tx));
        readers += 1;
    }
    drop(tx);
    if readers == 0 {
        bail!("no context to read");
    }

    let deadline = a
        .timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut ready = 0;
    let mut printed = 0;
    loop {
        if a.count.is_some_and(|n| printed >= n) {
            break;
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(w) => w,
                None => break,
            },
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Ready) => {
                ready += 1;
                if ready == readers {
                    eprintln!("netctx: reading {readers} log group subscription(s)");
                }
            }
            Ok(Msg::Line(l)) => {
                println!("{l}");
                printed += 1;
            }
            Ok(Msg::Failed(why, true)) => bail!(why),
            Ok(Msg::Failed(why, false)) => {
                eprintln!("netctx: warning: {why}; drops on the host side are not shown");
                readers -= 1;
                if ready == readers {
                    eprintln!("netctx: reading {readers} log group subscription(s)");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(Exit::Ok)
}
