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

    use crate::error::CoordError;
    use crate::testing::FakePool;

    async fn dead(inst: &Instance) -> CoordError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match inst.check_alive() {
                Err(e) => return e,
                Ok(()) => {
                    assert!(tokio::time::Instant::now() < deadline, "never marked dead");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_pool_report_marks_the_instance_dead_before_any_heartbeat() {
        let pool = FakePool::new("fake", 1);
        let inst = pool.instance();
        watch(&inst, pool.clone(), Duration::from_secs(3600));
        tokio::task::yield_now().await;
        inst.check_alive().unwrap();
        pool.gone.notify_one();
        let err = dead(&inst).await;
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
        let pool = FakePool::new("fake", 1);
        let inst = pool.instance();
        watch(&inst, pool, Duration::from_millis(50));
        let err = dead(&inst).await;
        assert!(
            err.to_string()
                .contains("buildlet stopped answering heartbeats"),
            "{err}"
        );
    }
}
