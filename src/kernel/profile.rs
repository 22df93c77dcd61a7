//! Time spent per phase of `up`, summed over contexts and printed at exit
//! with `NETCTX_PROFILE=1`, for the benchmark's breakdown of where the time
//! goes. Off, it costs one check per phase.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub const PHASES: [&str; 18] = [
    "namespace",
    "links",
    "addresses+routes",
    "sysctls",
    "rules (context)",
    "rules (host)",
    "observe",
    "down: find contexts",
    "down: guests",
    "down: namespaces",
    "down: host ends",
    "down: host chains",
    "observe: links",
    "observe: routes",
    "observe: sysctls",
    "observe: rules",
    "observe: host view",
    "plan",
];
/// The phases of `down`, from here on.
pub const DOWN: usize = 7;
/// The parts of observing, from here on.
pub const OBSERVE: usize = 12;
static NANOS: [AtomicU64; 18] = [const { AtomicU64::new(0) }; 18];

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
    add(i, t.elapsed());
    r
}

pub fn add(i: usize, d: std::time::Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    NANOS[i].fetch_add(nanos, Ordering::Relaxed);
}

pub fn report() {
    if enabled() {
        for (i, p) in PHASES.iter().enumerate() {
            let ms = NANOS[i].load(Ordering::Relaxed) as f64 / 1e6;
            if (DOWN..OBSERVE).contains(&i) && ms == 0.0 {
                continue;
            }
            eprintln!("netctx: profile: {p:<18} {ms:10.1} ms (summed over threads)");
        }
    }
}
