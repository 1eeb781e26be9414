//! `buildlet`: the agent on every gomote instance. It serves the Go
//! project's buildlet HTTP protocol (docs/protocol.md section 4) over a work
//! directory: run commands, write and read files and tarballs, list trees.

mod app;
mod exec;
mod files;
mod firewall;
mod form;
mod http1;
mod idle;
mod listing;
mod reply;
mod routes;
mod server;
mod tarball;
mod walk;
mod workdir;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::App;
use crate::routes::BUILDLET_VERSION;
use crate::workdir::WorkDir;

#[derive(Debug, Parser)]
#[command(
    name = "buildlet",
    version = concat!(env!("CARGO_PKG_VERSION"), " (buildlet protocol 29)"),
    about = "Serve the buildlet protocol over a work directory, for gomote."
)]
struct Args {
    /// Address to listen on; port 0 picks a free port and prints it first on stdout.
    #[arg(long, default_value = "localhost:5936")]
    listen: String,
    /// The work directory [default: $TMPDIR/workdir, emptied at start].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// File holding the password clients must send with HTTP Basic auth
    /// [default: $META_password; `@FILE` reads it from FILE].
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// PEM certificate chain to serve TLS with [default: $META_tls_cert].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert [default: $META_tls_key].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Power the machine off on /halt (the buildlet only exits otherwise).
    #[arg(long)]
    halt_os: bool,
    /// Let GO_DISABLE_OUTBOUND_NETWORK=true install iptables rules on this host.
    #[arg(long)]
    allow_firewall: bool,
    /// Halt (as on /halt) when no request arrives for this long, a Go
    /// duration such as 30m or 1h30m: a buildlet whose coordinator is gone
    /// goes away by itself.
    #[arg(long, value_name = "DURATION", value_parser = idle::parse_go_duration)]
    halt_after_idle: Option<Duration>,
}

/// A metadata value from `META_<key>`; `@FILE` means the contents of FILE.
fn metadata(key: &str) -> anyhow::Result<Option<String>> {
    let Ok(v) = std::env::var(format!("META_{key}")) else {
        return Ok(None);
    };
    match v.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map(Some)
            .with_context(|| format!("reading META_{key} from {file}")),
        None => Ok(Some(v)),
    }
}

fn password(args: &Args) -> anyhow::Result<Option<String>> {
    if let Some(f) = &args.password_file {
        let p = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(Some(p.trim_end_matches(['\r', '\n']).to_string()).filter(|p| !p.is_empty()));
    }
    Ok(metadata("password")?.filter(|p| !p.is_empty()))
}

/// Writes `META_tls_*` values (PEM text) to files for the TLS loader.
fn tls_files(args: &Args, scratch: &Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some((c.clone(), k.clone())));
    }
    match (metadata("tls_cert")?, metadata("tls_key")?) {
        (Some(c), Some(k)) => {
            let (cp, kp) = (scratch.join("tls-cert.pem"), scratch.join("tls-key.pem"));
            std::fs::write(&cp, c)?;
            std::fs::write(&kp, k)?;
            Ok(Some((cp, kp)))
        }
        _ => Ok(None),
    }
}

fn default_workdir() -> anyhow::Result<PathBuf> {
    let wd = std::env::temp_dir().join("workdir");
    if wd.exists() {
        std::fs::remove_dir_all(&wd).with_context(|| format!("emptying {}", wd.display()))?;
    }
    Ok(wd)
}

/// The OS command Go's buildlet uses to power off.
fn halt_os() {
    let (cmd, args): (&str, &[&str]) = match std::env::consts::OS {
        "openbsd" => ("halt", &["-q", "-n", "-p"]),
        "freebsd" => ("shutdown", &["-p", "-o", "now"]),
        "macos" => ("sudo", &["/sbin/halt", "-n", "-q", "-l"]),
        _ => ("/bin/halt", &["-n", "-f", "-p"]),
    };
    match std::process::Command::new(cmd).args(args).status() {
        Ok(s) => tracing::info!(%s, "halt command finished"),
        Err(e) => tracing::error!(error = %e, "halt command failed"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let wd_path = match &args.workdir {
        Some(p) => p.clone(),
        None => default_workdir()?,
    };
    let wd = WorkDir::init(&wd_path)
        .with_context(|| format!("setting up work directory {}", wd_path.display()))?;
    let password = password(&args)?;
    let tls = match tls_files(&args, &wd.staging())? {
        Some((c, k)) => Some(server::tls_acceptor(&c, &k)?),
        None => None,
    };
    let (listener, local) = server::bind(&args.listen).await?;
    if args.listen.ends_with(":0") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{local}")?;
        out.flush()?;
    }
    tracing::info!(addr = %local, workdir = %wd.path().display(), tls = tls.is_some(), auth = password.is_some(),
        version = BUILDLET_VERSION, "buildlet listening");
    let (halt_tx, mut halt_rx) = mpsc::channel(1);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .context("building HTTP client")?;
    let app = Arc::new(App {
        wd,
        password,
        halt: halt_tx,
        http,
        allow_firewall: args.allow_firewall,
        digests: Arc::default(),
        activity: idle::Activity::default(),
    });
    let router = routes::router(app.clone());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let quiet = async {
        match args.halt_after_idle {
            Some(d) => app.activity.quiet_for(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = server::serve(listener, router, tls) => {}
        _ = halt_rx.recv() => {
            // Answer the /halt request first; act a second later, as Go does.
            tokio::time::sleep(Duration::from_secs(1)).await;
            halt(&app, args.halt_os).await;
        }
        () = quiet => {
            tracing::info!(after = ?args.halt_after_idle, "no request for too long; halting");
            halt(&app, args.halt_os).await;
        }
        _ = term.recv() => { tracing::info!("SIGTERM"); app.wd.kill_all(); }
        _ = int.recv() => { tracing::info!("SIGINT"); app.wd.kill_all(); }
    }
    Ok(())
}

/// What `/halt` does: kill every running command, power off when asked to.
async fn halt(app: &App, halt_os: bool) {
    app.wd.kill_all();
    if halt_os {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(self::halt_os),
        )
        .await;
    }
    tracing::info!("halted");
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDLET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("buildlet: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => {
            // Do not wait for blocking tasks (a walk, an extraction) to end.
            rt.shutdown_timeout(Duration::from_millis(100));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("buildlet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
