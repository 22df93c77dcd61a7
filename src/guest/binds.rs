//! The bind restriction of a context's cgroup (docs/guests.md, "Bind
//! restriction"; the programs are `kernel::bpf`'s): what `bind_hooks`
//! attaches before a guest joins, what `audit` checks, and what the hidden
//! `netctx debug-bpf` drives by hand.

use std::path::Path;

use crate::kernel::bpf;
/// `ensure`: attach the hooks to a cgroup where missing and set their maps
/// (idempotent); `status`: which hooks are attached, what the maps hold.
pub use crate::kernel::bpf::{ensure, status, BpfError, Hook};

/// The hook named `name` (`bind4`, `bind6`, `connect4`, `connect6`,
/// `sendmsg4`, `sendmsg6`).
pub fn hook(name: &str) -> Option<Hook> {
    Hook::ALL.into_iter().find(|h| h.name() == name)
}

/// Detach `hooks` from `cgroup` (every one when `hooks` is empty); the
/// hooks detached.
pub fn detach(cgroup: &Path, hooks: &[Hook]) -> Result<Vec<Hook>, BpfError> {
    if hooks.is_empty() {
        bpf::detach(cgroup)
    } else {
        bpf::detach_hooks(cgroup, hooks)
    }
}
