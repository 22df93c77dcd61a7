//! netctx's run directory, root's alone: directories 0700, files 0600,
//! created without following symbolic links. Nothing in it is readable by
//! another user or reachable from a guest.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// netctx's run directory: markers, guests' pid files, the lock.
pub const RUN_DIR: &str = "/run/netctx";

/// `dir` and its parents up to the run directory exist and are 0700 (an
/// existing directory with looser permissions is tightened).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut d = Some(dir);
    while let Some(p) = d {
        if !p.starts_with(RUN_DIR) {
            break;
        }
        let meta = fs::symlink_metadata(p)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                p.display()
            )));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
        }
        d = p.parent();
    }
    Ok(())
}

/// Open (creating, 0600) a file of the run directory, never through a
/// symbolic link.
pub fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Write a whole file of the run directory (0600).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = open_private(path, true)?;
    f.write_all(data)
}
