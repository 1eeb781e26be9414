//! Asking the host's Go toolchain where its GOROOT is (`go env GOROOT`),
//! with a bounded wait: a broken or hanging toolchain must not hang a
//! daemon or a coordinator. One helper for both the daemon's push (a user
//! with no `$GOROOT`: the toolchain the user's environment selects) and the
//! coordinator's bootstrap lookup (the toolchain installed on the host,
//! whatever the shell that started it points `GOROOT` at).

use std::ffi::{OsStr, OsString};
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
    let mut cmd = std::process::Command::new("go");
    cmd.args(["env", "GOROOT"]);
    run_blocking(cmd, timeout)
}

/// Variables that make `go` report (or switch to) another toolchain than
/// the one installed: a developer's `GOROOT` pointing at their own tree,
/// `GOFLAGS`, a `GOENV` file, `GOTOOLCHAIN`.
const SELECTORS: [&str; 4] = ["GOROOT", "GOFLAGS", "GOENV", "GOTOOLCHAIN"];

/// The GOROOT of the Go installed on this host (the `go` on `PATH` in
/// `env`), not of whatever `env` selects: `go env GOROOT` runs with exactly
/// `env` minus the [`SELECTORS`], with `GOENV=off` (no user configuration
/// file, which may name a toolchain) and `GOTOOLCHAIN=local` (no switch to
/// a downloaded one). Callers pass `std::env::vars_os()`; tests pass an
/// environment of their own. It blocks, like [`goroot_blocking`].
pub fn installed_goroot_blocking(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    timeout: Duration,
) -> Result<PathBuf, GoEnvError> {
    let mut cmd = std::process::Command::new("go");
    cmd.args(["env", "GOROOT"])
        .env_clear()
        .envs(
            env.into_iter()
                .filter(|(k, _)| !SELECTORS.iter().any(|s| OsStr::new(s) == k)),
        )
        .env("GOENV", "off")
        .env("GOTOOLCHAIN", "local");
    run_blocking(cmd, timeout)
}

/// Runs `go env GOROOT` as `cmd` describes, killed after `timeout`.
fn run_blocking(mut cmd: std::process::Command, timeout: Duration) -> Result<PathBuf, GoEnvError> {
    use std::io::Read as _;
    let mut child = cmd
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

    /// A fake `go` that reports the environment it was given, the way a
    /// real one would let `GOROOT` (and `GOTOOLCHAIN`) decide.
    fn fake_go(dir: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        let go = dir.join("go");
        std::fs::write(
            &go,
            "#!/bin/sh\necho \"${GOROOT:-/installed}|$GOFLAGS|$GOENV|$GOTOOLCHAIN|$KEEP\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_installed_toolchain_is_asked_without_the_users_selection() {
        let d = tempfile::tempdir().unwrap();
        fake_go(d.path());
        let env = |extra: &[(&str, &str)]| {
            let mut v: Vec<(OsString, OsString)> = vec![
                ("PATH".into(), d.path().into()),
                ("KEEP".into(), "kept".into()),
            ];
            v.extend(extra.iter().map(|(k, v)| (k.into(), v.into())));
            v
        };
        let selected = env(&[
            ("GOROOT", "/home/dev/go"),
            ("GOFLAGS", "-mod=vendor"),
            ("GOENV", "/home/dev/go.env"),
            ("GOTOOLCHAIN", "go1.99.0"),
        ]);
        assert_eq!(
            installed_goroot_blocking(selected, TIMEOUT).unwrap(),
            PathBuf::from("/installed||off|local|kept")
        );
        assert_eq!(
            installed_goroot_blocking(env(&[]), TIMEOUT).unwrap(),
            PathBuf::from("/installed||off|local|kept")
        );
        // No go on PATH: a start error, not a hang or a panic.
        let nothing = vec![(OsString::from("PATH"), OsString::from("/nonexistent"))];
        assert!(matches!(
            installed_goroot_blocking(nothing, TIMEOUT),
            Err(GoEnvError::Start(_))
        ));
    }
}
