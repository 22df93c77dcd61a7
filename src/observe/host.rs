//! What the engine looks at before planning: the host's view (its links,
//! its table `inet netctx`, the switches of netctx's host links, proxy
//! entries and host routes), read once per run, and one context's
//! namespace (`Seen`). Which switches to read is the caller's (the plan
//! decides what it compares).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::links::{self, HostLinks, NsState, RoutedObs};
use super::nft::Live;
use super::owner::{self, NsOwner};
use crate::kernel::netlink::{NlError, Rtnl};
use crate::kernel::netns;
use crate::kernel::nft::sock::Nft;
use crate::kernel::profile;
use crate::model::Netns;

/// What the host has, read once per run: its links by name, its table, the
/// switches of its netctx links.
pub struct HostView {
    pub links: HostLinks,
    pub nft: Live,
    pub sysctls: BTreeMap<String, String>,
    /// Proxy neighbour entries and host routes (read when a context is
    /// routed or has a point-to-point link).
    pub routed: RoutedObs,
    /// The nf_tables generation `nft` is exactly the table of (`None` when
    /// something committed while it was read).
    pub generation: Option<u32>,
}

impl HostView {
    /// The host's view with the switches under `paths` and, with `routed`,
    /// its proxy entries and host routes.
    pub fn read_from(
        rtnl: &mut Rtnl,
        nft: &mut Nft,
        paths: &[String],
        routed: bool,
    ) -> Result<HostView, NlError> {
        let (links, conf) = links::read_links_conf(rtnl)?;
        let routed = if routed {
            links::read_routed(rtnl)?
        } else {
            RoutedObs::default()
        };
        // As kept at its generation when nothing committed since.
        let (live, generation) = super::host_table::read_host(nft)?;
        Ok(HostView {
            routed,
            links: links
                .into_iter()
                .map(|l| (l.name.clone(), l))
                .collect::<HashMap<_, _>>()
                .into(),
            nft: live,
            generation,
            sysctls: links::read_sysctls_from(paths, &conf),
        })
    }
}

/// What one context's namespace holds, as [`look`] found it.
#[derive(Debug)]
pub struct Seen {
    pub owner: NsOwner,
    /// The namespace looked at (its nsfs inode), when it is netctx's.
    pub inode: Option<u64>,
    /// A runtime's namespace, held open from looking to changing.
    pub file: Option<File>,
    pub ns: NsState,
}

/// Why a namespace could not be looked at.
#[derive(Debug)]
pub enum LookError {
    Namespace(io::Error),
    Kernel(NlError),
}

/// Look at the namespace of context `name` (netctx's own at its name, or a
/// runtime's at its path), reading the switches under `paths` inside.
pub fn look(name: &str, where_: &Netns, paths: &[String]) -> Result<Seen, LookError> {
    if let Netns::Runtime { path, held, .. } = where_ {
        // A runtime's namespace is there as long as its container; netctx
        // neither makes nor removes it. One held open is entered as it is.
        let open = held.map_or_else(|| path.clone(), |fd| format!("/proc/self/fd/{fd}"));
        let file = netns::open_path(&open).ok_or_else(|| {
            LookError::Namespace(io::Error::other(format!(
                "{path} is not a network namespace"
            )))
        })?;
        let ns = inside(&file, paths)?;
        return Ok(Seen {
            owner: NsOwner::Ours,
            inode: None,
            file: Some(file),
            ns,
        });
    }
    let owner = owner::ns_owner(name).map_err(LookError::Namespace)?;
    if owner != NsOwner::Ours {
        return Ok(Seen {
            owner,
            inode: None,
            file: None,
            ns: NsState::default(),
        });
    }
    let file = netns::open(name).map_err(LookError::Namespace)?;
    let inode = file.metadata().map_err(LookError::Namespace)?.ino();
    let ns = inside(&file, paths)?;
    Ok(Seen {
        owner,
        inode: Some(inode),
        file: None,
        ns,
    })
}

/// What the namespace `file` holds, read from a thread inside it.
fn inside(file: &File, paths: &[String]) -> Result<NsState, LookError> {
    netns::run_in(file, || -> Result<NsState, LookError> {
        let mut nl = Rtnl::open().map_err(LookError::Namespace)?;
        let mut nft = Nft::open().map_err(LookError::Namespace)?;
        profile::time(6, || links::read_ns(&mut nl, &mut nft, paths)).map_err(LookError::Kernel)
    })
    .map_err(LookError::Namespace)?
}
