//! Steps and their journal: every request that succeeds leaves its inverse,
//! and a failure replays the journal backwards. Rollback goes on past its
//! own failures and reports them after the original error.

use super::crash;
use super::error::{CtxError, UndoFailure};
use super::kernel::Kernel;
use crate::kernel::netlink::Request;
use crate::plan::Side;

/// A kernel request with what it is about (for errors) and how to undo it.
#[derive(Debug, Clone)]
pub struct Step {
    pub side: Side,
    pub req: Request,
    pub what: String,
    pub undo: Option<Request>,
    /// errno values that count as success (e.g. ENODEV when deleting).
    pub ok_errno: &'static [i32],
    /// A dummy link's creation: EOPNOTSUPP means the kernel has no dummy
    /// driver.
    pub dummy: bool,
}

impl Step {
    pub fn new(side: Side, req: Request, what: String) -> Step {
        Step {
            side,
            req,
            what,
            undo: None,
            ok_errno: &[],
            dummy: false,
        }
    }
    pub fn undo(mut self, undo: Request) -> Step {
        self.undo = Some(undo);
        self
    }
    pub fn ok_if(mut self, errnos: &'static [i32]) -> Step {
        self.ok_errno = errnos;
        self
    }
}

/// How to undo one success.
#[derive(Debug, Clone)]
pub enum Undo {
    Nl {
        side: Side,
        req: Request,
        what: String,
    },
    Sysctl {
        path: String,
        old: String,
    },
}

/// Run steps in order (consecutive steps of one side go in one batch);
/// journal the undo of each success; stop after the first failing batch.
pub fn run(k: &mut impl Kernel, steps: Vec<Step>, journal: &mut Vec<Undo>) -> Result<(), CtxError> {
    let mut steps = steps.into_iter().peekable();
    while let Some(first) = steps.next() {
        let side = first.side;
        let mut group = vec![first];
        while let Some(s) = steps.next_if(|s| s.side == side) {
            group.push(s);
        }
        let reqs = group.iter().map(|s| s.req.clone()).collect();
        let results = k.exec(side, reqs);
        let mut failed = None;
        for (s, r) in group.into_iter().zip(results) {
            match r {
                Ok(()) => journal.extend(s.undo.map(|req| Undo::Nl {
                    side,
                    req,
                    what: s.what.clone(),
                })),
                Err(e) if s.ok_errno.contains(&e.errno) => {}
                Err(e) if s.dummy && e.errno == libc::EOPNOTSUPP => {
                    failed.get_or_insert(CtxError::NoDummy { link: s.what });
                }
                Err(e) => {
                    failed.get_or_insert(CtxError::kernel(&s.what, e));
                }
            }
        }
        crash::point("a batch of link, address or route requests done");
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// Undo the journal backwards, every entry even when some fail; then the
/// original `error`, with what could not be undone.
pub fn rollback(k: &mut impl Kernel, journal: Vec<Undo>, error: CtxError) -> CtxError {
    let mut failures = Vec::new();
    for u in journal.into_iter().rev() {
        match u {
            Undo::Nl { side, req, what } => {
                if let Some(Err(e)) = k.exec(side, vec![req]).pop() {
                    failures.push(UndoFailure {
                        what,
                        cause: e.to_string(),
                    });
                }
            }
            Undo::Sysctl { path, old } => {
                if let Err(e) = k.write_sysctl(&path, &old) {
                    failures.push(UndoFailure {
                        what: path.replace('/', "."),
                        cause: e.to_string(),
                    });
                }
            }
        }
    }
    if failures.is_empty() {
        error
    } else {
        CtxError::RollbackIncomplete {
            error: Box::new(error),
            failures,
        }
    }
}

/// A new context that failed: its host links go now (the namespace takes
/// everything else with it), and nothing else of the journal is replayed.
pub fn undo_new(k: &mut impl Kernel, journal: Vec<Undo>, error: CtxError) -> CtxError {
    let host: Vec<Undo> = journal
        .into_iter()
        .filter(|u| {
            matches!(
                u,
                Undo::Nl {
                    side: Side::Host,
                    ..
                }
            )
        })
        .collect();
    rollback(k, host, error)
}
