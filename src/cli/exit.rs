//! The process exit codes (docs/commands.md).

/// What a command tells the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok,
    /// An error: bad configuration, a context that failed, a refusal.
    Error,
    /// `audit` found a violation, `status` found drift.
    Finding,
    /// `exec`: the command's own status.
    Command(u8),
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Finding => 2,
            Exit::Command(c) => c,
        })
    }
}
