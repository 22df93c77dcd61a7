//! netctx: isolated network contexts on Linux. This file holds the command
//! line (clap) and maps results to the documented exit codes; the work is in
//! the modules.

mod apply;
mod audit;
mod commands;
mod config;
mod crash;
mod down;
mod guest;
mod model;
mod msgs;
mod netns;
mod nflog;
mod nft;
mod nl;
mod owner;
mod plan;
mod pool;
mod profile;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};

use crate::commands::{EXIT_ERROR, EXIT_OK};
use crate::config::ConfigError;
use crate::model::Config;

pub static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Debug logging to stderr with `-v`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
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
    /// Seconds to wait for another netctx's lock before giving up
    #[arg(long, global = true, value_name = "SECS", default_value_t = 300.0)]
    wait: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate the configuration; print every error
    Validate,
    /// Print the actions `up` would take, touching nothing
    Plan(Listing),
    /// Converge the kernel to the configuration (idempotent)
    Up(Select),
    /// Remove everything netctx made for these contexts
    Down(DownArgs),
    /// Declared vs actual state of each context
    Status(Listing),
    /// Run a command inside a context; exit status is the command's
    Exec(ExecArgs),
    /// Start the context's declared guest, detached
    Start(StartArgs),
    /// End every process of the context's guests (SIGTERM, then after a
    /// grace period SIGKILL to the whole cgroup)
    Stop(StopArgs),
    /// Every TCP/UDP socket of every context and of the host, with violations
    Audit(Listing),
    /// (internal) PID 1 of a context's PID namespace
    #[command(hide = true)]
    GuestInit { context: String },
    /// (internal) confine this process as a guest and exec its command
    #[command(hide = true)]
    GuestJail,
    /// Print the packets the logging chains see
    Logs(LogsArgs),
}

#[derive(Args)]
pub struct Select {
    /// Contexts (default: all declared)
    pub contexts: Vec<String>,
}

#[derive(Args)]
pub struct Listing {
    /// Contexts (default: all declared, and any netctx still has)
    pub contexts: Vec<String>,
    /// One JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Debugging door: every capability, no seccomp filter, the host's
    /// writable filesystem, still in the context's network and PID
    /// namespaces and cgroup (the command can leave the context)
    #[arg(long)]
    pub privileged: bool,
    /// Run as this user (name, UID or UID:GID of the guest's root)
    #[arg(long, short)]
    pub user: Option<String>,
    /// Set an environment variable for the command (repeatable)
    #[arg(long, short, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The context
    pub context: String,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Contexts (default: all declared)
    pub contexts: Vec<String>,
    /// Keep following (the default: print until interrupted)
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object a line
    #[arg(long)]
    pub json: bool,
    /// Stop after N lines
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Stop after SECS seconds
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

#[derive(Args)]
pub struct StartArgs {
    /// The context whose [context.NAME.guest] to start
    pub context: String,
    /// Start it as `exec --privileged` would (dangerous)
    #[arg(long)]
    pub privileged: bool,
}

#[derive(Args)]
pub struct StopArgs {
    /// The context whose guest to stop
    pub context: String,
    /// Seconds between SIGTERM and SIGKILL
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Args)]
pub struct DownArgs {
    /// Contexts to remove (their configuration may be gone)
    pub contexts: Vec<String>,
    /// Every context netctx made
    #[arg(long, conflicts_with = "contexts")]
    pub all: bool,
    /// Return once the namespaces are unmounted; the kernel destroys them
    /// and their host veths in the background (a later `up` waits for a
    /// dying link whose name it needs)
    #[arg(long)]
    pub no_wait: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    VERBOSE.store(cli.verbose, Ordering::Relaxed);
    *owner::LOCK_WAIT.lock().unwrap() = std::time::Duration::from_secs_f64(cli.wait.max(0.0));
    let result = run(cli);
    profile::report();
    match result {
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
        Command::Plan(l) => commands::engine::plan(&load()?, &l),
        Command::Up(sel) => commands::engine::up(&load()?, &sel.contexts),
        Command::Down(args) => commands::engine::down(&args),
        Command::Status(l) => commands::engine::status(&load()?, &l),
        Command::Exec(args) => commands::guest::exec(&load()?, &path, &args),
        Command::Start(args) => commands::guest::start(&load()?, &path, &args),
        Command::GuestInit { context } => guest::init::main(&context),
        Command::GuestJail => guest::jail::main(),
        Command::Stop(args) => commands::guest::stop(&args),
        Command::Audit(l) => commands::audit::audit(&load()?, &l),
        Command::Logs(a) => commands::logs::logs(&load()?, &a),
    }
}
