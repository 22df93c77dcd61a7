//! netctx: isolated network contexts on Linux. This file holds the command
//! line (clap) and maps results to the documented exit codes; the work is in
//! the modules.

mod apply;
mod config;
mod down;
mod model;
mod msgs;
mod netns;
mod nl;
mod owner;
mod plan;
mod pool;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::apply::{converge, CtxError};
use crate::config::ConfigError;
use crate::model::{Config, Context};
use crate::owner::NsOwner;
use crate::plan::Refusal;

/// Exit codes (design §2).
const EXIT_OK: u8 = 0;
const EXIT_ERROR: u8 = 1;
const EXIT_FINDING: u8 = 2;

static VERBOSE: AtomicBool = AtomicBool::new(false);

macro_rules! debug {
    ($($arg:tt)*) => {
        if VERBOSE.load(Ordering::Relaxed) {
            eprintln!("netctx: debug: {}", format!($($arg)*));
        }
    };
}

/// Isolated network contexts: namespaces, links, addresses, routes.
#[derive(Parser)]
#[command(name = "netctx", version)]
struct Cli {
    /// Configuration file, or directory of *.toml files
    #[arg(short, long, global = true, env = "NETCTX_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Debug logging to stderr
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate the configuration; print every error
    Validate,
    /// Print the actions `up` would take, touching nothing
    Plan(Select),
    /// Converge the kernel to the configuration (idempotent)
    Up(Select),
    /// Remove everything netctx made for these contexts
    Down(DownArgs),
    /// Declared vs actual state of each context
    Status(Listing),
}

#[derive(Args)]
struct Select {
    /// Contexts (default: all declared)
    contexts: Vec<String>,
}

#[derive(Args)]
struct Listing {
    /// Contexts (default: all declared, and any netctx still has)
    contexts: Vec<String>,
    /// One JSON document on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DownArgs {
    /// Contexts to remove (their configuration may be gone)
    contexts: Vec<String>,
    /// Every context netctx made
    #[arg(long, conflicts_with = "contexts")]
    all: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    VERBOSE.store(cli.verbose, Ordering::Relaxed);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(ConfigError::Invalid(diags)) = e.downcast_ref::<ConfigError>() {
                for d in diags {
                    eprintln!("{d}");
                }
                eprintln!(
                    "netctx: error: {} error(s) in the configuration",
                    diags.len()
                );
            } else {
                eprintln!("netctx: error: {e:#}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let path = config::resolve_path(cli.config.as_deref());
    let load = || -> anyhow::Result<Config> {
        debug!("loading configuration from {}", path.display());
        Ok(config::load(&path)?)
    };
    match cli.command {
        Command::Validate => {
            let c = load()?;
            println!("{}: {} context(s), valid", path.display(), c.contexts.len());
            Ok(EXIT_OK)
        }
        Command::Plan(sel) => cmd_plan(&load()?, &sel.contexts),
        Command::Up(sel) => cmd_up(&load()?, &sel.contexts),
        Command::Down(args) => cmd_down(&args),
        Command::Status(l) => cmd_status(load, &l),
    }
}

/// The declared contexts named (all when none are).
fn select<'a>(cfg: &'a Config, names: &[String]) -> anyhow::Result<Vec<&'a Context>> {
    if names.is_empty() {
        return Ok(cfg.contexts.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        match cfg.get(n) {
            Some(c) => out.push(c),
            None => bail!("context {n} is not declared in the configuration"),
        }
    }
    Ok(out)
}

fn host_links(nl: &mut nl::Rtnl) -> anyhow::Result<HashMap<String, state::ObsLink>> {
    let links = state::read_links(nl).context("reading the host's links")?;
    Ok(links.into_iter().map(|l| (l.name.clone(), l)).collect())
}

/// Observe (and with `dry == false`, converge) every selected context.
fn converge_all(
    ctxs: &[&Context],
    dry: bool,
) -> anyhow::Result<Vec<Result<apply::Outcome, CtxError>>> {
    let mut nl = nl::Rtnl::open().context("opening a route netlink socket")?;
    let host = host_links(&mut nl)?;
    let what = (!dry).then_some("up");
    Ok(pool::map(ctxs, what, |nl, c| converge(c, &host, nl, dry))?)
}

fn cmd_plan(cfg: &Config, names: &[String]) -> anyhow::Result<u8> {
    let ctxs = select(cfg, names)?;
    let mut failed = false;
    for (c, r) in ctxs.iter().zip(converge_all(&ctxs, true)?) {
        match r {
            Ok(o) if o.actions.is_empty() => println!("{}: up to date", c.name),
            Ok(o) => {
                println!("{}:", c.name);
                for a in o.actions {
                    println!("  {a}");
                }
            }
            Err(e) => {
                eprintln!("netctx: error: context {}: {e}", c.name);
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}

fn cmd_up(cfg: &Config, names: &[String]) -> anyhow::Result<u8> {
    let ctxs = select(cfg, names)?;
    let _lock = owner::lock().context("taking the netctx lock")?;
    netns::prepare_dir().with_context(|| format!("preparing {}", netns::NETNS_DIR))?;
    let mut failed = Vec::new();
    for (c, r) in ctxs.iter().zip(converge_all(&ctxs, false)?) {
        match r {
            Ok(o) => {
                for a in &o.actions {
                    debug!("context {}: {a}", c.name);
                }
                let what = match (o.owner, o.actions.len()) {
                    (_, 0) => "unchanged".to_string(),
                    (Some(NsOwner::Ours), n) => format!("converged ({n} change(s))"),
                    (_, _) => "created".to_string(),
                };
                println!("{}: {what}", c.name);
            }
            Err(e) => {
                eprintln!("netctx: error: context {}: {e}", c.name);
                failed.push(c.name.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "netctx: error: {} of {} context(s) failed and were rolled back: {}",
            failed.len(),
            ctxs.len(),
            failed.join(", ")
        );
        Ok(EXIT_ERROR)
    }
}

fn cmd_down(args: &DownArgs) -> anyhow::Result<u8> {
    if !args.all && args.contexts.is_empty() {
        bail!("name the contexts to remove, or use --all");
    }
    let _lock = owner::lock().context("taking the netctx lock")?;
    let mut nl = nl::Rtnl::open().context("opening a route netlink socket")?;
    let names = if args.all {
        down::known(&mut nl)?
    } else {
        for n in &args.contexts {
            config::check_context_name(n).map_err(anyhow::Error::msg)?;
        }
        args.contexts.clone()
    };
    let mut failed = false;
    for (name, r) in down::down(&mut nl, &names) {
        match r {
            Ok(down::Removed::Removed) => println!("{name}: removed"),
            Ok(down::Removed::NotPresent) => println!("{name}: not present"),
            Err(e) => {
                eprintln!("netctx: error: context {name}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}

/// One context's state for `status`.
struct Status {
    name: String,
    state: &'static str,
    detail: Vec<String>,
}

fn cmd_status(load: impl Fn() -> anyhow::Result<Config>, l: &Listing) -> anyhow::Result<u8> {
    let cfg = load()?;
    let ctxs = select(&cfg, &l.contexts)?;
    let mut nl = nl::Rtnl::open().context("opening a route netlink socket")?;
    let mut out = Vec::new();
    for (c, r) in ctxs.iter().zip(converge_all(&ctxs, true)?) {
        let (state, detail) = match r {
            Ok(o) if o.actions.is_empty() => ("up", vec![]),
            Ok(o)
                if o.owner == Some(NsOwner::Absent)
                    && !o
                        .actions
                        .iter()
                        .any(|a| matches!(a, plan::Action::DeleteLink { .. })) =>
            {
                ("down", vec![])
            }
            Ok(o) => {
                let mut d: Vec<String> = Vec::new();
                match o.owner {
                    Some(NsOwner::OursMissing) => d.push("namespace is missing".into()),
                    Some(NsOwner::OursUnmounted) => {
                        d.push("namespace file has nothing mounted".into())
                    }
                    _ => {}
                }
                d.extend(
                    o.actions
                        .iter()
                        .filter(|a| {
                            !matches!(a, plan::Action::CreateNs | plan::Action::RemoveNsFile)
                        })
                        .map(|a| format!("needs: {a}")),
                );
                ("drifted", d)
            }
            Err(CtxError::Refused(
                r @ (Refusal::ForeignNamespace(_)
                | Refusal::ForeignHostLink(_)
                | Refusal::OtherContextsLink { .. }),
            )) => ("conflict", vec![r.to_string()]),
            Err(e) => ("error", vec![e.to_string()]),
        };
        out.push(Status {
            name: c.name.clone(),
            state,
            detail,
        });
    }
    if l.contexts.is_empty() {
        for name in down::known(&mut nl)? {
            if cfg.get(&name).is_none() {
                out.push(Status {
                    name,
                    state: "orphaned",
                    detail: vec!["not in the configuration; `netctx down NAME` removes it".into()],
                });
            }
        }
    }
    let finding = out.iter().any(|s| s.state != "up" && s.state != "down");
    if l.json {
        let v: Vec<_> = out
            .iter()
            .map(
                |s| json!({"name": s.name, "state": s.state, "drift": s.detail, "guest_pid": null}),
            )
            .collect();
        println!("{}", json!({ "contexts": v, "drift": finding }));
    } else {
        for s in &out {
            println!("{:<12} {}", s.name, s.state);
            for d in &s.detail {
                println!("{:<12}   {d}", "");
            }
        }
    }
    Ok(if finding { EXIT_FINDING } else { EXIT_OK })
}
