//! Per-context debouncing of kernel events: a context is due once its events
//! have been quiet for `quiet`, or `max` after its first event, whichever
//! comes first (a burst such as a flushed ruleset is one check, and a steady
//! trickle of events cannot postpone a repair forever). Pure: times are
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
}
