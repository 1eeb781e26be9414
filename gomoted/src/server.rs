//! The local API server: HTTP/1.1 over a local socket (interprocess +
//! hyper) with the axum routes `/v0/status`, `/v0/command`,
//! `/v0/runs/<id>/cancel` and `/v0/shutdown`. The socket is 0600 in a 0700
//! directory; requests must name `Host: gomoted.sock` and carry no Origin
//! or Referer, so a web page cannot drive the daemon.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State as AxState};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use gomote_shared::api::{self, ApiError, CommandRequest, ErrorKind, Event};
use http::{HeaderValue, StatusCode, header};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use tokio_util::sync::CancellationToken;

use crate::cmd::{Ctx, Runs};
use crate::config::Config;
use crate::out::Out;
use crate::session::Sessions;
use crate::state::State;

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    state: State,
    sessions: Arc<Sessions>,
    group_lock: Arc<tokio::sync::Mutex<()>>,
    runs: Arc<Runs>,
    started: Instant,
    socket: PathBuf,
    shutdown: CancellationToken,
}

fn api_error(status: StatusCode, kind: ErrorKind, msg: impl Into<String>) -> Response {
    let body = ApiError {
        error: msg.into(),
        kind,
    };
    (status, axum::Json(body)).into_response()
}

/// The version this daemon reports: `api::VERSION`, unless
/// `GOMOTED_FAKE_VERSION` (read once) says otherwise, so tests can play an
/// old daemon and exercise the CLI's restart-on-upgrade path.
pub(crate) fn reported_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        std::env::var("GOMOTED_FAKE_VERSION")
            .ok()
            .filter(|v| !v.is_empty() && HeaderValue::from_str(v).is_ok())
            .unwrap_or_else(|| api::VERSION.to_string())
    })
}

async fn guard(req: Request, next: Next) -> Response {
    let h = req.headers();
    let host_ok = h.get(header::HOST).and_then(|v| v.to_str().ok()) == Some(api::HOST);
    if !host_ok || h.contains_key(header::ORIGIN) || h.contains_key(header::REFERER) {
        return api_error(
            StatusCode::FORBIDDEN,
            ErrorKind::BadRequest,
            format!(
                "requests must be sent with Host: {} and no Origin or Referer",
                api::HOST
            ),
        );
    }
    let mut resp = next.run(req).await;
    let hs = resp.headers_mut();
    hs.insert(
        api::HEADER_DAEMON_VERSION,
        HeaderValue::from_static(reported_version()),
    );
    hs.insert(api::HEADER_DAEMON_PROTO, HeaderValue::from(api::PROTO));
    resp
}

async fn status(AxState(d): AxState<Arc<Daemon>>) -> Response {
    let s = api::Status {
        version: reported_version().into(),
        proto: api::PROTO,
        pid: std::process::id(),
        uptime_secs: d.started.elapsed().as_secs(),
        socket: d.socket.display().to_string(),
        sessions: d.sessions.names().await,
        kept_alive: {
            let mut k = d.sessions.keepalive.kept();
            k.extend(d.sessions.watches.subscriber_ids());
            k.into_iter().collect()
        },
        watches: d.sessions.watches.describe(),
    };
    axum::Json(s).into_response()
}

async fn command(AxState(d): AxState<Arc<Daemon>>, req: Request) -> Response {
    let proto = req
        .headers()
        .get(api::HEADER_CLI_PROTO)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if proto.is_some_and(|p| p != api::PROTO) {
        return api_error(
            StatusCode::BAD_REQUEST,
            ErrorKind::VersionMismatch,
            format!(
                "gomote speaks local API {} but gomoted {} speaks {}: restart it with `gomote daemon restart`",
                proto.unwrap_or(0),
                reported_version(),
                api::PROTO
            ),
        );
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                e.to_string(),
            );
        }
    };
    let creq: CommandRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                format!("bad request: {e}"),
            );
        }
    };
    let (out, rx) = Out::channel();
    let ctx = Ctx::new(
        creq,
        out.clone(),
        d.state.clone(),
        d.sessions.clone(),
        d.group_lock.clone(),
        d.runs.clone(),
    );
    // The command runs on its own task: if the CLI goes away, it finishes
    // anyway (a run keeps writing its output file).
    tokio::spawn(async move {
        let code = crate::cmd::dispatch(ctx).await;
        out.send(Event::Exit { code }).await;
    });
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(|e| {
        let mut v = serde_json::to_vec(&e).unwrap_or_default();
        v.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(v))
    });
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

async fn cancel(AxState(d): AxState<Arc<Daemon>>, UrlPath(id): UrlPath<String>) -> Response {
    if d.runs.cancel(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        api_error(
            StatusCode::NOT_FOUND,
            ErrorKind::BadRequest,
            format!("no running command {id:?}"),
        )
    }
}

async fn shutdown(AxState(d): AxState<Arc<Daemon>>) -> Response {
    d.shutdown.cancel();
    StatusCode::NO_CONTENT.into_response()
}

fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v0/status", get(status))
        .route("/v0/command", post(command))
        .route("/v0/runs/{id}/cancel", post(cancel))
        .route("/v0/shutdown", post(shutdown))
        .layer(middleware::from_fn(guard))
        .with_state(d)
}

/// Prepares the socket's directory (0700) and removes a stale socket file
/// left by a daemon that died, after checking nothing answers on it.
async fn prepare_socket(socket: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing {}", dir.display()))?;
    }
    if socket.exists() {
        let name = socket.to_path_buf().to_fs_name::<GenericFilePath>()?;
        if LocalSocketStream::connect(name).await.is_ok() {
            bail!("another daemon answers on {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    Ok(())
}

/// Serves until SIGTERM, SIGINT or `POST /v0/shutdown`.
pub async fn run(socket: PathBuf) -> anyhow::Result<()> {
    // First, before anything can read the environment concurrently.
    let activated = crate::activation::take()?;
    let data = gomote_shared::paths::data_dir();
    let _lock = crate::lock::acquire(&data)?;
    let config = Config::load(&gomote_shared::paths::config_dir())?;
    let state = State::open(&data)?;
    // Under systemd the socket (path, 0600, 0700 directory) is the socket
    // unit's: adopt it, and leave the file in place at shutdown.
    let (listener, socket, activated) = match activated {
        Some(a) => (a.listener, a.path.unwrap_or(socket), true),
        None => {
            prepare_socket(&socket).await?;
            let name = socket.clone().to_fs_name::<GenericFilePath>()?;
            let listener = ListenerOptions::new()
                .name(name)
                .create_tokio()
                .with_context(|| format!("listening on {}", socket.display()))?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
            }
            (listener, socket, false)
        }
    };
    let d = Arc::new(Daemon {
        sessions: Arc::new(Sessions::new(state.clone(), config, data.clone())),
        state,
        group_lock: Arc::default(),
        runs: Arc::default(),
        started: Instant::now(),
        socket: socket.clone(),
        shutdown: CancellationToken::new(),
    });
    tracing::info!(socket = %socket.display(), version = api::VERSION, "gomoted serving");
    tokio::spawn(d.sessions.clone().keep_alive_loop(d.shutdown.clone()));
    tokio::spawn(d.sessions.clone().restore_watches());
    let app = router(d.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            () = d.shutdown.cancelled() => break,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(conn);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "local API connection ended");
            }
        });
    }
    tracing::info!("shutting down");
    d.runs.cancel_all();
    d.sessions.shutdown().await;
    if !activated {
        let _ = std::fs::remove_file(&socket);
    }
    Ok(())
}
