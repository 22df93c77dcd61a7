//! Signal dispositions as netctx sets them: ignored (SIGCHLD in a
//! context's init) or a handler that only raises a flag (`watch`'s SIGTERM
//! and SIGINT). One `unsafe` block, sigaction's.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Raised by a signal whose disposition is [`Disposition::Raise`].
pub static RAISED: AtomicBool = AtomicBool::new(false);

extern "C" fn raise(_: libc::c_int) {
    RAISED.store(true, Ordering::SeqCst);
}

/// What a signal does, as netctx sets it.
pub enum Disposition {
    /// Ignored, set as signal(3) sets it (SA_RESTART, the signal itself
    /// masked): for SIGCHLD, children the kernel reaps.
    Ignore,
    /// A handler that only raises [`RAISED`]; SA_RESTART, nothing masked.
    Raise,
}

/// sigaction(2): `sig` does `what` from now on.
pub fn set_disposition(sig: Signal, what: Disposition) -> io::Result<()> {
    let sa = match what {
        Disposition::Ignore => SigAction::new(SigHandler::SigIgn, SaFlags::SA_RESTART, sig.into()),
        Disposition::Raise => SigAction::new(
            SigHandler::Handler(raise),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        ),
    };
    // SAFETY: the only handlers are SIG_IGN and `raise`, which stores to an
    // atomic and nothing else (async-signal-safe).
    unsafe { sigaction(sig, &sa) }?;
    Ok(())
}
