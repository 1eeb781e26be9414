//! Asking the host's Go toolchain where its GOROOT is (`go env GOROOT`),
//! with a bounded wait: a broken or hanging toolchain must not hang a
//! daemon or a coordinator. One helper for both the daemon's push (a user
//! with no `$GOROOT`) and the coordinator's bootstrap lookup.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long `go env GOROOT` may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why `go env GOROOT` gave no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoEnvError {
    /// `go` could not be started (not installed, not on `PATH`).
    #[error("failed to get GOROOT from go env: {0}")]
    Start(std::io::Error),
    /// It did not finish in time.
    #[error("failed to get GOROOT from go env: `go env GOROOT` took longer than {0:?}")]
    Timeout(Duration),
    /// It failed or printed nothing.
    #[error("Failed to get $GOROOT from environment or go env")]
    Empty,
}

/// `go env GOROOT`, run off the async workers, killed after `timeout`.
pub async fn goroot(timeout: Duration) -> Result<PathBuf, GoEnvError> {
    let child = tokio::process::Command::new("go")
        .args(["env", "GOROOT"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(GoEnvError::Start)?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| GoEnvError::Timeout(timeout))?
        .map_err(GoEnvError::Start)?;
    parse(out.status.success(), &out.stdout)
}

/// [`goroot`] for code that is not async (start-up configuration). It
/// blocks the calling thread, so async callers use [`goroot`] or run this
/// under `spawn_blocking`.
pub fn goroot_blocking(timeout: Duration) -> Result<PathBuf, GoEnvError> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("go")
        .args(["env", "GOROOT"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(GoEnvError::Start)?;
    let deadline = std::time::Instant::now() + timeout;
    // std has no wait with a timeout; the output is one short line, so
    // polling cannot dead-lock on a full pipe.
    let status = loop {
        match child.try_wait().map_err(GoEnvError::Start)? {
            Some(st) => break st,
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GoEnvError::Timeout(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut out = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut out).map_err(GoEnvError::Start)?;
    }
    parse(status.success(), &out)
}

fn parse(ok: bool, stdout: &[u8]) -> Result<PathBuf, GoEnvError> {
    let s = String::from_utf8_lossy(stdout).trim().to_string();
    if !ok || s.is_empty() {
        return Err(GoEnvError::Empty);
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_trimmed_and_failures_are_empty() {
        assert_eq!(
            parse(true, b"/usr/lib/go\n").unwrap(),
            PathBuf::from("/usr/lib/go")
        );
        assert!(matches!(parse(true, b"  \n"), Err(GoEnvError::Empty)));
        assert!(matches!(parse(false, b"/x\n"), Err(GoEnvError::Empty)));
    }
}
