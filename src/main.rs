//! netctx: isolated network contexts on Linux. Thin: parse the command line,
//! run it, map the result to the documented exit code (design §2).

mod apply;
mod audit;
mod cli;
mod cni;
mod config;
mod guest;
mod kernel;
mod model;
mod observe;
mod plan;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Exit};
use crate::config::ConfigError;

fn main() -> ExitCode {
    // Run by a container runtime as a CNI plugin (design §5).
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::run();
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = cli::run(cli);
    kernel::profile::report();
    match result {
        Ok(code) => code.into(),
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
            Exit::Error.into()
        }
    }
}

/// `-v`: debug events (with their structured fields) to stderr.
fn init_logging(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
