//! Ending instances: DestroyInstance, and the reaper that destroys
//! instances whose idle time ran out. Either way the instance leaves the
//! table first (so no RPC reaches it any more), then its pool stops the
//! machine.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::Coordinator;
use crate::error::CoordError;

impl Coordinator {
    /// DestroyInstance: `owner`'s instance `id` is removed and its machine
    /// stopped.
    pub(crate) async fn destroy(&self, id: &str, owner: &str) -> Result<(), CoordError> {
        self.table.session(id, owner)?;
        let inst = self.table.remove(id).ok_or(CoordError::Vanished)?;
        self.pools.stop(&inst.record().buildlet).await;
        Ok(())
    }
}

/// Halts and removes instances whose idle time ran out, until cancelled.
pub(crate) async fn reaper(c: Arc<Coordinator>, cancel: CancellationToken) {
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
            c.pools.stop(&rec.buildlet).await;
        }
    }
}
