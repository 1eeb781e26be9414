//! The outbound firewall Go's Linux buildlets install when a command's
//! environment sets `GO_DISABLE_OUTBOUND_NETWORK=true`: allow 10/8, reject
//! new outbound TCP to ports 443, 80 and 22, once for the process's life.
//! It rewrites the host's iptables, so it runs only when the buildlet was
//! started with `--allow-firewall` (on a developer's own machine it must not).

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::OnceCell;

/// How long one `iptables` run may take. It normally takes milliseconds;
/// one stuck on the xtables lock or a wedged kernel module must not hold
/// the `/exec` that asked for the firewall (or every later one) forever.
const RULE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept new outbound connections to 10/8 (the builders' own network).
const ALLOW_PRIVATE: &[&str] = &[
    "-I",
    "OUTPUT",
    "1",
    "-m",
    "state",
    "--state",
    "NEW",
    "-d",
    "10.0.0.0/8",
    "-j",
    "ACCEPT",
];

/// The ports whose new outbound TCP connections are reset, in Go's order.
const REJECTED_PORTS: [&str; 3] = ["443", "80", "22"];

/// The rule that resets new outbound TCP connections to `port`.
fn reject(port: &str) -> [&str; 14] {
    [
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-m",
        "state",
        "--state",
        "NEW",
        "--dport",
        port,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
}

/// Why one firewall command failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The program could not be started (not installed, not permitted).
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The program ran and reported failure.
    #[error("{cmd}: {status}: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// The program did not finish in time and was killed.
    #[error("{cmd}: no answer after {after:?}; killed")]
    TimedOut {
        /// The command line.
        cmd: String,
        /// The time it was given.
        after: Duration,
    },
    /// Waiting for the program failed.
    #[error("waiting for {cmd}: {source}")]
    Wait {
        /// The command line.
        cmd: String,
        /// The underlying error.
        source: io::Error,
    },
}

static ONCE: OnceCell<()> = OnceCell::const_new();

/// Installs the rules the first time it is called; later (and concurrent)
/// callers wait for that first attempt. As in Go, a rule that fails is
/// logged and the command runs anyway.
pub async fn enable_once() {
    ONCE.get_or_init(|| async {
        let rejects = REJECTED_PORTS.map(reject);
        let rules = std::iter::once(ALLOW_PRIVATE).chain(rejects.iter().map(|r| &r[..]));
        for r in rules {
            if let Err(e) = run("iptables", r, RULE_TIMEOUT).await {
                tracing::warn!(error = %e, "iptables rule failed");
            }
        }
    })
    .await;
}

/// Runs `program args` without blocking a runtime worker, killing it (and
/// reaping it) if it takes longer than `limit`.
async fn run(program: &str, args: &[&str], limit: Duration) -> Result<(), FirewallError> {
    let cmd = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Backstop if this future is dropped mid-run (the /exec caller hung up).
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| FirewallError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    let mut stderr_pipe = child.stderr.take();
    let finished = tokio::time::timeout(limit, async {
        let mut stderr = Vec::new();
        if let Some(p) = stderr_pipe.as_mut() {
            // Best effort: the exit status is what decides.
            let _ = p.read_to_end(&mut stderr).await;
        }
        (child.wait().await, stderr)
    })
    .await;
    match finished {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), stderr)) => Err(FirewallError::Failed {
            cmd,
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        }),
        Ok((Err(source), _)) => Err(FirewallError::Wait { cmd, source }),
        Err(_) => {
            // Kill and reap now rather than leave a zombie behind.
            if let Err(e) = child.kill().await {
                tracing::warn!(error = %e, %cmd, "killing timed-out command");
            }
            Err(FirewallError::TimedOut { cmd, after: limit })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_are_go_s() {
        assert_eq!(
            super::ALLOW_PRIVATE.join(" "),
            "-I OUTPUT 1 -m state --state NEW -d 10.0.0.0/8 -j ACCEPT"
        );
        let rejects: Vec<String> = super::REJECTED_PORTS
            .map(super::reject)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rejects,
            ["443", "80", "22"].map(|p| format!(
                "-A OUTPUT -p tcp -m state --state NEW --dport {p} -j REJECT --reject-with tcp-reset"
            ))
        );
    }

    use super::*;

    #[tokio::test]
    async fn reports_success_failure_and_missing_program() {
        run("true", &[], RULE_TIMEOUT).await.unwrap();
        let e = run("sh", &["-c", "echo nope >&2; exit 3"], RULE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::Failed { .. }), "{e:?}");
        assert!(e.to_string().ends_with(": nope"), "{e}");
        let e = run("no-such-program-xyz", &[], RULE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::Spawn { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn kills_a_command_that_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
        let start = std::time::Instant::now();
        let e = run("sh", &["-c", &script], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::TimedOut { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: not even a zombie is left.
        assert_eq!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn does_not_block_the_runtime() {
        // On a single-threaded runtime a blocking wait would starve the
        // ticker until the command ended.
        let ticks = tokio::spawn(async {
            let mut n = 0;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                n += 1;
            }
            n
        });
        run("sleep", &["0.5"], RULE_TIMEOUT).await.unwrap();
        assert!(ticks.is_finished(), "the runtime was blocked");
        assert_eq!(ticks.await.unwrap(), 5);
    }
}
