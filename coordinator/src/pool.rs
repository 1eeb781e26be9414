//! What a pool is: something that starts and stops the machines instances
//! run on, each with a buildlet the coordinator drives. The instance table,
//! the creation queue and the reaper see pools only through [`Pool`]; the
//! local pool (buildlet child processes) is one implementation, and pools
//! of reverse buildlets or containers fit behind the same trait.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use gomote_shared::buildlet_client::BuildletClient;
use serde::{Deserialize, Serialize};

/// What the coordinator keeps of a started machine. It is persisted with
/// the instance, so a restarted coordinator can reach (and stop) machines
/// started before: whatever a pool needs for that goes in `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    /// The name of the pool that started it.
    #[serde(default = "before_pools")]
    pub pool: String,
    /// Where its buildlet listens (`host:port` or a URL), for messages and
    /// for pools whose clients reach it directly.
    pub addr: String,
    /// The buildlet's Basic-auth password.
    pub password: String,
    /// The pool's own data about the machine (the local pool: its process
    /// and directory), opaque to the coordinator. Flattened so records of
    /// the local pool keep the layout they had before there were pools.
    #[serde(flatten)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// The pool of records written before pools had names: there was only
/// the local one.
fn before_pools() -> String {
    "local".to_string()
}

/// A machine a pool just started, its buildlet answering.
#[derive(Debug)]
pub struct Started {
    /// What to persist.
    pub handle: Handle,
    /// A client for its buildlet.
    pub client: BuildletClient,
}

/// Why a pool could not start or reach a machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Starting or preparing the machine failed.
    #[error("starting buildlet: {0}")]
    Start(String),
    /// Its buildlet's address or password is unusable.
    #[error(transparent)]
    Client(#[from] gomote_shared::buildlet_client::Error),
    /// A handle lacks what its pool needs (a record from another version).
    #[error("instance record of pool {pool:?}: {detail}")]
    BadHandle {
        /// The pool.
        pool: String,
        /// What is wrong.
        detail: String,
    },
    /// The configuration names no pool by this name.
    #[error("no pool {0:?} is configured")]
    NoPool(String),
    /// No configured pool provides this host type.
    #[error("no pool provides host type {0:?}")]
    NoHostType(String),
}

/// A source of machines for one or more host types.
///
/// Methods that wait return boxed futures so the coordinator can hold
/// pools as `Arc<dyn Pool>`, whatever their kind.
pub trait Pool: std::fmt::Debug + Send + Sync {
    /// Its name, as host types name it in the configuration (`local`).
    fn name(&self) -> &str;

    /// What kind of pool it is, for the status page and logs (`local`).
    fn kind(&self) -> &'static str;

    /// How many instances of `host_type` may exist at once; more requests
    /// wait in the creation queue.
    fn capacity(&self, host_type: &str) -> usize;

    /// Starts a machine for instance `id` of `host_type` and returns once
    /// its buildlet answers.
    fn start<'a>(
        &'a self,
        host_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Started, PoolError>>;

    /// A client for a machine this pool started, perhaps before the
    /// coordinator restarted. Whether the buildlet still answers is the
    /// caller's to find out.
    fn connect<'a>(
        &'a self,
        handle: &'a Handle,
    ) -> BoxFuture<'a, Result<BuildletClient, PoolError>>;

    /// Stops a machine and frees what it held. It cannot fail: what cannot
    /// be cleaned up is logged, and the instance is gone either way.
    fn stop<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()>;

    /// Resolves, saying why, once the pool knows the machine is gone (its
    /// process exited, its connection dropped). Heartbeats find every dead
    /// buildlet eventually; this is for pools that can tell sooner, so by
    /// default it never resolves.
    fn gone<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, String> {
        let _ = handle;
        Box::pin(std::future::pending())
    }

    /// For pools whose machines share this host's file system: the path
    /// under which an instance sees the host directory `host_path`
    /// (canonical), e.g. a bootstrap toolchain a sandbox shows elsewhere.
    /// `None` means instances cannot see it, so it is sent as a tarball;
    /// that is the default, for machines elsewhere.
    fn shared_path(&self, host_path: &Path) -> Option<PathBuf> {
        let _ = host_path;
        None
    }
}
