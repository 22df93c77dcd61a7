//! The guests' seccomp filter: a small classic-BPF program built for the
//! running architecture. It answers EPERM to the system calls docs/guests.md lists (new
//! namespaces, the mount family, bpf, perf, userfaultfd, keyrings, io_uring,
//! kexec, modules, reboot, open_by_handle_at, clock setting, ptrace and
//! cross-process memory or descriptor access), to clone with a CLONE_NEW*
//! flag and to the TIOCSTI/TIOCLINUX ioctls; EAFNOSUPPORT to sockets of
//! every family but unix, inet, inet6 and netlink; ENOSYS to clone3 (whose flags a
//! filter cannot read), so that libc falls back to clone; it kills a process
//! that calls through another architecture's table (x32, i386). The program
//! is assembled with labels (`Asm`, as `kernel::bpf::insn` does for eBPF):
//! no jump offset is counted by hand.

use std::io;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

// struct seccomp_data: nr, arch, instruction_pointer, args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of argument `i` (little-endian).
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Every CLONE_NEW* flag clone(2) takes.
const CLONE_NEW_MASK: u32 = 0x7e02_0000;

/// A jump target, placed with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

/// Where a conditional jump goes when its test holds (or fails).
#[derive(Debug, Clone, Copy)]
enum To {
    /// On to the next instruction.
    Next,
    Label(Label),
}

/// A classic-BPF assembler: instructions in order, conditional jumps to
/// labels resolved by [`Asm::finish`], so no offset is counted by hand.
/// Classic BPF jumps only forward, by at most 255 instructions (jt and jf
/// are u8): anything else is a bug in the program, and `finish` panics.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (instruction, its jt (true) or jf (false), the label it goes to).
    fixups: Vec<(usize, bool, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Place `l` at the next instruction.
    fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label {} placed twice", l.0);
        self.labels[l.0] = Some(self.insns.len());
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    /// `if (A code k) goto jt else goto jf`.
    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        let at = self.insns.len();
        for (branch, to) in [(true, jt), (false, jf)] {
            if let To::Label(l) = to {
                self.fixups.push((at, branch, l));
            }
        }
        self.insns.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    /// `if (A code k) return ret`, else on.
    fn ret_if(&mut self, code: u16, k: u32, ret: u32) {
        let on = self.label();
        self.jump(code, k, To::Next, To::Label(on));
        self.stmt(RET_K, ret);
        self.bind(on);
    }

    /// The program, its jumps resolved.
    fn finish(mut self) -> Vec<Insn> {
        for &(at, branch, l) in &self.fixups {
            let to = self.labels[l.0].unwrap_or_else(|| panic!("label {} never placed", l.0));
            let off = to
                .checked_sub(at + 1)
                .and_then(|d| u8::try_from(d).ok())
                .unwrap_or_else(|| panic!("a jump from {at} to {to}: not 0..=255 ahead"));
            let i = &mut self.insns[at];
            *(if branch { &mut i.jt } else { &mut i.jf }) = off;
        }
        self.insns
    }
}

/// A constant of a filter instruction: seccomp compares 32-bit words
/// (syscall numbers, errnos, ioctl requests and clone flags all fit).
fn k<T: TryInto<u32>>(v: T) -> u32 {
    v.try_into()
        .unwrap_or_else(|_| panic!("a seccomp constant wider than 32 bits"))
}

/// System calls answered with EPERM.
pub fn denied() -> Vec<libc::c_long> {
    use libc::*;
    let mut v = vec![
        SYS_unshare,
        SYS_setns,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_move_mount,
        SYS_open_tree,
        SYS_fsopen,
        SYS_fsmount,
        SYS_fsconfig,
        SYS_fspick,
        SYS_mount_setattr,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_userfaultfd,
        SYS_add_key,
        SYS_request_key,
        SYS_keyctl,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_reboot,
        SYS_open_by_handle_at,
        SYS_settimeofday,
        SYS_clock_settime,
        SYS_clock_adjtime,
        SYS_adjtimex,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_pidfd_getfd,
        SYS_swapon,
        SYS_swapoff,
        SYS_acct,
        SYS_quotactl,
        SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([SYS_iopl, SYS_ioperm, SYS_uselib]);
    v
}

/// The filter program.
pub fn program() -> Vec<Insn> {
    let eperm = RET_ERRNO | k(libc::EPERM);
    let mut a = Asm::default();
    // Another architecture's table: kill.
    let native = a.label();
    a.stmt(LD_W_ABS, OFF_ARCH);
    a.jump(JEQ_K, AUDIT_ARCH, To::Label(native), To::Next);
    a.stmt(RET_K, RET_KILL_PROCESS);
    a.bind(native);
    a.stmt(LD_W_ABS, OFF_NR);
    // x32's numbers (bit 30 set).
    #[cfg(target_arch = "x86_64")]
    a.ret_if(JGE_K, 0x4000_0000, eperm);
    for nr in denied() {
        a.ret_if(JEQ_K, k(nr), eperm);
    }
    a.ret_if(JEQ_K, k(libc::SYS_clone3), RET_ERRNO | k(libc::ENOSYS));
    // socket(domain, …) / socketpair(domain, …): unix, inet, inet6 and
    // netlink only; every other family (AF_VSOCK first: no network
    // namespace confines it) is EAFNOSUPPORT.
    let (family, not_socket, allowed, refused) = (a.label(), a.label(), a.label(), a.label());
    a.jump(JEQ_K, k(libc::SYS_socket), To::Label(family), To::Next);
    a.jump(
        JEQ_K,
        k(libc::SYS_socketpair),
        To::Next,
        To::Label(not_socket),
    );
    a.bind(family);
    a.stmt(LD_W_ABS, off_arg(0));
    for f in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6] {
        a.jump(JEQ_K, k(f), To::Label(allowed), To::Next);
    }
    a.jump(JEQ_K, k(libc::AF_NETLINK), To::Next, To::Label(refused));
    a.bind(allowed);
    a.stmt(RET_K, RET_ALLOW);
    a.bind(refused);
    a.stmt(RET_K, RET_ERRNO | k(libc::EAFNOSUPPORT));
    // ioctl(fd, TIOCSTI | TIOCLINUX, …): EPERM.
    let (not_ioctl, deny) = (a.label(), a.label());
    a.bind(not_socket);
    a.jump(JEQ_K, k(libc::SYS_ioctl), To::Next, To::Label(not_ioctl));
    a.stmt(LD_W_ABS, off_arg(1));
    for req in [libc::TIOCSTI, libc::TIOCLINUX] {
        a.jump(JEQ_K, k(req), To::Label(deny), To::Next);
    }
    a.stmt(RET_K, RET_ALLOW);
    a.bind(deny);
    a.stmt(RET_K, eperm);
    // clone(flags, …) with a new namespace: EPERM.
    let allow = a.label();
    a.bind(not_ioctl);
    a.jump(JEQ_K, k(libc::SYS_clone), To::Next, To::Label(allow));
    a.stmt(LD_W_ABS, off_arg(0));
    a.jump(JSET_K, CLONE_NEW_MASK, To::Next, To::Label(allow));
    a.stmt(RET_K, eperm);
    a.bind(allow);
    a.stmt(RET_K, RET_ALLOW);
    a.finish()
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const Insn,
}

/// Install the filter on the calling thread (no_new_privs must be set).
pub fn install(p: &[Insn]) -> io::Result<()> {
    let prog = SockFprog {
        len: libc::c_ushort::try_from(p.len())
            .map_err(|_| io::Error::other("seccomp filter too long"))?,
        filter: p.as_ptr(),
    };
    // SAFETY: seccomp(2) reads `prog`, which points at `p`, for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const SockFprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
