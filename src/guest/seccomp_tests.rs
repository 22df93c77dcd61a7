use super::*;

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

/// The program as it was written before the assembler, every offset
/// counted by hand: the reference the assembled one must equal.
fn hand_counted() -> Vec<Insn> {
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
        jump(JEQ_K, k(libc::SYS_socket), 1, 0),
        jump(JEQ_K, k(libc::SYS_socketpair), 0, 7),
        stmt(LD_W_ABS, off_arg(0)),
        jump(JEQ_K, k(libc::AF_UNIX), 3, 0),
        jump(JEQ_K, k(libc::AF_INET), 2, 0),
        jump(JEQ_K, k(libc::AF_INET6), 1, 0),
        jump(JEQ_K, k(libc::AF_NETLINK), 0, 1),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, RET_ERRNO | k(libc::EAFNOSUPPORT)),
        jump(JEQ_K, k(libc::SYS_ioctl), 0, 5),
        stmt(LD_W_ABS, off_arg(1)),
        jump(JEQ_K, k(libc::TIOCSTI), 2, 0),
        jump(JEQ_K, k(libc::TIOCLINUX), 1, 0),
        stmt(RET_K, RET_ALLOW),
        eperm,
        jump(JEQ_K, k(libc::SYS_clone), 0, 3),
        stmt(LD_W_ABS, off_arg(0)),
        jump(JSET_K, CLONE_NEW_MASK, 0, 1),
        eperm,
        stmt(RET_K, RET_ALLOW),
    ]);
    p
}

/// struct sock_filter as the kernel reads it.
fn bytes(p: &[Insn]) -> Vec<u8> {
    p.iter()
        .flat_map(|i| {
            let mut b = i.code.to_ne_bytes().to_vec();
            b.extend([i.jt, i.jf]);
            b.extend(i.k.to_ne_bytes());
            b
        })
        .collect()
}

#[test]
fn the_assembled_program_is_the_hand_counted_one() {
    assert_eq!(std::mem::size_of::<Insn>(), 8);
    assert_eq!(bytes(&program()), bytes(&hand_counted()));
    assert_eq!(program(), hand_counted());
}

#[test]
fn labels_resolve_forward_jumps_of_both_branches() {
    let mut a = Asm::default();
    let (t, f) = (a.label(), a.label());
    a.stmt(LD_W_ABS, 0);
    a.jump(JEQ_K, 7, To::Label(t), To::Label(f));
    a.stmt(RET_K, 1);
    a.bind(t);
    a.stmt(RET_K, 2);
    a.bind(f);
    a.stmt(RET_K, 3);
    let p = a.finish();
    assert_eq!((p[1].jt, p[1].jf), (1, 2));
    assert_eq!(run(&p, &[7; 16]), 2);
    assert_eq!(run(&p, &[8; 16]), 3);
}

#[test]
#[should_panic(expected = "not 0..=255 ahead")]
fn a_jump_beyond_255_instructions_is_refused() {
    let mut a = Asm::default();
    let far = a.label();
    a.jump(JEQ_K, 0, To::Label(far), To::Next);
    for _ in 0..256 {
        a.stmt(LD_W_ABS, 0);
    }
    a.bind(far);
    a.stmt(RET_K, RET_ALLOW);
    a.finish();
}

#[test]
#[should_panic(expected = "not 0..=255 ahead")]
fn a_backward_jump_is_refused() {
    let mut a = Asm::default();
    let back = a.label();
    a.bind(back);
    a.stmt(LD_W_ABS, 0);
    a.jump(JEQ_K, 0, To::Next, To::Label(back));
    a.finish();
}

#[test]
#[should_panic(expected = "never placed")]
fn an_unplaced_label_is_refused() {
    let mut a = Asm::default();
    let nowhere = a.label();
    a.jump(JEQ_K, 0, To::Label(nowhere), To::Next);
    a.finish();
}

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
    use nix::errno::Errno;
    let p = program();
    // SAFETY: the child only makes system calls (the filter is built
    // before the fork) and exits.
    match unsafe { libc::fork() } {
        0 => {
            let ok = nix::sys::prctl::set_no_new_privs().is_ok()
                && install(&p).is_ok()
                && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                    == Err(Errno::EPERM)
                // SAFETY: clone3 with no arguments: under the filter
                // ENOSYS, else EINVAL (a size of 0); never a clone.
                && unsafe { libc::syscall(libc::SYS_clone3, 0, 0) } == -1
                && Errno::last() == Errno::ENOSYS
                && nix::unistd::getpid().as_raw() > 0;
            crate::kernel::sys::exit_now(if ok { 0 } else { 1 });
        }
        pid => {
            let st = crate::kernel::sys::waitpid(pid, 0)
                .ok()
                .flatten()
                .unwrap_or(0);
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        }
    }
}
