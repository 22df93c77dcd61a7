//! Why a context could not be converged (or removed): each error names its
//! object and keeps the kernel's error as its source.

use std::io;

use crate::kernel::netlink::NlError;
use crate::plan::Refusal;

/// Shown after `context NAME: `, with its source chain.
#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The kernel refused a request about `object`.
    #[error("{object}")]
    Kernel {
        object: String,
        #[source]
        source: NlError,
    },
    #[error("{link}: this kernel cannot create dummy links (CONFIG_DUMMY)")]
    NoDummy { link: String },
    #[error("namespace /run/netns/{name}")]
    Namespace {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("set {path}")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("host link {0} vanished")]
    Vanished(String),
    #[error("{0} is missing")]
    Missing(String),
    #[error("host link {0} is still there 5 s after its deletion")]
    StillThere(String),
    /// The original error, and what rolling back could not undo.
    #[error("{error}; rolling back failed to undo {}", list(failures))]
    RollbackIncomplete {
        error: Box<CtxError>,
        failures: Vec<UndoFailure>,
    },
}

/// One undo that failed during a rollback.
#[derive(Debug)]
pub struct UndoFailure {
    pub what: String,
    pub cause: String,
}

fn list(f: &[UndoFailure]) -> String {
    let v: Vec<String> = f
        .iter()
        .map(|u| format!("{} ({})", u.what, u.cause))
        .collect();
    v.join(", ")
}

impl CtxError {
    pub fn kernel(object: &str, source: NlError) -> CtxError {
        CtxError::Kernel {
            object: object.to_string(),
            source,
        }
    }

    pub fn ns(name: &str, source: io::Error) -> CtxError {
        CtxError::Namespace {
            name: name.to_string(),
            source,
        }
    }

    /// The error with its causes, as `object: cause: cause`.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}
