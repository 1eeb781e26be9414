//! A pool for unit tests: it starts nothing (or, made with
//! [`FakePool::starting`], machines that are all one fake buildlet
//! answering `/workdir` and `/status`, with starts that can be held),
//! remembers what it was asked to stop, and reports a machine gone when
//! told to. Also a coordinator around such a pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use gomote_shared::buildlet_client::BuildletClient;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::Coordinator;
use crate::config::{Builder, Config, HostType};
use crate::instances::{Instance, Record, Table};
use crate::pool::{Handle, Pool, PoolError, Started};
use crate::pools::Pools;
use crate::queue::Queues;
use crate::tokens::Tokens;
use crate::transfer::Transfers;

/// The fake pool.
#[derive(Debug)]
pub struct FakePool {
    pub name: String,
    pub capacity: usize,
    pub stopped: Mutex<Vec<Handle>>,
    pub gone: Notify,
    /// The fake buildlet started machines answer on, if they start.
    buildlet: Option<String>,
    held: watch::Sender<bool>,
    starting: AtomicUsize,
    started: AtomicUsize,
}

impl Default for FakePool {
    fn default() -> Self {
        FakePool {
            name: String::new(),
            capacity: 0,
            stopped: Mutex::default(),
            gone: Notify::new(),
            buildlet: None,
            held: watch::Sender::new(false),
            starting: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        }
    }
}

impl FakePool {
    pub fn new(name: &str, capacity: usize) -> Arc<FakePool> {
        Arc::new(FakePool {
            name: name.to_string(),
            capacity,
            ..FakePool::default()
        })
    }

    /// A pool whose starts succeed, every machine answering on one fake
    /// buildlet served from this runtime.
    pub async fn starting(name: &str, capacity: usize) -> Arc<FakePool> {
        let app = axum::Router::new()
            .route("/workdir", axum::routing::get(|| async { "/wd" }))
            .route(
                "/status",
                axum::routing::get(|| async { r#"{"Version":1}"# }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = l.local_addr().expect("its address").to_string();
        tokio::spawn(async move { axum::serve(l, app).await });
        Arc::new(FakePool {
            name: name.to_string(),
            capacity,
            buildlet: Some(addr),
            ..FakePool::default()
        })
    }

    /// Makes starts wait until [`FakePool::release_starts`].
    pub fn hold_starts(&self) {
        self.held.send_replace(true);
    }

    /// Lets held starts finish.
    pub fn release_starts(&self) {
        self.held.send_replace(false);
    }

    /// Starts in progress.
    pub fn starting_now(&self) -> usize {
        self.starting.load(Ordering::SeqCst)
    }

    /// Starts that succeeded.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// A handle as if this pool had started a machine.
    pub fn handle(&self) -> Handle {
        Handle {
            pool: self.name.clone(),
            addr: "127.0.0.1:1".into(),
            password: "pw".into(),
            detail: serde_json::Map::new(),
        }
    }

    /// An instance `u-b-0` of host type `h` on a machine of this pool,
    /// whose buildlet never answers.
    pub fn instance(&self) -> Arc<Instance> {
        let rec = Record {
            id: "u-b-0".into(),
            owner: "o".into(),
            builder_type: "b".into(),
            host_type: "h".into(),
            created: 0,
            expires: 0,
            working_dir: "/wd".into(),
            buildlet: self.handle(),
        };
        let client = BuildletClient::new("127.0.0.1:1", None).expect("a loopback client");
        let permit = Arc::new(Queues::default()).force("h", "o");
        Arc::new(Instance::new(rec, client, permit))
    }
}

impl Pool for FakePool {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn capacity(&self, _: &str) -> usize {
        self.capacity
    }

    fn start<'a>(&'a self, _: &'a str, id: &'a str) -> BoxFuture<'a, Result<Started, PoolError>> {
        Box::pin(async move {
            let Some(addr) = &self.buildlet else {
                return Err(PoolError::Start("a fake pool starts nothing".into()));
            };
            self.starting.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.subscribe();
            let _ = held.wait_for(|h| !*h).await;
            self.starting.fetch_sub(1, Ordering::SeqCst);
            self.started.fetch_add(1, Ordering::SeqCst);
            let mut handle = self.handle();
            handle.addr = addr.clone();
            handle.detail.insert("id".into(), id.into());
            Ok(Started {
                handle,
                client: BuildletClient::new(addr, None)?,
            })
        })
    }

    fn connect<'a>(&'a self, _: &'a Handle) -> BoxFuture<'a, Result<BuildletClient, PoolError>> {
        Box::pin(async { Ok(BuildletClient::new("127.0.0.1:1", None)?) })
    }

    fn stop<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.stopped.lock().push(handle.clone()) })
    }

    fn gone<'a>(&'a self, _: &'a Handle) -> BoxFuture<'a, String> {
        Box::pin(async {
            self.gone.notified().await;
            "its machine was switched off".to_string()
        })
    }
}

/// Builder `b` on host type `h`.
pub fn builder() -> Builder {
    Builder {
        name: "b".into(),
        host_type: "h".into(),
        env: vec![],
        bootstrap: None,
    }
}

/// A coordinator (not serving) whose host type `h` (builder `b`) comes
/// from `pool`, with its state in the returned directory.
pub fn coordinator(pool: Arc<FakePool>) -> (Arc<Coordinator>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = Config {
        host_types: vec![HostType {
            name: "h".into(),
            pool: pool.name.clone(),
            capacity: pool.capacity,
        }],
        builders: vec![builder()],
        ..Config::default()
    };
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .expect("a database");
    let table = Table::new(
        db.open_tree("instances").expect("a tree"),
        db.open_tree("tombstones").expect("a tree"),
        config.idle_timeout(),
    );
    let queues = Arc::new(Queues::default());
    queues.configure("h", pool.capacity);
    let mut pools = Pools::default();
    pools.insert("h", pool);
    let transfers = Transfers::open(dir.path(), &db, "http://127.0.0.1:1".into()).expect("a store");
    let c = Coordinator {
        config,
        tokens: Tokens::new(dir.path()),
        accounts: crate::accounts::Accounts::new(dir.path()),
        audit: crate::audit::Audit::new(dir.path()),
        csrf: crate::webform::CsrfKey::default(),
        public_url: "http://127.0.0.1:0".into(),
        table,
        queues,
        pools,
        transfers,
        http: reqwest::Client::new(),
        bootstrap_objects: tokio::sync::Mutex::new(HashMap::new()),
        _db: db,
    };
    (Arc::new(c), dir)
}
