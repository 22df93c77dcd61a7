//! The bind restriction of a context's cgroup (docs/guests.md, "Bind
//! restriction"; the programs are `kernel::bpf`'s): what `bind_hooks`
//! attaches before a guest joins, what `audit` checks, and what the hidden
//! `netctx debug-bpf` drives by hand.

use std::net::IpAddr;
use std::path::Path;

use crate::kernel::bpf;
pub use crate::kernel::bpf::{BpfError, Hook, HookStatus, Status};

/// The hook named `name` (`bind4`, `bind6`, `connect4`, `connect6`,
/// `sendmsg4`, `sendmsg6`).
pub fn hook(name: &str) -> Option<Hook> {
    Hook::ALL.into_iter().find(|h| h.name() == name)
}

/// Attach the hooks to `cgroup` where missing and set their maps to
/// `addrs` and `single_ip`; with `idmap`, ports below 1024 stay the root's
/// of that user-id range. Idempotent.
pub fn ensure(
    cgroup: &Path,
    addrs: &[IpAddr],
    single_ip: bool,
    idmap: Option<u16>,
) -> Result<Status, BpfError> {
    bpf::ensure(cgroup, addrs, single_ip, idmap)
}

/// Which hooks are attached to `cgroup`, and what their maps hold.
pub fn status(cgroup: &Path) -> Result<HookStatus, BpfError> {
    bpf::status(cgroup)
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
