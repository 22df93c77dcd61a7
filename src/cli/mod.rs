//! The command line: clap definitions next to their handlers (one module per
//! group of commands). Each handler returns the process exit code.

mod attachments;
mod audit;
mod debug_bpf;
mod docs;
mod engine;
pub mod exit;
mod explain;
mod guest;
mod logs;
mod stats;
mod status;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::model::Config;
pub use exit::Exit;

/// Isolated network contexts: namespaces, links, addresses, routes.
#[derive(Parser)]
#[command(name = "netctx", version)]
pub struct Cli {
    /// Configuration file, or directory of *.toml files
    #[arg(short, long, global = true, env = "NETCTX_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Debug logging to stderr
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Seconds to wait for another netctx's lock before giving up
    #[arg(long, global = true, value_name = "SECS", default_value_t = 300.0)]
    pub wait: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Give a guest tree or writable path to a context: map its owners into
    /// the context's user-id range (--back: to the host's ids)
    Shift(ShiftArgs),
    /// (internal) PID 1 of a context's PID namespace
    #[command(hide = true)]
    GuestInit {
        context: String,
        first: u32,
        count: u32,
    },
    /// (internal) copy a declared guest's output into its capped log
    #[command(hide = true)]
    GuestLog { context: String, bytes: u64 },
    /// Send one probe from a context and print every table, chain and rule
    /// that judged it, with the verdict (nftables tracing)
    Explain(explain::ExplainArgs),
    /// Print the packets the logging chains see
    Logs(LogsArgs),
    /// Converge, then repair drift as the kernel reports it, until SIGTERM
    Watch(WatchArgs),
    /// Packets and bytes in and out, dropped by isolation and logged, per context
    Stats(StatsArgs),
    /// A shell completion script, on stdout
    Completions(CompletionsArgs),
    /// The netctx(1) manual page (roff), on stdout
    Man,
    /// Attach, inspect or detach the bind-restriction hooks of a cgroup
    #[command(name = "debug-bpf", hide = true)]
    DebugBpf(debug_bpf::BpfArgs),
}

#[derive(Args)]
pub struct WatchArgs {
    /// One JSON object a line
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Contexts (default: all declared)
    pub contexts: Vec<String>,
    /// One JSON document on stdout
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// The Prometheus text format (for node_exporter's textfile collector)
    #[arg(long)]
    pub prometheus: bool,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: docs::Shell,
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
pub struct ShiftArgs {
    /// Map owners back from the context's range to the host's ids
    #[arg(long)]
    pub back: bool,
    /// The context whose range the owners move into
    pub context: String,
    /// Its `root` tree or `writable` paths (or paths beneath them)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
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

impl Cli {
    /// How long to wait for another netctx's lock.
    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait.max(0.0))
    }
}

/// The configuration for the listing commands: at the default place (not
/// `given`), a directory that is absent or holds no `*.toml` file declares
/// no context.
fn listing_config(path: &std::path::Path, given: bool) -> anyhow::Result<Config> {
    if let Some(c) = crate::observe::compiled::read_all(path) {
        return Ok(c);
    }
    match config::load(path) {
        Err(config::ConfigError::Empty(_)) if !given => Ok(Config::default()),
        Err(config::ConfigError::Read { source, .. })
            if !given && source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(Config::default())
        }
        r => Ok(r?),
    }
}

/// Leave the validated configuration in the run directory for `exec` and
/// `start` (`observe::compiled`); a failure only costs them the full load.
fn compile(sources: std::io::Result<crate::observe::compiled::Sources>, cfg: &Config) {
    if let Err(e) = sources.and_then(|s| crate::observe::compiled::write(s, cfg)) {
        tracing::debug!("compiling the configuration: {e}");
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let path = config::resolve_path(cli.config.as_deref());
    let wait = cli.lock_wait();
    let load = || -> anyhow::Result<Config> {
        tracing::debug!(path = %path.display(), "loading configuration");
        Ok(config::load(&path)?)
    };
    // One context, as `up` compiled it when nothing changed since, else the
    // whole configuration (docs/operations.md).
    let one = |name: &str| match crate::observe::compiled::read_one(&path, name) {
        Some(c) => Ok(c),
        None => load(),
    };
    // The listing commands on a node that declares nothing (a Kubernetes
    // node with only CNI attachments): the default directory absent or
    // empty is no context at all. A path given with -c must exist.
    let given = cli.config.is_some();
    let listing = || listing_config(&path, given);
    match cli.command {
        Command::Validate => {
            let c = load()?;
            println!("{}: {} context(s), valid", path.display(), c.contexts.len());
            Ok(Exit::Ok)
        }
        Command::Plan(l) => engine::plan(&load()?, &l, cli.verbose),
        Command::Up(sel) => {
            // What the files were before they are read (observe::compiled).
            let sources = crate::observe::compiled::Sources::take(&path, || {
                config::files(&path).map_err(|e| std::io::Error::other(e.to_string()))
            });
            // As `up` compiled it when nothing changed since (then there
            // is nothing to compile either).
            let cfg = match crate::observe::compiled::read_all(&path) {
                Some(c) => c,
                None => load()?,
            };
            let out = engine::up(&cfg, &sel.contexts, wait);
            compile(sources, &cfg);
            out
        }
        Command::Down(args) => engine::down(&args, wait),
        Command::Status(l) => status::status(&listing()?, &l),
        Command::Exec(args) => guest::exec(&one(&args.context)?, &path, &args, wait),
        Command::Start(args) => guest::start(&one(&args.context)?, &path, &args, wait),
        Command::GuestInit {
            context,
            first,
            count,
        } => crate::guest::init::main(&context, first, count).map(Exit::Command),
        Command::GuestLog { context, bytes } => {
            crate::guest::logpump::main(&context, bytes).map(Exit::Command)
        }
        Command::Stop(args) => guest::stop(&args, wait),
        Command::Audit(l) => audit::audit(&listing()?, &l),
        Command::Shift(a) => guest::shift(&load()?, &a, wait),
        Command::Logs(a) => logs::logs(&listing()?, &a),
        Command::Explain(a) => explain::explain(&load()?, &a),
        Command::Watch(a) => watch::watch(&path, listing()?, &a, wait),
        Command::Stats(a) => stats::stats(&listing()?, &a),
        Command::Completions(a) => docs::completions(a.shell),
        Command::Man => docs::man(),
        Command::DebugBpf(a) => debug_bpf::run(&a).map(|()| Exit::Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::listing_config;

    #[test]
    fn a_node_without_declarations_has_no_context_for_the_listings() {
        let d = std::env::temp_dir().join(format!("netctx-unit-{}", std::process::id()));
        let dir = d.join("contexts.d");
        // Absent, then present and empty: no context.
        assert!(listing_config(&dir, false).unwrap().contexts.is_empty());
        std::fs::create_dir_all(&dir).unwrap();
        assert!(listing_config(&dir, false).unwrap().contexts.is_empty());
        // Named with -c (or $NETCTX_CONFIG): still an error.
        assert!(listing_config(&dir, true).is_err());
        assert!(listing_config(&d.join("nothing"), true).is_err());
        std::fs::write(dir.join("a.toml"), "[context.a]\n").unwrap();
        assert_eq!(listing_config(&dir, false).unwrap().contexts.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
