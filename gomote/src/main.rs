//! `gomote`: the thin CLI. It rewrites Go-style flags ([`goflags`]), parses
//! them with clap ([`cli`], values in Go's syntax by [`govalue`]), builds
//! one local-API request ([`request`], from the [`procenv`] captured once),
//! sends it to `gomoted` (started on demand, [`autostart`]; over the
//! connection of [`conn`]) and prints the streamed reply ([`client`],
//! [`render`]). Shell completion lives in [`complete`] and [`candidates`];
//! version skew and `gomote daemon ...` in [`lifecycle`] and [`daemon_cmd`].
//! All command logic is the daemon's; see docs/cli.md.

mod autostart;
mod candidates;
mod cli;
mod client;
mod complete;
mod conn;
mod daemon_cmd;
mod goflags;
mod govalue;
mod lifecycle;
mod procenv;
mod render;
mod report;
mod request;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use gomote_shared::api::{self, Command as ApiCmd};

use crate::autostart::DaemonUnavailable;
use crate::request::{Action, Stdin};

fn main() -> ExitCode {
    complete::handle_env();
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                0
            } else if let Some(d) = e.downcast_ref::<DaemonUnavailable>() {
                eprintln!("# {d}");
                api::exit::DAEMON
            } else {
                eprintln!("# {e:#}");
                api::exit::FAILURE
            }
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints a usage error with a short hint for the command at `path`.
fn usage_error(path: &[String], msg: &str) -> i32 {
    let mut root = cli::command();
    root.build();
    let mut cmd = &root;
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub,
            None => break,
        }
    }
    let usage = cmd.clone().render_usage();
    let help = std::iter::once("gomote help")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("error: {msg}\n\n{usage}\n\nFor more information, try '{help}'.");
    api::exit::USAGE
}

fn run() -> anyhow::Result<i32> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                return Ok(usage_error(
                    &[],
                    &format!("argument {a:?} is not valid UTF-8"),
                ));
            }
        }
    }
    let words = match goflags::normalise(&cli::command(), "gomote", &args) {
        Ok(w) => w,
        Err(e) => return Ok(usage_error(&e.path, &e.msg)),
    };
    let parsed = match cli::Cli::try_parse_from(words) {
        Ok(p) => p,
        Err(e) => {
            // Help and version go to stdout; errors to stderr with a hint.
            let _ = e.print();
            return Ok(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => api::exit::USAGE,
            });
        }
    };
    let env = procenv::Env::from_process()?;
    let (mut req, stdin) = match request::build(parsed, &env) {
        Ok(Action::Send(req, stdin)) => (req, stdin),
        Ok(Action::Completion(shell)) => {
            let mut out = std::io::stdout().lock();
            complete::script(&shell, &mut out)?;
            out.flush()?;
            return Ok(0);
        }
        Ok(Action::Unimplemented(name)) => {
            eprintln!("# gomote {name} is not implemented yet");
            return Ok(api::exit::FAILURE);
        }
        Ok(Action::Daemon(sub)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let socket = gomote_shared::paths::socket();
            return rt.block_on(daemon_cmd::run(sub, &socket));
        }
        Err(e) => return Ok(usage_error(&[e.cmd], &e.msg)),
    };
    // Kept until the command ends: dropping it deletes the file.
    let mut saved_stdin = None;
    match stdin {
        Stdin::None => {}
        Stdin::File => {
            let file = save_stdin()?;
            let path = file.path().to_path_buf();
            match &mut req.cmd {
                ApiCmd::Put(api::PutCmd { stdin_file, .. })
                | ApiCmd::Puttar(api::PuttarCmd { stdin_file, .. }) => {
                    *stdin_file = Some(path);
                }
                _ => {}
            }
            saved_stdin = Some(file);
        }
        Stdin::Token => {
            let token = read_token()?;
            if let ApiCmd::Login(login) = &mut req.cmd {
                login.token = token;
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let socket = gomote_shared::paths::socket();
    let mut renderer = render::Renderer::new(std::io::stdout(), std::io::stderr(), env.tty);
    let mut code = rt.block_on(client::send(&socket, &req, &mut renderer));
    // A login that met an untrusted certificate: ask at a terminal, and log
    // in again pinning it.
    if let Some((url, fp)) = renderer.untrusted.take()
        && let ApiCmd::Login(login) = &mut req.cmd
        && std::io::stdin().is_terminal()
        && confirm_certificate(&url, &fp)?
    {
        login.fingerprint = Some(fp);
        code = rt.block_on(client::send(&socket, &req, &mut renderer));
    }
    renderer.finish();
    drop(saved_stdin);
    code
}

/// Copies standard input into a private temporary file for the daemon.
fn save_stdin() -> anyhow::Result<tempfile::NamedTempFile> {
    // tempfile creates the file with mode 0600.
    let mut file = tempfile::Builder::new()
        .prefix("gomote-stdin-")
        .tempfile()
        .context("creating a temporary file for standard input")?;
    std::io::copy(&mut std::io::stdin().lock(), file.as_file_mut())
        .context("saving standard input")?;
    file.as_file_mut()
        .flush()
        .context("saving standard input")?;
    Ok(file)
}

/// Asks whether to trust a coordinator's certificate.
fn confirm_certificate(url: &str, fp: &str) -> anyhow::Result<bool> {
    eprintln!("The certificate of {url} is not trusted: {fp}");
    loop {
        eprint!("Trust it? (yes/no) ");
        let mut answer = String::new();
        if std::io::stdin()
            .read_line(&mut answer)
            .context("reading the answer")?
            == 0
        {
            return Ok(false);
        }
        match answer.trim() {
            "yes" => return Ok(true),
            "no" => return Ok(false),
            _ => {}
        }
    }
}

/// `gomote login`: the token from standard input.
fn read_token() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin().lock();
    let mut token = String::new();
    if stdin.is_terminal() {
        eprint!("Paste the coordinator token, then press Enter: ");
        std::io::BufRead::read_line(&mut stdin, &mut token).context("reading the token")?;
    } else {
        stdin
            .read_to_string(&mut token)
            .context("reading the token from standard input")?;
    }
    let token = token.trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "no token: pipe it in, as in 'gomote -server URL login < token-file'"
    );
    Ok(token)
}
