//! The `gomoted` binary: flags, logging, the runtime, and the socket;
//! everything else is the library's [`gomoted::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gomoted::{Dirs, Listener};

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
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Started by the CLI its stderr is a log file: no colour codes there.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOMOTED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gomoted: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Args) -> anyhow::Result<()> {
    // Before the runtime starts threads: it edits the environment.
    let inherited = gomoted::activation::take()?;
    let socket = args.socket.unwrap_or_else(gomote_shared::paths::socket);
    let dirs = Dirs::from_env();
    // One daemon per user, decided before the socket is touched: two
    // daemons racing to start must not each remove the other's socket.
    let _lock = gomoted::lock::acquire(&dirs.data)?;
    let rt = tokio::runtime::Runtime::new().context("starting runtime")?;
    let res = rt.block_on(async {
        let listener = match inherited {
            Some(i) => Listener::adopt(i.into_listener()?, socket),
            None => Listener::bind(&socket).await?,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("handling SIGTERM")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        gomoted::run(listener, dirs, shutdown).await?;
        anyhow::Ok(())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    res
}
