//! `gomote-coordinator`: serve GomoteService with the local pool, or make
//! bearer tokens for users.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gomote_coordinator::{Options, config::Config};

mod admin_cli;

#[derive(Debug, Parser)]
#[command(
    name = "gomote-coordinator",
    version,
    about = "Own gomote instances and serve GomoteService over gRPC."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve gRPC and the transfer endpoints on one port.
    Serve {
        /// Address to listen on; port 0 picks one and prints it first on stdout.
        #[arg(long, default_value = "127.0.0.1:8119")]
        listen: String,
        /// State directory: tokens, database, objects, instance directories.
        #[arg(long)]
        state: PathBuf,
        /// A TOML configuration [default: built in for this machine].
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Manage bearer tokens (expiring; for robots such as CI, too).
    Token {
        #[command(subcommand)]
        cmd: admin_cli::TokenCmd,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        cmd: admin_cli::UserCmd,
    },
    /// Print the built-in configuration for this machine as TOML.
    DefaultConfig,
}

/// TLS: files, a self-signed certificate, or plaintext.
#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// TLS certificate chain (PEM) [default: self-signed, off loopback].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with the self-signed certificate on loopback too.
    #[arg(long, conflicts_with_all = ["tls_cert", "plaintext", "insecure_plaintext"])]
    tls_self_signed: bool,
    /// Serve plaintext (refused off loopback).
    #[arg(long, conflicts_with_all = ["tls_cert", "insecure_plaintext"])]
    plaintext: bool,
    /// Serve plaintext on any address (behind a TLS-terminating proxy).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_plaintext: bool,
}

impl TlsArgs {
    fn mode(self) -> gomote_coordinator::tls::TlsMode {
        use gomote_coordinator::tls::TlsMode;
        match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            _ if self.tls_self_signed => TlsMode::SelfSigned,
            _ if self.insecure_plaintext => TlsMode::InsecurePlaintext,
            _ if self.plaintext => TlsMode::Plaintext,
            _ => TlsMode::Auto,
        }
    }
}

async fn serve(
    listen: String,
    state: PathBuf,
    config: Option<PathBuf>,
    tls: gomote_coordinator::tls::TlsMode,
) -> anyhow::Result<()> {
    // Reading the file, or asking the host's `go` for its GOROOT, blocks.
    let config = tokio::task::spawn_blocking(move || match config {
        Some(p) => Config::load(&p),
        None => Ok(Config::builtin()),
    })
    .await
    .context("loading the configuration")??;
    let running = gomote_coordinator::start(Options {
        listen: listen.clone(),
        state,
        config,
        tls,
    })
    .await?;
    if let Some(fp) = &running.fingerprint {
        // Users compare this with what `gomote login` shows them (before
        // the address, which tells scripts the start is over).
        eprintln!("gomote-coordinator: TLS certificate fingerprint {fp}");
    }
    if listen.ends_with(":0") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", running.addr)?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; instances keep running and are restored on the next start");
    running.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Under a service manager stderr is a log: no colour codes there.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOMOTE_COORDINATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let res = match cli.cmd {
        Cmd::Serve {
            listen,
            state,
            config,
            tls,
        } => tokio::runtime::Runtime::new()
            .context("starting runtime")
            .and_then(|rt| rt.block_on(serve(listen, state, config, tls.mode()))),
        Cmd::Token { cmd } => admin_cli::token(cmd),
        Cmd::User { cmd } => admin_cli::user(cmd),
        Cmd::DefaultConfig => toml::to_string_pretty(&Config::builtin())
            .map(|t| print!("{t}"))
            .map_err(Into::into),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gomote-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
