//! `gomoted`: the per-user gomote daemon. It serves the local API on a
//! socket, keeps coordinator sessions (an embedded coordinator with the
//! local pool unless a remote one is configured), owns the groups, and runs
//! commands and pushes for the thin `gomote` CLI.

mod activation;
mod cmd;
mod config;
mod keepalive;
mod localtree;
mod lock;
mod manifest;
mod out;
mod push;
mod resolve;
mod server;
mod session;
mod state;
mod target;
mod transfer;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "gomoted",
    version,
    about = "The gomote daemon; `gomote` starts it when needed."
)]
struct Args {
    /// The socket to serve [default: $GOMOTED_SOCKET, else $XDG_RUNTIME_DIR/gomote/gomoted.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOMOTED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let socket = args.socket.unwrap_or_else(gomote_shared::paths::socket);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gomoted: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(server::run(socket));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gomoted: {e:#}");
            ExitCode::FAILURE
        }
    }
}
