//! Reaching the daemon: [`connect`] dials the local socket, and
//! [`connect_or_start`] starts `gomoted` when nobody answers (unless
//! `GOMOTE_NO_AUTOSTART=1`), detached in its own process group with its
//! output appended to `<data dir>/gomoted.log`, then waits up to
//! [`START_TIMEOUT`] for the socket to answer.
//!
//! Concurrent first commands start one daemon: every start (and every
//! restart, see [`crate::lifecycle`]) runs under [`StartLock`], a CLI-side
//! flock on `<data>/gomote-start.lock`, and re-probes the socket once it
//! holds it, so a gomote that waited finds the winner's daemon instead of
//! spawning its own. The daemon's own flock (`<data>/gomoted.lock`) stays
//! the real single-instance guard for daemons started any other way: a
//! spawned daemon that loses it exits, and we keep waiting for the socket.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::{ConnectOptions, GenericFilePath, ToFsName as _};
use nix::fcntl::{Flock, FlockArg};

use crate::report;

/// How long a freshly started daemon gets to answer. Generous: it opens
/// its database and embedded coordinator first, on possibly busy machines.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a gomote waits for another gomote's start or restart to finish
/// (that one may itself wait [`START_TIMEOUT`] plus a stop).
const START_LOCK_TIMEOUT: Duration = Duration::from_secs(40);

/// How often the socket and locks are polled.
const POLL: Duration = Duration::from_millis(50);

/// The daemon could not be reached or started (exit code `DAEMON`). The
/// message is the whole story: it is printed as is, causes included.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DaemonUnavailable(pub String);

/// Why spawning `gomoted` failed.
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    /// The log's directory could not be made.
    #[error("creating {}", .0.display())]
    LogDir(PathBuf, #[source] io::Error),
    /// The log could not be opened for appending.
    #[error("opening {}", .0.display())]
    OpenLog(PathBuf, #[source] io::Error),
    /// The log's handle could not be shared by stdout and stderr.
    #[error(transparent)]
    CloneLog(io::Error),
    /// The program could not be run.
    #[error("running {}", .0.display())]
    Run(PathBuf, #[source] io::Error),
}

/// Whether `GOMOTE_NO_AUTOSTART=1` forbids starting (and restarting) gomoted.
pub fn autostart_allowed() -> bool {
    !std::env::var("GOMOTE_NO_AUTOSTART").is_ok_and(|v| v == "1")
}

/// The daemon's single-instance lock file (pid and version inside).
pub fn lock_path() -> PathBuf {
    gomote_shared::paths::data_dir().join("gomoted.lock")
}

/// The log an autostarted daemon appends to.
pub fn log_path() -> PathBuf {
    gomote_shared::paths::data_dir().join("gomoted.log")
}

/// Dials the socket once.
pub async fn connect(socket: &Path) -> io::Result<Stream> {
    let name = socket.to_fs_name::<GenericFilePath>()?;
    ConnectOptions::new().name(name).connect_tokio().await
}

/// Whether a failed dial means "no daemon there" (so starting one helps).
pub fn nobody_home(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn unreachable(socket: &Path, e: &io::Error) -> DaemonUnavailable {
    DaemonUnavailable(format!("cannot reach gomoted at {}: {e}", socket.display()))
}

/// Dials the socket, starting the daemon if nobody answers.
pub async fn connect_or_start(socket: &Path) -> Result<Stream, DaemonUnavailable> {
    let first = match connect(socket).await {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    if !nobody_home(&first) {
        return Err(unreachable(socket, &first));
    }
    if !autostart_allowed() {
        return Err(DaemonUnavailable(format!(
            "gomoted is not running at {} ({first}) and GOMOTE_NO_AUTOSTART=1; start it with `gomote daemon start`",
            socket.display()
        )));
    }
    let _lock = StartLock::acquire().await?;
    start_locked(socket).await
}

/// The CLI-side start lock, held while probing, stopping and starting.
#[derive(Debug)]
pub struct StartLock {
    _file: Flock<File>,
}

impl StartLock {
    /// Waits (polling, so the wait is bounded) for the start lock.
    pub async fn acquire() -> Result<StartLock, DaemonUnavailable> {
        let path = gomote_shared::paths::data_dir().join("gomote-start.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonUnavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let deadline = Instant::now() + START_LOCK_TIMEOUT;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| DaemonUnavailable(format!("cannot open {}: {e}", path.display())))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(f) => return Ok(StartLock { _file: f }),
                Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {}
                Err((_, errno)) => {
                    return Err(DaemonUnavailable(format!(
                        "cannot lock {}: {errno}",
                        path.display()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(DaemonUnavailable(format!(
                    "another gomote has been starting gomoted for {}s (lock {}); see {}",
                    START_LOCK_TIMEOUT.as_secs(),
                    path.display(),
                    log_path().display()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether nobody holds the daemon's lock. Only call it under
/// [`StartLock`]: the probe holds the lock for an instant, and a daemon
/// started by another gomote in that instant would give up.
pub fn daemon_lock_free() -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(lock_path()) else {
        // No lock file: no daemon ever ran with this data directory.
        return true;
    };
    Flock::lock(file, FlockArg::LockSharedNonblock).is_ok()
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(gomote_shared::process::pid_alive)
}

/// Under [`StartLock`]: connects to a daemon that answers (one started by
/// systemd or launchd on first connection included), or spawns one and
/// waits until it answers.
pub async fn start_locked(socket: &Path) -> Result<Stream, DaemonUnavailable> {
    // Someone may have started it while we waited for the lock.
    match connect(socket).await {
        Ok(s) => return Ok(s),
        Err(e) if nobody_home(&e) => {}
        Err(e) => return Err(unreachable(socket, &e)),
    }
    let log = log_path();
    let mut child = spawn(&log).map_err(|e| {
        DaemonUnavailable(format!(
            "cannot start gomoted: {}; see {}",
            report::one_line(&e),
            log.display()
        ))
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let last = match connect(socket).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        if let Ok(Some(status)) = child.try_wait() {
            // It lost the lock to a daemon started some other way (by hand,
            // by systemd): that one will answer, so keep waiting. Otherwise
            // it failed, and waiting out the deadline would only hide why.
            // (We hold the start lock, so probing the daemon lock is safe.)
            if daemon_lock_free() {
                return Err(DaemonUnavailable(format!(
                    "gomoted exited ({status}) before answering{}; see {}",
                    log_tail(&log),
                    log.display()
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(DaemonUnavailable(format!(
                "gomoted did not start within {}s ({last}){}; see {}",
                START_TIMEOUT.as_secs(),
                log_tail(&log),
                log.display()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The log's last line, as `: <line>`, for error messages.
fn log_tail(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(": {}", l.trim()))
        })
        .unwrap_or_default()
}

/// `gomoted` next to this executable, else whatever PATH finds.
fn daemon_program() -> PathBuf {
    let name = format!("gomoted{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(&name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn spawn(log: &Path) -> Result<std::process::Child, SpawnError> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SpawnError::LogDir(dir.to_path_buf(), e))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| SpawnError::OpenLog(log.to_path_buf(), e))?;
    let err = out.try_clone().map_err(SpawnError::CloneLog)?;
    let program = daemon_program();
    let mut cmd = std::process::Command::new(&program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // A gomote run from a socket-activated service must not make the
        // daemon think the variables are meant for it (they are not: the
        // pid differs), nor pass them further down.
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    // Its own process group: Ctrl-C in this terminal must not reach it.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| SpawnError::Run(program, e))
}
