//! The two maps of a context (`netctx_allow`, `netctx_conf`): what they
//! should hold (pure), writing them to exactly that, reading them back, and
//! finding netctx's programs and their maps on a cgroup.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::progs::{self, MapFds};
use super::sys::{self, MapSpec};
use super::{BpfError, Hook};

pub const ALLOW_NAME: &str = "netctx_allow";
pub const CONF_NAME: &str = "netctx_conf";
/// Entries are allocated on update (BPF_F_NO_PREALLOC), so a large bound
/// costs nothing per context.
pub const MAX_ADDRESSES: u32 = 4096;
const CONF_LEN: usize = progs::CONF_SIZE as usize;
const CONF_INDEX: [u8; 4] = 0u32.to_ne_bytes();
const PRESENT: [u8; 1] = [1];

pub type Key = [u8; 16];

/// The maps' wanted content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Every address as 16 bytes, IPv4 as `::ffff:a.b.c.d`.
    pub keys: BTreeSet<Key>,
    /// `struct Conf` (see `progs`): flags in host order, the first IPv4 and
    /// IPv6 addresses in network order.
    pub conf: [u8; CONF_LEN],
}

/// An address as a map key; IPv4-mapped IPv6 is the IPv4 address.
pub fn key(a: IpAddr) -> Key {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A map key back as an address.
pub fn addr(k: Key) -> IpAddr {
    let v6 = Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Wanted {
    pub fn new(addrs: &[IpAddr], single_ip: bool) -> Wanted {
        let mut conf = [0u8; CONF_LEN];
        let flags = if single_ip { progs::FLAG_SINGLE_IP } else { 0 };
        conf[..4].copy_from_slice(&flags.to_ne_bytes());
        let canon: Vec<IpAddr> = addrs.iter().map(|&a| addr(key(a))).collect();
        if let Some(IpAddr::V4(v4)) = canon.iter().find(|a| a.is_ipv4()) {
            conf[4..8].copy_from_slice(&v4.octets());
        }
        if let Some(IpAddr::V6(v6)) = canon.iter().find(|a| a.is_ipv6()) {
            conf[8..24].copy_from_slice(&v6.octets());
        }
        Wanted {
            keys: addrs.iter().map(|&a| key(a)).collect(),
            conf,
        }
    }
}

/// The two maps of one set of programs.
pub struct MapSet {
    allow: OwnedFd,
    allow_id: u32,
    conf: OwnedFd,
    conf_id: u32,
}

impl MapSet {
    pub fn create() -> Result<MapSet, BpfError> {
        let make = |spec: MapSpec| {
            let name = spec.name;
            let fd =
                sys::map_create(&spec).map_err(|source| BpfError::CreateMap { name, source })?;
            let id = sys::map_info(&fd)
                .map_err(|source| BpfError::CreateMap { name, source })?
                .id;
            Ok::<_, BpfError>((fd, id))
        };
        let (allow, allow_id) = make(MapSpec {
            map_type: sys::BPF_MAP_TYPE_HASH,
            key_size: 16,
            value_size: 1,
            max_entries: MAX_ADDRESSES,
            flags: sys::BPF_F_NO_PREALLOC,
            name: ALLOW_NAME,
        })?;
        let (conf, conf_id) = make(MapSpec {
            map_type: sys::BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: progs::CONF_SIZE,
            max_entries: 1,
            flags: 0,
            name: CONF_NAME,
        })?;
        Ok(MapSet {
            allow,
            allow_id,
            conf,
            conf_id,
        })
    }

    pub fn fds(&self) -> MapFds {
        MapFds {
            allow: self.allow.as_raw_fd(),
            conf: self.conf.as_raw_fd(),
        }
    }

    /// Make the maps hold exactly `w`: add the new addresses first, then
    /// the configuration, then remove the stale ones, so an address kept
    /// is never missing in between.
    pub fn write(&self, w: &Wanted) -> Result<(), BpfError> {
        let werr = |name, id| move |source| BpfError::WriteMap { name, id, source };
        let present: BTreeSet<Key> = sys::map_keys::<16>(&self.allow)
            .map_err(|source| BpfError::ReadMap {
                name: ALLOW_NAME,
                id: self.allow_id,
                source,
            })?
            .into_iter()
            .collect();
        for k in w.keys.difference(&present) {
            sys::map_update(&self.allow, k, &PRESENT).map_err(werr(ALLOW_NAME, self.allow_id))?;
        }
        sys::map_update(&self.conf, &CONF_INDEX, &w.conf).map_err(werr(CONF_NAME, self.conf_id))?;
        for k in present.difference(&w.keys) {
            match sys::map_delete(&self.allow, k) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                    return Err(werr(ALLOW_NAME, self.allow_id)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The addresses (sorted) and `single_ip`.
    pub fn read(&self) -> Result<(Vec<IpAddr>, bool), BpfError> {
        let rerr = |name, id| move |source| BpfError::ReadMap { name, id, source };
        let mut addrs: Vec<IpAddr> = sys::map_keys::<16>(&self.allow)
            .map_err(rerr(ALLOW_NAME, self.allow_id))?
            .into_iter()
            .map(addr)
            .collect();
        addrs.sort();
        let mut conf = [0u8; CONF_LEN];
        sys::map_lookup(&self.conf, &CONF_INDEX, &mut conf)
            .map_err(rerr(CONF_NAME, self.conf_id))?;
        let flags = u32::from_ne_bytes([conf[0], conf[1], conf[2], conf[3]]);
        Ok((addrs, flags & progs::FLAG_SINGLE_IP != 0))
    }
}

/// One of netctx's programs found on a cgroup.
pub struct OurProg {
    pub hook: Hook,
    pub id: u32,
    pub fd: OwnedFd,
}

pub struct Seen {
    /// In query order per hook; a hook may appear more than once.
    pub progs: Vec<OurProg>,
    /// The distinct map sets those programs use.
    pub sets: Vec<MapSet>,
}

/// netctx's programs on `cgroup` (attached to it, not inherited) and their
/// maps, recognised by program name, type and map names.
pub fn observe(cg: &OwnedFd, cgroup: &Path) -> Result<Seen, BpfError> {
    let mut seen = Seen {
        progs: Vec::new(),
        sets: Vec::new(),
    };
    for hook in Hook::ALL {
        let ids = sys::prog_query(cg, hook.attach_type()).map_err(|source| BpfError::Query {
            hook,
            cgroup: cgroup.into(),
            source,
        })?;
        for id in ids {
            let inspect = |kind, id| {
                move |source| BpfError::Inspect {
                    kind,
                    id,
                    cgroup: cgroup.into(),
                    source,
                }
            };
            let fd = match sys::prog_fd_by_id(id) {
                Ok(fd) => fd,
                // Detached and freed since the query.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(inspect("program", id)(e)),
            };
            let info = sys::prog_info(&fd).map_err(inspect("program", id))?;
            if info.prog_type != sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR
                || info.name != hook.prog_name()
            {
                continue;
            }
            // A program without netctx's pair of maps is not netctx's.
            match map_set(&seen.sets, &info.map_ids, cgroup)? {
                Found::Known => {}
                Found::New(set) => seen.sets.push(set),
                Found::None => continue,
            }
            seen.progs.push(OurProg { hook, id, fd });
        }
    }
    Ok(seen)
}

enum Found {
    Known,
    New(MapSet),
    None,
}

/// The map set of a program with these map ids: one already known, a new
/// one, or none (not netctx's pair of maps).
fn map_set(known: &[MapSet], ids: &[u32], cgroup: &Path) -> Result<Found, BpfError> {
    let mut allow = None;
    let mut conf = None;
    for &id in ids {
        let inspect = |source| BpfError::Inspect {
            kind: "map",
            id,
            cgroup: cgroup.into(),
            source,
        };
        let fd = sys::map_fd_by_id(id).map_err(inspect)?;
        let info = sys::map_info(&fd).map_err(inspect)?;
        if info.name == ALLOW_NAME && info.key_size == 16 && info.value_size == 1 {
            allow = Some((fd, info.id));
        } else if info.name == CONF_NAME && info.value_size == progs::CONF_SIZE {
            conf = Some((fd, info.id));
        }
    }
    match (allow, conf) {
        (Some((allow, allow_id)), Some((conf, conf_id))) => {
            if known
                .iter()
                .any(|s| s.allow_id == allow_id && s.conf_id == conf_id)
            {
                return Ok(Found::Known);
            }
            Ok(Found::New(MapSet {
                allow,
                allow_id,
                conf,
                conf_id,
            }))
        }
        _ => Ok(Found::None),
    }
}
