//! SIGTERM and SIGINT end `watch`: the handler only raises a flag that the
//! main loop looks at between events and repairs, so a repair under way is
//! finished and nothing is undone.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Raised by SIGTERM or SIGINT (or a closed stdout).
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn install_signals() -> anyhow::Result<()> {
    // SA_RESTART: a signal arriving during a repair must not fail one of
    // its netlink calls with EINTR; watch ends after the repair.
    let sa = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; it replaces the default action of SIGTERM and
        // SIGINT, for which netctx installs no other handler.
        unsafe { sigaction(s, &sa) }.with_context(|| format!("installing a handler for {s}"))?;
    }
    Ok(())
}
