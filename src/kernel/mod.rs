//! Transports and encoders, no policy: the one netlink transport, rtnetlink
//! builders, the nf_tables encoder, NFLOG, notifications, sock_diag, namespaces, sysctls,
//! the lock, the worker pool, and the system calls neither std nor nix wraps
//! safely (`sys`). Depends on nothing of netctx but the model's data types.

pub mod bpf;
pub mod diag;
pub mod events;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod nflog;
pub mod nft;
pub mod pool;
pub mod profile;
pub mod rtnl;
pub mod rundir;
pub mod sys;
pub mod sysctl;

pub use rundir::RUN_DIR;
