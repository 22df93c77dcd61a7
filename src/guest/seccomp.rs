//! The guests' seccomp filter: a small classic-BPF program built for the
//! running architecture. It answers EPERM to the system calls §3 lists (new
//! namespaces, the mount family, bpf, perf, userfaultfd, keyrings, io_uring,
//! kexec, modules, reboot, open_by_handle_at, clock setting, ptrace and
//! cross-process memory or descriptor access), to clone with a CLONE_NEW*
//! flag and to the TIOCSTI/TIOCLINUX ioctls; EAFNOSUPPORT to sockets of
//! every family but unix, inet, inet6 and netlink; ENOSYS to clone3 (whose flags a
//! filter cannot read), so that libc falls back to clone; it kills a process
//! that calls through another architecture's table (x32, i386).

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

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// System calls answered with EPERM.
/// A constant of a filter instruction: seccomp compares 32-bit words
/// (syscall numbers, errnos, ioctl requests and clone flags all fit).
fn k<T: TryInto<u32>>(v: T) -> u32 {
    v.try_into()
        .unwrap_or_else(|_| panic!("a seccomp constant wider than 32 bits"))
}

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
    let eperm = stmt(RET_K, RET_ERRNO | k(libc::EPERM));
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(JGE_K, 0x4000_0000, 0, 1), eperm]);
    for nr in denied() {
        p.extend([jump(JEQ_K, k(nr), 0, 1), eperm]);
    }
    p.extend([
        jump(JEQ_K, k(libc::SYS_clone3), 0, 1),
        stmt(RET_K, RET_ERRNO | k(libc::ENOSYS)),
        // socket(domain, …) / socketpair(domain, …): unix, inet, inet6
        // and netlink only; every other family (AF_VSOCK first: no network
        // namespace confines it) is EAFNOSUPPORT.
        jump(JEQ_K, k(libc::SYS_socket), 1, 0),
        jump(JEQ_K, k(libc::SYS_socketpair), 0, 7),
        stmt(LD_W_ABS, off_arg(0)),
        jump(JEQ_K, k(libc::AF_UNIX), 3, 0),
        jump(JEQ_K, k(libc::AF_INET), 2, 0),
        jump(JEQ_K, k(libc::AF_INET6), 1, 0),
        jump(JEQ_K, k(libc::AF_NETLINK), 0, 1),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, RET_ERRNO | k(libc::EAFNOSUPPORT)),
        // ioctl(fd, TIOCSTI | TIOCLINUX, …): EPERM.
        jump(JEQ_K, k(libc::SYS_ioctl), 0, 5),
        stmt(LD_W_ABS, off_arg(1)),
        jump(JEQ_K, k(libc::TIOCSTI), 2, 0),
        jump(JEQ_K, k(libc::TIOCLINUX), 1, 0),
        stmt(RET_K, RET_ALLOW),
        eperm,
        // clone(flags, …) with a new namespace: EPERM.
        jump(JEQ_K, k(libc::SYS_clone), 0, 3),
        stmt(LD_W_ABS, off_arg(0)),
        jump(JSET_K, CLONE_NEW_MASK, 0, 1),
        eperm,
        stmt(RET_K, RET_ALLOW),
    ]);
    p
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
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the filter uses.
    fn run(p: &[Insn], data: &[u32; 16]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = data[(i.k / 4) as usize],
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let t = match i.code {
                        JEQ_K => a == i.k,
                        JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += usize::from(if t { i.jt } else { i.jf });
                }
                c => panic!("unknown instruction {c:#x}"),
            }
        }
    }

    fn call(nr: libc::c_long, arg0: u32, arg1: u32) -> u32 {
        let mut d = [0u32; 16];
        d[0] = k(nr);
        d[1] = AUDIT_ARCH;
        d[4] = arg0;
        d[6] = arg1;
        run(&program(), &d)
    }

    #[test]
    fn answers_as_the_design_says() {
        let eperm = RET_ERRNO | k(libc::EPERM);
        for nr in denied() {
            assert_eq!(call(nr, 0, 0), eperm, "syscall {nr}");
        }
        assert_eq!(call(libc::SYS_clone3, 0, 0), RET_ERRNO | k(libc::ENOSYS));
        assert_eq!(call(libc::SYS_clone, k(libc::CLONE_NEWUSER), 0), eperm);
        assert_eq!(call(libc::SYS_clone, k(libc::CLONE_NEWNET), 0), eperm);
        let fork = k(libc::CLONE_CHILD_SETTID | libc::SIGCHLD);
        assert_eq!(call(libc::SYS_clone, fork, 0), RET_ALLOW);
        assert_eq!(call(libc::SYS_ioctl, 0, k(libc::TIOCSTI)), eperm);
        assert_eq!(call(libc::SYS_ioctl, 0, k(libc::TIOCGWINSZ)), RET_ALLOW);
        for ok in [libc::SYS_read, libc::SYS_execve] {
            assert_eq!(call(ok, 0, 0), RET_ALLOW);
        }
        for nr in [libc::SYS_socket, libc::SYS_socketpair] {
            for f in [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ] {
                assert_eq!(call(nr, k(f), 0), RET_ALLOW, "family {f}");
            }
            for f in [
                libc::AF_VSOCK,
                libc::AF_PACKET,
                libc::AF_ALG,
                libc::AF_XDP,
                0,
                255,
            ] {
                assert_eq!(
                    call(nr, k(f), 0),
                    RET_ERRNO | k(libc::EAFNOSUPPORT),
                    "family {f}"
                );
            }
        }
        let mut other = [0u32; 16];
        other[1] = 0x4000_0003; // i386
        assert_eq!(run(&program(), &other), RET_KILL_PROCESS);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(call(0x4000_0000 | libc::SYS_read, 0, 0), eperm);
    }

    #[test]
    fn the_kernel_accepts_and_enforces_it() {
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain prctl/unshare/syscall; _exit ends the child.
                unsafe {
                    let ok = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                        && install(&program()).is_ok()
                        && libc::unshare(libc::CLONE_NEWUSER) == -1
                        && *libc::__errno_location() == libc::EPERM
                        && libc::syscall(libc::SYS_clone3, 0, 0) == -1
                        && *libc::__errno_location() == libc::ENOSYS
                        && libc::getpid() > 0;
                    libc::_exit(if ok { 0 } else { 1 });
                }
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
            }
        }
    }
}
