//! What netctx's resolver (`netctx watch`) writes: the addresses it allowed
//! a context, as elements of the context's timed sets in the host's table
//! (each with its own timeout), and the names it refused, as lines of the
//! run directory's DNS log that `netctx logs` follows.

use std::io::{self, Seek, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::kernel::netlink::NlError;
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::timed;
use crate::kernel::rundir::{self, RUN_DIR};
use crate::model::dns_set;

/// The DNS log grows to this, then starts again.
const LOG_MAX: u64 = 1 << 20;

/// The DNS log: one line a refused name, `CTX DENY: NAME=… SRC=…`.
pub fn log_path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("dns.log")
}

/// Append a line to the DNS log (emptied first once it is too long).
pub fn log(line: &str) -> io::Result<()> {
    let mut f = rundir::open_private(&log_path(), false)?;
    if f.metadata()?.len() > LOG_MAX {
        f.set_len(0)?;
    }
    f.seek(io::SeekFrom::End(0))?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// A socket to the host's nf_tables for the resolver's elements.
pub struct Allow(Nft);

impl Allow {
    pub fn open() -> io::Result<Allow> {
        Nft::open().map(Allow)
    }

    /// Allow context `ctx` to reach `addr` for `ttl` (from now: an element
    /// already there is replaced with the new timeout).
    pub fn allow(&mut self, ctx: &str, addr: IpAddr, ttl: Duration) -> Result<(), NlError> {
        let set = dns_set(ctx, addr.is_ipv6());
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self.0.transaction(&[timed::add(&set, addr, ms, true)]) {
            Ok(()) => Ok(()),
            Err((_, e)) if e.errno == libc::EEXIST => self
                .0
                .transaction(&[timed::del(&set, addr), timed::add(&set, addr, ms, true)])
                .map_err(|(_, e)| e),
            Err((_, e)) => Err(e),
        }
    }
}
