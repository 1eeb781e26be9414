//! Ending instances: DestroyInstance, and the reaper that destroys
//! instances whose idle time ran out. Either way the instance leaves the
//! table first (so no RPC reaches it any more, and its owner is told why by
//! its tombstone), then its pool stops the machine.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::Coordinator;
use crate::audit::Event;
use crate::error::CoordError;
use crate::instances::Cause;
use crate::tokens::Identity;

impl Coordinator {
    /// DestroyInstance: the caller's instance `id` (any instance for an
    /// administrator) is removed and its machine stopped.
    pub(crate) async fn destroy(&self, id: &str, who: &Identity) -> Result<(), CoordError> {
        self.table.session_as(id, &who.owner, who.admin)?;
        let inst = self
            .table
            .remove(id, Cause::Destroyed)
            .ok_or(CoordError::Vanished)?;
        self.audit.record(Event::InstanceDestroy {
            actor: who.email.clone(),
            subject: id.to_string(),
            owner: inst.record().owner.trim_start_matches("local:").to_string(),
        });
        self.pools.stop(&inst.record().buildlet).await;
        Ok(())
    }
}

/// Halts and removes instances whose idle time ran out, and forgets old
/// tombstones, until cancelled.
pub(crate) async fn reaper(c: Arc<Coordinator>, cancel: CancellationToken) {
    let every = Duration::from_secs(c.config.reap_interval_secs.max(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = SystemTime::now();
        for inst in c.table.expired(now) {
            let rec = inst.record();
            tracing::info!(id = %rec.id, "instance expired; destroying");
            c.table.remove(&rec.id, Cause::Expired);
            c.pools.stop(&rec.buildlet).await;
        }
        c.table.prune_tombstones(now);
    }
}
