//! Pure tests: the encoder's bytes, each program's bytes and structure, and
//! each program's behaviour in a small interpreter (`interp`), with the
//! maps as `maps::Wanted` encodes them.

// The interpreter truncates on purpose: 32-bit ALU and JMP32 semantics,
// offsets of the modelled stack.
#[allow(clippy::cast_possible_truncation)]
mod interp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::insn::*;
use super::maps::{self, Wanted};
use super::progs::{self, MapFds};
use super::Hook;
use interp::{Machine, ALLOW_FD, CONF_FD};

const FDS: MapFds = MapFds {
    allow: ALLOW_FD,
    conf: CONF_FD,
};
const EADDRNOTAVAIL: i32 = -99;
const EACCES: i32 = -13;

fn hex(insns: &[Insn]) -> String {
    insns
        .iter()
        .map(|i| {
            i.to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The range n of the programs under test (`low_port`).
const IDMAP: u16 = 7;

fn prog(h: Hook) -> Vec<Insn> {
    h.generate(FDS, Some(IDMAP)).unwrap()
}

// ---- the encoder ---------------------------------------------------------

#[test]
fn instructions_encode_as_in_linux_bpf_h() {
    let mut a = Asm::new();
    a.mov64_imm(Reg::R0, 1); // BPF_MOV64_IMM(BPF_REG_0, 1)
    a.mov64_reg(Reg::R6, Reg::R1); // BPF_MOV64_REG(BPF_REG_6, BPF_REG_1)
    a.mov32_reg(Reg::R1, Reg::R7); // BPF_MOV32_REG
    a.add64_imm(Reg::R2, -16); // BPF_ALU64_IMM(BPF_ADD, BPF_REG_2, -16)
    a.and32_imm(Reg::R1, 0xff); // BPF_ALU32_IMM(BPF_AND, …)
    a.or64_reg(Reg::R1, Reg::R2); // BPF_ALU64_REG(BPF_OR, …)
    a.ldx(BPF_W, Reg::R7, Reg::R6, 4); // BPF_LDX_MEM(BPF_W, 7, 6, 4)
    a.ldx(BPF_DW, Reg::R1, Reg::R6, 64);
    a.stx(BPF_W, FP, -4, Reg::R7); // BPF_STX_MEM(BPF_W, 10, 7, -4)
    a.st(BPF_DW, FP, -16, 0); // BPF_ST_MEM(BPF_DW, 10, -16, 0)
    a.ld_map_fd(Reg::R1, 5); // BPF_LD_MAP_FD(BPF_REG_1, 5)
    a.call(Helper::SetRetval); // BPF_EMIT_CALL(BPF_FUNC_set_retval)
    a.exit(); // BPF_EXIT_INSN()
    assert_eq!(
        hex(&a.finish().unwrap()),
        "b700000001000000 bf16000000000000 bc71000000000000 07020000f0ffffff \
         54010000ff000000 4f21000000000000 6167040000000000 7961400000000000 \
         637afcff00000000 7a0af0ff00000000 1811000005000000 0000000000000000 \
         85000000bb000000 9500000000000000"
    );
}

#[test]
fn jumps_resolve_forward_and_backward_and_jmp32_keeps_the_immediate() {
    let mut a = Asm::new();
    let (back, fwd) = (a.label(), a.label());
    a.bind(back);
    a.jmp32_imm(BPF_JEQ, Reg::R7, -1, fwd); // BPF_JMP32_IMM(BPF_JEQ, 7, -1, +2)
    a.jmp64_imm(BPF_JNE, Reg::R0, 0, back); // BPF_JMP_IMM(BPF_JNE, 0, 0, -2)
    a.ja(fwd); // BPF_JMP_A(0)
    a.bind(fwd);
    a.exit();
    assert_eq!(
        hex(&a.finish().unwrap()),
        "16070200ffffffff 5500feff00000000 0500000000000000 9500000000000000"
    );
}

#[test]
fn an_unplaced_label_and_a_far_jump_are_errors() {
    let mut a = Asm::new();
    let l = a.label();
    a.ja(l);
    assert_eq!(a.finish(), Err(AsmError::Unplaced(0)));
    let mut a = Asm::new();
    let l = a.label();
    a.ja(l);
    for _ in 0..40_000 {
        a.exit();
    }
    a.bind(l);
    a.exit();
    assert_eq!(
        a.finish(),
        Err(AsmError::TooFar {
            from: 0,
            to: 40_001
        })
    );
}

// ---- the programs' bytes and structure ------------------------------------

/// Every jump lands inside the program and not on the second half of a
/// 64-bit load; the last instruction exits; map loads name the two maps;
/// 64-bit compares only test for zero (the sign-extension trap).
fn check_structure(h: Hook, p: &[Insn]) {
    let second_halves: Vec<usize> = p
        .iter()
        .enumerate()
        .filter(|(_, i)| i.code == BPF_LD | BPF_DW | BPF_IMM)
        .map(|(n, _)| n + 1)
        .collect();
    assert_eq!(p.last().unwrap().code, BPF_JMP | BPF_EXIT, "{h}");
    for (n, i) in p.iter().enumerate() {
        let class = i.code & 0x07;
        let op = i.code & 0xf0;
        if (class == BPF_JMP || class == BPF_JMP32) && op != BPF_CALL && op != BPF_EXIT {
            let to = i64::try_from(n).unwrap() + 1 + i64::from(i.off);
            let to = usize::try_from(to).unwrap_or(usize::MAX);
            assert!(to < p.len(), "{h}: jump {n} out");
            assert!(!second_halves.contains(&to), "{h}: jump {n} into ld_imm64");
            if class == BPF_JMP && op != BPF_JA {
                assert_eq!(
                    i.imm, 0,
                    "{h}: 64-bit compare at {n} with a non-zero immediate"
                );
            }
        }
        if i.code == BPF_LD | BPF_DW | BPF_IMM {
            assert_eq!(i.src(), BPF_PSEUDO_MAP_FD, "{h}");
            assert!([ALLOW_FD, CONF_FD].contains(&i.imm), "{h}");
        }
        if class == BPF_ST {
            assert_eq!(i.dst(), FP as u8, "{h}: BPF_ST only on the stack");
        }
        if i.code == BPF_JMP | BPF_CALL && i.imm == Helper::Bind as i32 {
            assert!(
                matches!(h, Hook::Connect4 | Hook::Connect6),
                "{h}: bpf_bind"
            );
        }
    }
}

#[test]
fn every_program_is_well_formed() {
    for h in Hook::ALL {
        check_structure(h, &prog(h));
    }
}

/// `bpftool`-style text of one instruction (`n` its index).
fn disasm(n: usize, i: &Insn) -> String {
    let (d, s, off, imm) = (i.dst(), i.src(), i.off, i.imm);
    let size = |code: u8| match code & 0x18 {
        BPF_W => "u32",
        BPF_DW => "u64",
        _ => "?",
    };
    let target = n as i64 + 1 + i64::from(off);
    let helper = |imm: i32| match imm {
        x if x == Helper::MapLookupElem as i32 => "bpf_map_lookup_elem",
        x if x == Helper::Bind as i32 => "bpf_bind",
        x if x == Helper::SetRetval as i32 => "bpf_set_retval",
        x if x == Helper::GetCurrentUidGid as i32 => "bpf_get_current_uid_gid",
        _ => "?",
    };
    let cmp = |code: u8| if code & 0xf0 == BPF_JEQ { "==" } else { "!=" };
    match i.code {
        c if c == BPF_ALU64 | BPF_MOV | BPF_K => format!("r{d} = {imm}"),
        c if c == BPF_ALU64 | BPF_MOV | BPF_X => format!("r{d} = r{s}"),
        c if c == BPF_ALU | BPF_MOV | BPF_X => format!("w{d} = w{s}"),
        c if c == BPF_ALU64 | BPF_ADD | BPF_K => format!("r{d} += {imm}"),
        c if c == BPF_ALU | BPF_AND | BPF_K => format!("w{d} &= {imm:#x}"),
        c if c == BPF_ALU | BPF_RSH | BPF_K => format!("w{d} >>= {imm}"),
        c if c == BPF_ALU64 | BPF_OR | BPF_X => format!("r{d} |= r{s}"),
        c if c & 0x07 == BPF_LDX => format!("r{d} = *({} *)(r{s} {off:+})", size(c)),
        c if c & 0x07 == BPF_STX => format!("*({} *)(r{d} {off:+}) = r{s}", size(c)),
        c if c & 0x07 == BPF_ST => format!("*({} *)(r{d} {off:+}) = {imm:#x}", size(c)),
        c if c == BPF_LD | BPF_DW | BPF_IMM => format!("r{d} = map[fd {imm:#x}] ll"),
        0 => "(second half of ll)".to_string(),
        c if c == BPF_JMP | BPF_CALL => format!("call {}#{imm}", helper(imm)),
        c if c == BPF_JMP | BPF_EXIT => "exit".to_string(),
        c if c == BPF_JMP | BPF_JA => format!("goto {target}"),
        c if c & 0x0f == BPF_JMP32 | BPF_K => {
            format!("if w{d} {} {:#x} goto {target}", cmp(c), imm as u32)
        }
        c if c & 0x0f == BPF_JMP | BPF_K => format!("if r{d} {} {imm} goto {target}", cmp(c)),
        c => format!("? {c:#04x}"),
    }
}

/// The listing of a program: index, the eight bytes, the instruction.
fn listing(p: &[Insn]) -> String {
    p.iter()
        .enumerate()
        .map(|(n, i)| {
            let b: Vec<String> = i.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            format!("{n:3}: {}  {}\n", b.join(" "), disasm(n, i))
        })
        .collect()
}

/// Each program's bytes, frozen in `tests/HOOK.txt` (with map fds 0x11 and
/// 0x22): a change there is a change of what the kernel runs; review the
/// diff, re-run the integration tests (and the 6.1 lane), then regenerate
/// with `NETCTX_BLESS=1 cargo test bpf`.
#[test]
fn program_bytes_are_the_reviewed_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kernel/bpf/tests");
    let mut changed = Vec::new();
    for h in Hook::ALL {
        let path = dir.join(format!("{}.txt", h.name()));
        let got = listing(&prog(h));
        if std::env::var_os("NETCTX_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            changed.push(format!("{}:\n{got}", path.display()));
        }
    }
    assert!(
        changed.is_empty(),
        "programs differ from the reviewed listings:\n{}",
        changed.join("\n")
    );
}

// ---- behaviour -------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

const OWN: [&str; 4] = ["10.1.0.2", "10.1.0.3", "fd00:1::2", "fd00:1::3"];

fn machine(addrs: &[&str], single_ip: bool) -> Machine {
    let w = Wanted::new(&addrs.iter().map(|a| ip(a)).collect::<Vec<_>>(), single_ip);
    let mut m = Machine::new();
    m.allow = w.keys.iter().copied().collect();
    m.conf = Some(w.conf);
    m
}

/// Ok(()) for allowed, Err(errno) for refused.
fn verdict(m: &mut Machine, h: Hook) -> Result<(), i32> {
    match m.run(&prog(h)) {
        1 => Ok(()),
        0 => Err(m.retval.expect("a refusal sets the errno")),
        r => panic!("{h} returned {r}"),
    }
}

// Offsets in struct bpf_sock_addr and struct bpf_sock.
const USER_IP4: usize = 4;
const USER_IP6: usize = 8;
const MSG_SRC_IP4: usize = 40;
const MSG_SRC_IP6: usize = 44;
const SK_SRC_IP4: usize = 24;
const SK_SRC_IP6: usize = 28;
const SK_SRC_PORT: usize = 44;

fn bind4(addr: &str, single_ip: bool) -> (Result<(), i32>, [u8; 4]) {
    let mut m = machine(&OWN, single_ip);
    m.ctx[USER_IP4..USER_IP4 + 4].copy_from_slice(&v4(addr));
    let v = verdict(&mut m, Hook::Bind4);
    (v, m.ctx[USER_IP4..USER_IP4 + 4].try_into().unwrap())
}

fn bind6(addr: &str, single_ip: bool) -> (Result<(), i32>, [u8; 16]) {
    let mut m = machine(&OWN, single_ip);
    m.ctx[USER_IP6..USER_IP6 + 16].copy_from_slice(&v6(addr));
    let v = verdict(&mut m, Hook::Bind6);
    (v, m.ctx[USER_IP6..USER_IP6 + 16].try_into().unwrap())
}

const USER_PORT: usize = 24;

/// A bind of `port` to an own address by host uid `uid`.
fn bind_port(h: Hook, port: u16, uid: u32) -> Result<(), i32> {
    let mut m = machine(&OWN, false);
    match h {
        Hook::Bind4 => m.ctx[USER_IP4..USER_IP4 + 4].copy_from_slice(&v4("10.1.0.2")),
        _ => m.ctx[USER_IP6..USER_IP6 + 16].copy_from_slice(&v6("fd00:1::2")),
    }
    // sin_port: network order in the low 16 bits.
    m.ctx[USER_PORT..USER_PORT + 2].copy_from_slice(&port.to_be_bytes());
    m.uid_gid = (u64::from(uid) << 32) | u64::from(uid);
    verdict(&mut m, h)
}

#[test]
fn ports_below_1024_are_the_context_roots_alone() {
    let first = u32::from(IDMAP) << 16;
    for h in [Hook::Bind4, Hook::Bind6] {
        for port in [1, 22, 80, 1023] {
            // The context's root, host root (`--privileged`), another range.
            for uid in [first, 0, first + 65536 + 5, first - 1] {
                assert_eq!(bind_port(h, port, uid), Ok(()), "{h} port {port} uid {uid}");
            }
            for uid in [first + 1, first + 1000, first + 65534] {
                assert_eq!(
                    bind_port(h, port, uid),
                    Err(EACCES),
                    "{h} port {port} uid {uid}"
                );
            }
        }
        for port in [0, 1024, 8080, 65535] {
            assert_eq!(bind_port(h, port, first + 1000), Ok(()), "{h} port {port}");
        }
    }
}

#[test]
fn bind4_allows_own_loopback_multicast_broadcast_and_refuses_the_rest() {
    for a in [
        "10.1.0.2",
        "10.1.0.3",
        "127.0.0.1",
        "127.0.0.200",
        "127.255.255.255",
        "224.0.0.251",
        "239.1.2.3",
        "255.255.255.255",
        "0.0.0.0",
    ] {
        assert_eq!(bind4(a, false), (Ok(()), v4(a)), "{a}");
    }
    for a in [
        "10.2.0.2",
        "192.0.2.77",
        "10.1.0.4",
        "128.0.0.127",
        "240.0.0.1",
        "1.0.0.127",
    ] {
        assert_eq!(bind4(a, false).0, Err(EADDRNOTAVAIL), "{a}");
    }
}

#[test]
fn bind4_single_ip_rewrites_only_the_wildcard() {
    assert_eq!(bind4("0.0.0.0", true), (Ok(()), v4("10.1.0.2")));
    assert_eq!(bind4("10.1.0.3", true), (Ok(()), v4("10.1.0.3")));
    assert_eq!(bind4("10.2.0.2", true).0, Err(EADDRNOTAVAIL));
    // No IPv4 address: the wildcard stays.
    let mut m = machine(&["fd00:1::2"], true);
    assert_eq!(verdict(&mut m, Hook::Bind4), Ok(()));
    assert_eq!(m.ctx[USER_IP4..USER_IP4 + 4], [0; 4]);
    // No conf entry at all (never the case after ensure): allowed, unchanged.
    let mut m = machine(&OWN, true);
    m.conf = None;
    assert_eq!(verdict(&mut m, Hook::Bind4), Ok(()));
}

#[test]
fn bind6_checks_native_and_v4_mapped_addresses() {
    for a in [
        "fd00:1::2",
        "fd00:1::3",
        "::1",
        "::",
        "::ffff:10.1.0.2",
        "::ffff:127.0.0.200",
        "::ffff:0.0.0.0",
        "ff02::1",
        "ff05::fb",
        "::ffff:224.0.0.251",
    ] {
        assert_eq!(bind6(a, false), (Ok(()), v6(a)), "{a}");
    }
    for a in [
        "fd00:2::2",
        "2001:db8::77",
        "::ffff:10.2.0.2",
        "::ffff:192.0.2.77",
        "::2",
        "::1:0:0:1",
        "::10.1.0.2",
        "1::",
        "fe80::1",
        "::fffe:10.1.0.2",
        "0:0:0:1:0:ffff:a01:2",
    ] {
        assert_eq!(bind6(a, false).0, Err(EADDRNOTAVAIL), "{a}");
    }
}

#[test]
fn bind6_single_ip_rewrites_both_wildcards() {
    assert_eq!(bind6("::", true), (Ok(()), v6("fd00:1::2")));
    assert_eq!(
        bind6("::ffff:0.0.0.0", true),
        (Ok(()), v6("::ffff:10.1.0.2"))
    );
    assert_eq!(bind6("fd00:1::3", true), (Ok(()), v6("fd00:1::3")));
    let mut m = machine(&["10.1.0.2"], true);
    assert_eq!(verdict(&mut m, Hook::Bind6), Ok(()));
    assert_eq!(
        m.ctx[USER_IP6..USER_IP6 + 16],
        [0; 16],
        "no IPv6 address: :: stays"
    );
}

/// A connect4 run: the socket's bound address and port, the destination.
fn connect4(
    src: &str,
    port: u32,
    dst: &str,
    single_ip: bool,
) -> (Result<(), i32>, Option<Vec<u8>>) {
    let mut m = machine(&OWN, single_ip);
    m.sk[SK_SRC_IP4..SK_SRC_IP4 + 4].copy_from_slice(&v4(src));
    m.sk[SK_SRC_PORT..SK_SRC_PORT + 4].copy_from_slice(&port.to_ne_bytes());
    m.ctx[USER_IP4..USER_IP4 + 4].copy_from_slice(&v4(dst));
    let v = verdict(&mut m, Hook::Connect4);
    (v, m.bound)
}

fn sockaddr_in(a: &str) -> Vec<u8> {
    let mut s = vec![0u8; 16];
    s[..2].copy_from_slice(&u16::try_from(libc::AF_INET).unwrap().to_ne_bytes());
    s[4..8].copy_from_slice(&v4(a));
    s
}

fn sockaddr_in6(a: &str) -> Vec<u8> {
    let mut s = vec![0u8; 28];
    s[..2].copy_from_slice(&u16::try_from(libc::AF_INET6).unwrap().to_ne_bytes());
    s[8..24].copy_from_slice(&v6(a));
    s
}

#[test]
fn connect4_checks_the_bound_address_and_binds_unbound_sockets_with_single_ip() {
    assert_eq!(
        connect4("10.1.0.3", 4000, "10.9.9.9", false),
        (Ok(()), None)
    );
    assert_eq!(
        connect4("10.2.0.2", 4000, "10.9.9.9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(
        connect4("127.0.0.1", 4000, "127.0.0.1", false),
        (Ok(()), None)
    );
    assert_eq!(connect4("0.0.0.0", 0, "10.9.9.9", false), (Ok(()), None));
    assert_eq!(
        connect4("0.0.0.0", 0, "10.9.9.9", true),
        (Ok(()), Some(sockaddr_in("10.1.0.2")))
    );
    // Towards loopback, or already holding a port: left alone.
    assert_eq!(connect4("0.0.0.0", 0, "127.0.0.1", true), (Ok(()), None));
    assert_eq!(connect4("0.0.0.0", 5353, "10.9.9.9", true), (Ok(()), None));
    // bpf_bind's error becomes connect's.
    let mut m = machine(&OWN, true);
    m.bind_result = -i64::from(libc::EADDRINUSE);
    m.ctx[USER_IP4..USER_IP4 + 4].copy_from_slice(&v4("10.9.9.9"));
    assert_eq!(verdict(&mut m, Hook::Connect4), Err(-libc::EADDRINUSE));
}

fn connect6(
    src: &str,
    port: u32,
    dst: &str,
    single_ip: bool,
) -> (Result<(), i32>, Option<Vec<u8>>) {
    let mut m = machine(&OWN, single_ip);
    m.sk[SK_SRC_IP6..SK_SRC_IP6 + 16].copy_from_slice(&v6(src));
    m.sk[SK_SRC_PORT..SK_SRC_PORT + 4].copy_from_slice(&port.to_ne_bytes());
    m.ctx[USER_IP6..USER_IP6 + 16].copy_from_slice(&v6(dst));
    let v = verdict(&mut m, Hook::Connect6);
    (v, m.bound)
}

#[test]
fn connect6_covers_v6_and_v4_mapped_sources_and_destinations() {
    assert_eq!(
        connect6("fd00:1::3", 4000, "fd00:9::9", false),
        (Ok(()), None)
    );
    assert_eq!(
        connect6("::ffff:10.1.0.3", 4000, "::ffff:10.9.9.9", false),
        (Ok(()), None)
    );
    assert_eq!(
        connect6("fd00:2::2", 4000, "fd00:9::9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(
        connect6("::ffff:10.2.0.2", 4000, "::ffff:10.9.9.9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(connect6("::", 0, "fd00:9::9", false), (Ok(()), None));
    assert_eq!(
        connect6("::", 0, "fd00:9::9", true),
        (Ok(()), Some(sockaddr_in6("fd00:1::2")))
    );
    assert_eq!(
        connect6("::", 0, "::ffff:10.9.9.9", true),
        (Ok(()), Some(sockaddr_in6("::ffff:10.1.0.2")))
    );
    assert_eq!(connect6("::", 0, "::1", true), (Ok(()), None));
    assert_eq!(connect6("::", 0, "::ffff:127.0.0.1", true), (Ok(()), None));
    assert_eq!(connect6("::", 8080, "fd00:9::9", true), (Ok(()), None));
}

#[test]
fn sendmsg4_checks_the_source_and_sets_it_with_single_ip() {
    let run = |msg_src: &str, sk_src: &str, dst: &str, single_ip: bool| {
        let mut m = machine(&OWN, single_ip);
        m.ctx[MSG_SRC_IP4..MSG_SRC_IP4 + 4].copy_from_slice(&v4(msg_src));
        m.sk[SK_SRC_IP4..SK_SRC_IP4 + 4].copy_from_slice(&v4(sk_src));
        m.ctx[USER_IP4..USER_IP4 + 4].copy_from_slice(&v4(dst));
        let v = verdict(&mut m, Hook::Sendmsg4);
        let src: [u8; 4] = m.ctx[MSG_SRC_IP4..MSG_SRC_IP4 + 4].try_into().unwrap();
        (v, Ipv4Addr::from(src).to_string())
    };
    let ok = |a: &str| (Ok(()), a.to_string());
    assert_eq!(
        run("10.1.0.3", "0.0.0.0", "10.9.9.9", false),
        ok("10.1.0.3")
    );
    assert_eq!(
        run("10.2.0.2", "0.0.0.0", "10.9.9.9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(
        run("192.0.2.77", "10.1.0.2", "10.9.9.9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(
        run("0.0.0.0", "10.2.0.2", "10.9.9.9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(run("0.0.0.0", "0.0.0.0", "10.9.9.9", false), ok("0.0.0.0"));
    assert_eq!(run("0.0.0.0", "0.0.0.0", "10.9.9.9", true), ok("10.1.0.2"));
    assert_eq!(run("0.0.0.0", "0.0.0.0", "127.0.0.1", true), ok("0.0.0.0"));
    assert_eq!(
        run("0.0.0.0", "224.0.0.251", "10.9.9.9", false),
        ok("0.0.0.0")
    );
    assert_eq!(run("10.1.0.3", "0.0.0.0", "10.9.9.9", true), ok("10.1.0.3"));
}

#[test]
fn sendmsg6_checks_the_source_and_sets_it_with_single_ip() {
    let run = |msg_src: &str, sk_src: &str, dst: &str, single_ip: bool| {
        let mut m = machine(&OWN, single_ip);
        m.ctx[MSG_SRC_IP6..MSG_SRC_IP6 + 16].copy_from_slice(&v6(msg_src));
        m.sk[SK_SRC_IP6..SK_SRC_IP6 + 16].copy_from_slice(&v6(sk_src));
        m.ctx[USER_IP6..USER_IP6 + 16].copy_from_slice(&v6(dst));
        let v = verdict(&mut m, Hook::Sendmsg6);
        let src: [u8; 16] = m.ctx[MSG_SRC_IP6..MSG_SRC_IP6 + 16].try_into().unwrap();
        (v, Ipv6Addr::from(src).to_string())
    };
    let ok = |a: &str| (Ok(()), a.to_string());
    assert_eq!(run("fd00:1::3", "::", "fd00:9::9", false), ok("fd00:1::3"));
    assert_eq!(
        run("fd00:2::2", "::", "fd00:9::9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(
        run("::", "fd00:2::2", "fd00:9::9", false).0,
        Err(EADDRNOTAVAIL)
    );
    assert_eq!(run("::", "::", "fd00:9::9", false), ok("::"));
    assert_eq!(run("::", "::", "fd00:9::9", true), ok("fd00:1::2"));
    assert_eq!(run("::", "::", "::1", true), ok("::"));
    assert_eq!(run("::", "fd00:1::3", "fd00:9::9", true), ok("::"));
    assert_eq!(run("::", "ff02::fb", "fd00:9::9", false), ok("::"));
}

// ---- the maps' content -------------------------------------------------------

#[test]
fn wanted_maps_hold_every_address_once_and_the_first_of_each_family() {
    let w = Wanted::new(
        &[
            ip("fd00:1::2"),
            ip("10.1.0.3"),
            ip("::ffff:10.1.0.3"),
            ip("10.1.0.2"),
            ip("fd00:1::3"),
        ],
        true,
    );
    let addrs: Vec<IpAddr> = w.keys.iter().map(|&k| maps::addr(k)).collect();
    assert_eq!(
        addrs,
        [
            ip("10.1.0.2"),
            ip("10.1.0.3"),
            ip("fd00:1::2"),
            ip("fd00:1::3")
        ]
    );
    assert_eq!(
        u32::from_ne_bytes(w.conf[..4].try_into().unwrap()),
        progs::FLAG_SINGLE_IP
    );
    assert_eq!(w.conf[4..8], v4("10.1.0.3"));
    assert_eq!(w.conf[8..24], v6("fd00:1::2"));
    // A v4-mapped address given first counts as the first IPv4 address.
    let w = Wanted::new(&[ip("::ffff:10.1.0.9"), ip("10.1.0.2")], false);
    assert_eq!(w.conf[..4], [0; 4]);
    assert_eq!(w.conf[4..8], v4("10.1.0.9"));
    assert_eq!(w.conf[8..24], [0; 16]);
}

#[test]
fn hooks_have_distinct_names_and_attach_types() {
    let mut names: Vec<&str> = Hook::ALL.iter().map(|h| h.prog_name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 6);
    assert!(names
        .iter()
        .all(|n| n.len() < 16 && n.starts_with("netctx_")));
    let types: Vec<u32> = Hook::ALL.iter().map(|h| h.attach_type()).collect();
    assert_eq!(types, [8, 9, 10, 11, 14, 15]);
}
