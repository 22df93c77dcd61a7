//! Processes and what they hold, from /proc: one pass a run, reading each
//! process's sockets, network namespace and cgroup v2 path. Reads only.

use std::collections::HashMap;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    /// The nsfs inode of its network namespace (that of its main thread).
    pub netns: Option<u64>,
    /// Its path in the cgroup v2 hierarchy (the `0::` line of
    /// /proc/PID/cgroup), relative to our cgroup namespace's root.
    pub cgroup: Option<String>,
}

/// Every process, and which hold each socket inode.
#[derive(Debug, Default)]
pub struct Procs {
    pub all: Vec<Proc>,
    holders: HashMap<u32, Vec<usize>>,
}

impl Procs {
    /// One pass over /proc.
    pub fn scan() -> Procs {
        let mut out = Procs::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for p in dir.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let fd_dir = format!("/proc/{pid}/fd");
            let Ok(fds) = std::fs::read_dir(&fd_dir) else {
                continue;
            };
            // Each link read relative to the directory: one lookup, not a
            // walk of /proc/PID/fd/N (a process may hold thousands).
            let Ok(dirfd) = nix::fcntl::open(
                fd_dir.as_str(),
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) else {
                continue;
            };
            let index = out.all.len();
            for fd in fds.flatten() {
                if let Some(ino) = nix::fcntl::readlinkat(&dirfd, fd.file_name().as_os_str())
                    .ok()
                    .and_then(|t| socket_inode(&t.to_string_lossy()))
                {
                    let h = out.holders.entry(ino).or_default();
                    if h.last() != Some(&index) {
                        h.push(index);
                    }
                }
            }
            let netns = std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()
                .and_then(|t| ns_inode(&t.to_string_lossy()));
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|t| unified_path(&t).map(str::to_string));
            // A guest names its processes: printed escaped, never raw.
            let comm = std::fs::read(format!("/proc/{pid}/comm"))
                .map(|b| crate::model::escape_bytes(b.strip_suffix(b"\n").unwrap_or(&b)))
                .unwrap_or_default();
            out.all.push(Proc {
                pid,
                comm,
                netns,
                cgroup,
            });
        }
        out
    }

    /// The processes holding the socket `inode`, first opened first.
    pub fn holders(&self, inode: u32) -> impl Iterator<Item = &Proc> {
        self.holders
            .get(&inode)
            .into_iter()
            .flatten()
            .map(|i| &self.all[*i])
    }

    /// The first process holding the socket `inode`.
    pub fn owner(&self, inode: u32) -> Option<&Proc> {
        self.holders(inode).next()
    }
}

/// `socket:[123]` → 123.
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `net:[4026531840]` → 4026531840.
fn ns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The cgroup v2 path of a /proc/PID/cgroup text.
fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_links_and_cgroup_lines_are_parsed() {
        assert_eq!(socket_inode("socket:[4711]"), Some(4711));
        assert_eq!(socket_inode("pipe:[4711]"), None);
        assert_eq!(ns_inode("net:[4026531840]"), Some(4_026_531_840));
        let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/netctx/web\n";
        assert_eq!(unified_path(hybrid), Some("/netctx/web"));
        assert_eq!(unified_path("1:name=systemd:/\n"), None);
    }
}
