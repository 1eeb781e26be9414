//! The local API server: HTTP/1.1 over a local socket (interprocess +
//! hyper) with the axum routes `/v0/status`, `/v0/command`,
//! `/v0/runs/<id>/cancel` and `/v0/shutdown`. The socket is 0600 in a 0700
//! directory; requests must name `Host: gomoted.sock` and carry no Origin
//! or Referer, so a web page cannot drive the daemon.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State as AxState};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use gomote_shared::api::{self, ApiError, CommandRequest, ErrorKind, Event};
use http::{HeaderValue, StatusCode, header};
use interprocess::local_socket::traits::tokio::Listener as _;

use crate::cmd::Ctx;
use crate::config::{Config, ConfigError};
use crate::daemon::Daemon;
use crate::listener::Listener;
use crate::out::Out;
use crate::state::{State, StateError};

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `config.toml`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state database.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where the daemon keeps its files.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// State, logs and the embedded coordinator's files.
    pub data: PathBuf,
    /// `config.toml`.
    pub config: PathBuf,
}

impl Dirs {
    /// The user's directories (`$XDG_DATA_HOME/gomote`, `$XDG_CONFIG_HOME/gomote`).
    pub fn from_env() -> Dirs {
        Dirs {
            data: gomote_shared::paths::data_dir(),
            config: gomote_shared::paths::config_dir(),
        }
    }
}

/// What a request handler sees.
#[derive(Debug)]
struct App {
    daemon: Arc<Daemon>,
    socket: PathBuf,
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

async fn status(AxState(app): AxState<Arc<App>>) -> Response {
    let d = &app.daemon;
    let s = api::Status {
        version: reported_version().into(),
        proto: api::PROTO,
        pid: std::process::id(),
        uptime_secs: d.started.elapsed().as_secs(),
        socket: app.socket.display().to_string(),
        sessions: d.sessions.names().await,
        kept_alive: d.kept_alive().into_iter().collect(),
        watches: d.watches.describe(),
    };
    axum::Json(s).into_response()
}

async fn command(AxState(app): AxState<Arc<App>>, req: Request) -> Response {
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
    let ctx = Ctx::new(creq, out.clone(), app.daemon.clone());
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

async fn cancel(AxState(app): AxState<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    if app.daemon.runs.cancel(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        api_error(
            StatusCode::NOT_FOUND,
            ErrorKind::BadRequest,
            format!("no running command {id:?}"),
        )
    }
}

async fn shutdown(AxState(app): AxState<Arc<App>>) -> Response {
    app.daemon.shutdown.cancel();
    StatusCode::NO_CONTENT.into_response()
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v0/status", get(status))
        .route("/v0/command", post(command))
        .route("/v0/runs/{id}/cancel", post(cancel))
        .route("/v0/shutdown", post(shutdown))
        .layer(middleware::from_fn(guard))
        .with_state(app)
}

/// Serves the local API on `listener` until `shutdown` completes or a
/// client asks for `POST /v0/shutdown`; `dirs` says where state lives.
pub async fn run(
    listener: Listener,
    dirs: Dirs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let config = Config::load(&dirs.config)?;
    let state = State::open(&dirs.data)?;
    let daemon = Arc::new(Daemon::new(state, config, dirs.data.clone()));
    tracing::info!(socket = %listener.path.display(), version = api::VERSION, "gomoted serving");
    daemon.start();
    let app = router(Arc::new(App {
        daemon: daemon.clone(),
        socket: listener.path.clone(),
    }));
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = listener.inner.accept() => c,
            () = daemon.shutdown.cancelled() => break,
            () = &mut shutdown => break,
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
    daemon.stop().await;
    if listener.owned {
        let _ = std::fs::remove_file(&listener.path);
    }
    Ok(())
}
