//! `exec`, `start`, `stop`: processes inside a context (see `guest`).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::Exit;
use super::{ExecArgs, ShiftArgs, StartArgs, StopArgs};
use crate::guest::{self, Request, Stopped};
use crate::kernel::lock;
use crate::model::{Config, Context};
use crate::observe::owner::{self, NsOwner};

/// A context that is declared and up.
fn context<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a Context> {
    let ctx = cfg
        .get(name)
        .with_context(|| format!("context {name} is not declared in the configuration"))?;
    match owner::ns_owner(name).with_context(|| format!("context {name}"))? {
        NsOwner::Ours => Ok(ctx),
        NsOwner::Foreign => bail!("context {name}: /run/netns/{name} was not made by netctx"),
        _ => bail!("context {name} is not up (run `netctx up {name}`)"),
    }
}

fn env_pairs(env: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--env {kv:?}: expected NAME=VALUE"),
        })
        .collect()
}

pub fn exec(cfg: &Config, config: &Path, a: &ExecArgs, wait: Duration) -> anyhow::Result<Exit> {
    let ctx = context(cfg, &a.context)?;
    let r = Request {
        ctx,
        privileged: a.privileged,
        user: a.user.as_deref(),
        env: env_pairs(&a.env)?,
        argv: &a.command,
        config: config.to_path_buf(),
        lock_wait: wait,
    };
    let status = guest::exec(&r).with_context(|| format!("context {}", ctx.name))?;
    Ok(Exit::Command(guest::exit_code(status)))
}

pub fn start(cfg: &Config, config: &Path, a: &StartArgs, wait: Duration) -> anyhow::Result<Exit> {
    let ctx = context(cfg, &a.context)?;
    let Some(g) = &ctx.guest else {
        bail!(
            "context {} declares no guest ([context.{}.guest])",
            ctx.name,
            ctx.name
        );
    };
    let r = Request {
        ctx,
        privileged: a.privileged,
        user: g.user.as_deref(),
        env: Vec::new(),
        argv: &g.command,
        config: config.to_path_buf(),
        lock_wait: wait,
    };
    let started = guest::start(&r)
        .with_context(|| format!("context {}: starting {:?}", ctx.name, g.command[0]))?;
    let pid = match started {
        guest::Started::Already(pid) => {
            println!("{}: guest already running (pid {pid})", ctx.name);
            return Ok(Exit::Ok);
        }
        guest::Started::New(pid) => pid,
    };
    for w in guest::shift::not_owned(ctx) {
        eprintln!("netctx: warning: context {}: {w}", ctx.name);
    }
    if let Some(l) = guest::limits::line(ctx, guest::limits::Host::read(), true) {
        eprintln!("netctx: warning: context {}: {l}", ctx.name);
    }
    println!(
        "{}: guest started (pid {pid}, output in {})",
        ctx.name,
        guest::log_file(&ctx.name).display()
    );
    Ok(Exit::Ok)
}

/// Print what stopping a context ended.
pub fn report(name: &str, s: &Stopped) {
    match s {
        Stopped::Guest(pid) => println!("{name}: guest stopped (pid {pid})"),
        Stopped::Processes(n) => println!("{name}: stopped {n} process(es)"),
        Stopped::Nothing => {}
    }
}

pub fn stop(a: &StopArgs, wait: Duration) -> anyhow::Result<Exit> {
    crate::config::check_context_name(&a.context).map_err(anyhow::Error::msg)?;
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    let grace = Duration::from_secs_f64(a.timeout.max(0.0));
    let s = guest::stop(&a.context, grace).with_context(|| format!("context {}", a.context))?;
    match s {
        Stopped::Nothing => println!("{}: guest not running", a.context),
        s => report(&a.context, &s),
    }
    Ok(Exit::Ok)
}

/// `netctx shift [--back] CTX PATH…`.
pub fn shift(cfg: &Config, a: &ShiftArgs, wait: Duration) -> anyhow::Result<Exit> {
    let ctx = cfg
        .get(&a.context)
        .with_context(|| format!("context {} is not declared in the configuration", a.context))?;
    // One shift at a time, and none while netctx starts a guest on it.
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    let (first, count) = ctx.id_range();
    let last = u64::from(first) + u64::from(count) - 1;
    let to = if a.back {
        "the host's ids".to_string()
    } else {
        format!("user ids {first}-{last}")
    };
    for p in &a.paths {
        let r = guest::shift::shift(ctx, p, a.back)
            .with_context(|| format!("context {}: shifting {}", ctx.name, p.display()))?;
        println!(
            "{}: {}: {} changed, {} already {to}",
            ctx.name,
            p.display(),
            r.changed,
            r.kept
        );
        for (n, what) in [
            (
                r.foreign,
                "with ids outside what the shift maps, left as they are",
            ),
            (
                r.other_fs,
                "mount point(s) of other filesystems, not entered",
            ),
            (
                r.linked_outside,
                "file(s) with hard links outside the path, left as they are",
            ),
        ] {
            if n > 0 {
                eprintln!("netctx: warning: {}: {n} {what}", p.display());
            }
        }
    }
    Ok(Exit::Ok)
}
