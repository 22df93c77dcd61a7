//! A small pool of OS threads for per-context work. Each worker makes its own
//! state once (its sockets in the host namespace, say); namespace work is
//! done on threads the workers spawn (see `netns`), so no worker ever changes
//! namespace.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn threads(n: usize) -> usize {
    let want = std::env::var("NETCTX_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4usize);
    want.clamp(1, n.max(1))
}

/// `f(worker_state, item)` for every item, results in item order; each
/// worker makes its state with `setup` first. Shows progress on a terminal
/// when `progress` names the work.
pub fn map<S, T: Sync, R: Send>(
    items: &[T],
    progress: Option<&str>,
    setup: impl Fn() -> std::io::Result<S> + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> std::io::Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let show = progress.filter(|_| items.len() > 1 && std::io::stderr().is_terminal());
    let open_err: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads(items.len()) {
            s.spawn(|| {
                let mut state = match setup() {
                    Ok(s) => s,
                    Err(e) => {
                        *open_err.lock().unwrap() = Some(e);
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(&mut state, item);
                    results.lock().unwrap()[i] = Some(r);
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(what) = show {
                        eprint!("\r{what}: {d}/{}", items.len());
                    }
                }
            });
        }
    });
    if show.is_some() {
        eprintln!();
    }
    if let Some(e) = open_err.into_inner().unwrap() {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect())
}
