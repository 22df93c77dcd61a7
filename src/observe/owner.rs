//! What netctx made, recognised without a state file: a marker per namespace
//! under the run directory (written before the namespace exists, holding its
//! nsfs inode once it does) and an alias on every host-side link. Also the
//! lock that serialises netctx processes.

use std::io;
use std::path::PathBuf;

use crate::kernel::netns::{self, NsFile};

use crate::kernel::RUN_DIR;

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
    /// netctx's namespace, mounted.
    Ours,
    /// netctx's marker, but the namespace is gone (deleted behind its back,
    /// or a crash before it was made).
    OursMissing,
    /// netctx's marker and the file, but nothing mounted on it.
    OursUnmounted,
    /// Something netctx did not make.
    Foreign,
}

/// The marker's content: `None` if there is no marker, `Some(None)` if it was
/// written before the namespace existed.
fn read_marker(name: &str) -> io::Result<Option<Option<u64>>> {
    match std::fs::read_to_string(marker(name)) {
        Ok(s) => Ok(Some(s.trim().parse().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn ns_owner(name: &str) -> io::Result<NsOwner> {
    let m = read_marker(name)?;
    Ok(match (netns::probe(name)?, m) {
        (NsFile::Absent, None) => NsOwner::Absent,
        (NsFile::Absent, Some(_)) => NsOwner::OursMissing,
        (NsFile::Unmounted, Some(_)) => NsOwner::OursUnmounted,
        (NsFile::Mounted { .. }, Some(None)) => NsOwner::Ours,
        (NsFile::Mounted { inode }, Some(Some(i))) if i == inode => NsOwner::Ours,
        _ => NsOwner::Foreign,
    })
}

/// Claim a name before making its namespace.
pub fn mark_intent(name: &str) -> io::Result<()> {
    std::fs::create_dir_all(marker_dir())?;
    std::fs::write(marker(name), b"")
}

/// Record the namespace's inode once it exists.
pub fn mark_made(name: &str, inode: u64) -> io::Result<()> {
    let tmp = marker_dir().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, format!("{inode}\n"))?;
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
