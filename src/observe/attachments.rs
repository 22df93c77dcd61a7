//! The CNI attachments that exist, found from the host alone (no state
//! file): host links with netctx's CNI alias (`Alias`), and for each the
//! runtime's namespace that holds its peer, matched by namespace id
//! (`IFLA_LINK_NETNSID` of the host end against `RTM_GETNSID` of the
//! namespaces mounted under /run/netns and those of running processes).
//! For `netctx status`, `audit`, `logs` and `stats`, and for the plugin's
//! own checks (`cni`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage as M;

use super::links as state;
use super::nft as observe;
use crate::kernel::netlink::Rtnl;
use crate::kernel::netns::{self, open_path as open_netns};
use crate::kernel::nft::sock::Nft;
use crate::kernel::rtnl as msgs;
use crate::model::{is_attachment_name, ATTACHMENT_ALIAS_PREFIX};

/// What the alias on an attachment's links says (the plugin writes it:
/// `cni::naming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub context: String,
    /// The NFLOG group of the attachment's logging and drop rules.
    pub log_group: u16,
    pub network: String,
    pub ifname: String,
    pub container_id: String,
    /// `NAMESPACE/POD` when the runtime named the pod (`K8S_POD_*`); a pod
    /// field that is not one (`model::pod`) is dropped.
    pub pod: Option<String>,
}

impl Alias {
    /// `netctx-cni:CTX:GROUP:NETWORK:IFNAME:CONTAINERID[:NAMESPACE/POD]` (no
    /// field contains `:`; a long container id may have been cut).
    pub fn parse(s: &str) -> Option<Alias> {
        let rest = s.strip_prefix(ATTACHMENT_ALIAS_PREFIX)?;
        let mut it = rest.splitn(6, ':');
        let (context, group) = (it.next()?, it.next()?.parse().ok()?);
        let (network, ifname, container_id) = (it.next()?, it.next()?, it.next()?);
        if context.len() != 11 || !context.starts_with("cni") {
            return None;
        }
        let pod = it.next().filter(|p| crate::model::pod::valid_label(p));
        Some(Alias {
            context: context.into(),
            log_group: group,
            network: network.into(),
            ifname: ifname.into(),
            container_id: container_id.into(),
            pod: pod.map(str::to_string),
        })
    }

    /// Whether `name` (a context name or `NAMESPACE/POD`) names it.
    pub fn named(&self, name: &str) -> bool {
        self.context == name || self.pod.as_deref() == Some(name)
    }
}

/// One attachment as the kernel has it.
pub struct LiveAttachment {
    pub alias: Alias,
    pub host_link: String,
    pub host_up: bool,
    /// The runtime's namespace holding the peer, when one was found.
    pub netns: Option<(PathBuf, File)>,
}

/// The namespace id the host gives the namespace of `f` (-1: none).
fn nsid_of(nl: &mut Rtnl, f: &File) -> Option<i32> {
    let mut m = NsidMessage::default();
    m.attributes.push(NsidAttribute::Fd(f.as_raw_fd() as u32));
    let answers = nl.query(M::GetNsId(m), 0).ok()?;
    answers.into_iter().find_map(|a| match a {
        M::NewNsId(n) => n.attributes.into_iter().find_map(|x| match x {
            NsidAttribute::Id(id) if id >= 0 => Some(id),
            _ => None,
        }),
        _ => None,
    })
}

/// Network namespace files worth matching: named ones, then every
/// process's, one per namespace.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                out.push(e.path().join("ns/net"));
            }
        }
    }
    out
}

/// Every attachment on the host (`rtnl` is a socket of the host's
/// namespace), with its namespace where found.
pub fn attachments(rtnl: &mut Rtnl) -> Vec<LiveAttachment> {
    // Most hosts have none: the links' aliases (read from the dump's bytes)
    // say so before the full parse that also finds their namespaces.
    if !state::read_links_only(rtnl).is_ok_and(|ls| any_attachment(&ls)) {
        return Vec::new();
    }
    let Ok(links) = rtnl.dump(msgs::dump_links()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for m in links {
        let M::NewLink(l) = m else { continue };
        let (mut name, mut alias, mut nsid) = (String::new(), None, None);
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::IfAlias(s) => alias = Alias::parse(s),
                LinkAttribute::LinkNetNsId(i) => nsid = Some(*i),
                _ => {}
            }
        }
        let up = l
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up);
        if let Some(alias) = alias {
            found.push((alias, name, up, nsid));
        }
    }
    let wanted: HashSet<i32> = found.iter().filter_map(|f| f.3).collect();
    let mut by_id: HashMap<i32, (PathBuf, File)> = HashMap::new();
    let mut seen = HashSet::new();
    for p in candidates() {
        if by_id.len() == wanted.len() {
            break;
        }
        let Some(f) = p.to_str().and_then(open_netns) else {
            continue;
        };
        let Ok(meta) = f.metadata() else { continue };
        if !seen.insert(meta.ino()) {
            continue;
        }
        if let Some(id) = nsid_of(rtnl, &f).filter(|id| wanted.contains(id)) {
            by_id.entry(id).or_insert((p, f));
        }
    }
    let mut out: Vec<LiveAttachment> = found
        .into_iter()
        .map(|(alias, host_link, host_up, nsid)| LiveAttachment {
            netns: nsid.and_then(|id| by_id.remove(&id)),
            alias,
            host_link,
            host_up,
        })
        .collect();
    out.sort_by(|a, b| a.alias.context.cmp(&b.alias.context));
    out
}

/// What is amiss inside the namespace `ns` of an attachment. Without
/// `strict` (no host chain: isolation off) a missing table may be by
/// configuration.
pub fn inside(a: &LiveAttachment, ns: &File, strict: bool) -> Vec<String> {
    let ctx = a.alias.context.clone();
    let ifname = a.alias.ifname.clone();
    let r = netns::run_in(ns, move || -> Vec<String> {
        let (Ok(mut nl), Ok(mut nft)) = (Rtnl::open(), Nft::open()) else {
            return vec!["cannot open netlink sockets in its namespace".into()];
        };
        let mut d = Vec::new();
        match state::read_link(&mut nl, &ifname) {
            Ok(Some(l)) if l.up => {}
            Ok(Some(_)) => d.push(format!("link {ifname} is down")),
            _ => d.push(format!("link {ifname} is missing")),
        }
        let comment = format!("netctx context {ctx}");
        match observe::read(&mut nft, &[]) {
            Ok(live) if live.exists && live.comment.as_deref() == Some(comment.as_str()) => {}
            _ if strict => d.push("table inet netctx is missing in its namespace".into()),
            _ => {}
        }
        d
    });
    r.unwrap_or_else(|e| vec![format!("entering its namespace: {e}")])
}

/// Whether any of `links` is an attachment's host end (every one carries
/// its attachment's alias).
pub fn any_attachment<'a>(links: impl IntoIterator<Item = &'a state::ObsLink>) -> bool {
    links
        .into_iter()
        .any(|l| l.alias.as_deref().and_then(Alias::parse).is_some())
}

/// Which names of a command line are declared contexts and which are CNI
/// attachments; `None`: none of that kind. No names: all of both.
pub struct Selection {
    pub declared: Option<Vec<String>>,
    pub attachments: Option<Vec<String>>,
}

pub fn split_names(names: &[String]) -> Selection {
    if names.is_empty() {
        return Selection {
            declared: Some(Vec::new()),
            attachments: Some(Vec::new()),
        };
    }
    let (cni, declared): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|n| is_attachment_name(n) || n.contains('/'));
    Selection {
        declared: (!declared.is_empty()).then_some(declared),
        attachments: (!cni.is_empty()).then_some(cni),
    }
}

/// An attachment to read inside: its name, log group, namespace, and its
/// interface there with the addresses it has (ADD gave it no others).
pub struct Source {
    pub name: String,
    pub log_group: u16,
    pub netns: File,
    pub ifname: String,
    pub addrs: Vec<crate::model::Cidr>,
    /// `NAMESPACE/POD`, when known.
    pub pod: Option<String>,
}

/// The attachments named in `names` (by context name or `NAMESPACE/POD`;
/// every one when `names` is empty) whose namespace was found; an error
/// names (escaped) the first name no attachment on the host has.
pub fn sources(names: &[String]) -> Result<Vec<Source>, String> {
    let Ok(mut rtnl) = Rtnl::open() else {
        return Ok(Vec::new());
    };
    let all = attachments(&mut rtnl);
    if let Some(n) = names.iter().find(|n| !all.iter().any(|a| a.alias.named(n))) {
        return Err(format!(
            "no CNI attachment {} on this host",
            crate::model::escape(n)
        ));
    }
    Ok(all
        .into_iter()
        .filter(|a| names.is_empty() || names.iter().any(|n| a.alias.named(n)))
        .filter_map(|a| {
            let (_, ns) = a.netns?;
            let ifname = a.alias.ifname.clone();
            let addrs = netns::run_in(&ns, || {
                let mut nl = Rtnl::open().ok()?;
                let links = state::read_links(&mut nl).ok()?;
                let l = links.into_iter().find(|l| l.name == ifname)?;
                Some(l.addrs)
            })
            .ok()
            .flatten()
            .unwrap_or_default();
            Some(Source {
                name: a.alias.context,
                log_group: a.alias.log_group,
                netns: ns,
                ifname: a.alias.ifname,
                addrs,
                pod: a.alias.pod,
            })
        })
        .collect())
}

/// The aliases of the attachments in namespace `ns` (on their links there).
pub fn aliases_in(ns: &File) -> io::Result<Vec<Alias>> {
    netns::run_in(ns, || -> io::Result<Vec<Alias>> {
        let mut nl = Rtnl::open()?;
        let links = state::read_links(&mut nl).map_err(io::Error::other)?;
        Ok(links
            .iter()
            .filter_map(|l| l.alias.as_deref().and_then(Alias::parse))
            .collect())
    })
    .and_then(|r| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_chains_are_recognised() {
        assert!(crate::model::is_attachment_chain(
            "cni581f55db_nxc373c8553bcbe"
        ));
        assert!(crate::model::is_attachment_chain(
            "cni581f55db_nxc373c8553bcbe_pre"
        ));
        assert!(crate::model::is_attachment_chain(
            "cni581f55db_nxc373c8553bcbe_out"
        ));
        assert!(!crate::model::is_attachment_chain(
            "cni581f55db_nxc373c8553bcbe_x"
        ));
        assert!(!crate::model::is_attachment_chain("web_nx-web"));
        assert!(!crate::model::is_attachment_chain("cni581f55db_nx-web"));
        assert!(!crate::model::is_attachment_chain("cnixyz_nxc373c8553bcbe"));
        assert!(!crate::model::is_attachment_chain("cni581f55db"));
        assert!(is_attachment_name("cni581f55db"));
        assert!(!is_attachment_name("cni581f55dz") && !is_attachment_name("web"));
        // Declared contexts cannot take such a name.
        assert!(crate::config::check_context_name("cni581f55db").is_err());
        assert!(crate::config::check_context_name("cni-web").is_ok());
        assert_eq!(
            crate::model::alias_owner("netctx-cni:cni581f55db:100:nx:eth0:c1"),
            Some("cni581f55db")
        );
        assert_eq!(
            crate::model::alias_owner("netctx-cni:web:1:nx:eth0:c1"),
            None
        );
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = split_names(&[]);
        assert_eq!(
            (all.declared, all.attachments),
            (Some(vec![]), Some(vec![]))
        );
        let only = split_names(&names(&["cni581f55db"]));
        assert_eq!(
            (only.declared, only.attachments),
            (None, Some(names(&["cni581f55db"])))
        );
        let mixed = split_names(&names(&["web", "cni581f55db"]));
        assert_eq!(mixed.declared, Some(names(&["web"])));
        assert_eq!(mixed.attachments, Some(names(&["cni581f55db"])));
        let pod = split_names(&names(&["web", "default/web-0"]));
        assert_eq!(pod.declared, Some(names(&["web"])));
        assert_eq!(pod.attachments, Some(names(&["default/web-0"])));
    }
}
