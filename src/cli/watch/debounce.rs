//! Per-context debouncing of kernel events: a context is due once its events
//! have been quiet for `quiet`, or `max` after its first event, whichever
//! comes first (a burst such as a flushed ruleset is one check, and a steady
//! trickle of events cannot postpone a repair forever); and the limit on
//! repairs of a context that something keeps changing. Pure: times are
//! passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Debounce {
    quiet: Duration,
    max: Duration,
    /// Context → (first event, last event) since it was last due.
    pending: HashMap<String, (Instant, Instant)>,
}

impl Debounce {
    pub fn new(quiet: Duration, max: Duration) -> Debounce {
        Debounce {
            quiet,
            max,
            pending: HashMap::new(),
        }
    }

    /// An event for `ctx` at `now`.
    pub fn mark(&mut self, ctx: &str, now: Instant) {
        let e = self.pending.entry(ctx.to_string()).or_insert((now, now));
        e.1 = now;
    }

    pub fn forget(&mut self, ctx: &str) {
        self.pending.remove(ctx);
    }

    fn due_at(&self, (first, last): (Instant, Instant)) -> Instant {
        (last + self.quiet).min(first + self.max)
    }

    /// When the next context falls due, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| self.due_at(*p)).min()
    }

    /// The contexts due at `now`, with the time of their first event; they
    /// are no longer pending.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Instant)> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= self.due_at(**p))
            .map(|(n, _)| n.clone())
            .collect();
        let mut out: Vec<(String, Instant)> = due
            .into_iter()
            .filter_map(|n| self.pending.remove(&n).map(|(first, _)| (n, first)))
            .collect();
        out.sort();
        out
    }
}

/// Repair attempts per context, to stop repairing one that something keeps
/// changing (or whose repair keeps failing): after `limit` attempts within
/// `window`, the context is left alone for a `window`.
pub struct Burst {
    limit: usize,
    window: Duration,
    times: HashMap<String, Vec<Instant>>,
}

impl Burst {
    pub fn new(limit: usize, window: Duration) -> Burst {
        Burst {
            limit,
            window,
            times: HashMap::new(),
        }
    }

    pub fn record(&mut self, ctx: &str, now: Instant) {
        self.times.entry(ctx.to_string()).or_default().push(now);
    }

    pub fn forget(&mut self, ctx: &str) {
        self.times.remove(ctx);
    }

    /// `None`: go ahead. `Some(first)`: leave it alone; `first` is true the
    /// first time (to warn once).
    pub fn hold(&mut self, ctx: &str, now: Instant) -> Option<bool> {
        let times = self.times.entry(ctx.to_string()).or_default();
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() == self.limit {
            // The hold itself, for a window from now.
            times.push(now);
            return Some(true);
        }
        (times.len() > self.limit).then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn due_after_quiet_or_at_most_max_after_the_first_event() {
        let t0 = Instant::now();
        let mut d = Debounce::new(150 * MS, 400 * MS);
        assert_eq!(d.next_due(), None);
        d.mark("a", t0);
        d.mark("a", t0 + 100 * MS);
        assert_eq!(d.next_due(), Some(t0 + 250 * MS));
        assert!(d.take_due(t0 + 249 * MS).is_empty());
        assert_eq!(d.take_due(t0 + 250 * MS), [("a".to_string(), t0)]);
        assert!(d.take_due(t0 + 900 * MS).is_empty(), "taken once");

        // A steady trickle: due 400 ms after the first event all the same.
        for i in 0..10 {
            d.mark("b", t0 + i * 100 * MS);
        }
        assert_eq!(d.next_due(), Some(t0 + 400 * MS));
        assert_eq!(d.take_due(t0 + 400 * MS).len(), 1);

        d.mark("c", t0);
        d.forget("c");
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_context_repaired_too_often_is_held_for_a_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut b = Burst::new(3, 10 * s);
        for i in 0..3 {
            assert_eq!(b.hold("a", t0 + i * s), None);
            b.record("a", t0 + i * s);
        }
        assert_eq!(b.hold("a", t0 + 3 * s), Some(true), "warned once");
        assert_eq!(b.hold("a", t0 + 4 * s), Some(false));
        assert_eq!(b.hold("b", t0 + 4 * s), None, "others go ahead");
        // A window after the hold began, it is repaired again.
        assert_eq!(b.hold("a", t0 + 13 * s), None);
    }
}
