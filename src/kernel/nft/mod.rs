//! nf_tables over netlink, in pure Rust: the wire format (`wire`), rule
//! expressions (`expr`), tables/chains/sets and their messages (`table`),
//! and the socket (`sock`).

pub mod dispatch;
pub mod expr;
pub mod ranges;
pub mod sock;
pub mod table;
pub mod timed;
pub mod trace;
pub mod wire;
