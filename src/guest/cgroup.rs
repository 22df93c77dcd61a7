//! The cgroup v2 group `netctx/CTX` of each context, under the cgroup2 mount
//! (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts): every
//! guest process is in it, so `stop` and `down` can end them all however
//! they forked (`cgroup.kill`). Touches no other group.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup2 filesystem is mounted (none in /proc/self/mountinfo); \
         guests need one: mount -t cgroup2 cgroup2 /sys/fs/cgroup"
    )]
    NoCgroup2,
    #[error("cgroup {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {path} still has processes after cgroup.kill")]
    Survivors { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cgroup2 mount point in a mountinfo text: `/sys/fs/cgroup` first,
/// then `/sys/fs/cgroup/unified`, then any.
pub fn pick(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split(' ').next() == Some("cgroup2")).then(|| pre.split(' ').nth(4))?
        })
        .collect();
    found.sort_by_key(|m| (*m != "/sys/fs/cgroup", *m != "/sys/fs/cgroup/unified"));
    found
        .first()
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
}

/// The root of the cgroup2 mount at `mount` as mountinfo shows it: the
/// prefix every path of `/proc/PID/cgroup` under that mount carries for the
/// reader ("/" unless the reader's cgroup namespace differs from the
/// mount's).
pub fn mount_root(mountinfo: &str, mount: &Path) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let f: Vec<&str> = pre.split(' ').collect();
        let at = f.get(4)?.replace("\\040", " ");
        (post.split(' ').next() == Some("cgroup2") && Path::new(&at) == mount)
            .then(|| f.get(3).map(|r| r.replace("\\040", " ")))?
    })
}

/// The root of the cgroup2 mount netctx uses, as this process sees paths
/// in `/proc/PID/cgroup`.
pub fn proc_root() -> Option<String> {
    mount().ok()?.1
}

/// A process's cgroup path (from `/proc/PID/cgroup`) relative to the
/// cgroup2 mount netctx uses (`root`, from `proc_root`): `/netctx/CTX` for a
/// context's.
pub fn relative(path: &str, root: Option<&str>) -> String {
    match root {
        Some(r) if r != "/" => match path.strip_prefix(r) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("/{}", rest.trim_start_matches('/'))
            }
            _ => path.to_string(),
        },
        _ => path.to_string(),
    }
}

pub fn mount_point() -> Result<PathBuf, CgroupError> {
    mount().map(|(m, _)| m)
}

/// The cgroup2 mount and its root, read from mountinfo once per mount
/// namespace: with every context's namespace a mount, mountinfo grows with
/// the contexts, and reading it per context made `status` quadratic.
fn mount() -> Result<(PathBuf, Option<String>), CgroupError> {
    type Seen = Option<(u64, Option<(PathBuf, Option<String>)>)>;
    static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(None);
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| m.ino());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let found = match &*seen {
        Some((inode, found)) if *inode == ns && ns != 0 => found.clone(),
        _ => {
            let p = Path::new("/proc/self/mountinfo");
            let info = std::fs::read_to_string(p).map_err(io_err(p))?;
            let found = pick(&info).map(|m| {
                let root = mount_root(&info, &m);
                (m, root)
            });
            *seen = Some((ns, found.clone()));
            found
        }
    };
    found.ok_or(CgroupError::NoCgroup2)
}

/// The context's group (which may not exist).
pub fn path(ctx: &str) -> Result<PathBuf, CgroupError> {
    Ok(mount_point()?.join("netctx").join(ctx))
}

/// Make the context's group.
pub fn create(ctx: &str) -> Result<PathBuf, CgroupError> {
    let p = path(ctx)?;
    std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    Ok(p)
}

/// Move the calling process into the group `dir`.
pub fn join(dir: &Path) -> Result<(), CgroupError> {
    let p = dir.join("cgroup.procs");
    std::fs::write(&p, "0").map_err(io_err(&p))
}

/// The processes of a context (host pids); none if it has no group.
pub fn procs(ctx: &str) -> Vec<i32> {
    let Ok(p) = path(ctx) else {
        return Vec::new();
    };
    std::fs::read_to_string(p.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// End every process of the context's group and remove it. Returns how
/// many processes it held (0 when there was no group).
pub fn kill(ctx: &str) -> Result<usize, CgroupError> {
    let dir = match path(ctx) {
        Ok(d) => d,
        // No cgroup2: no guest can have been started.
        Err(CgroupError::NoCgroup2) => return Ok(0),
        Err(e) => return Err(e),
    };
    if !dir.exists() {
        return Ok(0);
    }
    let n = procs(ctx).len();
    let k = dir.join("cgroup.kill");
    std::fs::write(&k, "1").map_err(io_err(&k))?;
    let t = Instant::now();
    while populated(&dir) {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(CgroupError::Survivors { path: dir });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir(&dir).map_err(io_err(&dir))?;
    // The parent goes with its last context; another netctx may be
    // creating a group in it right now, so a failure is fine.
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn finds_the_cgroup2_mount_hybrid_or_unified() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            pick(hybrid).unwrap().to_str(),
            Some("/sys/fs/cgroup/unified")
        );
        let unified = "9 1 0:3 / /mnt/x rw - cgroup2 cgroup2 rw\n\
                       30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(pick(unified).unwrap().to_str(), Some("/sys/fs/cgroup"));
        assert_eq!(pick("22 27 0:21 / /proc rw - proc proc rw\n"), None);
    }
}
