//! Speaking the local API: [`send`] posts one [`api::CommandRequest`] to
//! `/v0/command` over HTTP/1.1 on the daemon's socket and streams the
//! NDJSON reply into a [`Renderer`]; Ctrl-C cancels a started run through
//! `/v0/runs/<id>/cancel`. [`query_lines`] is the quiet variant used by
//! shell completion.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use gomote_shared::api::{self, Event};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::autostart::{self, DaemonUnavailable};
use crate::render::{Flow, Lines, Renderer};

type Sender<B> = hyper::client::conn::http1::SendRequest<B>;

/// How long the cancel request may take before the CLI exits anyway.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);

async fn handshake<B>(
    stream: interprocess::local_socket::tokio::Stream,
) -> anyhow::Result<Sender<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with gomoted")?;
    tokio::spawn(async move {
        // Its errors show up on the request or body, where they are reported.
        let _ = conn.await;
    });
    Ok(sender)
}

fn post<B>(path: &str, body: B) -> anyhow::Result<Request<B>> {
    Request::post(path)
        .header(header::HOST, api::HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(api::HEADER_CLI_VERSION, api::VERSION)
        .header(api::HEADER_CLI_PROTO, api::PROTO.to_string())
        .body(body)
        .context("building the request")
}

/// Sends `req` and prints the reply; returns the exit code.
pub async fn send<O: Write, E: Write>(
    socket: &Path,
    req: &api::CommandRequest,
    r: &mut Renderer<O, E>,
) -> anyhow::Result<i32> {
    let body = serde_json::to_vec(req).context("encoding the request")?;
    let stream = autostart::connect_or_start(socket).await?;
    let mut sender = handshake(stream).await.map_err(daemon_err)?;
    let request = post("/v0/command", Full::new(Bytes::from(body)))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = tokio::select! {
        res = exchange(&mut sender, request, r) => Some(res),
        _ = &mut ctrl_c => None,
    };
    match outcome {
        Some(res) => res,
        None => {
            r.finish();
            if let Some(id) = r.run_id.clone() {
                let cancelled = tokio::time::timeout(CANCEL_TIMEOUT, cancel(socket, &id)).await;
                match cancelled {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => r.note(&format!("could not cancel run {id}: {e:#}")),
                    Err(_) => r.note(&format!(
                        "could not cancel run {id}: gomoted did not answer"
                    )),
                }
            }
            Ok(api::exit::INTERRUPTED)
        }
    }
}

fn daemon_err(e: anyhow::Error) -> anyhow::Error {
    DaemonUnavailable(format!("{e:#}")).into()
}

async fn exchange<O: Write, E: Write>(
    sender: &mut Sender<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    r: &mut Renderer<O, E>,
) -> anyhow::Result<i32> {
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| DaemonUnavailable(format!("sending the command to gomoted: {e}")))?;
    warn_if_older(resp.headers(), r);
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let bytes = collect(&mut body).await;
        let msg = match serde_json::from_slice::<api::ApiError>(&bytes) {
            Ok(e) => e.error,
            Err(_) => format!(
                "gomoted answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ),
        };
        r.note(&msg);
        return Ok(api::exit::FAILURE);
    }
    let mut lines = Lines::default();
    loop {
        let chunk = match body.frame().await {
            None => break,
            Some(Err(_)) => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        for line in lines.push(&chunk) {
            if let Flow::Exit(code) = handle(&line, r)? {
                return Ok(code);
            }
        }
    }
    if let Some(line) = lines.rest()
        && let Flow::Exit(code) = handle(&line, r)?
    {
        return Ok(code);
    }
    r.note("the daemon died while the command was running");
    Ok(api::exit::DAEMON_DIED)
}

fn handle<O: Write, E: Write>(line: &[u8], r: &mut Renderer<O, E>) -> anyhow::Result<Flow> {
    match serde_json::from_slice::<Event>(line) {
        Ok(ev) => Ok(r.event(ev)?),
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

/// Warns (once per invocation) when the daemon is older than this CLI.
fn warn_if_older<O: Write, E: Write>(headers: &http::HeaderMap, r: &mut Renderer<O, E>) {
    let Some(theirs) = headers
        .get(api::HEADER_DAEMON_VERSION)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if is_older(theirs, api::VERSION) {
        r.note(&format!(
            "warning: the running gomoted is version {theirs}, older than this gomote ({}); stop it to have a new one started",
            api::VERSION
        ));
    }
}

/// Compares release numbers (`1.2.3`, ignoring `-pre` and `+build`).
pub fn is_older(theirs: &str, ours: &str) -> bool {
    fn nums(v: &str) -> Vec<u64> {
        let core = v.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or("");
        core.split('.').map(|p| p.parse().unwrap_or(0)).collect()
    }
    let (mut a, mut b) = (nums(theirs), nums(ours));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a < b
}

async fn cancel(socket: &Path, id: &str) -> anyhow::Result<()> {
    let stream = autostart::connect(socket).await?;
    let mut sender = handshake::<Empty<Bytes>>(stream).await?;
    let resp = sender
        .send_request(post(&format!("/v0/runs/{id}/cancel"), Empty::new())?)
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("gomoted answered {}", resp.status());
    }
    Ok(())
}

/// Sends `req` without autostart and returns its `Stdout` lines; for shell
/// completion, where silence beats errors.
pub async fn query_lines(socket: &Path, req: &api::CommandRequest) -> anyhow::Result<Vec<String>> {
    let stream = autostart::connect(socket).await?;
    let mut sender = handshake(stream).await?;
    let body = Full::new(Bytes::from(serde_json::to_vec(req)?));
    let resp = sender.send_request(post("/v0/command", body)?).await?;
    anyhow::ensure!(
        resp.status() == StatusCode::OK,
        "gomoted answered {}",
        resp.status()
    );
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

#[cfg(test)]
mod tests {
    use super::is_older;

    #[test]
    fn versions_compare_as_releases() {
        assert!(is_older("0.1.0", "0.2.0"));
        assert!(is_older("0.9.9", "0.10.0"));
        assert!(is_older("1.2", "1.2.1"));
        assert!(!is_older("0.2.0", "0.2.0"));
        assert!(!is_older("0.2.0-dev", "0.2.0"));
        assert!(!is_older("0.3.0", "0.2.9"));
        assert!(!is_older("v0.2.0+abc", "0.2.0"));
    }
}
