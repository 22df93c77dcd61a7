//! netctx's token buckets on links (docs/fences.md): read only where a
//! link dump said a link's root qdisc is a `tbf`, so that a namespace
//! without one costs no extra request; and what they dropped, for `stats`.

use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::tc;

use super::links::ObsLink;

/// netctx's root token buckets of the socket's namespace (one dump).
pub fn read(nl: &mut Rtnl) -> Result<Vec<tc::Ours>, NlError> {
    nl.dump_raw(tc::dump(), tc::raw_ours)
}

/// Fill in `tbf` of the links whose root qdisc is a `tbf` (one dump, and
/// none when no link has one).
pub fn fill(nl: &mut Rtnl, links: &mut [ObsLink]) -> Result<(), NlError> {
    if !links.iter().any(|l| l.qdisc.as_deref() == Some(tc::KIND)) {
        return Ok(());
    }
    for o in read(nl)? {
        if let Some(l) = links.iter_mut().find(|l| l.index == o.index) {
            l.tbf = Some(o.tbf);
        }
    }
    Ok(())
}
