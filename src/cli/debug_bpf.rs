//! `netctx debug-bpf …`: a hidden command that drives the bind restriction
//! (`guest::binds`) by hand and from the integration tests.
//! Prints one JSON document on stdout.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::guest::binds::{self, Hook};

#[derive(Args)]
pub struct BpfArgs {
    #[command(subcommand)]
    cmd: BpfCmd,
}

#[derive(Subcommand)]
enum BpfCmd {
    /// Attach the hooks to CGROUP (where missing) and set their maps to ADDRS
    Ensure {
        /// A cgroup v2 directory
        cgroup: PathBuf,
        /// Wildcard binds become the first address of their family
        #[arg(long)]
        single_ip: bool,
        /// The context's user-id range n: ports below 1024 only for its root
        #[arg(long)]
        idmap: Option<u16>,
        /// The context's addresses
        addrs: Vec<IpAddr>,
    },
    /// Which hooks are attached to CGROUP, and what their maps hold
    Status { cgroup: PathBuf },
    /// Detach the hooks from CGROUP
    Detach {
        cgroup: PathBuf,
        /// Only this hook (bind4, bind6, connect4, connect6, sendmsg4, sendmsg6)
        #[arg(long = "hook", value_parser = parse_hook)]
        hooks: Vec<Hook>,
    },
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    binds::hook(s).ok_or_else(|| format!("no hook {s}"))
}

fn names(hooks: impl IntoIterator<Item = Hook>) -> Vec<&'static str> {
    hooks.into_iter().map(Hook::name).collect()
}

// The documents, fields in name order.

#[derive(Serialize)]
struct Ensured {
    attached: Vec<&'static str>,
    duplicates_removed: usize,
    maps_written: usize,
}

#[derive(Serialize)]
struct Status<'a> {
    addresses: &'a [IpAddr],
    attached: Vec<&'static str>,
    complete: bool,
    missing: Vec<&'static str>,
    program_ids: std::collections::BTreeMap<&'static str, u32>,
    single_ip: bool,
}

#[derive(Serialize)]
struct Detached {
    detached: Vec<&'static str>,
}

pub fn run(args: &BpfArgs) -> anyhow::Result<()> {
    let doc = match &args.cmd {
        BpfCmd::Ensure {
            cgroup,
            single_ip,
            idmap,
            addrs,
        } => {
            let s = binds::ensure(cgroup, addrs, *single_ip, *idmap)
                .with_context(|| format!("bind restriction on {}", cgroup.display()))?;
            serde_json::to_string(&Ensured {
                attached: names(s.attached),
                duplicates_removed: s.duplicates_removed,
                maps_written: s.maps_written,
            })?
        }
        BpfCmd::Status { cgroup } => {
            let s = binds::status(cgroup)?;
            serde_json::to_string(&Status {
                addresses: &s.addresses,
                attached: names(s.attached.iter().map(|(h, _)| *h)),
                complete: s.complete(),
                missing: names(s.missing.iter().copied()),
                program_ids: s.attached.iter().map(|(h, id)| (h.name(), *id)).collect(),
                single_ip: s.single_ip,
            })?
        }
        BpfCmd::Detach { cgroup, hooks } => {
            let done = binds::detach(cgroup, hooks)?;
            serde_json::to_string(&Detached {
                detached: names(done),
            })?
        }
    };
    println!("{doc}");
    Ok(())
}
