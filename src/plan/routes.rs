//! The plan for the routes inside a context.

use super::{Action, Made};
use crate::model::Context;
use crate::observe::links::{NsState, ObsRoute};

/// Routes: undeclared ones go, declared ones come; those through deleted
/// links went with them.
pub(super) fn routes(ctx: &Context, ns: &NsState, made: &Made, acts: &mut Vec<Action>) {
    let routes: Vec<&ObsRoute> = ns
        .routes
        .iter()
        .filter(|r| !r.oif.is_some_and(|o| made.gone.contains(&o)))
        .collect();
    for r in &routes {
        let wanted = ctx
            .routes
            .iter()
            .any(|d| d.to == r.to && Some(d.via) == r.via);
        if !wanted {
            acts.push(Action::DelRoute((*r).clone()));
        }
    }
    for d in &ctx.routes {
        if !routes.iter().any(|r| r.to == d.to && r.via == Some(d.via)) {
            acts.push(Action::AddRoute(*d));
        }
    }
}
