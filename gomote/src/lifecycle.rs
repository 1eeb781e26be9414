//! The daemon's life cycle as the CLI drives it: [`probe`] asks `GET
//! /v0/status` (with a timeout: a daemon is live when it answers, not when
//! its pid exists), [`ready`] hands the command sender a connection to a
//! daemon no older than this CLI, restarting an older one first, and
//! [`restart`] / [`stop_running`] implement `gomote daemon restart|stop`.
//! Every failure here is a [`DaemonUnavailable`] (exit code `DAEMON`).
//!
//! Version skew: the daemon reports its version in the `gomoted-version`
//! header. Older than us (compared as release numbers, [`is_older`]): with
//! autostart allowed we stop it (`POST /v0/shutdown`, then wait until its
//! lock is free) and start ours, all under [`StartLock`] so concurrent
//! gomotes restart it once; the check runs *before* the command is sent,
//! so nothing is ever sent twice. Otherwise, and when the daemon is newer,
//! one warning line per invocation. The rules are docs/protocol.md §1.2.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gomote_shared::api;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};

use crate::autostart::{self, DaemonUnavailable, StartLock};
use crate::conn::{Sender, get, handshake, post};
use crate::report;

/// How long a daemon that accepted the connection gets to answer status.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a daemon asked to shut down gets to release its lock.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A connected daemon and what it says about itself.
pub struct Probe {
    /// The connection, reusable for the command.
    pub sender: Sender<Full<Bytes>>,
    /// Its status.
    pub status: api::Status,
    /// The version from its `gomoted-version` header (what skew checks
    /// use), else the one in the status body.
    pub version: String,
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Prints `msg` to stderr unless a version warning was printed already.
pub fn warn_once(msg: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("# warning: {msg}");
    }
}

fn daemon_err(e: impl std::fmt::Display) -> DaemonUnavailable {
    DaemonUnavailable(e.to_string())
}

/// Asks the daemon on `stream` for its status.
async fn probe_stream(
    socket: &Path,
    stream: interprocess::local_socket::tokio::Stream,
) -> Result<Probe, DaemonUnavailable> {
    let mut sender = handshake(stream)
        .await
        .map_err(|e| daemon_err(report::one_line(&e)))?;
    let req =
        get("/v0/status", Full::new(Bytes::new())).map_err(|e| daemon_err(report::one_line(&e)))?;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let header_version = resp
            .headers()
            .get(api::HEADER_DAEMON_VERSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, header_version, body))
    };
    let (status, header_version, body) = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            daemon_err(format!(
                "gomoted at {} accepted the connection but did not answer within {}s; try `gomote daemon restart`",
                socket.display(),
                PROBE_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            daemon_err(format!(
                "asking gomoted for its status: {}",
                report::one_line(&e)
            ))
        })?;
    if status != StatusCode::OK {
        return Err(daemon_err(format!(
            "gomoted answered {status} to a status request: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let st: api::Status = serde_json::from_slice(&body)
        .map_err(|e| daemon_err(format!("reading gomoted's status: {e}")))?;
    Ok(Probe {
        sender,
        version: header_version.unwrap_or_else(|| st.version.clone()),
        status: st,
    })
}

/// Probes a running daemon without starting one; `None` if nobody answers.
pub async fn probe(socket: &Path) -> Result<Option<Probe>, DaemonUnavailable> {
    match autostart::connect(socket).await {
        Ok(stream) => Ok(Some(probe_stream(socket, stream).await?)),
        Err(e) if autostart::nobody_home(&e) => Ok(None),
        Err(e) => Err(daemon_err(format!(
            "cannot reach gomoted at {}: {e}",
            socket.display()
        ))),
    }
}

/// A connection to a daemon for a command: started if needed, restarted
/// first if it is older than this CLI (and autostart is allowed).
pub async fn ready(socket: &Path) -> Result<Sender<Full<Bytes>>, DaemonUnavailable> {
    let stream = autostart::connect_or_start(socket).await?;
    let p = probe_stream(socket, stream).await?;
    if !is_older(&p.version, api::VERSION) {
        warn_if_newer(&p.version);
        return Ok(p.sender);
    }
    if !autostart::autostart_allowed() {
        warn_once(&format!(
            "the running gomoted is version {}, older than this gomote ({}); restart it with `gomote daemon restart`",
            p.version,
            api::VERSION
        ));
        return Ok(p.sender);
    }
    eprintln!(
        "# restarting gomoted {} (pid {}): this gomote is {}",
        p.version,
        p.status.pid,
        api::VERSION
    );
    drop(p);
    restart(socket, true).await?;
    let stream = autostart::connect_or_start(socket).await?;
    let p = probe_stream(socket, stream).await?;
    if is_older(&p.version, api::VERSION) {
        // The gomoted we start is the one next to us (or on PATH): if it is
        // itself old, restarting again would loop.
        warn_once(&format!(
            "gomoted is still version {} after a restart (this gomote is {}); is an old gomoted first on PATH?",
            p.version,
            api::VERSION
        ));
    }
    Ok(p.sender)
}

/// Warns (once) when this CLI is older than the daemon.
pub fn warn_if_newer(daemon_version: &str) {
    if is_older(api::VERSION, daemon_version) {
        warn_once(&format!(
            "this gomote ({}) is older than the running gomoted ({daemon_version}); update gomote",
            api::VERSION
        ));
    }
}

/// Stops the running daemon (if any) and starts one, under the start lock.
/// With `only_if_older`, a daemon that is (by now) not older than this CLI
/// is left alone: a concurrent gomote may have restarted it already.
pub async fn restart(socket: &Path, only_if_older: bool) -> Result<(), DaemonUnavailable> {
    let _lock = StartLock::acquire().await?;
    if let Some(p) = probe(socket).await? {
        if only_if_older && !is_older(&p.version, api::VERSION) {
            return Ok(());
        }
        stop_locked(socket, p).await?;
    }
    autostart::start_locked(socket).await?;
    Ok(())
}

/// `gomote daemon stop`: the pid it stopped, or `None` if none ran.
pub async fn stop_running(socket: &Path) -> Result<Option<api::Status>, DaemonUnavailable> {
    let _lock = StartLock::acquire().await?;
    match probe(socket).await? {
        Some(p) => {
            let status = p.status.clone();
            stop_locked(socket, p).await?;
            Ok(Some(status))
        }
        None => Ok(None),
    }
}

/// Asks the daemon to shut down and waits until its lock is free (the
/// process has let go of the state database, so a new one may open it),
/// or, failing that, until its pid is gone and the socket refuses.
async fn stop_locked(socket: &Path, mut p: Probe) -> Result<(), DaemonUnavailable> {
    let pid = p.status.pid;
    let req = post("/v0/shutdown", Full::new(Bytes::new()))
        .map_err(|e| daemon_err(report::one_line(&e)))?;
    // The connection may drop as the daemon goes away; the wait decides.
    let _ = tokio::time::timeout(PROBE_TIMEOUT, p.sender.send_request(req)).await;
    drop(p);
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if autostart::daemon_lock_free() {
            return Ok(());
        }
        if !autostart::pid_alive(pid)
            && autostart::connect(socket)
                .await
                .is_err_and(|e| autostart::nobody_home(&e))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(daemon_err(format!(
                "gomoted (pid {pid}) did not stop within {}s; stop it with `kill {pid}`",
                STOP_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Compares release numbers (`1.2.3`, ignoring a `v` prefix, `-pre` and
/// `+build`), so `0.2.0-dev` and `v0.2.0+abc` both equal `0.2.0`.
pub fn is_older(theirs: &str, ours: &str) -> bool {
    fn nums(v: &str) -> Vec<u64> {
        let core = v.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or("");
        core.split('.').map(|p| p.parse().unwrap_or(0)).collect()
    }
    let (mut a, mut b) = (nums(theirs), nums(ours));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a < b
}

#[cfg(test)]
mod tests {
    use super::is_older;

    #[test]
    fn versions_compare_as_releases() {
        assert!(is_older("0.1.0", "0.2.0"));
        assert!(is_older("0.9.9", "0.10.0"));
        assert!(is_older("1.2", "1.2.1"));
        assert!(is_older("0.0.1", "0.1.0"));
        assert!(!is_older("0.2.0", "0.2.0"));
        assert!(!is_older("0.2.0-dev", "0.2.0"));
        assert!(!is_older("0.3.0", "0.2.9"));
        assert!(!is_older("v0.2.0+abc", "0.2.0"));
        assert!(!is_older("0.2", "0.2.0"));
    }
}
