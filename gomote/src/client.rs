//! Speaking the local API: [`send`] posts one [`api::CommandRequest`] to
//! `/v0/command` over HTTP/1.1 on the daemon's socket and streams the
//! NDJSON reply into a [`Renderer`] (docs/protocol.md §1.4 to §1.6); Ctrl-C
//! cancels a started run through `/v0/runs/<id>/cancel`. [`query_lines`] is
//! the quiet variant used by shell completion.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use gomote_shared::api::{self, Event};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;

use crate::autostart::{self, DaemonUnavailable};
use crate::conn::{ConnError, Sender, handshake, post};
use crate::lifecycle;
use crate::render::{Flow, Lines, Renderer};
use crate::report;

/// How long the cancel request may take before the CLI exits anyway.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a command's exchange with the daemon ended without an exit code.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    /// The command could not be sent.
    #[error(transparent)]
    Unavailable(#[from] DaemonUnavailable),
    /// Printing the reply failed (a closed pipe, usually).
    #[error(transparent)]
    Output(#[from] io::Error),
}

impl ExchangeError {
    /// The error as `main` classifies it: by the type of the cause itself,
    /// so it must not stay wrapped.
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            ExchangeError::Unavailable(e) => e.into(),
            ExchangeError::Output(e) => e.into(),
        }
    }
}

/// A short request to the daemon (cancel, completion) failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nobody answers on the socket.
    #[error(transparent)]
    Connect(#[from] io::Error),
    /// HTTP could not be set up, or the request was malformed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The request or its reply broke off.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The daemon refused.
    #[error("gomoted answered {0}")]
    Status(StatusCode),
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

/// Sends `req` and prints the reply; returns the exit code.
pub async fn send<O: Write, E: Write>(
    socket: &Path,
    req: &api::CommandRequest,
    r: &mut Renderer<O, E>,
) -> anyhow::Result<i32> {
    let body = Bytes::from(serde_json::to_vec(req).context("encoding the request")?);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut restarted = false;
    loop {
        // Started if needed, and restarted first if older than us.
        let mut sender = lifecycle::ready(socket).await?;
        let request = post("/v0/command", Full::new(body.clone()))?;
        let outcome = exchange(&mut sender, request, r, socket, ctrl_c.as_mut()).await;
        match outcome {
            // It refused the command unrun (a protocol it does not speak),
            // so sending it again to a new daemon is safe; once only.
            Ok(Reply::Rejected {
                daemon_version,
                msg,
            }) if !restarted
                && autostart::autostart_allowed()
                && lifecycle::is_older(&daemon_version, api::VERSION) =>
            {
                r.note(&format!("{msg}; restarting gomoted"));
                lifecycle::restart(socket, false).await?;
                restarted = true;
            }
            Ok(Reply::Rejected { msg, .. }) => {
                r.note(&msg);
                return Ok(api::exit::FAILURE);
            }
            Ok(Reply::Exit(code)) => return Ok(code),
            Err(e) => return Err(e.into_anyhow()),
        }
    }
}

/// How long, after Ctrl-C cancelled a run, the CLI waits for the daemon's
/// last words (where the partial output is) before exiting anyway.
const DRAIN_AFTER_CANCEL: Duration = Duration::from_secs(5);

/// Ctrl-C: a started run is cancelled through the daemon, which then ends
/// the reply saying what was interrupted; the CLI keeps printing until
/// then. With nothing started, the CLI just stops.
async fn interrupted<O: Write, E: Write>(
    socket: &Path,
    r: &mut Renderer<O, E>,
) -> Option<tokio::time::Instant> {
    r.finish();
    let id = r.run_id.clone()?;
    match tokio::time::timeout(CANCEL_TIMEOUT, cancel(socket, &id)).await {
        Ok(Ok(())) => Some(tokio::time::Instant::now() + DRAIN_AFTER_CANCEL),
        Ok(Err(e)) => {
            r.note(&format!(
                "could not cancel run {id}: {}",
                report::one_line(&e)
            ));
            None
        }
        Err(_) => {
            r.note(&format!(
                "could not cancel run {id}: gomoted did not answer"
            ));
            None
        }
    }
}

/// How a command ended.
enum Reply {
    /// The daemon ran it (or died running it): exit with this code.
    Exit(i32),
    /// The daemon refused it before running it because of version skew.
    Rejected {
        /// The daemon's version header.
        daemon_version: String,
        /// Its message.
        msg: String,
    },
}

async fn exchange<O: Write, E: Write>(
    sender: &mut Sender<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    r: &mut Renderer<O, E>,
    socket: &Path,
    mut ctrl_c: std::pin::Pin<&mut impl std::future::Future<Output = io::Result<()>>>,
) -> Result<Reply, ExchangeError> {
    let resp = tokio::select! {
        resp = sender.send_request(request) => resp
            .map_err(|e| DaemonUnavailable(format!("sending the command to gomoted: {e}")))?,
        _ = &mut ctrl_c => {
            r.finish();
            return Ok(Reply::Exit(api::exit::INTERRUPTED));
        }
    };
    let daemon_version = resp
        .headers()
        .get(api::HEADER_DAEMON_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let bytes = collect(&mut body).await;
        let msg = match serde_json::from_slice::<api::ApiError>(&bytes) {
            Ok(e) if e.kind == api::ErrorKind::VersionMismatch => {
                return Ok(Reply::Rejected {
                    daemon_version,
                    msg: e.error,
                });
            }
            Ok(e) => e.error,
            Err(_) => format!(
                "gomoted answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ),
        };
        r.note(&msg);
        return Ok(Reply::Exit(api::exit::FAILURE));
    }
    let mut lines = Lines::default();
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let frame = match drain_until {
            Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Ok(Reply::Exit(api::exit::INTERRUPTED)),
            },
            None => tokio::select! {
                f = body.frame() => f,
                _ = &mut ctrl_c => match interrupted(socket, r).await {
                    Some(deadline) => {
                        drain_until = Some(deadline);
                        continue;
                    }
                    None => return Ok(Reply::Exit(api::exit::INTERRUPTED)),
                },
            },
        };
        let chunk = match frame {
            None => break,
            Some(Err(_)) => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        for line in lines.push(&chunk) {
            if let Flow::Exit(code) = handle(&line, r)? {
                return Ok(Reply::Exit(code));
            }
        }
    }
    if let Some(line) = lines.rest()
        && let Flow::Exit(code) = handle(&line, r)?
    {
        return Ok(Reply::Exit(code));
    }
    r.note(
        "the daemon died while the command was running; the next gomote command starts a new one",
    );
    Ok(Reply::Exit(api::exit::DAEMON_DIED))
}

fn handle<O: Write, E: Write>(line: &[u8], r: &mut Renderer<O, E>) -> io::Result<Flow> {
    match serde_json::from_slice::<Event>(line) {
        Ok(ev) => r.event(ev),
        Err(e) => {
            r.note(&format!("ignoring an event gomote cannot read: {e}"));
            Ok(Flow::Continue)
        }
    }
}

async fn collect(body: &mut Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            out.extend_from_slice(&d);
        }
    }
    out
}

async fn cancel(socket: &Path, id: &str) -> Result<(), QueryError> {
    let stream = autostart::connect(socket).await?;
    let mut sender = handshake::<Empty<Bytes>>(stream).await?;
    let resp = sender
        .send_request(post(&format!("/v0/runs/{id}/cancel"), Empty::new())?)
        .await?;
    if !resp.status().is_success() {
        return Err(QueryError::Status(resp.status()));
    }
    Ok(())
}

/// Sends `req` without autostart and returns its `Stdout` lines; for shell
/// completion, where silence beats errors.
pub async fn query_lines(
    socket: &Path,
    req: &api::CommandRequest,
) -> Result<Vec<String>, QueryError> {
    let stream = autostart::connect(socket).await?;
    let mut sender = handshake(stream).await?;
    let body = Full::new(Bytes::from(serde_json::to_vec(req)?));
    let resp = sender.send_request(post("/v0/command", body)?).await?;
    if resp.status() != StatusCode::OK {
        return Err(QueryError::Status(resp.status()));
    }
    let mut body = resp.into_body();
    let bytes = collect(&mut body).await;
    let mut text = String::new();
    for line in bytes.split(|&b| b == b'\n') {
        match serde_json::from_slice::<Event>(line) {
            Ok(Event::Stdout { text: t }) => text.push_str(&t),
            Ok(Event::Exit { .. }) => break,
            _ => {}
        }
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}
