//! A small, pure eBPF instruction encoder: `struct bpf_insn` and an
//! assembler with labels. Opcode, register and helper names follow
//! `linux/bpf_common.h` and `linux/bpf.h`. Nothing here talks to the kernel.

use std::fmt;

// Instruction classes (bpf_common.h; JMP32 and ALU64 from bpf.h).
pub const BPF_LDX: u8 = 0x01;
pub const BPF_LD: u8 = 0x00;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Sizes of loads and stores.
pub const BPF_W: u8 = 0x00;
pub const BPF_DW: u8 = 0x18;

// Modes of loads and stores.
pub const BPF_IMM: u8 = 0x00;
pub const BPF_MEM: u8 = 0x60;

// ALU operations.
pub const BPF_ADD: u8 = 0x00;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_MOV: u8 = 0xb0;

// Operand source: the immediate or the source register.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// Jump operations.
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;

/// `src_reg` of a 64-bit immediate load that names a map by its fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;

/// The eleven registers; R10 is the read-only frame pointer.
#[allow(dead_code)] // all of them, as in linux/bpf.h, used or not
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// The frame pointer.
pub const FP: Reg = Reg::R10;

/// Kernel helpers the programs call (`enum bpf_func_id`), with the kernel
/// that introduced each: all are older than 6.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Helper {
    /// `bpf_map_lookup_elem` (3.18).
    MapLookupElem = 1,
    /// `bpf_bind` (4.17), only in the connect hooks.
    Bind = 64,
    /// `bpf_set_retval` (5.18), every cgroup sock_addr hook.
    SetRetval = 187,
    /// `bpf_get_current_uid_gid` (4.2): gid << 32 | uid, host ids.
    GetCurrentUidGid = 15,
}

/// One `struct bpf_insn`: `code`, `dst_reg:4` (low nibble) and
/// `src_reg:4` (high nibble) in one byte on little-endian hosts, `off`,
/// `imm`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst as u8) | ((src as u8) << 4),
            off,
            imm,
        }
    }

    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    pub fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// The eight bytes the kernel reads (x86_64 and aarch64: little-endian).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{code {:#04x} dst r{} src r{} off {} imm {}}}",
            self.code,
            self.dst(),
            self.src(),
            self.off,
            self.imm
        )
    }
}

/// A jump target, placed with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("label {0} is used but never placed")]
    Unplaced(usize),
    #[error("jump from instruction {from} to {to} does not fit 16 bits")]
    TooFar { from: usize, to: usize },
}

/// An assembler: instructions in order, jumps to labels resolved by
/// [`Asm::finish`].
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Place `l` at the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }

    /// `dst = imm` (64-bit, imm sign-extended).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) {
        self.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, Reg::R0, 0, imm));
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(&mut self, dst: Reg, src: Reg) {
        self.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0));
    }

    /// `dst = (u32) src`.
    pub fn mov32_reg(&mut self, dst: Reg, src: Reg) {
        self.push(Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0));
    }

    /// `dst += imm` (64-bit).
    pub fn add64_imm(&mut self, dst: Reg, imm: i32) {
        self.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, Reg::R0, 0, imm));
    }

    /// `dst = (u32) dst & imm`.
    pub fn and32_imm(&mut self, dst: Reg, imm: i32) {
        self.push(Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, Reg::R0, 0, imm));
    }

    /// `dst = (u32) dst >> imm`.
    pub fn rsh32_imm(&mut self, dst: Reg, imm: i32) {
        self.push(Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, Reg::R0, 0, imm));
    }

    /// `dst |= src` (64-bit).
    pub fn or64_reg(&mut self, dst: Reg, src: Reg) {
        self.push(Insn::new(BPF_ALU64 | BPF_OR | BPF_X, dst, src, 0, 0));
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: u8, dst: Reg, src: Reg, off: i16) {
        self.push(Insn::new(BPF_LDX | size | BPF_MEM, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: u8, dst: Reg, off: i16, src: Reg) {
        self.push(Insn::new(BPF_STX | size | BPF_MEM, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = imm` (not allowed into the context).
    pub fn st(&mut self, size: u8, dst: Reg, off: i16, imm: i32) {
        self.push(Insn::new(BPF_ST | size | BPF_MEM, dst, Reg::R0, off, imm));
    }

    /// `dst = map` (two instructions: BPF_LD | BPF_DW | BPF_IMM with
    /// src_reg = BPF_PSEUDO_MAP_FD; the kernel replaces the fd).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) {
        let mut first = Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst, Reg::R0, 0, fd);
        first.regs |= BPF_PSEUDO_MAP_FD << 4;
        self.push(first);
        self.push(Insn::new(0, Reg::R0, Reg::R0, 0, 0));
    }

    pub fn call(&mut self, h: Helper) {
        self.push(Insn::new(BPF_JMP | BPF_CALL, Reg::R0, Reg::R0, 0, h as i32));
    }

    pub fn exit(&mut self) {
        self.push(Insn::new(BPF_JMP | BPF_EXIT, Reg::R0, Reg::R0, 0, 0));
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(code, dst, src, 0, imm));
    }

    /// `if (u32) dst OP (u32) imm goto to` — compares 32 bits exactly.
    pub fn jmp32_imm(&mut self, op: u8, dst: Reg, imm: i32, to: Label) {
        self.jump(BPF_JMP32 | op | BPF_K, dst, Reg::R0, imm, to);
    }

    /// `if dst OP (s64) imm goto to` — 64-bit, for pointers and helper
    /// results (the immediate is sign-extended: use only small values).
    pub fn jmp64_imm(&mut self, op: u8, dst: Reg, imm: i32, to: Label) {
        self.jump(BPF_JMP | op | BPF_K, dst, Reg::R0, imm, to);
    }

    pub fn ja(&mut self, to: Label) {
        self.jump(BPF_JMP | BPF_JA, Reg::R0, Reg::R0, 0, to);
    }

    /// Resolve the jumps.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let to = self.labels[l.0].ok_or(AsmError::Unplaced(l.0))?;
            let delta = if to > at {
                i16::try_from(to - at - 1).ok()
            } else {
                i16::try_from(at + 1 - to).ok().map(|d| -d)
            };
            self.insns[at].off = delta.ok_or(AsmError::TooFar { from: at, to })?;
        }
        Ok(self.insns)
    }
}
