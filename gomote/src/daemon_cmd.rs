//! `gomote daemon status|start|stop|restart|logs`: the only commands the
//! CLI carries out itself, over the daemon's `/v0/status` and
//! `/v0/shutdown` ([`crate::lifecycle`]) and its log file.

use std::io::{Read as _, Seek as _, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gomote_shared::api;

use crate::autostart::{self, DaemonUnavailable, StartLock};
use crate::cli::DaemonCmd;
use crate::lifecycle;

/// Runs one `gomote daemon` command; returns the exit code.
pub async fn run(cmd: DaemonCmd, socket: &Path) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match cmd {
        DaemonCmd::Status { json } => match lifecycle::probe(socket).await? {
            Some(p) => {
                lifecycle::warn_if_newer(&p.version);
                if json {
                    serde_json::to_writer_pretty(&mut out, &p.status)?;
                    writeln!(out)?;
                } else {
                    print_status(&mut out, &p.status)?;
                }
                Ok(0)
            }
            None if json => {
                writeln!(out, "null")?;
                Ok(api::exit::DAEMON)
            }
            None => {
                writeln!(out, "gomoted is not running (socket {})", socket.display())?;
                Ok(api::exit::DAEMON)
            }
        },
        DaemonCmd::Start => {
            if let Some(p) = lifecycle::probe(socket).await? {
                writeln!(
                    out,
                    "gomoted is already running (pid {}, version {})",
                    p.status.pid, p.version
                )?;
                return Ok(0);
            }
            // An explicit start is allowed even with GOMOTE_NO_AUTOSTART=1.
            {
                let _lock = StartLock::acquire().await?;
                autostart::start_locked(socket).await?;
            }
            report_started(&mut out, socket, "started").await
        }
        DaemonCmd::Stop => {
            match lifecycle::stop_running(socket).await? {
                Some(st) => {
                    writeln!(out, "stopped gomoted (pid {})", st.pid)?;
                    explain_stop(&st);
                }
                None => writeln!(out, "gomoted is not running")?,
            }
            Ok(0)
        }
        DaemonCmd::Restart => {
            lifecycle::restart(socket, false).await?;
            report_started(&mut out, socket, "restarted").await
        }
        DaemonCmd::Logs { follow, lines } => {
            drop(out);
            logs(&autostart::log_path(), follow, lines as usize)
        }
    }
}

async fn report_started(out: &mut impl Write, socket: &Path, what: &str) -> anyhow::Result<i32> {
    let p = lifecycle::probe(socket)
        .await?
        .ok_or_else(|| DaemonUnavailable("gomoted stopped right after starting".into()))?;
    writeln!(
        out,
        "{what} gomoted (pid {}, version {})",
        p.status.pid, p.version
    )?;
    Ok(0)
}

/// What stopping the daemon means for instances, on stderr as progress.
fn explain_stop(st: &api::Status) {
    let kept = if st.kept_alive.is_empty() {
        String::new()
    } else {
        format!(
            " ({} were kept alive: {})",
            st.kept_alive.len(),
            st.kept_alive.join(", ")
        )
    };
    eprintln!(
        "# Instances keep running{kept}, but nothing keeps them alive now: each expires after its coordinator's idle timeout unless gomoted runs again."
    );
    if st.sessions.iter().any(|s| s.starts_with("embedded")) {
        eprintln!(
            "# The embedded coordinator stopped with gomoted; its instances are picked up again when gomoted next starts (any gomote command starts it)."
        );
    }
}

fn print_status(out: &mut impl Write, s: &api::Status) -> anyhow::Result<()> {
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    writeln!(out, "version:     {} (local API {})", s.version, s.proto)?;
    writeln!(out, "pid:         {}", s.pid)?;
    writeln!(out, "uptime:      {}", human(s.uptime_secs))?;
    writeln!(out, "socket:      {}", s.socket)?;
    writeln!(out, "sessions:    {}", list(&s.sessions))?;
    writeln!(out, "kept alive:  {}", list(&s.kept_alive))?;
    writeln!(out, "watches:     {}", list(&s.watches))?;
    Ok(())
}

/// `1h2m3s`, like Go's `time.Duration` for whole seconds.
fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Prints the log (its last `lines` lines, or all), then with `follow`
/// whatever is appended, starting over if the file is truncated.
fn logs(path: &Path, follow: bool, lines: usize) -> anyhow::Result<i32> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            eprintln!(
                "# no log at {}: gomote has not started gomoted here (under systemd: journalctl --user -u gomoted)",
                path.display()
            );
            return Ok(api::exit::FAILURE);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Follow a log that does not exist yet.
            wait_for(path)?
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(tail(&text, lines))?;
    out.flush()?;
    if !follow {
        return Ok(0);
    }
    let mut pos = text.len() as u64;
    let mut buf = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Truncated or replaced: read it from the start.
            file = wait_for(path)?;
            pos = 0;
        }
        file.seek(SeekFrom::Start(pos))?;
        buf.clear();
        file.read_to_end(&mut buf)?;
        if !buf.is_empty() {
            pos += buf.len() as u64;
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
}

fn wait_for(path: &Path) -> anyhow::Result<std::fs::File> {
    loop {
        match std::fs::File::open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }
}

/// The last `n` lines of `text` (all of it for 0).
fn tail(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return text;
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::{human, tail};

    #[test]
    fn tails_and_durations() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", 0), b"a\nb\n");
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m5s");
        assert_eq!(human(3725), "1h2m5s");
    }
}
