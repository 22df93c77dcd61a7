//! Attacks a hostile guest would try, one subcommand each, for the
//! integration tests (`integration/attacks.rs`). Exit status: 0 and a line
//! `ESCAPED: …` when the attack worked, 1 and `refused: …` lines when it did
//! not, 2 on a usage error. Nothing is damaged when an attack works: memory
//! and sysctls are written with the values they already hold, files are
//! opened for appending and nothing is appended.
//!
//!     attack ptrace PID|parent|netctx…     PTRACE_ATTACH + /proc/PID/mem write
//!     attack pidfd-getfd PID FD            take a descriptor out of a process
//!     attack kill PID                      SIGKILL a process
//!     attack tiocsti TEXT                  push TEXT + newline into the terminal
//!     attack fd N                          use an inherited descriptor N
//!     attack env NAME…                     read the caller's environment
//!     attack write PATH…                   open files for writing
//!     attack create DIR…                   create a file in each directory
//!     attack mknod PATH                    make a character device (1,3)
//!     attack sysctl [NAME…]                rewrite net sysctls with their value
//!     attack settime                       settimeofday's permission check
//!     attack userns                        unshare(CLONE_NEWUSER)
//!     attack unix PATH                     connect to a unix socket
//!     attack raw                           raw IPv4 and packet sockets
//!     attack named HEX PORT SECS           rename itself to the bytes HEX,
//!                                          hold UDP PORT on 0.0.0.0 for SECS
//!     attack families                      sockets no network namespace
//!                                          confines (AF_VSOCK, AF_XDP, AF_ALG…)
//!     attack daemon MARKER                 double fork + setsid, then exit
//!     attack forks N                       fork N children (a fork loop)
//!     attack qdisc IFNAME                  remove, then replace, the link's
//!                                          root qdisc (rtnetlink)
//!     attack spew BYTES MARKER SECS        BYTES of output, MARKER, wait SECS
//!     attack read PATH…                    open files for reading
//!     attack ipc-find shm|msg|sem|mq KEY   reach an IPC object by its key (or
//!                                          POSIX name /netctx-KEY)
//!     attack snoop SECS MARKER             for SECS, every netctx process in
//!                                          sight (a jail being built): read
//!                                          its environment and command line
//!                                          for MARKER, attach
//! Helpers run by the tests outside the guest:
//!     attack victim [UID]                  sleep as UID, print the pid
//!     attack sleeper MARKER                sleep, ignoring SIGTERM and SIGHUP
//!     attack listen-unix PATH SECS         a unix socket daemon
//!     attack wrap-fd PORT -- CMD…          exec CMD with a UDP socket on fd 5
//!     attack ipc-make shm|msg|sem|mq KEY   make an IPC object (mode 0666)
//!     attack swap A B SECS                 exchange two names in a loop
//!                                          (renameat2 RENAME_EXCHANGE)
//!     attack as UID GID -- CMD…            exec CMD as UID:GID, no groups

use std::ffi::CString;
use std::io::{Error, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;

fn escaped(what: &str) -> ! {
    println!("ESCAPED: {what}");
    std::process::exit(0)
}

fn refused(what: &str, e: &Error) {
    println!("refused: {what}: {e}");
}

fn usage() -> ! {
    eprintln!("attack: bad usage (see examples/attack.rs)");
    std::process::exit(2)
}

fn check(r: libc::c_long) -> Result<libc::c_long, Error> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| usage())
}

/// Pids named by the arguments: numbers, `parent` (getppid) and `netctx`
/// (every visible process called netctx).
fn targets(args: &[String]) -> Vec<i32> {
    let mut out = Vec::new();
    for a in args {
        match a.as_str() {
            // SAFETY: getppid has no preconditions.
            "parent" => out.push(unsafe { libc::getppid() }),
            "netctx" => {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                        continue;
                    };
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
                    if comm.is_ok_and(|c| c.trim() == "netctx") && pid != std::process::id() as i32
                    {
                        out.push(pid);
                    }
                }
            }
            n => out.push(n.parse().unwrap_or_else(|_| usage())),
        }
    }
    out
}

/// Rewrite 8 bytes of the first writable mapping with what they hold.
fn mem_write(pid: i32) -> Result<(), Error> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let start = maps
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("rw"))
        })
        .and_then(|l| l.split('-').next())
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .ok_or_else(|| Error::other("no writable mapping"))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    let mut buf = [0u8; 8];
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut buf)?;
    f.seek(SeekFrom::Start(start))?;
    f.write_all(&buf)
}

fn ptrace(args: &[String]) {
    let pids = targets(args);
    if pids.is_empty() || pids == [0] {
        println!("refused: no target process is visible");
    }
    for pid in pids.into_iter().filter(|p| *p > 0) {
        // SAFETY: ptrace with integer arguments; a success is undone below.
        let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
        match check(r) {
            Ok(_) => {
                // SAFETY: waiting for the attached tracee, then detaching.
                unsafe {
                    libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
                    libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                }
                escaped(&format!("PTRACE_ATTACH to pid {pid}"));
            }
            Err(e) => refused(&format!("PTRACE_ATTACH to pid {pid}"), &e),
        }
        match mem_write(pid) {
            Ok(()) => escaped(&format!("wrote /proc/{pid}/mem")),
            Err(e) => refused(&format!("writing /proc/{pid}/mem"), &e),
        }
    }
}

/// For `secs` seconds, every process named netctx in sight — a jail
/// between its clone and the guest command's exec — has its environment
/// and command line read (MARKER is in the caller's) and is PTRACE_ATTACHed (an attach
/// counts only if the process is still netctx once stopped: after its exec
/// it is the guest's own command). Prints how many it saw.
fn snoop(secs: u64, marker: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut seen = std::collections::HashSet::new();
    let mut last = None;
    while std::time::Instant::now() < end {
        // Not the context's init (PID 1): it is netctx too, and not a jail.
        for pid in targets(&["netctx".into()]).into_iter().filter(|p| *p != 1) {
            seen.insert(pid);
            for what in ["environ", "cmdline"] {
                match std::fs::read(format!("/proc/{pid}/{what}")) {
                    // Read while it was still netctx (after its exec, the
                    // guest's own command may carry MARKER).
                    Ok(b)
                        if b.windows(marker.len()).any(|w| w == marker.as_bytes())
                            && is_netctx(pid) =>
                    {
                        escaped(&format!("read the caller's MARKER in /proc/{pid}/{what}"))
                    }
                    Ok(_) => {}
                    Err(e) => last = Some(format!("reading /proc/{pid}/{what}: {e}")),
                }
            }
            // SAFETY: ptrace with integer arguments; a success is undone below.
            if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) } == 0 {
                // SAFETY: waiting for the attached tracee, then detaching.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
                let jail = is_netctx(pid);
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
                if jail {
                    escaped(&format!("PTRACE_ATTACH to the jail, pid {pid}"));
                }
            } else {
                last = Some(format!(
                    "PTRACE_ATTACH to {pid}: {}",
                    Error::last_os_error()
                ));
            }
        }
    }
    println!(
        "refused: saw {} netctx processes; last: {last:?}",
        seen.len()
    );
}

fn is_netctx(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "netctx")
}

fn pidfd_getfd(pid: i32, fd: i32) {
    // SAFETY: plain system calls with integer arguments.
    let r = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).and_then(|pidfd| {
        // SAFETY: as above.
        check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) })
    });
    match r {
        Ok(got) => escaped(&format!("took fd {fd} of pid {pid} as fd {got}")),
        Err(e) => refused(&format!("pidfd_getfd of pid {pid}"), &e),
    }
}

/// SIGKILL a process; it worked if the process is gone (a PID namespace's
/// init ignores it from inside, and kill still returns 0).
fn kill(pid: i32) {
    // SAFETY: kill with integer arguments.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return refused(&format!("kill {pid}"), &Error::last_os_error());
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = stat
        .rsplit(')')
        .next()
        .is_some_and(|s| !s.trim_start().starts_with('Z') && !s.is_empty());
    if !alive {
        escaped(&format!("killed pid {pid}"));
    }
    println!("refused: pid {pid} survived SIGKILL");
}

fn tiocsti(text: &str) {
    let mut fds = vec![0, 1, 2];
    // SAFETY: open with a valid C string.
    let tty = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if tty >= 0 {
        fds.push(tty);
    }
    let line = format!("{text}\n");
    for fd in fds {
        let mut ok = true;
        for b in line.bytes() {
            // SAFETY: TIOCSTI reads one byte through the pointer.
            if unsafe { libc::ioctl(fd, libc::TIOCSTI, &b as *const u8) } < 0 {
                refused(&format!("TIOCSTI on fd {fd}"), &Error::last_os_error());
                ok = false;
                break;
            }
        }
        if ok {
            escaped(&format!("pushed {text:?} into the terminal on fd {fd}"));
        }
    }
}

fn inherited_fd(fd: i32) {
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return refused(&format!("fd {fd}"), &Error::last_os_error());
    }
    // SAFETY: send on whatever the descriptor is; a failure is reported.
    let sent = unsafe { libc::send(fd, b"leak".as_ptr().cast(), 4, 0) };
    escaped(&format!("fd {fd} is open (send returned {sent})"));
}

fn write_files(paths: &[String], create: bool) {
    for p in paths {
        let path = if create {
            format!("{p}/.netctx-attack-{}", std::process::id())
        } else {
            p.clone()
        };
        let r = std::fs::OpenOptions::new()
            .append(true)
            .create_new(create)
            .open(&path);
        match r {
            Ok(_) => {
                if create {
                    let _ = std::fs::remove_file(&path);
                }
                escaped(&format!("opened {path} for writing"));
            }
            Err(e) => refused(&format!("writing {path}"), &e),
        }
    }
}

fn mknod(path: &str) {
    let c = cstr(path);
    // SAFETY: mknod with a valid C string; the node is removed at once.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    if r == 0 {
        let _ = std::fs::remove_file(path);
        escaped(&format!("made the device node {path}"));
    }
    refused(&format!("mknod {path}"), &Error::last_os_error());
}

const SYSCTLS: [&str; 7] = [
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/all/accept_ra",
    "net/ipv4/ip_nonlocal_bind",
    "net/ipv4/ping_group_range",
    "net/ipv4/conf/all/proxy_arp",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/ip_forward",
];

fn sysctl(names: &[String]) {
    let names: Vec<String> = if names.is_empty() {
        SYSCTLS.iter().map(|s| s.to_string()).collect()
    } else {
        names.to_vec()
    };
    for n in names {
        let path = format!("/proc/sys/{n}");
        let r = std::fs::read_to_string(&path).and_then(|v| std::fs::write(&path, v.trim()));
        match r {
            Ok(()) => escaped(&format!("wrote {path}")),
            Err(e) => refused(&format!("writing {path}"), &e),
        }
    }
}

fn unix_connect(path: &str) {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => escaped(&format!("connected to {path}")),
        Err(e) => refused(&format!("connecting to {path}"), &e),
    }
}

fn raw() {
    for (what, domain, ty, proto) in [
        (
            "raw IPv4 socket",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ),
        ("packet socket", libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
        (
            "packet dgram socket",
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            0x0300,
        ),
    ] {
        // SAFETY: socket(2); a descriptor is only reported, never used.
        if unsafe { libc::socket(domain, ty, proto) } >= 0 {
            escaped(&format!("opened a {what}"));
        }
        refused(&format!("opening a {what}"), &Error::last_os_error());
    }
}

fn daemon(marker: &str) {
    let me = std::env::current_exe().unwrap_or_else(|_| usage());
    // SAFETY: fork in a single-threaded program; the children only call
    // setsid and exec.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: as above.
            unsafe { libc::setsid() };
            // SAFETY: as above.
            if unsafe { libc::fork() } == 0 {
                // A daemon lets go of its caller's stdio.
                // SAFETY: open/dup2 on valid C strings and descriptors.
                unsafe {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                }
                let e = std::process::Command::new(me)
                    .args(["sleeper", marker])
                    .exec();
                eprintln!("attack: {e}");
            }
            std::process::exit(0);
        }
        -1 => usage(),
        _ => println!("daemon {marker} started"),
    }
    std::process::exit(0)
}

fn sleep_ignoring(secs: u64) -> ! {
    // SAFETY: ignoring signals has no preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    std::thread::sleep(std::time::Duration::from_secs(secs));
    std::process::exit(0)
}

fn victim(uid: Option<u32>) -> ! {
    if let Some(u) = uid {
        // SAFETY: dropping to a user; failures end the program.
        if unsafe { libc::setgid(u) } != 0 || unsafe { libc::setuid(u) } != 0 {
            usage();
        }
    }
    println!("{}", std::process::id());
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(600));
    std::process::exit(0)
}

fn listen_unix(path: &str, secs: u64) -> ! {
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path).unwrap_or_else(|_| usage());
    println!("listening");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    drop(l);
    let _ = std::fs::remove_file(path);
    std::process::exit(0)
}

fn wrap_fd(port: u16, cmd: &[String]) -> ! {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|_| usage());
    s.connect(("127.0.0.1", port)).unwrap_or_else(|_| usage());
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto fd 5 without close-on-exec, as a careless caller would.
    if unsafe { libc::dup2(s.as_raw_fd(), 5) } != 5 || cmd.is_empty() {
        usage();
    }
    let e = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    eprintln!("attack: {e}");
    std::process::exit(2)
}

fn named(hex: &str, port: u16, secs: u64) {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(hex.get(i..i + 2).unwrap_or_else(|| usage()), 16)
                .unwrap_or_else(|_| usage())
        })
        .chain([0])
        .collect();
    // SAFETY: PR_SET_NAME reads a NUL-terminated buffer of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr(), 0, 0, 0) };
    let _s = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|_| usage());
    println!("named");
    std::thread::sleep(std::time::Duration::from_secs(secs));
    std::process::exit(0)
}

fn families() {
    let eafnosupport = |what: &str, r: libc::c_int| {
        let e = Error::last_os_error();
        if r >= 0 {
            escaped(&format!("opened {what}"));
        }
        if e.raw_os_error() != Some(libc::EAFNOSUPPORT) {
            escaped(&format!(
                "{what}: refused by the kernel, not the filter ({e})"
            ));
        }
        refused(what, &e);
    };
    for (what, domain, ty) in [
        ("AF_VSOCK stream", libc::AF_VSOCK, libc::SOCK_STREAM),
        ("AF_VSOCK datagram", libc::AF_VSOCK, libc::SOCK_DGRAM),
        ("AF_VSOCK seqpacket", libc::AF_VSOCK, libc::SOCK_SEQPACKET),
        ("AF_XDP", libc::AF_XDP, libc::SOCK_RAW),
        ("AF_ALG", libc::AF_ALG, libc::SOCK_SEQPACKET),
        ("AF_TIPC", libc::AF_TIPC, libc::SOCK_RDM),
        ("AF_KEY", libc::AF_KEY, libc::SOCK_RAW),
        ("AF_PACKET", libc::AF_PACKET, libc::SOCK_DGRAM),
        ("AF_CAN", libc::AF_CAN, libc::SOCK_RAW),
        ("AF_RDS", libc::AF_RDS, libc::SOCK_SEQPACKET),
        ("AF_BLUETOOTH", libc::AF_BLUETOOTH, libc::SOCK_STREAM),
        ("AF_PHONET", libc::AF_PHONET, libc::SOCK_DGRAM),
        ("family 45 (AF_MCTP)", 45, libc::SOCK_DGRAM),
        ("family 255", 255, libc::SOCK_STREAM),
    ] {
        // SAFETY: socket(2) with integer arguments; closed at exit.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
        eafnosupport(&format!("an {what} socket"), fd);
        let mut sv = [-1i32; 2];
        // SAFETY: socketpair(2) writes two descriptors into `sv`.
        let r = unsafe { libc::socketpair(domain, ty | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
        eafnosupport(&format!("an {what} socketpair"), r);
    }
    // What the filter lets through still works (ping and raw are the
    // kernel's to refuse: no CAP_NET_RAW).
    for (what, domain, ty, proto) in [
        ("AF_UNIX", libc::AF_UNIX, libc::SOCK_STREAM, 0),
        ("AF_INET", libc::AF_INET, libc::SOCK_STREAM, 0),
        ("AF_INET6", libc::AF_INET6, libc::SOCK_DGRAM, 0),
        (
            "AF_NETLINK",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_ROUTE,
        ),
        ("ping", libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
    ] {
        // SAFETY: socket(2) with integer arguments; closed at exit.
        if unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) } < 0 {
            println!("BROKEN: {what}: {}", Error::last_os_error());
            std::process::exit(3);
        }
    }
    let mut sv = [-1i32; 2];
    // SAFETY: socketpair(2) writes two descriptors into `sv`.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) } < 0 {
        println!("BROKEN: AF_UNIX socketpair: {}", Error::last_os_error());
        std::process::exit(3);
    }
}

/// A fork loop: up to `n` children that wait; how many it got. Past the
/// context's process limit fork fails (EAGAIN).
fn forks(n: usize) {
    let mut kids = Vec::new();
    let mut err = None;
    while kids.len() < n {
        // SAFETY: the child only pauses (async-signal-safe) until killed.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause(2) has no arguments.
                unsafe { libc::pause() };
            },
            -1 => {
                err = Some(Error::last_os_error());
                break;
            }
            pid => kids.push(pid),
        }
    }
    let got = kids.len();
    for k in kids {
        // SAFETY: kill and waitpid on our own children.
        unsafe {
            libc::kill(k, libc::SIGKILL);
            libc::waitpid(k, std::ptr::null_mut(), 0);
        }
    }
    match err {
        None => escaped(&format!("forked {got} processes")),
        Some(e) => refused(&format!("forked {got} processes, then"), &e),
    }
}

/// `bytes` of output on stdout (lines of 'x'), then `marker`, then a wait.
fn spew(bytes: usize, marker: &str, secs: u64) {
    let line = [b'x'; 1023];
    let mut out = std::io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(1024);
        let _ = out.write_all(&line[..k - 1]);
        let _ = out.write_all(b"\n");
        left -= k;
    }
    let _ = writeln!(out, "{marker}");
    let _ = out.flush();
    drop(out);
    std::thread::sleep(std::time::Duration::from_secs(secs));
}

fn read_files(paths: &[String]) {
    for p in paths {
        match std::fs::read(p) {
            Ok(_) => escaped(&format!("read {p}")),
            Err(e) => refused(&format!("reading {p}"), &e),
        }
    }
}

/// The object of KIND with KEY: made (`make`) or only looked up.
fn ipc(kind: &str, key: i32, make: bool) -> Result<i32, Error> {
    let create = if make {
        libc::IPC_CREAT | libc::IPC_EXCL | 0o666
    } else {
        0
    };
    // SAFETY: System V and POSIX IPC calls with integer and string arguments.
    let r = unsafe {
        match kind {
            "shm" => libc::shmget(key, 4096, create),
            "msg" => libc::msgget(key, create),
            "sem" => libc::semget(key, 1, create),
            "mq" => {
                let name = cstr(&format!("/netctx-{key}"));
                let flags = if make {
                    libc::O_CREAT | libc::O_EXCL | libc::O_RDWR
                } else {
                    libc::O_RDWR
                };
                libc::mq_open(
                    name.as_ptr(),
                    flags,
                    0o666 as libc::mode_t,
                    std::ptr::null_mut::<libc::mq_attr>(),
                )
            }
            _ => usage(),
        }
    };
    check(r.into()).map(|r| i32::try_from(r).unwrap_or(-1))
}

fn swap(a: &str, b: &str, secs: f64) {
    let (ca, cb) = (cstr(a), cstr(b));
    let t = std::time::Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        // SAFETY: renameat2 with two valid paths.
        unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        n += 1;
    }
    println!("swapped {n} times");
    std::process::exit(0)
}

fn run_as(uid: u32, gid: u32, cmd: &[String]) -> ! {
    if cmd.is_empty() {
        usage();
    }
    // SAFETY: credential calls with integer arguments, before exec.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(gid, gid, gid) == 0
            && libc::setresuid(uid, uid, uid) == 0
    };
    if !ok {
        eprintln!("attack: {}", Error::last_os_error());
        std::process::exit(2)
    }
    let e = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    eprintln!("attack: {e}");
    std::process::exit(2)
}

/// One rtnetlink request about IFNAME's root qdisc (`ty`, `flags`, kind
/// attribute if any): Ok, or the kernel's errno.
fn qdisc_request(index: u32, ty: u16, flags: u16, kind: Option<&str>) -> Result<(), Error> {
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // tcmsg: family, pad, ifindex, handle 0 (any), parent TC_H_ROOT, info.
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&u32::MAX.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(k) = kind {
        let v = format!("{k}\0");
        let len = 4 + v.len();
        body.extend_from_slice(&u16::try_from(len).unwrap_or_else(|_| usage()).to_ne_bytes());
        body.extend_from_slice(&1u16.to_ne_bytes()); // TCA_KIND
        body.extend_from_slice(v.as_bytes());
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = Vec::new();
    m.extend_from_slice(
        &u32::try_from(16 + body.len())
            .unwrap_or_else(|_| usage())
            .to_ne_bytes(),
    );
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(flags | 1 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    m.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&body);
    let mut buf = [0u8; 4096];
    // SAFETY: send and receive on our own socket with buffers we own.
    let n = unsafe {
        if libc::send(fd, m.as_ptr().cast(), m.len(), 0) < 0 {
            libc::close(fd);
            return Err(Error::last_os_error());
        }
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        libc::close(fd);
        n
    };
    if n < 20 {
        return Err(Error::other("no answer"));
    }
    // An NLMSG_ERROR: the (negative) errno after the header, 0 for success.
    let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
    if code == 0 {
        Ok(())
    } else {
        Err(Error::from_raw_os_error(-code))
    }
}

/// Remove IFNAME's root qdisc, then replace it with a plain FIFO: both
/// need CAP_NET_ADMIN over the link's network namespace.
fn qdisc(ifname: &str) -> ! {
    let name = std::ffi::CString::new(ifname).unwrap_or_else(|_| usage());
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        eprintln!("attack: no link {ifname}");
        std::process::exit(2)
    }
    // RTM_DELQDISC; RTM_NEWQDISC with NLM_F_CREATE | NLM_F_REPLACE.
    let del = qdisc_request(index, 37, 0, None);
    let rep = qdisc_request(index, 36, 0x400 | 0x100, Some("pfifo"));
    match (&del, &rep) {
        (Ok(()), _) => escaped(&format!("removed the root qdisc of {ifname}")),
        (_, Ok(())) => escaped(&format!("replaced the root qdisc of {ifname}")),
        (Err(d), Err(r)) => {
            println!("refused: removing the root qdisc of {ifname}: {d}");
            println!("refused: replacing the root qdisc of {ifname}: {r}");
            std::process::exit(1)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let num = |i: usize| -> i64 {
        rest.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let int = |i: usize| i32::try_from(num(i)).unwrap_or_else(|_| usage());
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match args.first().map(String::as_str).unwrap_or_default() {
        "ptrace" => ptrace(rest),
        "pidfd-getfd" => pidfd_getfd(int(0), int(1)),
        "kill" => kill(int(0)),
        "tiocsti" => tiocsti(arg(0)),
        "fd" => inherited_fd(int(0)),
        "env" => {
            let names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            println!("environment: {}", names.join(" "));
            if let Some(n) = rest.iter().find(|n| std::env::var_os(n).is_some()) {
                escaped(&format!("read {n} of the caller's environment"));
            }
            println!("refused: none of {rest:?} is set");
        }
        "write" => write_files(rest, false),
        "create" => write_files(rest, true),
        "mknod" => mknod(arg(0)),
        "sysctl" => sysctl(rest),
        "settime" => {
            // SAFETY: settimeofday(NULL, NULL) checks CAP_SYS_TIME and changes nothing.
            let r = unsafe { libc::syscall(libc::SYS_settimeofday, 0usize, 0usize) };
            if r == 0 {
                escaped("settimeofday is permitted");
            }
            refused("settimeofday", &Error::last_os_error());
        }
        "userns" => {
            // SAFETY: unshare with a flag; the new namespace is harmless.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
                escaped("made a new user namespace");
            }
            refused("unshare(CLONE_NEWUSER)", &Error::last_os_error());
        }
        "unix" => unix_connect(arg(0)),
        "raw" => raw(),
        "daemon" => daemon(arg(0)),
        "sleeper" => sleep_ignoring(600),
        "victim" => victim(
            rest.first()
                .map(|_| u32::try_from(num(0)).unwrap_or_else(|_| usage())),
        ),
        "listen-unix" => listen_unix(arg(0), u64::try_from(num(1)).unwrap_or_else(|_| usage())),
        "read" => read_files(rest),
        "families" => families(),
        "qdisc" => qdisc(arg(0)),
        "forks" => forks(usize::try_from(num(0)).unwrap_or_else(|_| usage())),
        "spew" => spew(
            usize::try_from(num(0)).unwrap_or_else(|_| usage()),
            arg(1),
            u64::try_from(num(2)).unwrap_or_else(|_| usage()),
        ),
        "named" => named(
            arg(0),
            u16::try_from(num(1)).unwrap_or_else(|_| usage()),
            u64::try_from(num(2)).unwrap_or_else(|_| usage()),
        ),
        "snoop" => snoop(u64::try_from(num(0)).unwrap_or_else(|_| usage()), arg(1)),
        "ipc-make" => match ipc(arg(0), int(1), true) {
            Ok(id) => {
                println!("made {} {} (id {id})", arg(0), arg(1));
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("attack: making {} {}: {e}", arg(0), arg(1));
                std::process::exit(2)
            }
        },
        "ipc-find" => match ipc(arg(0), int(1), false) {
            Ok(id) => escaped(&format!("reached {} {} (id {id})", arg(0), arg(1))),
            Err(e) => refused(&format!("reaching {} {}", arg(0), arg(1)), &e),
        },
        "swap" => swap(
            arg(0),
            arg(1),
            rest.get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage()),
        ),
        "as" if rest.get(2).map(String::as_str) == Some("--") => run_as(
            u32::try_from(num(0)).unwrap_or_else(|_| usage()),
            u32::try_from(num(1)).unwrap_or_else(|_| usage()),
            &rest[3..],
        ),
        "wrap-fd" if rest.get(1).map(String::as_str) == Some("--") => wrap_fd(
            u16::try_from(num(0)).unwrap_or_else(|_| usage()),
            &rest[2..],
        ),
        _ => usage(),
    }
    std::process::exit(1)
}
