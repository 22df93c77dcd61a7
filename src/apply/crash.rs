//! Kill points for the crash tests, compiled into debug builds only: with
//! `NETCTX_CRASH_AFTER=N` the process SIGKILLs itself on reaching the Nth
//! point, as `kill -9` at that moment would; with `NETCTX_CRASH_TRACE=1` it
//! names each point on stderr (so a test can count them). Release builds
//! have no points at all.

#[cfg(debug_assertions)]
pub fn point(what: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static LIMIT: OnceLock<(Option<usize>, bool)> = OnceLock::new();
    let (limit, trace) = *LIMIT.get_or_init(|| {
        let limit = std::env::var("NETCTX_CRASH_AFTER")
            .ok()
            .and_then(|s| s.parse().ok());
        (limit, std::env::var_os("NETCTX_CRASH_TRACE").is_some())
    });
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if trace {
        eprintln!("netctx: crash point {n}: {what}");
    }
    if limit == Some(n) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_what: &str) {}
