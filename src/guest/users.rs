//! Users of a guest, read from the passwd and group files of the guest's
//! root (the host's `/` by default), so that a `root` tree's own users
//! count. `NAME`, `UID` or `UID:GID` are accepted.

use std::io;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Find `who` in a passwd text.
pub fn find(passwd: &str, who: &str) -> Option<User> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || (f[0] != who && f[2] != who) {
            return None;
        }
        Some(User {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
            groups: Vec::new(),
        })
    })
}

/// The groups that list `name` as a member, plus its primary group.
pub fn groups(group: &str, name: &str, primary: u32) -> Vec<u32> {
    let mut out = vec![primary];
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
            if let Ok(g) = f[2].parse() {
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
    }
    out
}

/// The most of `etc/passwd` or `etc/group` netctx reads.
pub const MAX_FILE: u64 = 1 << 20;

/// `etc/NAME` of the tree `root`, read as a hostile tree's file must be
/// (docs/guests.md): beneath the root without leaving it through a
/// symlink or a magic link, opened without blocking (a FIFO), only a
/// regular file, at most 1 MiB. Missing: empty.
pub fn read_etc(root: &Path, name: &str) -> io::Result<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let rel = Path::new("etc").join(name);
    let shown = root.join(&rel);
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", shown.display()));
    let dir = super::fd::openat2(
        nix::fcntl::AT_FDCWD,
        root,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(named)?;
    // A guest tree's files stay beneath it; the host's own view (`/`) is
    // the administrator's, whose /etc may hold symlinks.
    let beneath = if root == Path::new("/") {
        0
    } else {
        super::fd::RESOLVE_BENEATH
    };
    let f = match super::fd::openat2(
        dir.as_fd(),
        &rel,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        beneath | super::fd::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(String::new()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            return Err(named(io::Error::other(
                "it leads out of the guest's tree (a symlink)",
            )))
        }
        Err(e) => return Err(named(e)),
    };
    let st = super::fd::stat(f.as_fd()).map_err(named)?;
    if !super::fd::is_reg(&st) {
        return Err(named(io::Error::other("not a regular file")));
    }
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > MAX_FILE {
        return Err(named(io::Error::other(format!(
            "larger than {} KiB",
            MAX_FILE >> 10
        ))));
    }
    let mut text = Vec::new();
    std::fs::File::from(f)
        .take(MAX_FILE + 1)
        .read_to_end(&mut text)
        .map_err(named)?;
    if text.len() as u64 > MAX_FILE {
        return Err(named(io::Error::other("grew past 1 MiB while read")));
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

pub fn lookup(root: &Path, who: &str) -> io::Result<User> {
    let passwd = read_etc(root, "passwd")?;
    let mut u = match find(&passwd, who) {
        Some(u) => u,
        None => {
            let (uid, gid) = who.split_once(':').unwrap_or((who, who));
            match (uid.parse::<u32>(), gid.parse::<u32>()) {
                (Ok(uid), Ok(gid)) => User {
                    name: uid.to_string(),
                    uid,
                    gid,
                    home: "/".into(),
                    groups: Vec::new(),
                },
                _ => {
                    return Err(io::Error::other(format!(
                        "no user {who:?} in {}",
                        root.join("etc/passwd").display()
                    )))
                }
            }
        }
    };
    if u.uid != 0 || u.gid != 0 {
        let group = read_etc(root, "group")?;
        u.groups = groups(&group, &u.name, u.gid);
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    #[test]
    fn users_by_name_or_number() {
        let n = find(PASSWD, "nobody").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.home.as_str()),
            (65534, 65534, "/nonexistent")
        );
        assert_eq!(find(PASSWD, "0").unwrap().name, "root");
        assert!(find(PASSWD, "web").is_none());
        let g = groups("adm:x:4:web,x\nweb:x:1000:\n", "web", 1000);
        assert_eq!(g, [1000, 4]);
    }
}
