//! The reader threads of `watch`: one per namespace (the host's and each
//! context's), each subscribed on sockets it opened after entering its
//! namespace, sending what it reads to the main loop. A context's reader
//! ends within 100 ms of being told to stop, so it never keeps a namespace
//! alive after `netctx down` removed it.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::observe::events::{Event, Subscriptions};

/// Which namespace a message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Host,
    /// A context's namespace, by name and nsfs inode.
    Ctx(String, u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Host => write!(f, "the host"),
            Place::Ctx(n, _) => write!(f, "context {n}"),
        }
    }
}

pub enum Msg {
    /// Subscribed: from now on every change in that namespace is seen.
    Ready(Place),
    Events(Place, Vec<Event>),
    /// The reader could not start, or its sockets failed; it has ended.
    Failed(Place, String),
}

/// A running reader; dropping it asks the thread to end.
pub struct Reader {
    pub inode: u64,
    stop: Arc<AtomicBool>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An error with its causes, as `netctx: error:` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// How long a reader blocks before looking at its stop flag.
const TICK: Duration = Duration::from_millis(100);

/// Start a reader for `place`: inside the namespace `ns` (entered by the new
/// thread, which then closes the file), or in the caller's for the host.
pub fn spawn(place: Place, ns: Option<File>, tx: mpsc::Sender<Msg>) -> Reader {
    let stop = Arc::new(AtomicBool::new(false));
    let inode = match &place {
        Place::Ctx(_, i) => *i,
        Place::Host => 0,
    };
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        if let Some(file) = ns {
            if let Err(e) = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Msg::Failed(place, format!("entering its namespace: {e}")));
                return;
            }
            // Only the thread (until it ends) and its sockets hold it now.
            drop(file);
        }
        let mut subs = match Subscriptions::open() {
            Ok(s) => s,
            Err(e) => {
                let why = chain(&e);
                let _ = tx.send(Msg::Failed(place, why));
                return;
            }
        };
        if tx.send(Msg::Ready(place.clone())).is_err() {
            return;
        }
        while !flag.load(Ordering::Relaxed) {
            match subs.wait(TICK) {
                Ok(ev) if ev.is_empty() => {}
                Ok(ev) => {
                    if tx.send(Msg::Events(place.clone(), ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let why = chain(&e);
                    let _ = tx.send(Msg::Failed(place, why));
                    return;
                }
            }
        }
    });
    Reader { inode, stop }
}
