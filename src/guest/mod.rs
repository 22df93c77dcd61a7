//! Processes inside a context: `exec` (foreground) and the declared guest
//! (`start`/`stop`, detached, tracked by a pid file), confined as docs/guests.md
//! says. This side runs on the host: it prepares a `jail::Spec`, makes sure
//! the context's init (PID namespace) and cgroup exist, enters the PID
//! namespace and clones the jail, which confines itself and execs the
//! command. `stop` and `down` end the context's whole cgroup.

pub mod binds;
pub mod caps;
pub mod cgroup;
mod fd;
mod fs;
pub mod init;
pub mod jail;
mod kernelfs;
pub mod limits;
pub mod logpump;
mod relay;
pub mod resolv;
mod seccomp;
pub mod shift;
mod spawn;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::kernel::RUN_DIR;
use crate::model::Context;
use jail::Spec;

/// What to run in a context, and how.
pub struct Request<'a> {
    pub ctx: &'a Context,
    pub privileged: bool,
    pub user: Option<&'a str>,
    /// `--env K=V`, after the guest's `env`.
    pub env: Vec<(String, String)>,
    pub argv: &'a [String],
    /// The configuration netctx read (hidden from the guest).
    pub config: PathBuf,
    /// How long to wait for another netctx's lock (`--wait`).
    pub lock_wait: Duration,
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn spec(r: &Request, tty: Option<PathBuf>) -> anyhow::Result<Spec> {
    let ctx = r.ctx;
    let g = ctx.guest.clone().unwrap_or_default();
    let root = g.root.clone();
    let name = r.user.unwrap_or("root");
    let u = users::lookup(root.as_deref().unwrap_or(Path::new("/")), name)
        .with_context(|| format!("user {name}"))?;
    let (id_first, id_count) = ctx.id_range();
    if !r.privileged {
        if let Some(bad) = [u.uid, u.gid]
            .into_iter()
            .chain(u.groups.iter().copied())
            .find(|i| *i >= id_count)
        {
            anyhow::bail!(
                "user {name}: id {bad} is beyond the {id_count} ids of the context's user \
                 namespace (guest ids are 0..{id_count})"
            );
        }
    }
    let caller = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), u.home.clone()),
        ("USER".into(), u.name.clone()),
        ("LOGNAME".into(), u.name.clone()),
        ("TERM".into(), caller("TERM", "dumb")),
        ("LANG".into(), caller("LANG", "C.UTF-8")),
    ];
    for (k, v) in g.env.iter().chain(&r.env) {
        env.retain(|(x, _)| x != k);
        env.push((k.clone(), v.clone()));
    }
    let netns = crate::kernel::netns::path(&ctx.name);
    let inode = std::fs::metadata(&netns)
        .with_context(|| format!("{}", netns.display()))?
        .ino();
    let mut masks = vec![PathBuf::from("/etc/netctx")];
    masks.extend(std::fs::canonicalize(&r.config).ok());
    Ok(Spec {
        ctx: ctx.name.clone(),
        netns,
        netns_inode: inode,
        hostname: ctx.hostname.clone(),
        cgroup: cgroup::path(&ctx.name)?,
        privileged: r.privileged,
        root,
        writable: g.writable.clone(),
        masks,
        uid: u.uid,
        gid: u.gid,
        id_first,
        id_count,
        groups: u.groups,
        caps: g.capabilities.clone().unwrap_or_else(caps::default_set),
        env,
        argv: r.argv.to_vec(),
        cwd: PathBuf::from(&u.home),
        tty,
        resolver: ctx.resolver_addrs(),
        tmp: ctx.limits.tmp,
        nproc: (!limits::Host::read().pids).then(|| limits::nproc(&ctx.limits)),
    })
}

/// The context's cgroup, with the bind restriction of a strict context
/// attached before any guest joins it (docs/guests.md, "Bind restriction"): the
/// kernel refuses a guest's bind to, or connect/send from, an address that
/// is not the context's. Idempotent: the maps are set to the context's
/// addresses each time.
pub fn bind_hooks(ctx: &Context) -> anyhow::Result<()> {
    let cg = cgroup::create(&ctx.name)?;
    for w in limits::apply(ctx, &cg).with_context(|| format!("context {}: its limits", ctx.name))? {
        eprintln!("netctx: warning: context {}: {w}", ctx.name);
    }
    if ctx.isolation != crate::model::Isolation::Strict {
        return Ok(());
    }
    let addrs: Vec<std::net::IpAddr> = ctx
        .links
        .iter()
        .flat_map(|l| &l.addresses)
        .map(|a| a.addr)
        .collect();
    binds::ensure(&cg, &addrs, ctx.single_ip, Some(ctx.idmap()))
        .with_context(|| format!("context {}: the bind restriction", ctx.name))?;
    Ok(())
}

/// Start the guest's jail (`spawn::jail`) for the spec inside the context's PID
/// namespace (started if need be) and cgroup, with these descriptors as
/// its stdio; its pid. The caller holds the netctx lock.
fn launch(s: &mut Spec, stdio: [RawFd; 3]) -> anyhow::Result<i32> {
    if s.privileged {
        eprintln!(
            "netctx: warning: --privileged: every capability, no seccomp filter and a \
             writable host filesystem; the command can leave context {}",
            s.ctx
        );
    }
    make_guest_dir()?;
    let init = init::ensure(&s.ctx, (s.id_first, s.id_count))?;
    let ns = |kind: &str| -> anyhow::Result<std::fs::File> {
        let p = PathBuf::from(format!("/proc/{init}/ns/{kind}"));
        std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))
    };
    // The user and IPC namespaces go to the jail as descriptors 3 and 4,
    // opened now that `ensure` checked the pid names the context's init.
    let (user, ipc) = (ns("user")?, ns("ipc")?);
    let f = ns("pid")?;
    // Only this process's later children are in the namespace.
    setns(f.as_fd(), CloneFlags::CLONE_NEWPID)
        .with_context(|| format!("entering the PID namespace of {}", s.ctx))?;
    let extra = [spawn::high(user.as_fd())?, spawn::high(ipc.as_fd())?];
    let extra_raw: Vec<RawFd> = if s.privileged {
        Vec::new()
    } else {
        extra.iter().map(|f| f.as_raw_fd()).collect()
    };
    let cg = std::fs::File::open(&s.cgroup)
        .with_context(|| format!("opening the cgroup {}", s.cgroup.display()))?;
    spawn::jail(s, stdio, &extra_raw, &cg).context("starting the guest")
}

/// Exit status as a shell reports it: the code, or 128 + signal.
pub fn exit_code(s: ExitStatus) -> u8 {
    match (s.code(), s.signal()) {
        // A status is 0..=255; a signal number is below 128.
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => 128u8.wrapping_add(u8::try_from(sig & 0x7f).unwrap_or(0)),
        _ => 1,
    }
}

/// Run the command in the context in the foreground; its exit status.
pub fn exec(r: &Request) -> anyhow::Result<ExitStatus> {
    bind_hooks(r.ctx)?;
    let pty = relay::open().context("opening a pseudo-terminal")?;
    let s = spec(r, pty.as_ref().map(|p| p.path.clone()))?;
    if let (Some(p), false) = (&pty, s.privileged) {
        // The guest's own terminal belongs to its user, as login gives it.
        nix::unistd::fchown(
            p.slave.as_fd(),
            Some((s.id_first + s.uid).into()),
            Some((s.id_first + s.gid).into()),
        )
        .context("giving the pseudo-terminal to the guest's user")?;
    }
    let mut s = s;
    // Never a descriptor of the caller's terminal: a pty of the guest's own
    // in place of each of 0, 1, 2 that is one.
    let stdio = pty.as_ref().map_or([0, 1, 2], relay::Pty::stdio);
    let lock = crate::kernel::lock::lock(r.lock_wait).context("taking the netctx lock")?;
    let pid = launch(&mut s, stdio)?;
    drop(lock);
    relay::wait(pid, pty).context("waiting for the command")
}

pub(crate) fn guest_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("guests")
}

/// `/run/netctx/guests`, root's alone (0700, also when an older netctx
/// made it).
fn make_guest_dir() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let d = guest_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .and_then(|_| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("creating {}", d.display()))
}

pub fn pid_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.pid"))
}

pub fn log_file(ctx: &str) -> PathBuf {
    guest_dir().join(format!("{ctx}.log"))
}

/// Write a file of root's alone (0600), atomically.
pub(crate) fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    io::Write::write_all(&mut f, text.as_bytes())?;
    std::fs::rename(tmp, path)
}

/// Start time of a process in clock ticks since boot (field 22 of stat),
/// which with the pid identifies it even after pid reuse; and its state.
pub(crate) fn start_time(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let [started] = crate::kernel::sys::stat_fields(&stat, [22])?;
    // Field 3, the state: the first character after the name's last `)`.
    let state = stat.get(stat.rfind(')')? + 2..)?.chars().next()?;
    Some((started, state))
}

/// The guest netctx started for a context, if any: its pid and whether it
/// still runs (the pid names a live process with the recorded start time).
pub fn recorded(ctx: &str) -> Option<(i32, bool)> {
    let s = std::fs::read_to_string(pid_file(ctx)).ok()?;
    let mut it = s.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    let alive =
        matches!(start_time(pid), Some((t, state)) if t == started && state != 'Z' && state != 'X');
    Some((pid, alive))
}

/// The running guest of a context: its pid.
pub fn running(ctx: &str) -> Option<i32> {
    recorded(ctx).filter(|g| g.1).map(|g| g.0)
}

/// What `start` found or did.
pub enum Started {
    /// The guest was running already: its pid.
    Already(i32),
    New(i32),
}

/// Start the declared guest detached, output to its log file. Everything
/// read from the guest's tree (its users) is read before the lock is
/// taken: a hostile tree cannot hold every other netctx up.
pub fn start(r: &Request) -> anyhow::Result<Started> {
    bind_hooks(r.ctx)?;
    let s = spec(r, None)?;
    let _lock = crate::kernel::lock::lock(r.lock_wait).context("taking the netctx lock")?;
    if let Some(pid) = running(&s.ctx) {
        return Ok(Started::Already(pid));
    }
    make_guest_dir()?;
    let log = logpump::start(&s.ctx, r.ctx.limits.log)?;
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    let mut s = s;
    let pid = launch(&mut s, [null.as_raw_fd(), log.as_raw_fd(), log.as_raw_fd()])?;
    // Only the guest holds the pipe now: the pump ends with it.
    drop(log);
    let (t, _) = start_time(pid).context("the guest exited at once")?;
    write_private(&pid_file(&s.ctx), &format!("{pid} {t}\n"))?;
    // Not waited for: it outlives netctx; the context's init reaps it.
    Ok(Started::New(pid))
}

/// The context's processes but its init.
fn guest_procs(ctx: &str) -> Vec<i32> {
    let init = init::running(ctx);
    cgroup::procs(ctx)
        .into_iter()
        .filter(|p| Some(*p) != init)
        .collect()
}

/// How many processes the context's guests run.
pub fn processes(ctx: &str) -> usize {
    guest_procs(ctx).len()
}

/// What `stop` ended.
pub enum Stopped {
    /// The declared guest (its pid) and whatever else ran.
    Guest(i32),
    /// Processes of `exec`, no declared guest.
    Processes(usize),
    Nothing,
}

/// End every process of the context: SIGTERM, then after `grace` the
/// cgroup's kill (SIGKILL to all, however they forked), then its init.
pub fn stop(ctx: &str, grace: Duration) -> anyhow::Result<Stopped> {
    let ctxs = [ctx.to_string()];
    stop_many(&ctxs, grace).pop().expect("one result a context")
}

/// `stop` for several contexts at once: all are sent SIGTERM first and
/// given the one `grace` together. Results in the order of `ctxs`.
pub fn stop_many(ctxs: &[String], grace: Duration) -> Vec<anyhow::Result<Stopped>> {
    // A context with no record of a guest or init and no group has had
    // nothing started in it: two directory listings, not five files a
    // context.
    let traces = Traces::read();
    let asked = ctxs;
    let ctxs: Vec<String> = asked.iter().filter(|c| traces.any(c)).cloned().collect();
    let found: Vec<(Option<i32>, Vec<i32>)> =
        ctxs.iter().map(|c| (running(c), guest_procs(c))).collect();
    for (_, procs) in &found {
        for p in procs {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
    }
    let t = Instant::now();
    let mut busy: Vec<&String> = ctxs
        .iter()
        .zip(&found)
        .filter(|(_, (_, p))| !p.is_empty())
        .map(|(c, _)| c)
        .collect();
    while !busy.is_empty() && t.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(20));
        busy.retain(|c| !guest_procs(c).is_empty());
    }
    let mut stopped: HashMap<String, anyhow::Result<Stopped>> = ctxs
        .iter()
        .zip(found)
        .map(|(ctx, (guest, procs))| {
            let r = (|| {
                cgroup::kill(ctx).with_context(|| format!("ending the processes of {ctx}"))?;
                init::forget(ctx);
                let _ = std::fs::remove_file(pid_file(ctx));
                Ok(match guest {
                    Some(pid) => Stopped::Guest(pid),
                    None if !procs.is_empty() => Stopped::Processes(procs.len()),
                    None => Stopped::Nothing,
                })
            })();
            (ctx.clone(), r)
        })
        .collect();
    asked
        .iter()
        .map(|c| stopped.remove(c).unwrap_or(Ok(Stopped::Nothing)))
        .collect()
}

/// What of the contexts' guests is there: the files in the guest
/// directory and the groups under netctx's cgroup (`None`: not readable,
/// so every context is looked at).
pub struct Traces {
    files: Option<HashSet<String>>,
    groups: Option<HashSet<String>>,
}

impl Traces {
    pub fn read() -> Traces {
        let names = |dir: PathBuf| -> Option<HashSet<String>> {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(HashSet::new()),
                Err(_) => return None,
            };
            rd.map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        };
        let groups = match cgroup::mount_point() {
            Ok(m) => names(m.join("netctx")),
            Err(cgroup::CgroupError::NoCgroup2) => Some(HashSet::new()),
            Err(_) => None,
        };
        Traces {
            files: names(guest_dir()),
            groups,
        }
    }

    /// Whether anything of a guest of `ctx` may be there.
    pub fn any(&self, ctx: &str) -> bool {
        let file = |ext: &str| {
            self.files
                .as_ref()
                .is_none_or(|f| f.contains(&format!("{ctx}.{ext}")))
        };
        file("pid") || file("init") || self.groups.as_ref().is_none_or(|g| g.contains(ctx))
    }
}

/// The network namespace inode of a process.
pub fn netns_inode(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}
