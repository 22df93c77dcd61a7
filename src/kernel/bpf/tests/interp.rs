//! A tiny interpreter for the instructions the programs use, so their
//! behaviour is unit-tested without root or a kernel: the context, the
//! socket behind `ctx->sk`, the stack, the two maps and the three helpers
//! are modelled; anything else panics (an instruction the programs should
//! not contain).

use std::collections::HashSet;

use crate::kernel::bpf::insn::*;

pub const ALLOW_FD: i32 = 0x11;
pub const CONF_FD: i32 = 0x22;
const CTX_SK: i64 = 64;
const STACK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Ctx,
    Sk,
    Stack,
    Map(i32),
    AllowValue,
    ConfValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Scalar(u64),
    Ptr(Region, i64),
}

/// What a program runs against, and what it did.
pub struct Machine {
    pub ctx: [u8; 72],
    pub sk: [u8; 80],
    pub stack: [u8; STACK],
    pub allow: HashSet<[u8; 16]>,
    pub conf: Option<[u8; 24]>,
    /// What `bpf_bind` returns.
    pub bind_result: i64,
    /// The sockaddr bytes `bpf_bind` was called with.
    pub bound: Option<Vec<u8>>,
    /// The last `bpf_set_retval` argument.
    pub retval: Option<i32>,
    /// What `bpf_get_current_uid_gid` answers (gid << 32 | uid).
    pub uid_gid: u64,
    allow_value: [u8; 1],
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            ctx: [0; 72],
            sk: [0; 80],
            stack: [0; STACK],
            allow: HashSet::new(),
            conf: None,
            bind_result: 0,
            bound: None,
            retval: None,
            uid_gid: 0,
            allow_value: [1],
        }
    }

    fn mem(&mut self, r: Region) -> &mut [u8] {
        match r {
            Region::Ctx => &mut self.ctx,
            Region::Sk => &mut self.sk,
            Region::Stack => &mut self.stack,
            Region::AllowValue => &mut self.allow_value,
            Region::ConfValue => self.conf.as_mut().expect("conf looked up"),
            Region::Map(_) => panic!("load or store through a map pointer"),
        }
    }

    fn load(&mut self, v: Val, off: i16, size: u8) -> Val {
        let Val::Ptr(r, base) = v else {
            panic!("load through scalar {v:?}")
        };
        let at = base + i64::from(off);
        if r == Region::Ctx && at == CTX_SK {
            assert_eq!(size, BPF_DW, "ctx->sk is read as 8 bytes");
            return Val::Ptr(Region::Sk, 0);
        }
        let n = width(size);
        let at = usize::try_from(at).expect("in bounds");
        let m = self.mem(r);
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&m[at..at + n]);
        Val::Scalar(u64::from_le_bytes(b))
    }

    fn store(&mut self, v: Val, off: i16, size: u8, x: Val) {
        let Val::Ptr(r, base) = v else {
            panic!("store through scalar {v:?}")
        };
        let Val::Scalar(x) = x else {
            panic!("storing a pointer")
        };
        let n = width(size);
        let at = usize::try_from(base + i64::from(off)).expect("in bounds");
        assert!(
            r != Region::Ctx || at != CTX_SK as usize,
            "ctx->sk is read-only"
        );
        self.mem(r)[at..at + n].copy_from_slice(&x.to_le_bytes()[..n]);
    }

    fn stack_bytes(&self, v: Val, n: usize) -> Vec<u8> {
        let Val::Ptr(Region::Stack, off) = v else {
            panic!("helper argument {v:?} is not on the stack")
        };
        let at = usize::try_from(off).expect("in bounds");
        self.stack[at..at + n].to_vec()
    }

    fn call(&mut self, imm: i32, r: &[Val; 11]) -> Val {
        match imm {
            x if x == Helper::MapLookupElem as i32 => match r[1] {
                Val::Ptr(Region::Map(ALLOW_FD), 0) => {
                    let k: [u8; 16] = self.stack_bytes(r[2], 16).try_into().unwrap();
                    if self.allow.contains(&k) {
                        Val::Ptr(Region::AllowValue, 0)
                    } else {
                        Val::Scalar(0)
                    }
                }
                Val::Ptr(Region::Map(CONF_FD), 0) => {
                    assert_eq!(self.stack_bytes(r[2], 4), [0; 4]);
                    match self.conf {
                        Some(_) => Val::Ptr(Region::ConfValue, 0),
                        None => Val::Scalar(0),
                    }
                }
                other => panic!("lookup in {other:?}"),
            },
            x if x == Helper::Bind as i32 => {
                assert_eq!(r[1], Val::Ptr(Region::Ctx, 0), "bpf_bind(ctx, …)");
                let Val::Scalar(len) = r[3] else {
                    panic!("length")
                };
                self.bound = Some(self.stack_bytes(r[2], usize::try_from(len).unwrap()));
                Val::Scalar(self.bind_result as u64)
            }
            x if x == Helper::SetRetval as i32 => {
                let Val::Scalar(v) = r[1] else {
                    panic!("retval")
                };
                self.retval = Some(v as i64 as i32);
                Val::Scalar(0)
            }
            x if x == Helper::GetCurrentUidGid as i32 => Val::Scalar(self.uid_gid),
            other => panic!("helper {other}"),
        }
    }

    /// Run `prog`; its return value.
    pub fn run(&mut self, prog: &[Insn]) -> u64 {
        let mut r = [Val::Scalar(0); 11];
        r[1] = Val::Ptr(Region::Ctx, 0);
        r[10] = Val::Ptr(Region::Stack, STACK as i64);
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let (d, s) = (usize::from(i.dst()), usize::from(i.src()));
            pc += 1;
            let class = i.code & 0x07;
            match class {
                BPF_ALU64 | BPF_ALU => r[d] = alu(i, r[d], r[s], class == BPF_ALU),
                BPF_LDX => r[d] = self.load(r[s], i.off, i.code & 0x18),
                BPF_STX => self.store(r[d], i.off, i.code & 0x18, r[s]),
                BPF_ST => self.store(r[d], i.off, i.code & 0x18, Val::Scalar(i.imm as i64 as u64)),
                BPF_LD => {
                    assert_eq!(i.code, BPF_LD | BPF_DW | BPF_IMM);
                    assert_eq!(i.src(), BPF_PSEUDO_MAP_FD);
                    r[d] = Val::Ptr(Region::Map(i.imm), 0);
                    pc += 1;
                }
                BPF_JMP | BPF_JMP32 => match i.code & 0xf0 {
                    BPF_EXIT => {
                        let Val::Scalar(v) = r[0] else {
                            panic!("returning a pointer")
                        };
                        return v;
                    }
                    BPF_CALL => {
                        r[0] = self.call(i.imm, &r);
                        for x in &mut r[1..=5] {
                            *x = Val::Scalar(0xdead_beef);
                        }
                    }
                    op => {
                        if jump(op, r[d], i.imm, class == BPF_JMP32) {
                            pc = usize::try_from(pc as i64 + i64::from(i.off)).unwrap();
                        }
                    }
                },
                _ => panic!("instruction {i:?}"),
            }
        }
        panic!("no exit after 10000 instructions")
    }
}

fn width(size: u8) -> usize {
    match size {
        BPF_W => 4,
        BPF_DW => 8,
        _ => panic!("size {size:#x}"),
    }
}

fn alu(i: Insn, dst: Val, src: Val, w32: bool) -> Val {
    let k = Val::Scalar(i.imm as i64 as u64);
    let operand = if i.code & BPF_X != 0 { src } else { k };
    let v = match (i.code & 0xf0, dst, operand) {
        (BPF_MOV, _, x) => x,
        (BPF_ADD, Val::Ptr(r, o), Val::Scalar(x)) => Val::Ptr(r, o + x as i64),
        (BPF_ADD, Val::Scalar(a), Val::Scalar(b)) => Val::Scalar(a.wrapping_add(b)),
        (BPF_AND, Val::Scalar(a), Val::Scalar(b)) => Val::Scalar(a & b),
        (BPF_OR, Val::Scalar(a), Val::Scalar(b)) => Val::Scalar(a | b),
        (BPF_RSH, Val::Scalar(a), Val::Scalar(b)) if w32 => Val::Scalar((a & 0xffff_ffff) >> b),
        (BPF_RSH, Val::Scalar(a), Val::Scalar(b)) => Val::Scalar(a >> b),
        other => panic!("alu {i:?} on {other:?}"),
    };
    match (w32, v) {
        (true, Val::Scalar(x)) => Val::Scalar(x & 0xffff_ffff),
        (true, p) => panic!("32-bit alu on a pointer {p:?}"),
        (false, v) => v,
    }
}

fn jump(op: u8, dst: Val, imm: i32, w32: bool) -> bool {
    if op == BPF_JA {
        return true;
    }
    let (a, b) = match (dst, w32) {
        (Val::Scalar(x), true) => (x & 0xffff_ffff, u64::from(imm as u32)),
        (Val::Scalar(x), false) => (x, imm as i64 as u64),
        (Val::Ptr(..), false) => {
            assert_eq!(imm, 0, "pointers are compared with NULL only");
            (1, 0)
        }
        (Val::Ptr(..), true) => panic!("JMP32 on a pointer"),
    };
    match op {
        BPF_JEQ => a == b,
        BPF_JNE => a != b,
        _ => panic!("jump op {op:#x}"),
    }
}
