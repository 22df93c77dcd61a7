//! Read-only kernel queries turned into plain data: the host's view and a
//! context's namespace as the engine plans against them (`host`); links, addresses and
//! routes of a namespace (`links`; the host's table kept at its nf_tables
//! generation: `host_table`; the link dump's bytes read by
//! `link_dump`), the live nft table (`nft`), who owns a namespace
//! (`owner`), which process holds which socket (`procs`), traffic figures
//! of links and rule counters (`counters`), the sockets and link-local
//! addresses `audit` judges (`diag`), the kernel's notifications `watch`
//! follows (`events`), the packets `logs` prints (`nflog`), and the CNI
//! attachments that exist (`attachments`). Nothing here changes the
//! kernel.

pub mod attachments;
pub mod compiled;
pub mod counters;
pub mod diag;
pub mod events;
pub mod firewall;
pub mod host;
pub mod host_table;
pub mod legacy;
mod link_dump;
pub mod links;
pub mod neigh;
pub mod nflog;
pub mod nft;
pub mod owner;
pub mod probe;
pub mod procs;
pub mod qdisc;
pub mod routes;
pub mod trace;

/// The error of a read that failed (the netlink transport's).
pub use crate::kernel::netlink::NlError;
