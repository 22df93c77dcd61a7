//! Read-only kernel queries turned into plain data: links, addresses and
//! routes of a namespace (`links`; the link dump's bytes read by
//! `link_dump`), the live nft table (`nft`), who owns a namespace
//! (`owner`), which process holds which socket (`procs`), traffic figures
//! of links and rule counters (`counters`). Nothing here changes the
//! kernel.

pub mod counters;
pub mod diag;
pub mod events;
mod link_dump;
pub mod links;
pub mod nflog;
pub mod nft;
pub mod owner;
pub mod procs;
