//! Read-only kernel queries turned into plain data: the host's view and a
//! context's namespace as the engine plans against them (`host`); links, addresses and
//! routes of a namespace (`links`; the link dump's bytes read by
//! `link_dump`), the live nft table (`nft`), who owns a namespace
//! (`owner`), which process holds which socket (`procs`), traffic figures
//! of links and rule counters (`counters`). Nothing here changes the
//! kernel.

pub mod counters;
pub mod host;
mod link_dump;
pub mod links;
pub mod nft;
pub mod owner;
pub mod procs;
pub mod routes;
