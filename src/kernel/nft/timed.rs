//! Elements of a timed set (`table::TimedSet`), added at run time with a
//! timeout each: what netctx's resolver allows a context.

use std::net::IpAddr;

use super::table::{ip_bytes, TABLE};
use super::wire::{attr, msg, Attrs, Msg, NLM_F_CREATE};

/// NLM_F_EXCL: fail with EEXIST when an element is there already.
const NLM_F_EXCL: u16 = 0x200;

fn elems_msg(ty: u16, flags: u16, set: &str, addrs: &[IpAddr], timeout_ms: Option<u64>) -> Msg {
    let mut a = Attrs::default();
    a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
        .str(attr::SET_ELEM_LIST_SET, set)
        .nested(attr::SET_ELEM_LIST_ELEMENTS, |l| {
            for (i, ip) in addrs.iter().enumerate() {
                let index = u16::try_from(i + 1).unwrap_or(u16::MAX);
                l.nested(index, |el| {
                    el.nested(attr::SET_ELEM_KEY, |k| {
                        k.bytes(attr::DATA_VALUE, &ip_bytes(ip));
                    });
                    if let Some(t) = timeout_ms {
                        el.be64(attr::SET_ELEM_TIMEOUT, t);
                    }
                });
            }
        });
    Msg::new(ty, flags, a)
}

/// Add one address for `timeout_ms`; with `exclusive`, failing (EEXIST)
/// when it is there already.
pub fn add(set: &str, addr: IpAddr, timeout_ms: u64, exclusive: bool) -> Msg {
    let flags = if exclusive {
        NLM_F_CREATE | NLM_F_EXCL
    } else {
        NLM_F_CREATE
    };
    elems_msg(msg::NEWSETELEM, flags, set, &[addr], Some(timeout_ms))
}

/// Delete one address.
pub fn del(set: &str, addr: IpAddr) -> Msg {
    elems_msg(msg::DELSETELEM, 0, set, &[addr], None)
}
