//! What `watch` does for the host rather than a context: the lines it
//! prints, Docker's `DOCKER-USER` put back when a foreign table changes, and
//! what the host's own firewall would drop of netctx's traffic.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::signals::STOP;
use super::Watch;
use crate::apply;
use crate::kernel::lock;

/// One line of `watch --json` (fields in name order).
#[derive(serde::Serialize)]
pub(super) struct WatchEvent<'a> {
    pub actions: &'a [String],
    pub context: &'a str,
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u128>,
}

impl Watch<'_> {
    /// Print one line on stdout: text, or a JSON object. When nobody reads
    /// stdout any more (a closed pipe), watch ends as on SIGTERM.
    pub(super) fn say(
        &self,
        ctx: &str,
        event: &str,
        actions: &[String],
        latency: Option<Duration>,
    ) {
        let line = if self.json {
            let e = WatchEvent {
                actions,
                context: ctx,
                event,
                latency_ms: latency.map(|l| l.as_millis()),
            };
            serde_json::to_string(&e).unwrap_or_default()
        } else if actions.is_empty() {
            format!("{ctx}: {event}")
        } else {
            // An action names what it repaired (a foreign link's name, say).
            let actions: Vec<String> = actions.iter().map(|a| crate::model::escape(a)).collect();
            format!("{ctx}: {event}: {}", actions.join("; "))
        };
        if writeln!(std::io::stdout(), "{line}").is_err() {
            STOP.store(true, Ordering::SeqCst);
        }
    }

    /// Docker's `DOCKER-USER` as `up` leaves it, under the lock.
    pub(super) fn host_firewall(&mut self) {
        let _lock = match lock::lock(self.wait) {
            Ok(l) => l,
            Err(e) => return eprintln!("netctx: error: taking the netctx lock: {e}"),
        };
        match apply::firewall::after(&mut self.host, self.cfg.host_firewall, true) {
            Ok(done) => {
                let mut did: Vec<String> = done
                    .added
                    .iter()
                    .map(|c| format!("add netctx's rule to {c}"))
                    .collect();
                did.extend(
                    done.removed
                        .iter()
                        .map(|c| format!("remove netctx's rule from {c}")),
                );
                if !did.is_empty() {
                    self.say("host", "repaired", &did, None);
                }
            }
            Err(e) => eprintln!("netctx: error: host firewall: DOCKER-USER: {e}"),
        }
        // What the host's firewall would drop of what netctx forwards, said
        // once each time it changes (`status` exits 2 for it meanwhile).
        let ifaces = super::super::status::forwarding_ifaces(&self.cfg);
        let links = super::super::status::host_links(&self.cfg);
        match apply::firewall::findings(&mut self.host, &ifaces, &links) {
            Ok(f) if f != self.firewall_findings => {
                if f.is_empty() {
                    self.say("host", "firewall cleared", &[], None);
                } else {
                    self.say("host", "firewall conflict", &f, None);
                }
                self.firewall_findings = f;
            }
            Ok(_) => {}
            Err(e) => eprintln!("netctx: error: reading the host's firewall: {e}"),
        }
    }
}
