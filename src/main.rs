//! netctx: isolated network contexts on Linux. Thin: parse the command line,
//! run it through the library (src/lib.rs), map the result to the documented
//! exit code (docs/commands.md).

use std::process::ExitCode;

use clap::Parser;

use netctx::{Cli, ConfigError, Exit};

fn main() -> ExitCode {
    // Run by a container runtime as a CNI plugin (docs/cni.md).
    if std::env::var_os("CNI_COMMAND").is_some() {
        return netctx::run_cni();
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = netctx::run(cli);
    netctx::report_profile();
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
