//! Instance health: an instance is marked dead when its buildlet stops
//! answering heartbeats or when its pool reports the machine gone,
//! whichever comes first. Dead instances stay listed, and every RPC on them
//! says which died and when, until they are destroyed or expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gomote_shared::buildlet_client::{Health, Heartbeat, HeartbeatConfig};

use crate::instances::Instance;
use crate::pool::Pool;

/// Heartbeats that must fail in a row before a buildlet is dead.
const MAX_FAILURES: u32 = 3;

/// Watches `inst` (started by `pool`) until it dies or is dropped.
pub fn watch(inst: &Arc<Instance>, pool: Arc<dyn Pool>, heartbeat_every: Duration) {
    let hb = Heartbeat::spawn(
        inst.client.clone(),
        HeartbeatConfig {
            interval: heartbeat_every,
            max_failures: MAX_FAILURES,
        },
    );
    let mut rx = hb.subscribe();
    // The instance owns its heartbeat: dropping the instance ends it, which
    // ends the wait below too.
    inst.set_heartbeat(hb);
    let weak = Arc::downgrade(inst);
    let handle = inst.record().buildlet;
    tokio::spawn(async move {
        let heartbeat = async {
            let verdict = rx.wait_for(|h| matches!(h, Health::Dead { .. })).await;
            match verdict.as_deref() {
                Ok(Health::Dead { since, error }) => Some((*since, error.clone())),
                _ => None,
            }
        };
        let (when, why) = tokio::select! {
            dead = heartbeat => match dead {
                Some((since, error)) => {
                    if let Some(inst) = weak.upgrade() {
                        tracing::warn!(id = %inst.id(), %error, "buildlet stopped answering heartbeats");
                    }
                    (since, format!("buildlet stopped answering heartbeats ({error})"))
                }
                // The instance is gone, and its heartbeat with it.
                None => return,
            },
            why = pool.gone(&handle) => {
                if let Some(inst) = weak.upgrade() {
                    tracing::warn!(id = %inst.id(), pool = pool.name(), %why, "pool reports the instance's machine gone");
                }
                (SystemTime::now(), why)
            }
        };
        if let Some(inst) = weak.upgrade() {
            inst.mark_dead(when, why);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::future::BoxFuture;
    use gomote_shared::buildlet_client::BuildletClient;
    use tokio::sync::Notify;

    use crate::error::CoordError;
    use crate::instances::Record;
    use crate::pool::{Handle, PoolError, Started};
    use crate::queue::Queues;

    /// A pool whose only ability is to report a machine gone on demand.
    #[derive(Debug, Default)]
    struct Reporting {
        gone: Notify,
    }

    impl Pool for Reporting {
        fn name(&self) -> &str {
            "reporting"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn capacity(&self, _: &str) -> usize {
            1
        }
        fn start<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Started, PoolError>> {
            Box::pin(async { Err(PoolError::Start("cannot".into())) })
        }
        fn connect<'a>(
            &'a self,
            _: &'a Handle,
        ) -> BoxFuture<'a, Result<BuildletClient, PoolError>> {
            Box::pin(async { Err(PoolError::Start("cannot".into())) })
        }
        fn stop<'a>(&'a self, _: &'a Handle) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn gone<'a>(&'a self, _: &'a Handle) -> BoxFuture<'a, String> {
            Box::pin(async {
                self.gone.notified().await;
                "its machine was switched off".to_string()
            })
        }
    }

    fn instance() -> Arc<Instance> {
        let handle = Handle {
            pool: "reporting".into(),
            addr: "127.0.0.1:1".into(),
            password: "pw".into(),
            detail: serde_json::Map::new(),
        };
        let rec = Record {
            id: "u-b-0".into(),
            owner: "o".into(),
            builder_type: "b".into(),
            host_type: "h".into(),
            created: 0,
            expires: 0,
            working_dir: "/wd".into(),
            buildlet: handle,
        };
        let client = BuildletClient::new("127.0.0.1:1", None).unwrap();
        Arc::new(Instance::new(
            rec,
            client,
            Arc::new(Queues::default()).force("h"),
        ))
    }

    #[tokio::test]
    async fn a_pool_report_marks_the_instance_dead_before_any_heartbeat() {
        let pool = Arc::new(Reporting::default());
        let inst = instance();
        watch(&inst, pool.clone(), Duration::from_secs(3600));
        tokio::task::yield_now().await;
        inst.check_alive().unwrap();
        pool.gone.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let err = loop {
            match inst.check_alive() {
                Err(e) => break e,
                Ok(()) => {
                    assert!(tokio::time::Instant::now() < deadline, "never marked dead");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        assert!(matches!(err, CoordError::Dead { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("instance u-b-0 died at ")
                && msg.ends_with(": its machine was switched off"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn heartbeats_still_decide_when_the_pool_says_nothing() {
        let pool = Arc::new(Reporting::default());
        let inst = instance();
        watch(&inst, pool, Duration::from_millis(50));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let err = loop {
            match inst.check_alive() {
                Err(e) => break e,
                Ok(()) => {
                    assert!(std::time::Instant::now() < deadline, "never marked dead");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(
            err.to_string()
                .contains("buildlet stopped answering heartbeats"),
            "{err}"
        );
    }
}
