//! One module per group of commands; each returns the process exit code.

pub mod audit;
pub mod engine;
pub mod guest;
pub mod logs;

/// Exit codes (design §2).
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
/// `audit` found a violation, `status` found drift.
pub const EXIT_FINDING: u8 = 2;
