//! The six programs of a context, generated for the fds of its two maps.
//! Pure: instruction lists only, nothing is loaded here.
//!
//! Maps (shared by the six programs of one cgroup):
//! - `netctx_allow`: hash, key = 16-byte address (IPv4 as `::ffff:a.b.c.d`),
//!   value = 1 byte; the context's addresses.
//! - `netctx_conf`: array of one 24-byte value: `u32` flags (bit 0:
//!   `single_ip`, host order), the first IPv4 address (4 bytes) and the
//!   first IPv6 address (16 bytes), in network order, zero for none.
//!
//! Every program allows loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104),
//! multicast (a group to receive; never a usable source) and the limited
//! broadcast, refuses any other address missing from `netctx_allow` with
//! `bpf_set_retval(-EADDRNOTAVAIL)` and return 0, and treats a wildcard as
//! "the kernel chooses", which `single_ip` turns into the first address.

use super::insn::*;

// The address tests below read network-order words with little-endian
// loads (the first byte of an address is the low byte of the word).
#[cfg(not(target_endian = "little"))]
compile_error!("the bind-restriction programs assume a little-endian host");

// struct bpf_sock_addr (linux/bpf.h), the context of every program.
const CTX_USER_IP4: i16 = 4;
const CTX_USER_IP6: i16 = 8;
const CTX_USER_PORT: i16 = 24;
const CTX_MSG_SRC_IP4: i16 = 40;
const CTX_MSG_SRC_IP6: i16 = 44;
const CTX_SK: i16 = 64;
// struct bpf_sock, behind ctx->sk.
const SK_SRC_IP4: i16 = 24;
const SK_SRC_IP6: i16 = 28;
const SK_SRC_PORT: i16 = 44;

// The value of `netctx_conf`.
pub const CONF_FLAGS: i16 = 0;
pub const CONF_FIRST4: i16 = 4;
pub const CONF_FIRST6: i16 = 8;
pub const CONF_SIZE: u32 = 24;
pub const FLAG_SINGLE_IP: u32 = 1;

// The stack frame: the 16-byte map key, the array index, a sockaddr.
const KEY: i16 = -16;
const CONF_KEY: i16 = -20;
const SOCKADDR: i16 = -48;
const SOCKADDR_IN_LEN: i32 = 16;
const SOCKADDR_IN6_LEN: i32 = 28;

/// 127 as in netinet/in.h: the first byte of 127.0.0.0/8.
const IN_LOOPBACKNET: i32 = 127;
/// First-byte mask and value of 224.0.0.0/4 and of ff00::/8.
const MCAST4_MASK: i32 = 0xf0;
const MCAST4_NET: i32 = 0xe0;
const MCAST6_BYTE: i32 = 0xff;
/// Bytes as loaded by a 32-bit little-endian load (how the programs see
/// network-order words): `00 00 ff ff` (word 2 of ::ffff:0:0/96),
/// `00 00 00 01` (word 3 of ::1), `ff ff ff ff` (255.255.255.255).
const V4MAPPED_WORD: i32 = i32::from_le_bytes([0, 0, 0xff, 0xff]);
const LOOPBACK6_WORD: i32 = i32::from_le_bytes([0, 0, 0, 1]);
const LIMITED_BROADCAST: i32 = -1;

const AF_INET: i32 = libc::AF_INET;
const AF_INET6: i32 = libc::AF_INET6;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const EACCES: i32 = libc::EACCES;

/// The fds of a context's two maps, placed into the programs.
#[derive(Debug, Clone, Copy)]
pub struct MapFds {
    pub allow: i32,
    pub conf: i32,
}

/// `return 1`.
fn allow(a: &mut Asm) {
    a.mov64_imm(Reg::R0, 1);
    a.exit();
}

/// `bpf_set_retval(-EADDRNOTAVAIL); return 0`.
fn deny(a: &mut Asm) {
    a.mov64_imm(Reg::R1, -EADDRNOTAVAIL);
    a.call(Helper::SetRetval);
    a.mov64_imm(Reg::R0, 0);
    a.exit();
}

/// Loopback, multicast or the limited broadcast in `w` (network order):
/// jump to `to`. Clobbers `scratch`.
fn v4_special(a: &mut Asm, w: Reg, scratch: Reg, to: Label) {
    a.jmp32_imm(BPF_JEQ, w, LIMITED_BROADCAST, to);
    a.mov32_reg(scratch, w);
    a.and32_imm(scratch, 0xff);
    a.jmp32_imm(BPF_JEQ, scratch, IN_LOOPBACKNET, to);
    a.and32_imm(scratch, MCAST4_MASK);
    a.jmp32_imm(BPF_JEQ, scratch, MCAST4_NET, to);
}

/// Store IPv4 `w` as the key `::ffff:w`.
fn v4_key(a: &mut Asm, w: Reg) {
    a.st(BPF_DW, FP, KEY, 0);
    a.st(BPF_W, FP, KEY + 8, V4MAPPED_WORD);
    a.stx(BPF_W, FP, KEY + 12, w);
}

/// Copy 16 bytes at `src + off` (ctx or socket, 4-byte reads) to the key.
fn copy_key(a: &mut Asm, src: Reg, off: i16) {
    for i in 0..4 {
        a.ldx(BPF_W, Reg::R1, src, off + 4 * i);
        a.stx(BPF_W, FP, KEY + 4 * i, Reg::R1);
    }
}

/// Look the key up in `netctx_allow`: found → `found`, else fall through.
fn lookup_key(a: &mut Asm, m: MapFds, found: Label) {
    a.ld_map_fd(Reg::R1, m.allow);
    a.mov64_reg(Reg::R2, FP);
    a.add64_imm(Reg::R2, i32::from(KEY));
    a.call(Helper::MapLookupElem);
    a.jmp64_imm(BPF_JNE, Reg::R0, 0, found);
}

/// R0 = the `netctx_conf` value; jump to `plain` when there is none or `single_ip` is
/// off.
fn single_ip_conf(a: &mut Asm, m: MapFds, plain: Label) {
    a.st(BPF_W, FP, CONF_KEY, 0);
    a.ld_map_fd(Reg::R1, m.conf);
    a.mov64_reg(Reg::R2, FP);
    a.add64_imm(Reg::R2, i32::from(CONF_KEY));
    a.call(Helper::MapLookupElem);
    a.jmp64_imm(BPF_JEQ, Reg::R0, 0, plain);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FLAGS);
    // FLAG_SINGLE_IP is bit 0, it fits an i32 immediate.
    a.and32_imm(Reg::R1, FLAG_SINGLE_IP as i32);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, plain);
}

/// Where [`classify6`] sends an address.
struct Class6 {
    wild6: Label,
    wild4: Label,
    special: Label,
    lookup: Label,
}

/// Classify the IPv6 address in the key: `::` → wild6, `::ffff:0.0.0.0` →
/// wild4, ::1, ff00::/8 or a special v4-mapped address → special, anything
/// else → lookup (falls through to it). Clobbers R1, R7, R8.
fn classify6(a: &mut Asm, c: &Class6) {
    let mapped = a.label();
    a.ldx(BPF_W, Reg::R7, FP, KEY);
    a.mov32_reg(Reg::R1, Reg::R7);
    a.and32_imm(Reg::R1, 0xff);
    a.jmp32_imm(BPF_JEQ, Reg::R1, MCAST6_BYTE, c.special);
    a.ldx(BPF_W, Reg::R8, FP, KEY + 4);
    a.jmp32_imm(BPF_JNE, Reg::R7, 0, c.lookup);
    a.jmp32_imm(BPF_JNE, Reg::R8, 0, c.lookup);
    a.ldx(BPF_W, Reg::R7, FP, KEY + 8);
    a.ldx(BPF_W, Reg::R8, FP, KEY + 12);
    a.jmp32_imm(BPF_JEQ, Reg::R7, V4MAPPED_WORD, mapped);
    a.jmp32_imm(BPF_JNE, Reg::R7, 0, c.lookup);
    a.jmp32_imm(BPF_JEQ, Reg::R8, 0, c.wild6);
    a.jmp32_imm(BPF_JEQ, Reg::R8, LOOPBACK6_WORD, c.special);
    a.ja(c.lookup);
    a.bind(mapped);
    a.jmp32_imm(BPF_JEQ, Reg::R8, 0, c.wild4);
    v4_special(a, Reg::R8, Reg::R1, c.special);
}

/// Classify the IPv6 address in the key and look it up (special or allowed
/// → `ok`, else deny); wildcards go to `c.wild6` / `c.wild4`.
fn check6(a: &mut Asm, m: MapFds, c: &Class6, ok: Label) {
    classify6(a, c);
    a.bind(c.lookup);
    lookup_key(a, m, ok);
    deny(a);
}

/// The same for IPv4 in `w`: special or allowed → `ok`, else deny;
/// `0.0.0.0` → `wild`.
fn check4(a: &mut Asm, m: MapFds, w: Reg, wild: Label, ok: Label) {
    a.jmp32_imm(BPF_JEQ, w, 0, wild);
    v4_special(a, w, Reg::R1, ok);
    v4_key(a, w);
    lookup_key(a, m, ok);
    deny(a);
}

/// A port below 1024 is the context's root's alone: the context's
/// `ip_unprivileged_port_start` is 0 (its root has no privilege over the
/// network namespace), so a bind by another id of the context's range
/// (host id 65536·`idmap` + u, u ≠ 0) is refused here with EACCES, as the
/// kernel refuses an unprivileged process elsewhere. Ids outside the range
/// (`exec --privileged`) pass. Expects ctx in R6; clobbers R0–R5.
fn low_port(a: &mut Asm, idmap: Option<u16>) {
    let Some(idmap) = idmap else {
        return;
    };
    let pass = a.label();
    // user_port is in network order: its first byte (the high one) is the
    // low byte of the little-endian load; port < 1024 ⇔ that byte < 4.
    a.ldx(BPF_W, Reg::R2, Reg::R6, CTX_USER_PORT);
    a.jmp32_imm(BPF_JEQ, Reg::R2, 0, pass);
    a.and32_imm(Reg::R2, 0xfc);
    a.jmp32_imm(BPF_JNE, Reg::R2, 0, pass);
    a.call(Helper::GetCurrentUidGid);
    a.mov32_reg(Reg::R1, Reg::R0);
    a.and32_imm(Reg::R1, 0xffff);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, pass);
    a.mov32_reg(Reg::R1, Reg::R0);
    a.rsh32_imm(Reg::R1, 16);
    a.jmp32_imm(BPF_JNE, Reg::R1, i32::from(idmap), pass);
    a.mov64_imm(Reg::R1, -EACCES);
    a.call(Helper::SetRetval);
    a.mov64_imm(Reg::R0, 0);
    a.exit();
    a.bind(pass);
}

/// BPF_CGROUP_INET4_BIND: the bind address must be the context's;
/// `single_ip` rewrites 0.0.0.0 to the first IPv4 address; a port below
/// 1024 is the context's root's (`low_port`).
pub fn bind4(m: MapFds, idmap: Option<u16>) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (ok, wild) = (a.label(), a.label());
    a.mov64_reg(Reg::R6, Reg::R1);
    low_port(&mut a, idmap);
    a.ldx(BPF_W, Reg::R7, Reg::R6, CTX_USER_IP4);
    check4(&mut a, m, Reg::R7, wild, ok);
    a.bind(wild);
    single_ip_conf(&mut a, m, ok);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST4);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, ok);
    a.stx(BPF_W, Reg::R6, CTX_USER_IP4, Reg::R1);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// Rewrite a wildcard IPv6 address at `ctx + off` with `single_ip`: `::` to
/// the first IPv6 address, `::ffff:0.0.0.0` to `::ffff:` the first IPv4.
fn rewrite_wild6(a: &mut Asm, m: MapFds, c: &Class6, off: i16, ok: Label) {
    a.bind(c.wild6);
    set_first6(a, m, off, ok);
    a.ja(ok);
    a.bind(c.wild4);
    single_ip_conf(a, m, ok);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST4);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, ok);
    a.stx(BPF_W, Reg::R6, off + 12, Reg::R1);
    a.ja(ok);
}

fn class6(a: &mut Asm, ok: Label) -> Class6 {
    Class6 {
        wild6: a.label(),
        wild4: a.label(),
        special: ok,
        lookup: a.label(),
    }
}

/// BPF_CGROUP_INET6_BIND: as [`bind4`] for IPv6 and IPv4-mapped addresses.
pub fn bind6(m: MapFds, idmap: Option<u16>) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let ok = a.label();
    let c = class6(&mut a, ok);
    a.mov64_reg(Reg::R6, Reg::R1);
    low_port(&mut a, idmap);
    copy_key(&mut a, Reg::R6, CTX_USER_IP6);
    check6(&mut a, m, &c, ok);
    rewrite_wild6(&mut a, m, &c, CTX_USER_IP6, ok);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// `bpf_bind(ctx, SOCKADDR, len)`; its error (if any) becomes the
/// connect's.
fn bpf_bind(a: &mut Asm, len: i32, ok: Label) {
    a.mov64_reg(Reg::R1, Reg::R6);
    a.mov64_reg(Reg::R2, FP);
    a.add64_imm(Reg::R2, i32::from(SOCKADDR));
    a.mov64_imm(Reg::R3, len);
    a.call(Helper::Bind);
    a.jmp64_imm(BPF_JEQ, Reg::R0, 0, ok);
    a.mov64_reg(Reg::R1, Reg::R0);
    a.call(Helper::SetRetval);
    a.mov64_imm(Reg::R0, 0);
    a.exit();
}

/// BPF_CGROUP_INET4_CONNECT: a bound socket's address must still be the
/// context's; an unbound one (no address, no port) is bound to the first
/// IPv4 address with `single_ip` (not for a loopback destination).
pub fn connect4(m: MapFds) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (ok, unbound) = (a.label(), a.label());
    a.mov64_reg(Reg::R6, Reg::R1);
    a.ldx(BPF_DW, Reg::R1, Reg::R6, CTX_SK);
    a.ldx(BPF_W, Reg::R7, Reg::R1, SK_SRC_IP4);
    a.ldx(BPF_W, Reg::R9, Reg::R1, SK_SRC_PORT);
    check4(&mut a, m, Reg::R7, unbound, ok);
    a.bind(unbound);
    a.jmp32_imm(BPF_JNE, Reg::R9, 0, ok);
    a.ldx(BPF_W, Reg::R8, Reg::R6, CTX_USER_IP4);
    v4_special(&mut a, Reg::R8, Reg::R1, ok);
    single_ip_conf(&mut a, m, ok);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST4);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, ok);
    // struct sockaddr_in: family, port 0, the address, 8 bytes of zero.
    a.st(BPF_DW, FP, SOCKADDR, AF_INET);
    a.stx(BPF_W, FP, SOCKADDR + 4, Reg::R1);
    a.st(BPF_DW, FP, SOCKADDR + 8, 0);
    bpf_bind(&mut a, SOCKADDR_IN_LEN, ok);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// Jump to `to` when the IPv6 address at `ctx + off` is ::1 or a v4-mapped
/// loopback/special address; to `mapped` when it is another v4-mapped one
/// (with R8 = its IPv4 word); fall through for native IPv6 (and `::`).
fn dest6(a: &mut Asm, off: i16, to: Label, mapped: Label) {
    let native = a.label();
    let v4 = a.label();
    a.ldx(BPF_W, Reg::R1, Reg::R6, off);
    a.ldx(BPF_W, Reg::R2, Reg::R6, off + 4);
    a.or64_reg(Reg::R1, Reg::R2);
    a.jmp32_imm(BPF_JNE, Reg::R1, 0, native);
    a.ldx(BPF_W, Reg::R7, Reg::R6, off + 8);
    a.ldx(BPF_W, Reg::R8, Reg::R6, off + 12);
    a.jmp32_imm(BPF_JEQ, Reg::R7, V4MAPPED_WORD, v4);
    a.jmp32_imm(BPF_JNE, Reg::R7, 0, native);
    a.jmp32_imm(BPF_JEQ, Reg::R8, LOOPBACK6_WORD, to);
    a.ja(native);
    a.bind(v4);
    v4_special(a, Reg::R8, Reg::R1, to);
    a.ja(mapped);
    a.bind(native);
}

/// BPF_CGROUP_INET6_CONNECT: as [`connect4`]; an unbound socket going to a
/// v4-mapped destination is bound to `::ffff:` the first IPv4 address.
pub fn connect6(m: MapFds) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let ok = a.label();
    let c = class6(&mut a, ok);
    let (mapped, bind) = (a.label(), a.label());
    a.mov64_reg(Reg::R6, Reg::R1);
    a.ldx(BPF_DW, Reg::R9, Reg::R6, CTX_SK);
    copy_key(&mut a, Reg::R9, SK_SRC_IP6);
    a.ldx(BPF_W, Reg::R9, Reg::R9, SK_SRC_PORT);
    check6(&mut a, m, &c, ok);
    a.bind(c.wild6);
    a.bind(c.wild4);
    a.jmp32_imm(BPF_JNE, Reg::R9, 0, ok);
    dest6(&mut a, CTX_USER_IP6, ok, mapped);
    single_ip_conf(&mut a, m, ok);
    a.ldx(BPF_DW, Reg::R1, Reg::R0, CONF_FIRST6);
    a.ldx(BPF_DW, Reg::R2, Reg::R0, CONF_FIRST6 + 8);
    a.mov64_reg(Reg::R3, Reg::R1);
    a.or64_reg(Reg::R3, Reg::R2);
    a.jmp64_imm(BPF_JEQ, Reg::R3, 0, ok);
    // struct sockaddr_in6: family, port 0, flowinfo 0, address, scope 0.
    a.st(BPF_DW, FP, SOCKADDR, AF_INET6);
    a.stx(BPF_DW, FP, SOCKADDR + 8, Reg::R1);
    a.stx(BPF_DW, FP, SOCKADDR + 16, Reg::R2);
    a.ja(bind);
    a.bind(mapped);
    single_ip_conf(&mut a, m, ok);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST4);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, ok);
    a.st(BPF_DW, FP, SOCKADDR, AF_INET6);
    a.st(BPF_DW, FP, SOCKADDR + 8, 0);
    a.st(BPF_W, FP, SOCKADDR + 16, V4MAPPED_WORD);
    a.stx(BPF_W, FP, SOCKADDR + 20, Reg::R1);
    a.bind(bind);
    a.st(BPF_W, FP, SOCKADDR + 24, 0);
    bpf_bind(&mut a, SOCKADDR_IN6_LEN, ok);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// BPF_CGROUP_UDP4_SENDMSG: the source (`msg_src_ip4`: IP_PKTINFO, else
/// the socket's bound address) must be the context's; none (the kernel
/// would choose) becomes the first IPv4 address with `single_ip`.
pub fn sendmsg4(m: MapFds) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (ok, unbound, none) = (a.label(), a.label(), a.label());
    a.mov64_reg(Reg::R6, Reg::R1);
    a.ldx(BPF_W, Reg::R7, Reg::R6, CTX_MSG_SRC_IP4);
    check4(&mut a, m, Reg::R7, none, ok);
    a.bind(none);
    a.ldx(BPF_DW, Reg::R1, Reg::R6, CTX_SK);
    a.ldx(BPF_W, Reg::R7, Reg::R1, SK_SRC_IP4);
    check4(&mut a, m, Reg::R7, unbound, ok);
    a.bind(unbound);
    a.ldx(BPF_W, Reg::R8, Reg::R6, CTX_USER_IP4);
    v4_special(&mut a, Reg::R8, Reg::R1, ok);
    single_ip_conf(&mut a, m, ok);
    a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST4);
    a.jmp32_imm(BPF_JEQ, Reg::R1, 0, ok);
    a.stx(BPF_W, Reg::R6, CTX_MSG_SRC_IP4, Reg::R1);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// BPF_CGROUP_UDP6_SENDMSG: as [`sendmsg4`] for `msg_src_ip6` (a v4-mapped
/// destination takes the IPv4 path and hook in the kernel).
pub fn sendmsg6(m: MapFds) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let ok = a.label();
    let msg = class6(&mut a, ok);
    let sock = class6(&mut a, ok);
    a.mov64_reg(Reg::R6, Reg::R1);
    copy_key(&mut a, Reg::R6, CTX_MSG_SRC_IP6);
    check6(&mut a, m, &msg, ok);
    // No source in the message: the socket's bound address, if any.
    a.bind(msg.wild6);
    a.bind(msg.wild4);
    a.ldx(BPF_DW, Reg::R9, Reg::R6, CTX_SK);
    copy_key(&mut a, Reg::R9, SK_SRC_IP6);
    check6(&mut a, m, &sock, ok);
    a.bind(sock.wild6);
    a.bind(sock.wild4);
    dest6(&mut a, CTX_USER_IP6, ok, ok);
    set_first6(&mut a, m, CTX_MSG_SRC_IP6, ok);
    a.bind(ok);
    allow(&mut a);
    a.finish()
}

/// With `single_ip` and a first IPv6 address, write it to `ctx + off`
/// (4-byte stores: `msg_src_ip6` is not 8-byte aligned); else → `ok`.
fn set_first6(a: &mut Asm, m: MapFds, off: i16, ok: Label) {
    single_ip_conf(a, m, ok);
    a.ldx(BPF_DW, Reg::R1, Reg::R0, CONF_FIRST6);
    a.ldx(BPF_DW, Reg::R2, Reg::R0, CONF_FIRST6 + 8);
    a.or64_reg(Reg::R1, Reg::R2);
    a.jmp64_imm(BPF_JEQ, Reg::R1, 0, ok);
    for i in 0..4 {
        a.ldx(BPF_W, Reg::R1, Reg::R0, CONF_FIRST6 + 4 * i);
        a.stx(BPF_W, Reg::R6, off + 4 * i, Reg::R1);
    }
}
