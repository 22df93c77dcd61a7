//! The raw `bpf(2)` calls netctx needs, one small function each; no libbpf,
//! no ELF. Every attribute struct is the prefix of `union bpf_attr` that
//! its command reads (the kernel zero-fills the rest of the union).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::insn::Insn;

// enum bpf_cmd
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_int = 4;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_int = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

// enum bpf_map_type, enum bpf_prog_type, flags
pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
pub const BPF_F_NO_PREALLOC: u32 = 1;
pub const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_ANY: u64 = 0;
const BPF_OBJ_NAME_LEN: usize = 16;
/// Verbosity 1: the instructions the verifier walked and why it stopped.
const LOG_LEVEL: u32 = 1;
const LOG_SIZE: usize = 1 << 20;

/// A name as the kernel stores it (at most 15 bytes and a NUL).
pub type ObjName = [u8; BPF_OBJ_NAME_LEN];

pub fn obj_name(s: &str) -> ObjName {
    let mut n = [0u8; BPF_OBJ_NAME_LEN];
    let b = s.as_bytes();
    let len = b.len().min(BPF_OBJ_NAME_LEN - 1);
    n[..len].copy_from_slice(&b[..len]);
    n
}

pub fn name_str(n: &ObjName) -> String {
    CStr::from_bytes_until_nul(n)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("bpf attribute sizes are small")
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of union
    // bpf_attr for `cmd`; every pointer inside it points to memory that
    // outlives the call and is as large as the length beside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            len_u32(std::mem::size_of::<T>()),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_result(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(r).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("descriptors are non-negative")
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: ObjName,
}

pub struct MapSpec {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub name: &'static str,
}

pub fn map_create(s: &MapSpec) -> io::Result<OwnedFd> {
    let mut a = MapCreateAttr {
        map_type: s.map_type,
        key_size: s.key_size,
        value_size: s.value_size,
        max_entries: s.max_entries,
        map_flags: s.flags,
        map_name: obj_name(s.name),
        ..Default::default()
    };
    fd_result(bpf(BPF_MAP_CREATE, &mut a)?)
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn elem(cmd: libc::c_int, map: &OwnedFd, key: &[u8], value: u64) -> io::Result<()> {
    let mut a = MapElemAttr {
        map_fd: fd_u32(map),
        _pad: 0,
        key: ptr(key.as_ptr()),
        value,
        flags: BPF_ANY,
    };
    bpf(cmd, &mut a).map(drop)
}

/// The caller passes buffers of the map's key and value sizes.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    elem(BPF_MAP_UPDATE_ELEM, map, key, ptr(value.as_ptr()))
}

pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    elem(BPF_MAP_DELETE_ELEM, map, key, 0)
}

/// Ok(false) when the key is absent.
pub fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    match elem(BPF_MAP_LOOKUP_ELEM, map, key, ptr(value.as_mut_ptr())) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every key of a map with `N`-byte keys.
pub fn map_keys<const N: usize>(map: &OwnedFd) -> io::Result<Vec<[u8; N]>> {
    let mut keys = Vec::new();
    let mut next = [0u8; N];
    let mut cur: Option<[u8; N]> = None;
    loop {
        let mut a = MapElemAttr {
            map_fd: fd_u32(map),
            _pad: 0,
            // A NULL key asks for the first one.
            key: cur.as_ref().map_or(0, |k| ptr(k.as_ptr())),
            value: ptr(next.as_mut_ptr()),
            flags: 0,
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e),
        }
        keys.push(next);
        cur = Some(next);
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: ObjName,
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Why a load failed: the errno and, when the verifier said something,
/// its log.
pub struct LoadError {
    pub source: io::Error,
    pub log: String,
}

/// BPF_PROG_LOAD of a cgroup sock_addr program. First without a log (the
/// fast path, as libbpf does); on failure again with a 1 MiB verifier log.
pub fn prog_load(insns: &[Insn], name: &str, attach_type: u32) -> Result<OwnedFd, LoadError> {
    let license = c"Dual MIT/GPL";
    let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let mut a = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt: len_u32(insns.len()),
        insns: ptr(bytes.as_ptr()),
        license: ptr(license.as_ptr()),
        prog_name: obj_name(name),
        expected_attach_type: attach_type,
        ..Default::default()
    };
    if let Ok(r) = bpf(BPF_PROG_LOAD, &mut a) {
        return fd_result(r).map_err(|source| LoadError {
            source,
            log: String::new(),
        });
    }
    let mut log = vec![0u8; LOG_SIZE];
    a.log_level = LOG_LEVEL;
    a.log_size = len_u32(log.len());
    a.log_buf = ptr(log.as_mut_ptr());
    match bpf(BPF_PROG_LOAD, &mut a) {
        Ok(r) => fd_result(r).map_err(|source| LoadError {
            source,
            log: String::new(),
        }),
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError {
                source,
                log: String::from_utf8_lossy(&log[..end]).trim_end().to_string(),
            })
        }
    }
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

pub fn prog_attach(cgroup: &OwnedFd, prog: &OwnedFd, attach_type: u32) -> io::Result<()> {
    let mut a = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut a).map(drop)
}

pub fn prog_detach(cgroup: &OwnedFd, prog: &OwnedFd, attach_type: u32) -> io::Result<()> {
    let mut a = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_DETACH, &mut a).map(drop)
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the programs attached to the cgroup itself (not inherited).
pub fn prog_query(cgroup: &OwnedFd, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut room = 64usize;
    loop {
        let mut ids = vec![0u32; room];
        let mut a = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ptr(ids.as_mut_ptr()),
            prog_cnt: len_u32(ids.len()),
            _pad: 0,
        };
        let r = bpf(BPF_PROG_QUERY, &mut a);
        let count = usize::try_from(a.prog_cnt).unwrap_or(usize::MAX);
        match r {
            Ok(_) => {
                ids.truncate(count.min(room));
                return Ok(ids);
            }
            // More programs than room: prog_cnt says how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && count > room => room = count,
            Err(e) => return Err(e),
        }
    }
}

#[repr(C)]
struct GetFdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = GetFdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    fd_result(bpf(BPF_PROG_GET_FD_BY_ID, &mut a)?)
}

pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = GetFdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    fd_result(bpf(BPF_MAP_GET_FD_BY_ID, &mut a)?)
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn info<T>(fd: &OwnedFd, out: &mut T) -> io::Result<()> {
    let mut a = InfoAttr {
        bpf_fd: fd_u32(fd),
        info_len: len_u32(std::mem::size_of::<T>()),
        info: ptr(out as *mut T),
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).map(drop)
}

/// The prefix of `struct bpf_prog_info` up to `name`.
#[repr(C)]
#[derive(Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: ObjName,
}

pub struct ProgInfo {
    pub prog_type: u32,
    pub name: String,
    pub map_ids: Vec<u32>,
}

pub fn prog_info(fd: &OwnedFd) -> io::Result<ProgInfo> {
    let mut ids = [0u32; 8];
    let mut raw = ProgInfoRaw {
        nr_map_ids: len_u32(ids.len()),
        map_ids: ptr(ids.as_mut_ptr()),
        ..Default::default()
    };
    info(fd, &mut raw)?;
    let n = usize::try_from(raw.nr_map_ids)
        .unwrap_or(usize::MAX)
        .min(ids.len());
    Ok(ProgInfo {
        prog_type: raw.prog_type,
        name: name_str(&raw.name),
        map_ids: ids[..n].to_vec(),
    })
}

/// The prefix of `struct bpf_map_info` up to `name`.
#[repr(C)]
#[derive(Default)]
struct MapInfoRaw {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: ObjName,
}

pub struct MapInfo {
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub name: String,
}

pub fn map_info(fd: &OwnedFd) -> io::Result<MapInfo> {
    let mut raw = MapInfoRaw::default();
    info(fd, &mut raw)?;
    Ok(MapInfo {
        id: raw.id,
        key_size: raw.key_size,
        value_size: raw.value_size,
        name: name_str(&raw.name),
    })
}
