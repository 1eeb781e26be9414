//! The gomote coordinator: it owns instances, queues their creation,
//! expires idle ones, and turns GomoteService RPCs into buildlet calls.
//! `gomoted` embeds it (with the local pool) when no remote coordinator is
//! configured; `gomote-coordinator serve` runs it on its own.
//!
//! Layout: `config` (builder and host types), `tokens` (bearer tokens),
//! `instances` (the table, names, expiry), `queue` (capacity and waiters),
//! `local_pool` (buildlet child processes), `transfer` (the object store and
//! signed URLs), `service` (the gRPC API), `web` (the HTTP side).

pub mod config;
pub mod instances;
pub mod local_pool;
pub mod queue;
pub mod service;
pub mod tokens;
pub mod transfer;
pub mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use gomote_shared::buildlet_client::{Health, Heartbeat, HeartbeatConfig};
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::gomote_service_server::GomoteServiceServer;
use gomote_shared::proto::{CreateInstanceResponse, Instance as ProtoInstance};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::config::{Builder, Config};
use crate::instances::{Instance, Record, Table, unix};
use crate::local_pool::LocalPool;
use crate::queue::{Poll, Queues};
use crate::tokens::{Identity, Tokens};
use crate::transfer::Transfers;

/// How often a waiting CreateInstance says it is still waiting (Go: 5 s).
const WAITING_EVERY: Duration = Duration::from_secs(5);

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
    /// The local pool.
    #[error(transparent)]
    Pool(#[from] local_pool::PoolError),
}

/// The coordinator's shared state.
#[derive(Debug)]
pub struct Coordinator {
    /// Its configuration.
    pub config: Config,
    tokens: Tokens,
    table: Table,
    queues: Arc<Queues>,
    pool: LocalPool,
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
}

/// A running coordinator.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
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
    let public_url = opts
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let db = sled::Config::new()
        .path(opts.state.join("db"))
        .open()
        .map_err(|e| {
            state_err(format!(
                "opening database (is another coordinator using it?): {e}"
            ))
        })?;
    let transfers =
        Transfers::open(&opts.state, &db, public_url).map_err(|e| state_err(e.to_string()))?;
    let table = Table::new(
        db.open_tree("instances")
            .map_err(|e| state_err(e.to_string()))?,
        opts.config.idle_timeout(),
    );
    let pool = LocalPool::new(
        opts.config.local_pool.buildlet.clone(),
        opts.state.join("instances"),
        opts.config.local_pool.sandbox,
        opts.config
            .builders
            .iter()
            .filter_map(|b| b.bootstrap.clone())
            .collect(),
    )?;
    let queues = Arc::new(Queues::default());
    for h in &opts.config.host_types {
        queues.configure(&h.name, h.capacity);
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| state_err(format!("HTTP client: {e}")))?;
    let c = Arc::new(Coordinator {
        config: opts.config,
        tokens: Tokens::new(&opts.state),
        table,
        queues,
        pool,
        transfers,
        http,
        bootstrap_objects: tokio::sync::Mutex::default(),
        _db: db,
    });
    tracing::info!(%addr, sandboxed = c.pool.sandboxed(), "coordinator listening");
    c.restore().await;
    let cancel = CancellationToken::new();
    tokio::spawn(reaper(c.clone(), cancel.clone()));
    let grpc =
        tonic::service::Routes::new(GomoteServiceServer::new(service::Service::new(c.clone())))
            .into_axum_router();
    let app = web::router(c.clone()).merge(grpc);
    let shutdown = cancel.clone();
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
        coordinator: c,
        cancel,
        task,
    })
}

/// Halts and removes instances whose idle time ran out.
async fn reaper(c: Arc<Coordinator>, cancel: CancellationToken) {
    let every = Duration::from_secs(c.config.reap_interval_secs.max(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for inst in c.table.expired(SystemTime::now()) {
            let rec = inst.record();
            tracing::info!(id = %rec.id, "instance expired; destroying");
            c.table.remove(&rec.id);
            c.pool.stop(&rec.buildlet).await;
        }
    }
}

impl Coordinator {
    /// Creates a token for `email` in a state directory (the `token create`
    /// command; works while a coordinator is serving from it).
    pub fn create_token(state: &Path, email: &str) -> Result<String, tokens::TokenError> {
        Tokens::new(state).create(email)
    }

    /// Watches a buildlet's heartbeat and records its death on the instance.
    fn watch(&self, inst: &Arc<Instance>) {
        let hb = Heartbeat::spawn(
            inst.client.clone(),
            HeartbeatConfig {
                interval: Duration::from_secs(self.config.heartbeat_interval_secs.max(1)),
                max_failures: 3,
            },
        );
        let mut rx = hb.subscribe();
        inst.set_heartbeat(hb);
        let weak = Arc::downgrade(inst);
        tokio::spawn(async move {
            if let Ok(h) = rx.wait_for(|h| matches!(h, Health::Dead { .. })).await
                && let Health::Dead { since, error } = h.clone()
                && let Some(inst) = weak.upgrade()
            {
                tracing::warn!(id = %inst.id(), %error, "buildlet stopped answering heartbeats");
                inst.mark_dead(
                    since,
                    format!("buildlet stopped answering heartbeats ({error})"),
                );
            }
        });
    }

    /// Brings back instances recorded before a restart.
    async fn restore(&self) {
        for rec in self.table.stored() {
            let client = match rec.buildlet.client() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(id = %rec.id, error = %e, "dropping unusable instance record");
                    self.table.remove(&rec.id);
                    continue;
                }
            };
            let alive = tokio::time::timeout(Duration::from_secs(5), client.status()).await;
            let permit = self.queues.force(&rec.host_type);
            let inst = Arc::new(Instance::new(rec.clone(), client, permit));
            if !matches!(alive, Ok(Ok(_))) {
                inst.mark_dead(
                    SystemTime::now(),
                    "its buildlet was gone when the coordinator restarted".into(),
                );
            }
            tracing::info!(id = %rec.id, alive = matches!(alive, Ok(Ok(_))), "restored instance");
            self.watch(&inst);
            self.table.insert(inst);
        }
    }

    /// Runs one CreateInstance: waits for a slot (reporting its place),
    /// starts a buildlet, and sends exactly one COMPLETE.
    async fn create(
        self: Arc<Self>,
        id: Identity,
        builder: Builder,
        tx: mpsc::Sender<Result<CreateInstanceResponse, Status>>,
    ) {
        let host = builder.host_type.clone();
        let ticket = rand::random::<u64>();
        let mut last: Option<(usize, tokio::time::Instant)> = None;
        let permit = loop {
            let changed = self.queues.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.queues.poll(&host, ticket) {
                Poll::Ready(p) => break p,
                Poll::Waiting(ahead) => {
                    let due = last.is_none_or(|(n, t)| n != ahead || t.elapsed() >= WAITING_EVERY);
                    if due {
                        let msg = CreateInstanceResponse {
                            instance: None,
                            status: CreateStatus::Waiting as i32,
                            waiters_ahead: ahead as i64,
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            self.queues.cancel(&host, ticket);
                            return;
                        }
                        last = Some((ahead, tokio::time::Instant::now()));
                    }
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep(WAITING_EVERY) => {}
                        () = tx.closed() => { self.queues.cancel(&host, ticket); return; }
                    }
                }
            }
        };
        let name = self.table.reserve(&id.user, &builder.name);
        let fail =
            |e: String| Status::internal(format!("gomote creation failed instance={name}: {e}"));
        let started = match self.pool.start(&name).await {
            Ok(s) => s,
            Err(e) => {
                self.table.release(&name);
                let _ = tx.send(Err(fail(e.to_string()))).await;
                return;
            }
        };
        let client = match started.client() {
            Ok(c) => c,
            Err(e) => {
                self.table.release(&name);
                self.pool.stop(&started).await;
                let _ = tx.send(Err(fail(e.to_string()))).await;
                return;
            }
        };
        let wd = match client.workdir().await {
            Ok(w) => w,
            Err(e) => {
                self.table.release(&name);
                self.pool.stop(&started).await;
                let _ = tx
                    .send(Err(Status::internal(format!(
                        "unable to get the work directory: {e}"
                    ))))
                    .await;
                return;
            }
        };
        let now = SystemTime::now();
        let rec = Record {
            id: name.clone(),
            owner: id.owner.clone(),
            builder_type: builder.name.clone(),
            host_type: host,
            created: unix(now),
            expires: unix(now + self.table.idle()),
            working_dir: wd.clone(),
            buildlet: started,
        };
        let inst = Arc::new(Instance::new(rec.clone(), client, permit));
        self.watch(&inst);
        self.table.insert(inst);
        tracing::info!(id = %name, user = %id.user, "instance created");
        let done = CreateInstanceResponse {
            instance: Some(ProtoInstance {
                gomote_id: name,
                builder_type: rec.builder_type,
                host_type: rec.host_type,
                expires: rec.expires,
                working_dir: wd,
            }),
            status: CreateStatus::Complete as i32,
            waiters_ahead: 0,
        };
        // If the caller has gone, the instance stays and expires as usual.
        let _ = tx.send(Ok(done)).await;
    }

    /// The builder environment for a command: the instance's builder's, or
    /// with `imitate` the named builder's, which must share the host type.
    fn builder_env(&self, rec: &Record, imitate: &str) -> Result<Vec<String>, Status> {
        if imitate.is_empty() {
            return Ok(self
                .config
                .builder(&rec.builder_type)
                .map(|b| b.env.clone())
                .unwrap_or_default());
        }
        let b = self
            .config
            .builder(imitate)
            .ok_or_else(|| Status::invalid_argument(format!("unknown builder type {imitate:?}")))?;
        if b.host_type != rec.host_type {
            return Err(Status::invalid_argument(format!(
                "builder {imitate:?} runs on host type {:?}, not this instance's {:?}",
                b.host_type, rec.host_type
            )));
        }
        Ok(b.env.clone())
    }

    /// Writes the builder's bootstrap toolchain into the instance's `go1.4`
    /// (once) and returns where it came from.
    async fn add_bootstrap(&self, inst: &Arc<Instance>) -> Result<String, Status> {
        let rec = inst.record();
        let Some(src) = self
            .config
            .builder(&rec.builder_type)
            .and_then(|b| b.bootstrap.clone())
        else {
            return Ok(String::new());
        };
        if src.is_dir() {
            // A local buildlet sees this host's file system (read-only in
            // its sandbox): a link is the whole toolchain at no cost.
            let target = src
                .canonicalize()
                .map_err(|e| Status::internal(format!("bootstrap {}: {e}", src.display())))?;
            let link = Path::new(&rec.working_dir).join("go1.4");
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(&target, &link)
                    .map_err(|e| Status::internal(format!("linking bootstrap into go1.4: {e}")))?;
            }
            return Ok(format!("file://{}", target.display()));
        }
        let name = self.bootstrap_object(&src).await?;
        let url = self.transfers.signed_get_url(&name);
        inst.client
            .put_tar_from_url("go1.4", &url)
            .await
            .map_err(|e| Status::internal(format!("writing bootstrap toolchain: {e}")))?;
        Ok(url)
    }

    /// Copies a bootstrap .tar.gz into the object store once.
    async fn bootstrap_object(&self, src: &Path) -> Result<String, Status> {
        let mut cache = self.bootstrap_objects.lock().await;
        if let Some(n) = cache.get(src) {
            return Ok(n.clone());
        }
        let name = self.transfers.new_name();
        let tmp = self.transfers.temp_path();
        tokio::fs::copy(src, &tmp)
            .await
            .map_err(|e| Status::internal(format!("reading bootstrap {}: {e}", src.display())))?;
        self.transfers
            .commit(&tmp, &name, "coordinator")
            .map_err(|e| Status::internal(e.to_string()))?;
        cache.insert(src.to_path_buf(), name.clone());
        Ok(name)
    }

    /// Saves a byte stream as a new object owned by `owner`.
    async fn store_stream<S, E>(&self, mut stream: S, owner: &str) -> Result<String, String>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.transfers.temp_path();
        let res: Result<(), String> = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(chunk) = stream.next().await {
                f.write_all(&chunk.map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            f.flush().await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let name = self.transfers.new_name();
        self.transfers
            .commit(&tmp, &name, owner)
            .map_err(|e| e.to_string())?;
        Ok(name)
    }

    /// Counts for the status page: instances, and per host type (in use, capacity, waiting).
    pub fn status(&self) -> (usize, Vec<(String, usize, usize, usize)>) {
        (self.table.all().len(), self.queues.snapshot())
    }

    /// The transfer store (for the HTTP side).
    pub fn transfers(&self) -> &Transfers {
        &self.transfers
    }
}
