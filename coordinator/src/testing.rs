//! A pool for unit tests: it starts nothing, remembers what it was asked to
//! stop, and reports a machine gone when told to.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use gomote_shared::buildlet_client::BuildletClient;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::instances::{Instance, Record};
use crate::pool::{Handle, Pool, PoolError, Started};
use crate::queue::Queues;

/// The fake pool.
#[derive(Debug, Default)]
pub struct FakePool {
    pub name: String,
    pub capacity: usize,
    pub stopped: Mutex<Vec<Handle>>,
    pub gone: Notify,
}

impl FakePool {
    pub fn new(name: &str, capacity: usize) -> Arc<FakePool> {
        Arc::new(FakePool {
            name: name.to_string(),
            capacity,
            ..FakePool::default()
        })
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
        let permit = Arc::new(Queues::default()).force("h");
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

    fn start<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Started, PoolError>> {
        Box::pin(async { Err(PoolError::Start("a fake pool starts nothing".into())) })
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
