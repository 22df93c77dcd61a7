//! nf_tables over netlink, in pure Rust: the wire format (`wire`), rules and
//! their expressions (`rule`), netctx's rulesets (`ruleset`), the socket
//! (`sock`) and reading back what the kernel has (`observe`).

pub mod observe;
pub mod rule;
pub mod ruleset;
pub mod sock;
pub mod wire;

#[cfg(test)]
mod tests;
