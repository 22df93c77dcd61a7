//! What netctx made, recognised without a state file: a marker per namespace
//! under the run directory, naming the nsfs inode of the namespace (written
//! before the namespace is mounted), and an alias on every host-side link. A
//! marker that is empty, unreadable or names another inode proves nothing.

use std::io;
use std::path::PathBuf;

use crate::kernel::netns::{self, NsFile};

use crate::kernel::rundir::{self, RUN_DIR};

fn marker_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("netns")
}

fn marker(name: &str) -> PathBuf {
    marker_dir().join(name)
}

/// Who owns `/run/netns/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsOwner {
    /// No namespace and no marker.
    Absent,
    /// netctx's namespace, mounted: the marker names its inode.
    Ours,
    /// netctx's marker, but the namespace is gone (deleted behind its back,
    /// or a crash before it was mounted).
    OursMissing,
    /// netctx's marker and the file, but nothing mounted on it.
    OursUnmounted,
    /// A namespace (or its file) that netctx did not make: no marker.
    Foreign,
    /// A marker that proves nothing: netctx touches nothing of the context.
    BadMarker(MarkerProblem),
}

/// What is wrong with a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerProblem {
    Empty,
    Unreadable(i32),
    Garbled,
    /// It names another namespace than the one mounted.
    Mismatch {
        marker: u64,
        mounted: u64,
    },
}

impl std::fmt::Display for MarkerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MarkerProblem::Empty => write!(f, "is empty"),
            MarkerProblem::Unreadable(errno) => write!(
                f,
                "cannot be read ({})",
                nix::errno::Errno::from_raw(*errno).desc()
            ),
            MarkerProblem::Garbled => write!(f, "does not name a namespace inode"),
            MarkerProblem::Mismatch { marker, mounted } => write!(
                f,
                "names namespace inode {marker}, but the namespace mounted is inode {mounted}"
            ),
        }
    }
}

impl NsOwner {
    /// Neither ours nor absent: no command may touch the context.
    pub fn is_conflict(self) -> bool {
        matches!(self, NsOwner::Foreign | NsOwner::BadMarker(_))
    }
}

enum Marker {
    None,
    Inode(u64),
    Bad(MarkerProblem),
}

fn read_marker(name: &str) -> Marker {
    let bytes = match std::fs::read(marker(name)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Marker::None,
        Err(e) => return Marker::Bad(MarkerProblem::Unreadable(e.raw_os_error().unwrap_or(0))),
    };
    let text = String::from_utf8_lossy(&bytes);
    match text.trim() {
        "" => Marker::Bad(MarkerProblem::Empty),
        t => t
            .parse()
            .map_or(Marker::Bad(MarkerProblem::Garbled), Marker::Inode),
    }
}

pub fn ns_owner(name: &str) -> io::Result<NsOwner> {
    Ok(match (netns::probe(name)?, read_marker(name)) {
        (_, Marker::Bad(p)) => NsOwner::BadMarker(p),
        (NsFile::Absent, Marker::None) => NsOwner::Absent,
        (NsFile::Absent, Marker::Inode(_)) => NsOwner::OursMissing,
        (NsFile::Unmounted, Marker::Inode(_)) => NsOwner::OursUnmounted,
        (NsFile::Mounted { inode }, Marker::Inode(i)) if i == inode => NsOwner::Ours,
        (NsFile::Mounted { inode }, Marker::Inode(i)) => {
            NsOwner::BadMarker(MarkerProblem::Mismatch {
                marker: i,
                mounted: inode,
            })
        }
        (_, Marker::None) => NsOwner::Foreign,
    })
}

/// Claim a name for the namespace of `inode`, before it is mounted: the
/// marker is written whole (a temporary file renamed over it), 0600 in a
/// 0700 directory.
pub fn mark(name: &str, inode: u64) -> io::Result<()> {
    rundir::create_private_dir(&marker_dir())?;
    let tmp = marker_dir().join(format!(".{name}.tmp"));
    rundir::write_private(&tmp, format!("{inode}\n").as_bytes())?;
    std::fs::rename(tmp, marker(name))
}

pub fn unmark(name: &str) -> io::Result<()> {
    match std::fs::remove_file(marker(name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Names of every context netctx has a marker for.
pub fn marked() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(marker_dir()) {
        Ok(rd) => {
            for e in rd {
                let n = e?.file_name().to_string_lossy().into_owned();
                if !n.starts_with('.') {
                    out.push(n);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}
