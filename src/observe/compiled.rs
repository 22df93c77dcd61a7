//! The validated configuration as `up` left it in the run directory
//! (docs/operations.md): so that `exec` and `start` of one context read
//! that context alone instead of parsing and validating every declaration
//! (30 ms with 1,000 contexts). Two root-only files under
//! `/run/netctx/compiled`: `index.json` — the identity of every source
//! file, of the configuration path itself (a directory's changes when a
//! file comes or goes) and of the netctx binary (device, inode, size,
//! modification and change times), the configuration's keys that are not
//! a context's, and where each context's line is — and `contexts.jsonl`, a
//! context a line. Used only while every identity still holds; anything
//! else (edited, touched, replaced, a new binary, a damaged file) is the
//! full load.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kernel::rundir::{self, RUN_DIR};
use crate::model::{Config, Context};

const VERSION: u32 = 1;

fn dir() -> PathBuf {
    Path::new(RUN_DIR).join("compiled")
}

/// What a file was when the configuration was compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn identity(path: &Path) -> io::Result<Identity> {
    let m = fs::metadata(path)?;
    Ok(Identity {
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// The configuration path, its files, netctx itself.
    sources: Vec<Identity>,
    /// The configuration without its contexts (`[defaults]`' own keys).
    defaults: Config,
    /// Each context's line in `contexts.jsonl`: offset and length.
    at: BTreeMap<String, (u64, u64)>,
}

/// The identities of the configuration path, its files and netctx itself,
/// taken before the configuration is read: an edit made after this (even
/// while `up` runs) moves a change time, and `read_one` then loads the
/// whole configuration instead of a compiled copy that missed the edit.
pub struct Sources(Vec<Identity>);

impl Sources {
    /// `files` lists the configuration's files; it is called after the
    /// path itself is looked at, so a file added meanwhile moves the
    /// directory's times.
    pub fn take(
        config: &Path,
        files: impl FnOnce() -> io::Result<Vec<PathBuf>>,
    ) -> io::Result<Sources> {
        let mut out = vec![identity(config)?];
        for f in files()? {
            out.push(identity(&f)?);
        }
        out.push(identity(Path::new("/proc/self/exe"))?);
        Ok(Sources(out))
    }
}

/// Leave `cfg`, read after `sources` were taken, for `exec` and `start`;
/// nothing when what is there already holds.
pub fn write(sources: Sources, cfg: &Config) -> io::Result<()> {
    let sources = sources.0;
    let d = dir();
    if let Ok(old) = read_index(&d) {
        if old.sources == sources {
            return Ok(());
        }
    }
    rundir::create_private_dir(&d)?;
    let mut lines = Vec::new();
    let mut at = BTreeMap::new();
    for c in &cfg.contexts {
        let start = lines.len() as u64;
        serde_json::to_writer(&mut lines, c).map_err(io::Error::other)?;
        at.insert(c.name.clone(), (start, lines.len() as u64 - start));
        lines.push(b'\n');
    }
    let index = Index {
        version: VERSION,
        sources,
        defaults: Config {
            contexts: Vec::new(),
            ..cfg.clone()
        },
        at,
    };
    // The lines first, then the index that points into them, each renamed
    // into place whole.
    let put = |name: &str, data: &[u8]| {
        let tmp = d.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        rundir::write_private(&tmp, data)?;
        fs::rename(&tmp, d.join(name))
    };
    put("contexts.jsonl", &lines)?;
    put(
        "index.json",
        &serde_json::to_vec(&index).map_err(io::Error::other)?,
    )
}

/// A file of the compiled directory, if it is root's and no one else may
/// write it (nor its directory).
fn open_trusted(path: &Path) -> io::Result<fs::File> {
    for p in [path.parent().unwrap_or(path), path] {
        let m = fs::symlink_metadata(p)?;
        if m.uid() != 0 || m.permissions().mode() & 0o022 != 0 || m.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is not root's alone",
                p.display()
            )));
        }
    }
    fs::File::open(path)
}

fn read_index(d: &Path) -> io::Result<Index> {
    let mut s = String::new();
    open_trusted(&d.join("index.json"))?.read_to_string(&mut s)?;
    let index: Index = serde_json::from_str(&s).map_err(io::Error::other)?;
    if index.version != VERSION {
        return Err(io::Error::other("another version"));
    }
    Ok(index)
}

/// The index of what `up` compiled from `config`, if every file it came
/// from is still what it was.
fn current(d: &Path, config: &Path) -> Option<Index> {
    let index = read_index(d).ok()?;
    let now: Vec<Identity> = index
        .sources
        .iter()
        .map(|s| identity(&s.path))
        .collect::<io::Result<_>>()
        .ok()?;
    (now == index.sources && index.sources.first()?.path == config).then_some(index)
}

/// The configuration at `config` whole, as `up` left it (its contexts in
/// their order), if every file it came from is still what it was; `None`
/// otherwise (then the caller loads it).
pub fn read_all(config: &Path) -> Option<Config> {
    let d = dir();
    let index = current(&d, config)?;
    let mut data = Vec::new();
    open_trusted(&d.join("contexts.jsonl"))
        .ok()?
        .read_to_end(&mut data)
        .ok()?;
    let contexts: Vec<Context> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()
        .ok()?;
    // Every context the index names, each once.
    let mut names: Vec<&str> = contexts.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let whole = names.len() == contexts.len()
        && names
            .iter()
            .copied()
            .eq(index.at.keys().map(String::as_str));
    whole.then_some(Config {
        contexts,
        ..index.defaults
    })
}

/// The configuration at `config` with only context `name`, as `up` left
/// it, if every file it came from is still what it was; `None` otherwise
/// (then the caller loads the configuration whole).
pub fn read_one(config: &Path, name: &str) -> Option<Config> {
    let d = dir();
    let index = current(&d, config)?;
    let (start, len) = *index.at.get(name)?;
    let mut f = open_trusted(&d.join("contexts.jsonl")).ok()?;
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut line = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut line).ok()?;
    let ctx: Context = serde_json::from_slice(&line).ok()?;
    (ctx.name == name).then(|| Config {
        contexts: vec![ctx],
        ..index.defaults
    })
}

#[cfg(test)]
mod tests {
    use crate::model::Context;

    /// `up`, `status` and `exec` act on the compiled contexts as on the
    /// loaded ones: a context's line is that context, field for field.
    #[test]
    fn a_compiled_context_is_the_loaded_one() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/contexts");
        let mut seen = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            for c in crate::config::load(&p).unwrap().contexts {
                let line = serde_json::to_vec(&c).unwrap();
                let back: Context = serde_json::from_slice(&line).unwrap();
                assert_eq!(back, c, "{}", p.display());
                seen += 1;
            }
        }
        assert!(seen >= 3, "{seen}");
    }
}
