//! The pools a coordinator has, built from its configuration: which pool
//! provides each host type, and which pool started a given machine (the one
//! to stop it, even if the configuration has changed since).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::local_pool::{self, LocalPool};
use crate::pool::{Handle, Pool, PoolError};

/// Pools by host type and by name.
#[derive(Debug, Default)]
pub struct Pools {
    by_host: BTreeMap<String, Arc<dyn Pool>>,
    by_name: HashMap<String, Arc<dyn Pool>>,
}

impl Pools {
    /// The pools `config`'s host types name, with local instance
    /// directories under `instances`.
    pub fn from_config(config: &Config, instances: PathBuf) -> Result<Pools, PoolError> {
        let mut pools = Pools::default();
        let local: Vec<_> = config
            .host_types
            .iter()
            .filter(|h| h.pool == local_pool::NAME)
            .collect();
        if !local.is_empty() {
            let pool = LocalPool::new(
                config.local_pool.buildlet.clone(),
                instances,
                config.local_pool.sandbox,
                config
                    .builders
                    .iter()
                    .filter_map(|b| b.bootstrap.clone())
                    .collect(),
                local.iter().map(|h| (h.name.clone(), h.capacity)).collect(),
                Some(halt_after_idle(config)),
            )?;
            tracing::info!(
                pool = local_pool::NAME,
                sandboxed = pool.sandboxed(),
                "pool ready"
            );
            let pool: Arc<dyn Pool> = Arc::new(pool);
            for h in local {
                pools.insert(&h.name, pool.clone());
            }
        }
        // Validation allows no other pool yet; say so rather than serve a
        // host type nobody provides.
        if let Some(h) = config
            .host_types
            .iter()
            .find(|h| !pools.by_host.contains_key(&h.name))
        {
            return Err(PoolError::NoPool(h.pool.clone()));
        }
        Ok(pools)
    }

    /// Lets `pool` provide `host_type`.
    pub fn insert(&mut self, host_type: &str, pool: Arc<dyn Pool>) {
        self.by_name.insert(pool.name().to_string(), pool.clone());
        self.by_host.insert(host_type.to_string(), pool);
    }

    /// The pool providing `host_type`.
    pub fn for_host(&self, host_type: &str) -> Result<&Arc<dyn Pool>, PoolError> {
        self.by_host
            .get(host_type)
            .ok_or_else(|| PoolError::NoHostType(host_type.to_string()))
    }

    /// The pool that started a machine.
    pub fn of(&self, handle: &Handle) -> Result<&Arc<dyn Pool>, PoolError> {
        self.by_name
            .get(&handle.pool)
            .ok_or_else(|| PoolError::NoPool(handle.pool.clone()))
    }

    /// Every host type and its pool, sorted by host type.
    pub fn host_types(&self) -> impl Iterator<Item = (&str, &Arc<dyn Pool>)> {
        self.by_host.iter().map(|(h, p)| (h.as_str(), p))
    }

    /// Stops a machine through the pool that started it.
    pub async fn stop(&self, handle: &Handle) {
        match self.of(handle) {
            Ok(pool) => pool.stop(handle).await,
            Err(e) => tracing::warn!(addr = %handle.addr, error = %e, "cannot stop buildlet"),
        }
    }
}

/// How long a local buildlet waits for a request before it halts: longer
/// than an instance may stay idle (so a coordinator restarted within that
/// time finds its instances), and than a few missed heartbeats. A live
/// coordinator heartbeats every instance, so only orphans go that quiet.
fn halt_after_idle(config: &Config) -> Duration {
    let heartbeats = Duration::from_secs(config.heartbeat_interval_secs.max(1)) * 3;
    config.idle_timeout() + heartbeats.max(Duration::from_secs(5 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePool;

    #[tokio::test]
    async fn routes_by_host_type_and_stops_through_the_starting_pool() {
        let a = FakePool::new("a", 2);
        let b = FakePool::new("b", 1);
        let mut pools = Pools::default();
        pools.insert("h1", a.clone());
        pools.insert("h2", a.clone());
        pools.insert("h3", b.clone());
        assert_eq!(pools.for_host("h3").unwrap().name(), "b");
        assert!(matches!(
            pools.for_host("nope"),
            Err(PoolError::NoHostType(h)) if h == "nope"
        ));
        let hosts: Vec<_> = pools
            .host_types()
            .map(|(h, p)| (h, p.name(), p.capacity(h)))
            .collect();
        assert_eq!(hosts, [("h1", "a", 2), ("h2", "a", 2), ("h3", "b", 1)]);

        // A machine goes back to the pool that started it, whatever host
        // types that pool provides now.
        pools.stop(&b.handle()).await;
        assert_eq!(b.stopped.lock().len(), 1);
        assert!(a.stopped.lock().is_empty());
        let mut orphan = a.handle();
        orphan.pool = "gone".into();
        assert!(matches!(pools.of(&orphan), Err(PoolError::NoPool(p)) if p == "gone"));
        pools.stop(&orphan).await;
        assert!(a.stopped.lock().is_empty());
    }

    #[test]
    fn orphaned_buildlets_halt_after_the_idle_timeout_and_a_margin() {
        let mut c = Config {
            idle_timeout_secs: 1800,
            heartbeat_interval_secs: 10,
            ..Config::default()
        };
        assert_eq!(halt_after_idle(&c), Duration::from_secs(1800 + 300));
        c.heartbeat_interval_secs = 600;
        assert_eq!(halt_after_idle(&c), Duration::from_secs(1800 + 1800));
    }
}
