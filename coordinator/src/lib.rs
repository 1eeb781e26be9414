//! The gomote coordinator: it owns instances, queues their creation,
//! expires idle ones, and turns GomoteService RPCs into buildlet calls.
//! `gomoted` embeds it (with the local pool) when no remote coordinator is
//! configured; `gomote-coordinator serve` runs it on its own.
//!
//! Layout:
//! - configuration and identity: `config` (builder and host types),
//!   `tokens` (expiring bearer tokens), `accounts` (users, roles, one-time
//!   enrolment links), `password` (argon2id), `manage` (the `user` and
//!   `token` commands), `statefile` (the lock and atomic writes of files
//!   both those commands and the server change), `audit` (the JSON-lines
//!   audit log);
//! - machines: `pool` (the [`pool::Pool`] trait every source of machines
//!   implements, and the handle persisted per instance), `pools` (which
//!   pool provides each host type), `local_pool` (buildlet child
//!   processes, the one implementation so far) and `bwrap` (its sandbox);
//! - instances: `instances` (the table, names, expiry), `queue` (capacity
//!   and waiters), `create` (CreateInstance: queue, then pool), `health`
//!   (heartbeats and pool reports mark instances dead), `restore`
//!   (instances recorded before a restart), `teardown` (DestroyInstance and
//!   the reaper of idle instances), `tombstones` (what became of ended
//!   instances), `builder_names` (the names clients may use, Go's too),
//!   `builders` (builder environments and bootstrap toolchains);
//! - files: `transfer` (the object store and signed URLs), `fetch` (bodies
//!   for URLs clients name);
//! - edges: `error` ([`CoordError`], what the domain code returns),
//!   `explain` (buildlet failures in the user's terms), `service` (the
//!   gRPC API; maps errors to status codes), `extension` (the RPCs beyond
//!   Go's), `web` (the HTTP side), `enroll` (the
//!   enrolment page), `webform` (escaping, CSRF tokens and the Origin check
//!   for HTML forms).

pub mod accounts;
pub mod audit;
pub mod builder_names;
pub mod builders;
pub mod bwrap;
pub mod config;
pub mod create;
pub mod enroll;
pub mod error;
pub mod explain;
pub mod extension;
pub mod fetch;
pub mod health;
pub mod instances;
pub mod local_pool;
pub mod manage;
pub mod password;
pub mod pool;
pub mod pools;
pub mod queue;
pub mod restore;
mod serve_tls;
pub mod service;
pub mod statefile;
pub mod teardown;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod tokens;
pub mod tombstones;
pub mod transfer;
pub mod web;
pub mod webform;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gomote_shared::proto::gomote_extension_service_server::GomoteExtensionServiceServer;
use gomote_shared::proto::gomote_service_server::GomoteServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::error::CoordError;

use crate::config::Config;
use crate::instances::Table;
use crate::pool::PoolError;
use crate::pools::Pools;
use crate::queue::Queues;
use crate::tokens::Tokens;
use crate::transfer::Transfers;

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The state directory or its database.
    #[error("state directory {path}: {detail}")]
    State {
        /// The directory.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Binding the listen address.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A pool.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// TLS, or plaintext where it is refused.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The coordinator's shared state.
#[derive(Debug)]
pub struct Coordinator {
    /// Its configuration.
    pub config: Config,
    tokens: Tokens,
    accounts: accounts::Accounts,
    audit: audit::Audit,
    csrf: webform::CsrfKey,
    public_url: String,
    table: Table,
    queues: Arc<Queues>,
    pools: Pools,
    transfers: Transfers,
    http: reqwest::Client,
    bootstrap_objects: tokio::sync::Mutex<HashMap<PathBuf, String>>,
    _db: sled::Db,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on (port 0 picks one).
    pub listen: String,
    /// State directory (tokens, database, objects, instances).
    pub state: PathBuf,
    /// The configuration.
    pub config: Config,
    /// TLS or plaintext.
    pub tls: tls::TlsMode,
}

/// A running coordinator.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The TLS certificate's `SHA256:...` fingerprint (none: plaintext).
    pub fingerprint: Option<String>,
    /// The shared state.
    pub coordinator: Arc<Coordinator>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving (instances keep running; they are restored next start).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// Waits until the server stops.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// One host type's line on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// The host type.
    pub host_type: String,
    /// The kind of pool providing it (none for a host type only restored
    /// instances still use).
    pub pool_kind: Option<&'static str>,
    /// Instances that exist.
    pub in_use: usize,
    /// Instances that may exist.
    pub capacity: usize,
    /// Creations waiting for a slot.
    pub waiting: usize,
}

/// Opens the state directory, restores instances, and serves gRPC and HTTP
/// on one port.
pub async fn start(opts: Options) -> Result<Running, StartError> {
    let state_err = |detail: String| StartError::State {
        path: opts.state.display().to_string(),
        detail,
    };
    std::fs::create_dir_all(&opts.state).map_err(|e| state_err(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: opts.listen.clone(),
        source,
    })?;
    let served = tls::setup(&opts.tls, addr, &opts.state)?;
    let scheme = if served.acceptor.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = opts
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let db = sled::Config::new()
        .path(opts.state.join("db"))
        .open()
        .map_err(|e| {
            state_err(format!(
                "opening database (is another coordinator using it?): {e}"
            ))
        })?;
    let transfers = Transfers::open(&opts.state, &db, public_url.clone())
        .map_err(|e| state_err(e.to_string()))?;
    // `user add` prints links under this URL when not told another.
    manage::note_public_url(&opts.state, &public_url).map_err(|e| state_err(e.to_string()))?;
    let table = Table::new(
        db.open_tree("instances")
            .map_err(|e| state_err(e.to_string()))?,
        db.open_tree("tombstones")
            .map_err(|e| state_err(e.to_string()))?,
        opts.config.idle_timeout(),
    );
    let pools = Pools::from_config(&opts.config, opts.state.join("instances"))?;
    let queues = Arc::new(Queues::default());
    for (host, pool) in pools.host_types() {
        queues.configure(host, pool.capacity(host));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| state_err(format!("HTTP client: {e}")))?;
    let c = Arc::new(Coordinator {
        config: opts.config,
        tokens: Tokens::new(&opts.state),
        accounts: accounts::Accounts::new(&opts.state),
        audit: audit::Audit::new(&opts.state),
        csrf: webform::CsrfKey::default(),
        public_url: public_url.clone(),
        table,
        queues,
        pools,
        transfers,
        http,
        bootstrap_objects: tokio::sync::Mutex::default(),
        _db: db,
    });
    tracing::info!(
        %addr,
        tls = served.acceptor.is_some(),
        fingerprint = served.fingerprint.as_deref().unwrap_or(""),
        "coordinator listening"
    );
    c.restore().await;
    let cancel = CancellationToken::new();
    tokio::spawn(teardown::reaper(c.clone(), cancel.clone()));
    let grpc =
        tonic::service::Routes::new(GomoteServiceServer::new(service::Service::new(c.clone())))
            .add_service(GomoteExtensionServiceServer::new(
                extension::Extension::new(c.clone()),
            ))
            .into_axum_router()
            .layer(axum::middleware::map_request(service::note_rpc));
    let app = web::router(c.clone()).merge(grpc);
    let shutdown = cancel.clone();
    let fingerprint = served.fingerprint.clone();
    if let Some(acceptor) = served.acceptor {
        let task = tokio::spawn(serve_tls::serve(listener, acceptor, app, shutdown));
        return Ok(Running {
            addr,
            fingerprint,
            coordinator: c,
            cancel,
            task,
        });
    }
    let task = tokio::spawn(async move {
        // Small gRPC frames (one per output chunk) must not wait for
        // delayed ACKs: without NODELAY every exec gains ~40 ms.
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "coordinator server failed");
        }
    });
    Ok(Running {
        addr,
        fingerprint,
        coordinator: c,
        cancel,
        task,
    })
}

impl Coordinator {
    /// Creates a token for `email` that never expires in a state directory:
    /// the embedded coordinator's token, which `gomoted` keeps for good
    /// (`token create` makes expiring ones).
    pub fn create_token(
        state: &std::path::Path,
        email: &str,
    ) -> Result<String, tokens::TokenError> {
        Tokens::new(state).create_unexpiring(email).map(|t| t.token)
    }

    /// Counts for the status page: instances, and per host type its pool,
    /// slots and waiters.
    pub fn status(&self) -> (usize, Vec<HostStatus>) {
        let hosts = self
            .queues
            .snapshot()
            .into_iter()
            .map(|(host_type, in_use, capacity, waiting)| HostStatus {
                pool_kind: self.pools.for_host(&host_type).ok().map(|p| p.kind()),
                host_type,
                in_use,
                capacity,
                waiting,
            })
            .collect();
        (self.table.all().len(), hosts)
    }

    /// The transfer store (for the HTTP side).
    pub fn transfers(&self) -> &Transfers {
        &self.transfers
    }

    /// Time between heartbeats of every buildlet.
    fn heartbeat_every(&self) -> Duration {
        Duration::from_secs(self.config.heartbeat_interval_secs.max(1))
    }
}
