//! SIGTERM and SIGINT end `watch`: the handler only raises a flag that the
//! main loop looks at between events and repairs, so a repair under way is
//! finished and nothing is undone.

use anyhow::Context as _;
use nix::sys::signal::Signal;

use crate::kernel::signals::{set_disposition, Disposition};

/// Raised by SIGTERM or SIGINT (or a closed stdout): the flag of the
/// handler `kernel::signals` installs, which only stores to it.
pub use crate::kernel::signals::RAISED as STOP;

pub fn install_signals() -> anyhow::Result<()> {
    // SA_RESTART: a signal arriving during a repair must not fail one of
    // its netlink calls with EINTR; watch ends after the repair. It
    // replaces the default action of SIGTERM and SIGINT, for which netctx
    // installs no other handler.
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        set_disposition(s, Disposition::Raise)
            .with_context(|| format!("installing a handler for {s}"))?;
    }
    Ok(())
}
