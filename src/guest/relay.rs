//! The caller's side of `exec`: with a terminal on stdin, a new
//! pseudo-terminal for the guest and a relay between the two (the caller's
//! terminal in raw mode, restored after; window size on SIGWINCH); without
//! one, the guest's stdio as given. Either way SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT sent to netctx are passed on to the guest, and the guest's exit
//! status is returned. The guest never gets a descriptor of the caller's
//! terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitStatus;

use super::spawn::try_wait;

/// A pseudo-terminal for the guest, sized and set up like the caller's.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's path (the guest's /dev/console).
    pub path: std::path::PathBuf,
    saved: libc::termios,
}

/// Pipes netctx relays in place of the caller's terminal on stdout and
/// stderr when stdin is not one (no pty then): the guest never holds a
/// descriptor of the terminal, and once `exec` returns nothing it left
/// behind can write to it (or read from it).
pub struct Pipes {
    /// (read end, the caller's descriptor it is copied to).
    relays: Vec<(OwnedFd, i32)>,
    /// The write ends, for the guest's stdio (closed after the spawn).
    pub guest: Vec<(i32, OwnedFd)>,
}

/// For each of stdout and stderr that is a terminal, a pipe.
pub fn pipes() -> io::Result<Pipes> {
    let mut p = Pipes::none();
    for fd in [1, 2] {
        // SAFETY: isatty on a descriptor number.
        if unsafe { libc::isatty(fd) } == 1 {
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
            nix::fcntl::fcntl(
                &r,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map_err(io::Error::from)?;
            p.relays.push((r, fd));
            p.guest.push((fd, w));
        }
    }
    Ok(p)
}

impl Pipes {
    pub fn none() -> Pipes {
        Pipes {
            relays: Vec::new(),
            guest: Vec::new(),
        }
    }

    /// Copy what is in the pipes to the caller's descriptors; whether any
    /// pipe is still open.
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        self.relays.retain(|(r, to)| loop {
            match nix::unistd::read(r, &mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    // SAFETY: the caller's descriptor 1 or 2, open for the
                    // whole run; borrowed for these writes only.
                    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*to) };
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        match nix::unistd::write(fd, rest) {
                            Ok(w) => rest = &rest[w..],
                            Err(nix::errno::Errno::EINTR) => {}
                            Err(_) => break,
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        });
        !self.relays.is_empty()
    }
}

/// stdin is a terminal: a new pty with its settings, else None.
pub fn open() -> io::Result<Option<Pty>> {
    // SAFETY: isatty/tcgetattr/ioctl on fd 0 into zeroed buffers.
    unsafe {
        if libc::isatty(0) != 1 {
            return Ok(None);
        }
        let mut t: libc::termios = std::mem::zeroed();
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::ioctl(0, libc::TIOCGWINSZ, &mut ws);
        let (mut m, mut s) = (-1, -1);
        if libc::openpty(&mut m, &mut s, std::ptr::null_mut(), &t, &ws) != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in [m, s] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let path = std::fs::read_link(format!("/proc/self/fd/{s}"))?;
        Ok(Some(Pty {
            master: OwnedFd::from_raw_fd(m),
            slave: OwnedFd::from_raw_fd(s),
            path,
            saved: t,
        }))
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// A signalfd for the forwarded signals, SIGWINCH and SIGCHLD (blocked).
fn signals() -> io::Result<OwnedFd> {
    // SAFETY: building and installing a signal mask, then a signalfd on it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(&[libc::SIGWINCH, libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Restores the caller's terminal settings when dropped.
struct Raw(libc::termios);

impl Raw {
    fn enter(saved: libc::termios) -> Raw {
        let mut t = saved;
        // SAFETY: cfmakeraw edits our copy; tcsetattr on fd 0.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        Raw(saved)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: tcsetattr on fd 0 with the settings read at start.
        unsafe { libc::tcsetattr(0, libc::TCSADRAIN, &self.0) };
    }
}

fn poll(fds: &mut [libc::pollfd]) {
    // SAFETY: poll over a valid array, 200 ms at most.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
}

/// One signal from the signalfd, if any.
fn next_signal(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: reading one siginfo record into a zeroed buffer.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: as above; the buffer is `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    (n == size as isize).then_some(info.ssi_signo as i32)
}

fn forward(child: i32, sig: i32) {
    // SAFETY: kill with integer arguments.
    unsafe { libc::kill(child, sig) };
}

/// Wait for the guest, relaying the terminal (or the pipes in its place)
/// when there is one.
pub fn wait(child: i32, pty: Option<Pty>, mut pipes: Pipes) -> io::Result<ExitStatus> {
    let sig = signals()?;
    let Some(pty) = pty else {
        pipes.guest.clear();
        loop {
            if let Some(st) = try_wait(child)? {
                // What the guest wrote before it ended; then the pipes
                // close, and whatever it left behind writes into nothing.
                pipes.pump();
                return Ok(st);
            }
            let mut fds: Vec<libc::pollfd> = std::iter::once(sig.as_raw_fd())
                .chain(pipes.relays.iter().map(|(r, _)| r.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            poll(&mut fds);
            pipes.pump();
            while let Some(s) = next_signal(&sig) {
                if FORWARDED.contains(&s) {
                    forward(child, s);
                }
            }
        }
    };
    drop(pty.slave);
    let _raw = Raw::enter(pty.saved);
    let mut master = File::from(pty.master);
    let (mut stdin, mut stdout) = (io::stdin(), io::stdout());
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sig.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll(&mut fds);
        if fds[0].revents != 0 {
            match master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
                // EIO: every holder of the slave closed it.
                _ => break,
            }
        }
        if fds[2].revents != 0 {
            match stdin.read(&mut buf) {
                Ok(n) if n > 0 => master.write_all(&buf[..n])?,
                _ => stdin_open = false,
            }
        }
        while let Some(s) = next_signal(&sig) {
            if s == libc::SIGWINCH {
                // SAFETY: copying the window size from fd 0 to the master.
                unsafe {
                    let mut ws: libc::winsize = std::mem::zeroed();
                    if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
                    }
                }
            } else if FORWARDED.contains(&s) {
                forward(child, s);
            }
        }
        if fds[0].revents == 0 {
            if let Some(st) = try_wait(child)? {
                return Ok(st);
            }
        }
    }
    loop {
        if let Some(st) = try_wait(child)? {
            return Ok(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
