//! The caller's side of `exec`: when any of stdin, stdout and stderr is a
//! terminal, a new pseudo-terminal for the guest in place of each of them
//! and a relay between the two (the caller's terminal in raw mode while
//! stdin is relayed, restored however the relay ends; window size on
//! SIGWINCH; `^]` three times within a second leaves); the other
//! descriptors as given. Either way SIGINT, SIGTERM, SIGHUP and SIGQUIT sent
//! to netctx are passed on to the guest, and the guest's exit status is
//! returned. The guest never gets a descriptor of the caller's terminal, and
//! once `exec` returns the relay is gone: nothing the guest left behind can
//! read or write the caller's terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, OutputFlags, SetArg, Termios};
use nix::unistd::{isatty, Pid};

use super::spawn::try_wait;
use crate::kernel::sys;

/// The escape: this byte (`^]`, as telnet's and systemd-nspawn's) typed
/// `ESCAPE_TIMES` times in a row within `ESCAPE_WITHIN` leaves the guest.
pub const ESCAPE_BYTE: u8 = 0x1d;
const ESCAPE_TIMES: u8 = 3;
const ESCAPE_WITHIN: Duration = Duration::from_secs(1);

/// A pseudo-terminal for the guest, sized and set up like the caller's.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's path (the guest's /dev/console).
    pub path: std::path::PathBuf,
    /// Which of the caller's 0, 1, 2 are a terminal (the guest gets the
    /// slave in their place).
    pub ttys: [bool; 3],
    saved: Termios,
}

impl Pty {
    /// The guest's descriptors 0, 1, 2: the slave for each that is a
    /// terminal, the caller's own for the others.
    pub fn stdio(&self) -> [i32; 3] {
        let mut io = [0, 1, 2];
        for (fd, tty) in io.iter_mut().zip(self.ttys) {
            if tty {
                *fd = self.slave.as_raw_fd();
            }
        }
        io
    }
}

fn caller(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: 0, 1 and 2 stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The first of the caller's descriptors that is a terminal.
fn first_tty(ttys: [bool; 3]) -> i32 {
    (0..3).zip(ttys).find(|(_, t)| *t).map_or(0, |(fd, _)| fd)
}

/// Any of 0, 1, 2 is a terminal: a new pty with its settings, else None.
pub fn open() -> io::Result<Option<Pty>> {
    let ttys = [0, 1, 2].map(|fd| isatty(caller(fd)).unwrap_or(false));
    if !ttys.contains(&true) {
        return Ok(None);
    }
    let from = caller(first_tty(ttys));
    let saved = tcgetattr(from)?;
    let mut t = saved.clone();
    if !ttys[0] {
        // The caller's terminal stays as it is (nothing is typed through
        // the relay): it does its own output processing.
        t.output_flags.remove(OutputFlags::OPOST);
    }
    // The window size stays zero where it cannot be read.
    let ws = sys::winsize(from).unwrap_or(libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pty = nix::pty::openpty(&ws, &t)?;
    for fd in [&pty.master, &pty.slave] {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    fcntl(&pty.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))?;
    Ok(Some(Pty {
        master: pty.master,
        slave: pty.slave,
        path,
        ttys,
        saved,
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

/// The caller's terminal (stdin) in raw mode; its settings restored when
/// dropped, whichever way the relay ends (a return, an error, a panic).
struct Raw(Termios);

impl Raw {
    fn enter(saved: Termios) -> Raw {
        let mut t = saved.clone();
        cfmakeraw(&mut t);
        let _ = tcsetattr(caller(0), SetArg::TCSANOW, &t);
        Raw(saved)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = tcsetattr(caller(0), SetArg::TCSADRAIN, &self.0);
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

/// All of `buf` to `fd`; what cannot be written is dropped (the caller's
/// terminal gone does not end the guest).
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

/// Counts the escape bytes typed in a row.
#[derive(Default)]
struct Escape {
    times: u8,
    since: Option<Instant>,
}

impl Escape {
    /// Whether `input` completes the escape.
    fn typed(&mut self, input: &[u8]) -> bool {
        for b in input {
            if *b != ESCAPE_BYTE {
                *self = Escape::default();
                continue;
            }
            let now = Instant::now();
            match self.since {
                Some(t) if now.duration_since(t) <= ESCAPE_WITHIN => self.times += 1,
                _ => {
                    *self = Escape {
                        times: 1,
                        since: Some(now),
                    }
                }
            }
            if self.times >= ESCAPE_TIMES {
                return true;
            }
        }
        false
    }
}

/// Wait for the guest, relaying the terminal when there is one.
pub fn wait(child: i32, pty: Option<Pty>) -> io::Result<ExitStatus> {
    let sig = signals()?;
    let Some(pty) = pty else {
        loop {
            if let Some(st) = try_wait(child)? {
                return Ok(st);
            }
            poll(&mut [PollFd::new(sig.as_fd(), PollFlags::POLLIN)]);
            while let Some(s) = next_signal(&sig) {
                if FORWARDED.contains(&s) {
                    forward(child, s);
                }
            }
        }
    };
    drop(pty.slave);
    let relay_in = pty.ttys[0];
    let _raw = relay_in.then(|| Raw::enter(pty.saved));
    // The guest's output goes to the caller's terminal: its stdout, else
    // its stderr, else (only stdin is one) stdin's terminal.
    let out = caller(match pty.ttys {
        [_, true, _] => 1,
        [_, _, true] => 2,
        _ => 0,
    });
    let size_from = caller(first_tty(pty.ttys));
    let master = pty.master;
    let mut buf = [0u8; 8192];
    let (mut stdin_open, mut master_open) = (relay_in, true);
    let mut escape = Escape::default();
    loop {
        let mut fds = vec![PollFd::new(sig.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(caller(0), PollFlags::POLLIN));
        }
        poll(&mut fds);
        let stdin_ready = stdin_open && fds.last().is_some_and(ready);
        drop(fds);
        if master_open {
            master_open = pump(&master, out, &mut buf);
        }
        if stdin_ready {
            match nix::unistd::read(caller(0), &mut buf) {
                Ok(n) if n > 0 => {
                    write_all(master.as_fd(), &buf[..n]);
                    if escape.typed(&buf[..n]) {
                        return leave(child);
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                _ => stdin_open = false,
            }
        }
        while let Some(s) = next_signal(&sig) {
            if s == Signal::SIGWINCH {
                if let Ok(ws) = sys::winsize(size_from) {
                    let _ = sys::set_winsize(master.as_fd(), &ws);
                }
            } else if FORWARDED.contains(&s) {
                forward(child, s);
            }
        }
        if let Some(st) = try_wait(child)? {
            // What the guest wrote before it ended; then the master
            // closes, and whatever it left behind writes into nothing.
            if master_open {
                pump(&master, out, &mut buf);
            }
            return Ok(st);
        }
    }
}

/// Copy what the master holds to `out`; whether it is still open (EIO:
/// every holder of the slave closed it).
fn pump(master: &OwnedFd, out: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    // Bounded: a guest that writes without pause must not keep the relay
    // from noticing that the command ended.
    for _ in 0..64 {
        match nix::unistd::read(master, buf) {
            Ok(0) => return false,
            Ok(n) => write_all(out, &buf[..n]),
            Err(Errno::EAGAIN) => return true,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The escape was typed: the command is killed (a guest that traps every
/// signal included) and `exec` returns its status.
fn leave(child: i32) -> io::Result<ExitStatus> {
    forward(child, Signal::SIGKILL);
    write_all(
        caller(2),
        b"\r\nnetctx: ^] typed three times: the command is killed, exec ends\r\n",
    );
    loop {
        if let Some(st) = try_wait(child)? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_is_three_in_a_row() {
        let mut e = Escape::default();
        assert!(!e.typed(b"\x1d\x1dx\x1d"));
        assert!(!e.typed(b"\x1d"));
        assert!(e.typed(b"\x1d"));
        let mut e = Escape::default();
        assert!(e.typed(b"ls\r\x1d\x1d\x1d"));
        let mut e = Escape::default();
        assert!(!e.typed(b"\x1d\x1d"));
        e.since = Some(Instant::now() - Duration::from_secs(2));
        assert!(
            !e.typed(b"\x1d"),
            "a pause longer than a second starts over"
        );
    }
}
