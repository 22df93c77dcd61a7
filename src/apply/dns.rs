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

/// The run directory's records of the CNI attachments whose `reach` names
/// domains: what `watch` serves them (their configuration is the
/// runtime's, not in netctx's configuration file).
pub fn records_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("resolver")
}

/// What one attachment's resolver answers: its listening addresses and the
/// domains its `reach` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ctx: String,
    /// Its host veth: attachments of one network share the gateway
    /// address, so each listener is bound to its device.
    pub dev: String,
    pub addrs: Vec<IpAddr>,
    pub domains: Vec<String>,
}

/// Record an attachment's resolver (`ADD`): its host veth on the first
/// line, its addresses on the second, a domain a line after. Nothing (and
/// any old record gone) when it needs none.
pub fn write_record(ctx: &crate::model::Context) -> io::Result<()> {
    let dev = ctx.links.iter().find_map(|l| l.host.clone());
    let (true, Some(dev)) = (ctx.needs_resolver(), dev) else {
        return remove_record(&ctx.name);
    };
    let addrs: Vec<String> = ctx.resolver_addrs().iter().map(|a| a.to_string()).collect();
    let mut text = format!("{dev}\n{}\n", addrs.join(" "));
    for (d, _) in ctx.domains() {
        text.push_str(d);
        text.push('\n');
    }
    rundir::write_private(&records_dir().join(&ctx.name), text.as_bytes())
}

/// Remove an attachment's record (`DEL`, `GC`); none is fine.
pub fn remove_record(ctx: &str) -> io::Result<()> {
    match std::fs::remove_file(records_dir().join(ctx)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every record there (a malformed one skipped).
pub fn read_records() -> Vec<Record> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(records_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let ctx = e.file_name().to_string_lossy().into_owned();
        if !crate::model::is_attachment_name(&ctx) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines();
        let dev = lines.next().unwrap_or_default().to_string();
        let addrs = lines
            .next()
            .unwrap_or_default()
            .split(' ')
            .filter_map(|a| a.parse().ok())
            .collect();
        let domains = lines.filter(|l| !l.is_empty()).map(String::from).collect();
        out.push(Record {
            ctx,
            dev,
            addrs,
            domains,
        });
    }
    out.sort_by(|a, b| a.ctx.cmp(&b.ctx));
    out
}
