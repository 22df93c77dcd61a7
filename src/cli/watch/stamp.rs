//! When to read the configuration again: its files' times and sizes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The configuration's files (the file, or the directory and its *.toml
/// files) with their modification times and sizes: a change means reload.
pub(super) fn config_stamp(path: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let stat = |p: &Path| {
        let m = std::fs::metadata(p).ok();
        let modified = m.as_ref().and_then(|m| m.modified().ok());
        (p.to_path_buf(), modified, m.map_or(0, |m| m.len()))
    };
    let mut out = vec![stat(path)];
    if let Ok(rd) = std::fs::read_dir(path) {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| stat(p)));
    }
    out
}
