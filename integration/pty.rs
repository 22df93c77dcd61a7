//! The terminal: an administrator's interactive shell on a real
//! pseudo-terminal runs `netctx exec`, and a guest pushes a command into the
//! terminal with TIOCSTI. The shell must never run it, whether exec's stdin
//! is the terminal (exec relays through a new pty) or not (the guest runs in
//! a session of its own).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::attacks::USERS;
use crate::sandbox::{attack, Sandbox, BIN};

const CFG: &str = r#"
[context.a]
[[context.a.link]]
kind = "veth"
name = "eth0"
host_addresses = ["10.33.0.1/24"]
addresses = ["10.33.0.2/24"]
"#;

struct Pty {
    master: std::fs::File,
    out: String,
}

impl Pty {
    /// Read until `want` shows up in the output (or fail after 20 s).
    fn expect(&mut self, want: &str) {
        let t = Instant::now();
        let mut buf = [0u8; 4096];
        while !self.out.contains(want) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no {want:?} on the terminal:\n{}",
                self.out
            );
            match self.master.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                Ok(n) => self.out.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("reading the terminal: {e}\n{}", self.out),
            }
        }
    }

    /// End the shell: `exit`, and a kill if it does not go within 20 s.
    fn finish(&mut self, mut child: std::process::Child) {
        let _ = self.master.write_all(b"exit\n");
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the shell did not exit:\n{}", self.out);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn line(&mut self, l: &str) {
        self.master.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
}

/// An interactive shell inside the sandbox with a pty as its controlling
/// terminal.
fn shell(sb: &Sandbox) -> (std::process::Child, Pty) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty fills two descriptors; null name, termios and winsize.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just returned by openpty and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    // SAFETY: fcntl on an owned descriptor.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut c = sb.enter_joined("sh");
    c.arg("-i")
        .env("PS1", "$ ")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the slave.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn().unwrap();
    let pty = Pty {
        master: std::fs::File::from(master),
        out: String::new(),
    };
    (child, pty)
}

#[test]
fn attack_tiocsti_cannot_push_a_command_into_the_callers_shell() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    let mut marks = Vec::new();
    for (i, user) in USERS.iter().enumerate() {
        let u = user.map(|u| format!("--user {u}")).unwrap_or_default();
        for (j, stdin) in ["", "</dev/null"].iter().enumerate() {
            let mark = sb.dir.join(format!("pwned-{i}-{j}"));
            let n = i * 2 + j;
            pty.line(&format!(
                "{BIN} -c {} exec {u} a -- {} tiocsti 'touch {}' {stdin}; echo __END__$((40+{n}))",
                cfg.display(),
                attack(),
                mark.display()
            ));
            pty.expect(&format!("__END__{}", 40 + n));
            marks.push(mark);
        }
    }
    // Anything pushed into the terminal would be read before this.
    std::thread::sleep(Duration::from_millis(300));
    pty.line("echo __FIN__$((1+1))");
    pty.expect("__FIN__2");
    pty.finish(child);
    assert!(!pty.out.contains("ESCAPED"), "TIOCSTI worked:\n{}", pty.out);
    for m in marks {
        assert!(!m.exists(), "the shell ran the pushed line:\n{}", pty.out);
    }
}

#[test]
fn exec_on_a_terminal_relays_output_and_exit_status() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    // The guest's stdin is a terminal of its own, not the caller's: its
    // console.
    pty.line(&format!(
        "{BIN} -c {} exec a -- sh -c 'test -t 0 && tty; exit 3'; echo __RC__$?",
        cfg.display()
    ));
    pty.expect("__RC__3");
    assert!(pty.out.contains("/dev/console"), "{}", pty.out);
    pty.finish(child);
}

#[test]
fn exec_on_a_terminal_follows_the_window_size() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    let guest = "echo __GO__$((1+1)); for i in $(seq 40); do s=$(stty size); \
                 [ \"$s\" = \"33 111\" ] && break; sleep 0.25; done; echo size=$s";
    pty.line(&format!(
        "{BIN} -c {} exec a -- sh -c '{guest}'; echo __DONE__$((3+4))",
        cfg.display()
    ));
    pty.expect("__GO__2");
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 111,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our master with a valid winsize; the kernel
    // signals the terminal's foreground process group (netctx exec).
    unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    pty.expect("size=33 111");
    // Typed only once exec is over (a line typed while it runs is the
    // guest's input).
    pty.expect("__DONE__7");
    pty.finish(child);
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    pty.line(&format!(
        "{BIN} -c {} exec a -- sh -c 'echo __S__$((2+2)); exec sleep 30'; echo __RC__$?",
        cfg.display()
    ));
    pty.expect("__S__4");
    std::thread::sleep(Duration::from_millis(200));
    pty.master.write_all(b"\x03").unwrap();
    pty.expect("__RC__130");
    pty.finish(child);
}

#[test]
fn attack_a_guest_keeps_no_hold_of_the_terminal_when_only_stdout_is_one() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    for (i, user) in USERS.iter().enumerate() {
        let u = user.map(|u| format!("--user {u}")).unwrap_or_default();
        // Left behind by the guest: after exec returns, it prints a fake
        // prompt on its stdout and stderr and reads the next line typed
        // there or on its terminal. While exec runs, its stdout and stderr
        // are a terminal (its own), its stdin the /dev/null it was given.
        pty.line(&format!(
            "{BIN} -c {} exec {u} a -- sh -c '(sleep 1; echo FAKE-PROMPT-$((600+{i})); \
             read l <&1; echo STOLEN-$((700+{i})):$l; echo FAKE-PROMPT-$((600+{i})) >&2; \
             read l </dev/tty; echo STOLEN-$((700+{i})):$l >/dev/tty) & \
             test -t 1 && test -t 2 && test ! -t 0 && echo guest-{i}-said-$((6*7))' </dev/null; \
             echo __END__$((50+{i}))",
            cfg.display(),
        ));
        pty.expect(&format!("guest-{i}-said-42"));
        pty.expect(&format!("__END__{}", 50 + i));
        std::thread::sleep(Duration::from_millis(1500));
        pty.line(&format!("echo typed-after-{i}"));
        pty.expect(&format!("typed-after-{i}"));
    }
    std::thread::sleep(Duration::from_millis(500));
    pty.line("echo __FIN__$((1+1))");
    pty.expect("__FIN__2");
    pty.finish(child);
    assert!(
        !pty.out.contains("FAKE-PROMPT-60") && !pty.out.contains("STOLEN-70"),
        "the guest wrote to or read from the terminal after exec returned:\n{}",
        pty.out
    );
}

#[test]
fn the_escape_leaves_a_guest_that_traps_every_signal_and_restores_the_terminal() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("netctx.toml", CFG);
    sb.netctx(&["-c", cfg.to_str().unwrap(), "up"]).ok();
    let (child, mut pty) = shell(&sb);
    pty.line("stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; echo __MODE__$((1+1))");
    pty.expect("__MODE__2");
    let before = pty.out.clone();
    for (i, user) in USERS.iter().enumerate() {
        let u = user.map(|u| format!("--user {u}")).unwrap_or_default();
        pty.line(&format!(
            "{BIN} -c {} exec {u} a -- sh -c 'trap \"\" INT TERM HUP QUIT; echo __T__$((3+{i})); \
             while :; do sleep 1; done'; echo __RC__$((80+{i})):$?",
            cfg.display()
        ));
        pty.expect(&format!("__T__{}", 3 + i));
        std::thread::sleep(Duration::from_millis(200));
        // ^C and ^\ reach the guest, which ignores them.
        pty.master.write_all(b"\x03\x1c").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let rc = format!("__RC__{}:", 80 + i);
        assert!(!pty.out.contains(&rc), "exec ended early:\n{}", pty.out);
        pty.master.write_all(b"\x1d\x1d\x1d").unwrap();
        pty.expect(&format!("__RC__{}:137", 80 + i));
    }
    assert!(pty.out.contains("^] typed three times"), "{}", pty.out);
    // The shell's terminal is back in the mode it was in (canonical).
    pty.out.clear();
    pty.line("stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; echo __MODE__$((2+2))");
    pty.expect("__MODE__4");
    assert!(
        before.contains("icanon\r\n")
            && pty.out.contains("icanon\r\n")
            && !pty.out.contains("-icanon\r\n"),
        "the terminal mode was not restored:\n{before}\n---\n{}",
        pty.out
    );
    pty.finish(child);
}
