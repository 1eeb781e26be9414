//! Restoring instances after a coordinator restart: every recorded
//! instance goes back in the table with its queue slot, reached through the
//! pool that started it; one whose buildlet no longer answers is kept, but
//! dead, so its owner learns what happened to it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Coordinator;
use crate::health;
use crate::instances::{Cause, Instance};

/// How long a restored instance's buildlet has to answer.
const PROBE: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Brings back instances recorded before a restart.
    pub(crate) async fn restore(&self) {
        for rec in self.table.stored() {
            let connected = match self.pools.of(&rec.buildlet) {
                Ok(pool) => pool
                    .connect(&rec.buildlet)
                    .await
                    .map(|client| (pool.clone(), client)),
                Err(e) => Err(e),
            };
            let (pool, client) = match connected {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(id = %rec.id, error = %e, "dropping unusable instance record");
                    self.table.remove(
                        &rec.id,
                        Cause::Lost(format!("it could not be reached after a restart: {e}")),
                    );
                    continue;
                }
            };
            let alive = matches!(
                tokio::time::timeout(PROBE, client.status()).await,
                Ok(Ok(_))
            );
            let permit = self.queues.force(&rec.host_type, &rec.owner);
            let inst = Arc::new(Instance::new(rec.clone(), client, permit));
            if !alive {
                inst.mark_dead(
                    SystemTime::now(),
                    "its buildlet was gone when the coordinator restarted".into(),
                );
            }
            tracing::info!(id = %rec.id, alive, "restored instance");
            health::watch(&inst, pool, self.heartbeat_every());
            self.table.insert(inst);
        }
    }
}
