//! Reaching the daemon: [`connect`] dials the local socket, and
//! [`connect_or_start`] starts `gomoted` when nobody answers (unless
//! `GOMOTE_NO_AUTOSTART=1`), detached in its own process group with its
//! output appended to `<data dir>/gomoted.log`, then waits up to
//! [`START_TIMEOUT`] for the socket to answer. Concurrent starts are safe:
//! the daemon takes a lock, so losers exit and everyone reaches the winner.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::{ConnectOptions, GenericFilePath, ToFsName as _};

/// How long a freshly started daemon gets to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon could not be reached or started (exit code `DAEMON`).
#[derive(Debug)]
pub struct DaemonUnavailable(pub String);

impl std::fmt::Display for DaemonUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonUnavailable {}

/// Dials the socket once.
pub async fn connect(socket: &Path) -> io::Result<Stream> {
    let name = socket.to_fs_name::<GenericFilePath>()?;
    ConnectOptions::new().name(name).connect_tokio().await
}

/// Whether a failed dial means "no daemon there" (so starting one helps).
fn nobody_home(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// Dials the socket, starting the daemon if nobody answers.
pub async fn connect_or_start(socket: &Path) -> Result<Stream, DaemonUnavailable> {
    let first = match connect(socket).await {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    if !nobody_home(&first) {
        return Err(DaemonUnavailable(format!(
            "cannot reach gomoted at {}: {first}",
            socket.display()
        )));
    }
    if std::env::var("GOMOTE_NO_AUTOSTART").is_ok_and(|v| v == "1") {
        return Err(DaemonUnavailable(format!(
            "gomoted is not running at {} ({first}) and GOMOTE_NO_AUTOSTART=1",
            socket.display()
        )));
    }
    let log = gomote_shared::paths::data_dir().join("gomoted.log");
    let mut child = spawn(&log).map_err(|e| {
        DaemonUnavailable(format!(
            "cannot start gomoted: {e:#}; see {}",
            log.display()
        ))
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let last = match connect(socket).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        // A child that exited may have lost the start race to another
        // daemon, so only the deadline ends the wait.
        let _ = child.try_wait();
        if Instant::now() >= deadline {
            return Err(DaemonUnavailable(format!(
                "gomoted did not start within {}s ({last}); see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

fn spawn(log: &Path) -> anyhow::Result<std::process::Child> {
    use anyhow::Context as _;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let program = daemon_program();
    let mut cmd = std::process::Command::new(&program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // Its own process group: Ctrl-C in this terminal must not reach it.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    cmd.spawn()
        .with_context(|| format!("running {}", program.display()))
}
