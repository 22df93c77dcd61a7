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

/// Time spent per phase of `up`, summed over contexts, printed at exit with
/// `NETCTX_PROFILE=1` (for the benchmark's breakdown).
pub mod profile {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    pub const PHASES: [&str; 7] = [
        "namespace",
        "links",
        "addresses+routes",
        "sysctls",
        "rules (context)",
        "rules (host)",
        "observe",
    ];
    static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

    pub fn enabled() -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("NETCTX_PROFILE").is_some())
    }

    /// Time `f` as phase `i`.
    pub fn time<T>(i: usize, f: impl FnOnce() -> T) -> T {
        if !enabled() {
            return f();
        }
        let t = Instant::now();
        let r = f();
        NANOS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    pub fn add(i: usize, d: std::time::Duration) {
        NANOS[i].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn report() {
        if enabled() {
            for (i, p) in PHASES.iter().enumerate() {
                let ms = NANOS[i].load(Ordering::Relaxed) as f64 / 1e6;
                eprintln!("netctx: profile: {p:<18} {ms:10.1} ms (summed over threads)");
            }
        }
    }
}
