//! netctx: isolated network contexts on Linux, as a library. The module tree
//! is docs/architecture.md's pipeline; `src/main.rs` is the thin binary on
//! top of it.
//!
//! The modules stay private: what is exported is what the binary calls and,
//! hidden, what `examples/floor.rs` builds on, so that rustc still reports
//! the code nothing uses.

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

// The binary's entry points (src/main.rs).
pub use cli::{run, Cli, Exit};
pub use cni::run as run_cni;
pub use config::ConfigError;
pub use kernel::profile::report as report_profile;

/// What `examples/floor.rs` (the benchmark's floor, `bench/run`) builds on:
/// netctx's own encoders, rules and namespace handling, with none of its
/// observation, checks or journal.
#[doc(hidden)]
pub mod floor {
    pub use crate::kernel::netlink::{wire as netlink, Request};
    pub use crate::kernel::nft::{dispatch, table, wire as nft};
    pub use crate::kernel::{netns, rtnl, sysctl};
    pub use crate::plan::rules;

    /// The validated configuration types.
    pub mod model {
        pub use crate::model::*;
    }
}
