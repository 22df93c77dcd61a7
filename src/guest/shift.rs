//! `netctx shift [--back] CTX PATH…`: give a guest tree or writable path to
//! a context by mapping its owners into the context's user-id range (guest
//! id u becomes host id first + u; `--back` the reverse), as Incus's and
//! LXD's shifting does for unprivileged containers. Every object is opened
//! once, without following a symlink (`O_PATH | O_NOFOLLOW` beneath its
//! directory's descriptor), and changed through that descriptor: a tree
//! whose owner swaps names while this runs can make it change only objects
//! of the tree. It stays on the filesystem it starts on. A regular file
//! with hard links elsewhere (more links than the walk met) is left as it
//! is: it may be a host file linked in. chown's own rule clears setuid and
//! setgid bits of what it moves. Idempotent: ids already in place stay.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};

use super::fd::{self, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use crate::model::Context;

/// What one shift did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Objects whose owner or group changed.
    pub changed: u64,
    /// Objects already in place.
    pub kept: u64,
    /// Objects with ids outside what is mapped (another range, or ids too
    /// large), left as they are.
    pub foreign: u64,
    /// Mount points of other filesystems, not entered.
    pub other_fs: u64,
    /// Regular files with links outside the walk, left as they are.
    pub linked_outside: u64,
}

/// Where an id goes: guest id u ↔ host id first + u.
pub fn map_id(id: u32, (first, count): (u32, u32), back: bool) -> Option<u32> {
    if back {
        (id >= first && id - first < count).then(|| id - first)
    } else {
        (id < count).then(|| first + id)
    }
}

/// Whether an id is where the shift puts ids already.
fn in_place(id: u32, (first, count): (u32, u32), back: bool) -> bool {
    if back {
        id < 65536 && !(id >= first && id - first < count)
    } else {
        id >= first && id - first < count
    }
}

/// The paths a context declares for its guest, as the host sees them.
pub fn declared(ctx: &Context) -> Vec<PathBuf> {
    let Some(g) = &ctx.guest else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = g.root.iter().cloned().collect();
    for w in &g.writable {
        let rel = w.strip_prefix("/").unwrap_or(w);
        out.push(match &g.root {
            Some(r) => r.join(rel),
            None => w.clone(),
        });
    }
    out
}

/// An absolute path with `.` and `..` resolved lexically.
fn lexical(p: &Path) -> anyhow::Result<PathBuf> {
    if !p.is_absolute() {
        bail!("{}: give an absolute path", p.display());
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

struct Walk {
    range: (u32, u32),
    back: bool,
    dev: u64,
    report: Report,
    /// Regular files with several links: (device, inode) → (the object,
    /// links met, links it has).
    linked: HashMap<(u64, u64), (OwnedFd, u64, u64)>,
    seen: u64,
    progress: bool,
    label: String,
}

fn cstr(name: &CStr) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()))
}

fn chown_fd(f: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    let flags = nix::fcntl::AtFlags::AT_EMPTY_PATH | nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
    let (u, g) = (Some(uid.into()), Some(gid.into()));
    Ok(nix::unistd::fchownat(f, c"", u, g, flags)?)
}

impl Walk {
    fn tick(&mut self) {
        self.seen += 1;
        if self.progress && self.seen.is_multiple_of(4096) {
            eprint!("\rshift {}: {} objects", self.label, self.seen);
            let _ = io::stderr().flush();
        }
    }

    /// Map the owner and group of the object `f` (its stat `st`).
    fn object(&mut self, f: &OwnedFd, st: &libc::stat, shown: &Path) -> anyhow::Result<()> {
        self.tick();
        let (u, g) = (st.st_uid, st.st_gid);
        if in_place(u, self.range, self.back) && in_place(g, self.range, self.back) {
            self.report.kept += 1;
            return Ok(());
        }
        let (nu, ng) = match (
            map_id(u, self.range, self.back)
                .or_else(|| in_place(u, self.range, self.back).then_some(u)),
            map_id(g, self.range, self.back)
                .or_else(|| in_place(g, self.range, self.back).then_some(g)),
        ) {
            (Some(nu), Some(ng)) => (nu, ng),
            _ => {
                self.report.foreign += 1;
                return Ok(());
            }
        };
        if fd::is_reg(st) && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            let e = match self.linked.remove(&key) {
                Some((first, met, links)) => (first, met + 1, links),
                None => (
                    f.try_clone().with_context(|| shown.display().to_string())?,
                    1,
                    st.st_nlink,
                ),
            };
            self.linked.insert(key, e);
            return Ok(());
        }
        chown_fd(f.as_fd(), nu, ng)
            .with_context(|| format!("changing the owner of {}", shown.display()))?;
        self.report.changed += 1;
        Ok(())
    }

    /// The directory `dir` (open for reading) and everything beneath it.
    fn dir(&mut self, dir: OwnedFd, shown: &Path) -> anyhow::Result<()> {
        let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(dir, shown.to_path_buf())];
        while let Some((d, path)) = stack.pop() {
            let names = list(&d).with_context(|| format!("reading {}", path.display()))?;
            for name in names {
                let n = cstr(&name);
                let shown = path.join(n);
                let f = match fd::openat2(
                    d.as_fd(),
                    n,
                    libc::O_PATH | libc::O_NOFOLLOW,
                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
                ) {
                    Ok(f) => f,
                    // Gone (or swapped) since the listing: nothing to do.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e).with_context(|| shown.display().to_string()),
                };
                let st = fd::stat(f.as_fd()).with_context(|| shown.display().to_string())?;
                if st.st_dev != self.dev {
                    self.report.other_fs += 1;
                    continue;
                }
                self.object(&f, &st, &shown)?;
                if fd::is_dir(&st) {
                    // Open for reading what was looked at, not the name again.
                    let r = reopen_dir(&f).with_context(|| shown.display().to_string())?;
                    stack.push((r, shown));
                }
            }
        }
        Ok(())
    }

    /// The files with several links whose every link the walk met.
    fn finish(&mut self) -> anyhow::Result<()> {
        for (_, (f, met, links)) in std::mem::take(&mut self.linked) {
            if met < links {
                self.report.linked_outside += 1;
                continue;
            }
            let st = fd::stat(f.as_fd())?;
            let nu = map_id(st.st_uid, self.range, self.back).unwrap_or(st.st_uid);
            let ng = map_id(st.st_gid, self.range, self.back).unwrap_or(st.st_gid);
            chown_fd(f.as_fd(), nu, ng)?;
            self.report.changed += 1;
        }
        if self.progress && self.seen >= 4096 {
            eprintln!("\rshift {}: {} objects", self.label, self.seen);
        }
        Ok(())
    }
}

/// An O_PATH directory opened for reading: its `.`, the object itself,
/// never its name again.
fn reopen_dir(f: &OwnedFd) -> io::Result<OwnedFd> {
    fd::openat2(
        f.as_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )
}

/// The names in a directory but `.` and `..`.
fn list(d: &OwnedFd) -> io::Result<Vec<CString>> {
    let dup = d.try_clone()?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Shift `path`, which must be one of `ctx`'s declared paths or lie
/// beneath one.
pub fn shift(ctx: &Context, path: &Path, back: bool) -> anyhow::Result<Report> {
    let want = lexical(path)?;
    let bases = declared(ctx);
    if bases.is_empty() {
        bail!(
            "context {} declares no guest `root` or `writable` path to shift",
            ctx.name
        );
    }
    let Some(base) = bases
        .iter()
        .filter(|b| want.starts_with(b))
        .max_by_key(|b| b.components().count())
    else {
        bail!(
            "{} is not a path context {} declares for its guest ({})",
            want.display(),
            ctx.name,
            bases
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    // The declared path is the administrator's; beneath it nothing is
    // followed.
    let b = fd::openat2(nix::fcntl::AT_FDCWD, base, libc::O_PATH, 0)
        .with_context(|| format!("opening {}", base.display()))?;
    let rel = want.strip_prefix(base).unwrap_or(Path::new(""));
    let top = if rel.as_os_str().is_empty() {
        b
    } else {
        fd::openat2(
            b.as_fd(),
            rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        )
        .with_context(|| format!("opening {} (without following a symlink)", want.display()))?
    };
    let st = fd::stat(top.as_fd())?;
    let mut w = Walk {
        range: ctx.id_range(),
        back,
        dev: st.st_dev,
        report: Report::default(),
        linked: HashMap::new(),
        seen: 0,
        progress: io::stderr().is_terminal(),
        label: want.display().to_string(),
    };
    w.object(&top, &st, &want)?;
    if fd::is_dir(&st) {
        let r = reopen_dir(&top).with_context(|| want.display().to_string())?;
        w.dir(r, &want)?;
    }
    w.finish()?;
    Ok(w.report)
}

/// Declared paths of `ctx` whose owner is outside its range: a guest can
/// read there but not write. One line each, with what to do.
pub fn not_owned(ctx: &Context) -> Vec<String> {
    let (first, count) = ctx.id_range();
    declared(ctx)
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).ok()?;
            let uid = std::os::unix::fs::MetadataExt::uid(&m);
            (uid < first || uid - first >= count).then(|| {
                format!(
                    "{} is owned by host user {uid}, outside the context's ids {first}-{}: \
                     its guests cannot write there (netctx shift {} {})",
                    p.display(),
                    u64::from(first) + u64::from(count) - 1,
                    ctx.name,
                    p.display()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_into_the_range_and_back() {
        let r = (6_553_600, 65536);
        assert_eq!(map_id(0, r, false), Some(6_553_600));
        assert_eq!(map_id(1000, r, false), Some(6_554_600));
        assert_eq!(map_id(70000, r, false), None);
        assert_eq!(map_id(6_554_600, r, true), Some(1000));
        assert_eq!(map_id(5, r, true), None);
        assert!(in_place(6_553_600, r, false));
        assert!(!in_place(0, r, false));
        assert!(in_place(0, r, true));
        assert_eq!(
            lexical(Path::new("/srv/a/../b/./c")).unwrap(),
            Path::new("/srv/b/c")
        );
        assert!(lexical(Path::new("srv")).is_err());
    }
}
