//! The kernel as apply sees it: a small trait, so that phase order, errno
//! handling and journal replay are unit-tested against a recording fake; the
//! real implementation holds the host's and the namespace's sockets.

use std::io;

use crate::kernel::netlink::{NlError, Request, Rtnl};
use crate::kernel::nft::ranges::Elem;
use crate::kernel::nft::sock::Nft;
use crate::kernel::nft::wire::Msg;
use crate::kernel::sysctl;
use crate::observe::links;
use crate::observe::nft as nft_live;
use crate::plan::Side;

/// What apply asks of the kernel.
pub trait Kernel {
    /// Send requests on one side; the results in request order.
    fn exec(&mut self, side: Side, reqs: Vec<Request>) -> Vec<Result<(), NlError>>;
    /// Name and ifindex of every link inside the namespace.
    fn ns_links(&mut self) -> Result<Vec<(String, u32)>, NlError>;
    /// The ifindex of a host link, `None` when there is none.
    fn host_link(&mut self, name: &str) -> Result<Option<u32>, NlError>;
    fn read_sysctl(&mut self, path: &str) -> Option<String>;
    fn write_sysctl(&mut self, path: &str, value: &str) -> io::Result<()>;
    /// One nf_tables transaction on one side: all or nothing; the index of
    /// the failing message and the error.
    fn nft(&mut self, side: Side, msgs: &[Msg]) -> Result<(), (usize, NlError)>;
    /// Names of the host table's chains starting with `prefix`.
    fn host_chains(&mut self, prefix: &str) -> Result<Vec<String>, NlError>;
    /// The elements of a range set of the host's table, `None` if missing.
    fn host_set(&mut self, name: &str, ports: bool) -> Result<Option<Vec<Elem>>, NlError>;
}

/// The real kernel: the worker's host sockets and the namespace's, opened on
/// the thread that is inside it.
pub struct Sockets<'a> {
    pub host: &'a mut super::Host,
    pub ns: Rtnl,
    pub ns_nft: Nft,
}

impl Kernel for Sockets<'_> {
    fn exec(&mut self, side: Side, reqs: Vec<Request>) -> Vec<Result<(), NlError>> {
        match side {
            Side::Host => self.host.rtnl.exec(reqs),
            Side::Ctx => self.ns.exec(reqs),
        }
    }

    fn ns_links(&mut self) -> Result<Vec<(String, u32)>, NlError> {
        Ok(links::read_links(&mut self.ns)?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect())
    }

    fn host_link(&mut self, name: &str) -> Result<Option<u32>, NlError> {
        Ok(links::read_link(&mut self.host.rtnl, name)?.map(|l| l.index))
    }

    fn read_sysctl(&mut self, path: &str) -> Option<String> {
        sysctl::read(path)
    }

    fn write_sysctl(&mut self, path: &str, value: &str) -> io::Result<()> {
        sysctl::write(path, value)
    }

    fn nft(&mut self, side: Side, msgs: &[Msg]) -> Result<(), (usize, NlError)> {
        match side {
            Side::Host => self.host.nft.transaction(msgs),
            Side::Ctx => self.ns_nft.transaction(msgs),
        }
    }

    fn host_chains(&mut self, prefix: &str) -> Result<Vec<String>, NlError> {
        let live = nft_live::read(&mut self.host.nft, &[])?;
        Ok(live.only(prefix).chains.into_iter().map(|c| c.0).collect())
    }

    fn host_set(&mut self, name: &str, ports: bool) -> Result<Option<Vec<Elem>>, NlError> {
        nft_live::read_range_set(&mut self.host.nft, name, ports)
    }
}
