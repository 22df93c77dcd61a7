//! The plan for the switches netctx owns inside a context.

use super::{Action, Made};
use crate::kernel::sysctl;
use crate::model::Context;
use crate::observe::links::NsState;

/// Switches, inside the namespace only: forwarding (a new namespace starts
/// with 0) and router advertisements (a new link accepts them; rogue
/// advertisements are a known way out of a container).
pub(super) fn sysctls(ctx: &Context, ns: &NsState, made: &Made, acts: &mut Vec<Action>) {
    // (path, wanted, the kernel's value for a new link or namespace)
    let mut want: Vec<(String, bool, bool)> = vec![
        (sysctl::FORWARD_V4.into(), ctx.ip_forward, false),
        (sysctl::FORWARD_V6.into(), ctx.ip_forward, false),
    ];
    want.extend(
        ctx.links
            .iter()
            .map(|d| (sysctl::accept_ra(&d.name), d.accept_ra, true)),
    );
    for (path, on, default) in want {
        let renewed = made.fresh.iter().any(|f| path == sysctl::accept_ra(f));
        let have = if renewed {
            None
        } else {
            ns.sysctls.get(&path).copied()
        };
        if have.unwrap_or(default) != on {
            acts.push(Action::Sysctl { path, on });
        }
    }
}
