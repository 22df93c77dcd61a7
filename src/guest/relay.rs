//! The caller's side of `exec`: with a terminal on stdin, a new
//! pseudo-terminal for the guest and a relay between the two (the caller's
//! terminal in raw mode, restored after; window size on SIGWINCH); without
//! one, the guest's stdio as given. Either way SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT sent to netctx are passed on to the guest, and the guest's exit
//! status is returned. The guest never gets a descriptor of the caller's
//! terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitStatus;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{isatty, Pid};

use super::spawn::try_wait;
use crate::kernel::sys;

/// A pseudo-terminal for the guest, sized and set up like the caller's.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's path (the guest's /dev/console).
    pub path: std::path::PathBuf,
    saved: Termios,
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
    let (out, err) = (io::stdout(), io::stderr());
    for (fd, f) in [(1, out.as_fd()), (2, err.as_fd())] {
        if isatty(f).unwrap_or(false) {
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
                    let (out, err) = (io::stdout(), io::stderr());
                    let fd = if *to == 1 { out.as_fd() } else { err.as_fd() };
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
    let stdin = io::stdin();
    if !isatty(stdin.as_fd()).unwrap_or(false) {
        return Ok(None);
    }
    let t = tcgetattr(stdin.as_fd())?;
    // The window size stays zero where it cannot be read.
    let ws = sys::winsize(stdin.as_fd()).unwrap_or(libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pty = nix::pty::openpty(&ws, &t)?;
    for fd in [&pty.master, &pty.slave] {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))?;
    Ok(Some(Pty {
        master: pty.master,
        slave: pty.slave,
        path,
        saved: t,
    }))
}

const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// A signalfd for the forwarded signals, SIGWINCH and SIGCHLD (blocked).
fn signals() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain(&[Signal::SIGWINCH, Signal::SIGCHLD]) {
        set.add(*s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}

/// Restores the caller's terminal settings when dropped.
struct Raw(Termios);

impl Raw {
    fn enter(saved: Termios) -> Raw {
        let mut t = saved.clone();
        cfmakeraw(&mut t);
        let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &t);
        Raw(saved)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &self.0);
    }
}

/// poll(2), 200 ms at most; errors (EINTR) are as a timeout.
fn poll(fds: &mut [PollFd<'_>]) {
    let _ = nix::poll::poll(fds, PollTimeout::from(200u8));
}

/// Whether poll saw anything on `fd` (revents not 0; `None` is bits nix
/// does not name).
fn ready(fd: &PollFd<'_>) -> bool {
    fd.revents() != Some(PollFlags::empty())
}

/// One signal from the signalfd, if any.
fn next_signal(fd: &SignalFd) -> Option<Signal> {
    let info = fd.read_signal().ok()??;
    Signal::try_from(info.ssi_signo as i32).ok()
}

fn forward(child: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(child), sig);
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
            let mut fds: Vec<PollFd> = std::iter::once(sig.as_fd())
                .chain(pipes.relays.iter().map(|(r, _)| r.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
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
        let stdin_fd = stdin.as_fd();
        let mut fds = [
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(sig.as_fd(), PollFlags::POLLIN),
            PollFd::new(stdin_fd, PollFlags::POLLIN),
        ];
        // A closed stdin is left out (as poll ignores a negative fd).
        let n = if stdin_open { 3 } else { 2 };
        poll(&mut fds[..n]);
        let (master_ready, stdin_ready) = (ready(&fds[0]), n == 3 && ready(&fds[2]));
        if master_ready {
            match master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
                // EIO: every holder of the slave closed it.
                _ => break,
            }
        }
        if stdin_ready {
            match stdin.read(&mut buf) {
                Ok(n) if n > 0 => master.write_all(&buf[..n])?,
                _ => stdin_open = false,
            }
        }
        while let Some(s) = next_signal(&sig) {
            if s == Signal::SIGWINCH {
                // The window size, from fd 0 to the master.
                if let Ok(ws) = sys::winsize(io::stdin().as_fd()) {
                    let _ = sys::set_winsize(master.as_fd(), &ws);
                }
            } else if FORWARDED.contains(&s) {
                forward(child, s);
            }
        }
        if !master_ready {
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
