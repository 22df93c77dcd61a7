//! `exec`, `start`, `stop`: processes inside a context.

use std::time::Duration;

use anyhow::{bail, Context as _};

use super::Exit;
use super::{ExecArgs, StartArgs, StopArgs};
use crate::guest::{self, Jail};
use crate::kernel::{lock, netns};
use crate::model::{Config, Context};
use crate::observe::owner::{self, NsOwner};

fn context<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a Context> {
    cfg.get(name)
        .with_context(|| format!("context {name} is not declared in the configuration"))
}

/// The jail of a context that is up.
fn jail(ctx: &Context, privileged: bool, user: Option<&str>) -> anyhow::Result<Jail> {
    let name = &ctx.name;
    match owner::ns_owner(name).with_context(|| format!("context {name}"))? {
        NsOwner::Ours => {}
        NsOwner::Foreign => bail!("context {name}: /run/netns/{name} was not made by netctx"),
        _ => bail!("context {name} is not up (run `netctx up {name}`)"),
    }
    let netns =
        netns::open(name).with_context(|| format!("context {name}: opening its namespace"))?;
    let user = user
        .map(|u| guest::lookup_user(u).with_context(|| format!("context {name}: user {u}")))
        .transpose()?;
    Ok(Jail {
        netns,
        hostname: ctx.hostname.clone(),
        privileged,
        user,
    })
}

pub fn exec(cfg: &Config, a: &ExecArgs) -> anyhow::Result<Exit> {
    let ctx = context(cfg, &a.context)?;
    let j = jail(ctx, a.privileged, a.user.as_deref())?;
    let status = guest::exec(j, &a.command)
        .with_context(|| format!("context {}: running {:?}", ctx.name, a.command[0]))?;
    Ok(Exit::Command(guest::exit_code(status)))
}

pub fn start(cfg: &Config, a: &StartArgs, wait: Duration) -> anyhow::Result<Exit> {
    let ctx = context(cfg, &a.context)?;
    let Some(g) = &ctx.guest else {
        bail!(
            "context {} declares no guest ([context.{}.guest])",
            ctx.name,
            ctx.name
        );
    };
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    if let Some(pid) = guest::running(&ctx.name) {
        println!("{}: guest already running (pid {pid})", ctx.name);
        return Ok(Exit::Ok);
    }
    let j = jail(ctx, a.privileged, g.user.as_deref())?;
    let pid = guest::start(&ctx.name, j, &g.command)
        .with_context(|| format!("context {}: starting {:?}", ctx.name, g.command[0]))?;
    println!(
        "{}: guest started (pid {pid}, output in {})",
        ctx.name,
        guest::log_file(&ctx.name).display()
    );
    Ok(Exit::Ok)
}

pub fn stop(a: &StopArgs, wait: Duration) -> anyhow::Result<Exit> {
    crate::config::check_context_name(&a.context).map_err(anyhow::Error::msg)?;
    let _lock = lock::lock(wait).context("taking the netctx lock")?;
    let grace = Duration::from_secs_f64(a.timeout.max(0.0));
    match guest::stop(&a.context, grace).with_context(|| format!("context {}", a.context))? {
        Some(pid) => println!("{}: guest stopped (pid {pid})", a.context),
        None => println!("{}: guest not running", a.context),
    }
    Ok(Exit::Ok)
}
