//! Transports and encoders, no policy: the one netlink transport, rtnetlink
//! builders, the nf_tables encoder and socket, BPF (the bind restriction),
//! namespaces, sysctls, the run directory, the lock, the worker pool, the
//! system calls neither std nor nix wraps safely (`sys`). What
//! reads the kernel into data (sock_diag, notifications, NFLOG) is
//! `observe`'s. Depends on nothing of netctx but the model's data types.

pub mod bpf;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod pool;
pub mod profile;
pub mod rtnl;
pub mod rundir;
pub mod signals;
pub mod sys;
pub mod sysctl;
pub mod tc;

pub use rundir::RUN_DIR;
