//! The guest's /etc/resolv.conf. A context has its own loopback, so a host
//! resolv.conf that names only loopback servers (systemd-resolved's stub
//! 127.0.0.53) cannot work inside it: then the guest gets the upstream list
//! systemd-resolved keeps in /run/systemd/resolve/resolv.conf, or — when
//! there is none — the host's file and a warning. A resolv.conf that is a
//! symlink into /run (which is private and empty in the guest) is replaced
//! by a copy of what it points to.

use std::path::{Component, Path, PathBuf};

/// systemd-resolved's list of upstream servers, beside its stub.
pub const UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// Whether every `nameserver` line names a loopback address (and there is
/// at least one).
pub fn only_loopback(conf: &str) -> bool {
    let servers: Vec<&str> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    !servers.is_empty()
        && servers.iter().all(|s| {
            s.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}

/// What the guest's resolv.conf should hold, if it must differ from the
/// file the clone shows, and — when the host's is a symlink into /run,
/// which is private and empty in the guest — where it points.
pub fn content() -> Option<(String, Option<PathBuf>)> {
    let host = Path::new("/etc/resolv.conf");
    let text = std::fs::read_to_string(host).ok()?;
    let target = link_target(host);
    let into_run = target.filter(|t| t.starts_with("/run"));
    if only_loopback(&text) {
        match std::fs::read_to_string(UPSTREAM) {
            Ok(up) => return Some((up, into_run)),
            Err(_) => eprintln!(
                "netctx: warning: /etc/resolv.conf names only loopback name servers, \
                 which a context cannot reach, and {UPSTREAM} does not exist: \
                 name resolution in the guest will fail"
            ),
        }
    }
    into_run.is_some().then_some((text, into_run))
}

/// The guest's resolv.conf when its context uses netctx's resolver: those
/// name servers alone; where it goes as for `content` (the host's tree,
/// `host_tree`) or over the root's own file.
pub fn resolver(servers: &[std::net::IpAddr], host_tree: bool) -> (String, Option<PathBuf>) {
    let mut text = String::from("# netctx's resolver (netctx watch): reach names domains\n");
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    let into_run = host_tree
        .then(|| link_target(Path::new("/etc/resolv.conf")))
        .flatten()
        .filter(|t| t.starts_with("/run"));
    (text, into_run)
}

/// Where a symlinked resolv.conf points, as an absolute path.
fn link_target(link: &Path) -> Option<PathBuf> {
    let t = std::fs::read_link(link).ok()?;
    let mut out = PathBuf::from("/");
    for c in Path::new("/etc").join(t).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::only_loopback;

    #[test]
    fn loopback_stubs_are_recognised() {
        assert!(only_loopback("nameserver 127.0.0.53\noptions edns0\n"));
        assert!(only_loopback("nameserver ::1\n"));
        assert!(!only_loopback(
            "nameserver 127.0.0.53\nnameserver 10.0.0.1\n"
        ));
        assert!(!only_loopback("nameserver 10.255.255.53\n"));
        assert!(!only_loopback("# empty\n"));
    }
}
