//! The instance table: names (`<user>-<builder>-<n>`, lowest free n), owner
//! checks (NotFound versus PermissionDenied, as Go's server), idle expiry
//! renewed by every RPC that names an instance and held off while a
//! streaming RPC runs, dead-buildlet verdicts, persistence in sled so a
//! restarted coordinator still knows its instances, and a tombstone for
//! each instance that leaves it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use gomote_shared::buildlet_client::{BuildletClient, Heartbeat};
use gomote_shared::timefmt::unix;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::CoordError;
use crate::pool::Handle;
use crate::queue::Permit;
use crate::tombstones::{Ending, Tombstone, Tombstones};

/// What is persisted about an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Its name.
    pub id: String,
    /// The owner ID.
    pub owner: String,
    /// The builder type asked for.
    pub builder_type: String,
    /// The host type it runs on.
    pub host_type: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Expiry time, Unix seconds.
    pub expires: i64,
    /// The buildlet's work directory.
    pub working_dir: String,
    /// Its machine, as the pool that started it describes it.
    pub buildlet: Handle,
}

/// Why an instance can no longer be used.
#[derive(Debug, Clone)]
pub struct Death {
    /// When it was noticed.
    pub when: SystemTime,
    /// Why.
    pub why: String,
}

/// A live instance.
#[derive(Debug)]
pub struct Instance {
    rec: Mutex<Record>,
    /// A client for its buildlet.
    pub client: BuildletClient,
    death: Mutex<Option<Death>>,
    active: AtomicUsize,
    _permit: Permit,
    heartbeat: Mutex<Option<Heartbeat>>,
}

impl Instance {
    /// Wraps a record with its client and queue slot.
    pub fn new(rec: Record, client: BuildletClient, permit: Permit) -> Instance {
        Instance {
            rec: Mutex::new(rec),
            client,
            death: Mutex::new(None),
            active: AtomicUsize::new(0),
            _permit: permit,
            heartbeat: Mutex::new(None),
        }
    }

    /// A copy of the record.
    pub fn record(&self) -> Record {
        self.rec.lock().clone()
    }

    /// Its name.
    pub fn id(&self) -> String {
        self.record().id
    }

    /// Keeps the heartbeat task alive as long as the instance.
    pub fn set_heartbeat(&self, hb: Heartbeat) {
        *self.heartbeat.lock() = Some(hb);
    }

    /// Records that the buildlet died.
    pub fn mark_dead(&self, when: SystemTime, why: String) {
        let mut d = self.death.lock();
        if d.is_none() {
            *d = Some(Death { when, why });
        }
    }

    /// Why and when it died, if it did.
    pub fn death(&self) -> Option<Death> {
        self.death.lock().clone()
    }

    /// Fails with which instance died and when, if it did.
    pub fn check_alive(&self) -> Result<(), CoordError> {
        match &*self.death.lock() {
            None => Ok(()),
            Some(d) => Err(CoordError::Dead {
                id: self.id(),
                when: d.when,
                why: d.why.clone(),
            }),
        }
    }

    /// Marks a streaming RPC as running; expiry is held off until the guard drops.
    pub fn activate(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.clone())
    }

    fn renew(&self, idle: Duration) -> Record {
        let mut r = self.rec.lock();
        r.expires = unix(SystemTime::now() + idle);
        r.clone()
    }
}

/// Held while a streaming RPC uses an instance.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Instance>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why an instance leaves the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Its owner destroyed it.
    Destroyed,
    /// Its idle time ran out.
    Expired,
    /// Its machine could not be reached (a record found unusable after a
    /// restart).
    Lost(String),
    /// Created for a client that went away before learning its name:
    /// nobody is told about it, so it leaves no tombstone.
    Unclaimed,
}

/// All instances.
#[derive(Debug)]
pub struct Table {
    map: Mutex<BTreeMap<String, Arc<Instance>>>,
    reserved: Mutex<HashSet<String>>,
    db: sled::Tree,
    tombstones: Tombstones,
    idle: Duration,
}

impl Table {
    /// A table persisted in `db`, with tombstones in `graves`.
    pub fn new(db: sled::Tree, graves: sled::Tree, idle: Duration) -> Table {
        Table {
            map: Mutex::default(),
            reserved: Mutex::default(),
            db,
            tombstones: Tombstones::new(graves),
            idle,
        }
    }

    /// The persisted records (for restoring after a restart).
    pub fn stored(&self) -> Vec<Record> {
        self.db
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }

    fn persist(&self, r: &Record) {
        match serde_json::to_vec(r) {
            Ok(v) => {
                if let Err(e) = self.db.insert(r.id.as_bytes(), v) {
                    tracing::error!(id = %r.id, error = %e, "persisting instance");
                }
            }
            Err(e) => tracing::error!(id = %r.id, error = %e, "encoding instance"),
        }
    }

    /// Makes an instance's arrival or departure durable at once: a
    /// coordinator killed right after must still know (or forget) it.
    fn flush(&self) {
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "flushing instance table");
        }
    }

    /// Picks the lowest free `<user>-<builder>-<n>` and holds it until
    /// [`Table::insert`] or [`Table::release`].
    pub fn reserve(&self, user: &str, builder: &str) -> String {
        let map = self.map.lock();
        let mut reserved = self.reserved.lock();
        let mut n = 0u64;
        loop {
            let name = format!("{user}-{builder}-{n}");
            if !map.contains_key(&name) && !reserved.contains(&name) {
                reserved.insert(name.clone());
                return name;
            }
            n += 1;
        }
    }

    /// Gives back a reserved name that was not used.
    pub fn release(&self, name: &str) {
        self.reserved.lock().remove(name);
    }

    /// Adds an instance (its name reserved before, or restored).
    pub fn insert(&self, inst: Arc<Instance>) {
        let rec = inst.record();
        self.persist(&rec);
        self.flush();
        self.map.lock().insert(rec.id.clone(), inst);
        self.release(&rec.id);
    }

    /// Removes an instance and leaves a tombstone saying why. An instance
    /// that expires after its machine died is recorded as lost (when it
    /// died is the news); one its owner destroys, as destroyed.
    pub fn remove(&self, id: &str, cause: Cause) -> Option<Arc<Instance>> {
        // The stored record names the owner of an instance that never made
        // it back into the table after a restart.
        let stored: Option<Record> = match self.db.remove(id.as_bytes()) {
            Ok(v) => v.and_then(|v| serde_json::from_slice(&v).ok()),
            Err(e) => {
                tracing::error!(%id, error = %e, "forgetting instance");
                None
            }
        };
        self.flush();
        let inst = self.map.lock().remove(id);
        let (owner, death) = match (&inst, stored) {
            (Some(i), _) => (i.record().owner, i.death()),
            (None, Some(r)) => (r.owner, None),
            (None, None) => return None,
        };
        let now = unix(SystemTime::now());
        let (when, ending) = match (cause, death) {
            (Cause::Unclaimed, _) => return inst,
            (Cause::Destroyed, _) => (now, Ending::Destroyed),
            (Cause::Expired, Some(d)) | (Cause::Lost(_), Some(d)) => {
                (unix(d.when), Ending::Lost { why: d.why })
            }
            (Cause::Expired, None) => {
                let expires = inst.as_ref().map_or(now, |i| i.record().expires);
                (
                    expires.min(now),
                    Ending::Expired {
                        idle_secs: self.idle.as_secs(),
                    },
                )
            }
            (Cause::Lost(why), None) => (now, Ending::Lost { why }),
        };
        self.tombstones.bury(&Tombstone {
            id: id.to_string(),
            owner,
            when,
            ending,
        });
        inst
    }

    /// Forgets old tombstones (see [`Tombstones::prune`]).
    pub fn prune_tombstones(&self, now: SystemTime) {
        self.tombstones.prune(now);
    }

    /// Go's `session(id, owner)`: NotFound when it does not exist (saying
    /// when and why, if it is one of `owner`'s that ended lately),
    /// PermissionDenied when another user owns it; renews its expiry.
    pub fn session(&self, id: &str, owner: &str) -> Result<Arc<Instance>, CoordError> {
        self.session_as(id, owner, false)
    }

    /// [`Table::session`] for a caller who may be an administrator, who
    /// may reach any instance.
    pub fn session_as(
        &self,
        id: &str,
        owner: &str,
        admin: bool,
    ) -> Result<Arc<Instance>, CoordError> {
        let found = self.map.lock().get(id).cloned();
        let Some(inst) = found else {
            return Err(match self.tombstones.find(id, owner, SystemTime::now()) {
                Some(t) => CoordError::Ended(t),
                None => CoordError::NoSuchInstance,
            });
        };
        if !admin && inst.record().owner != owner {
            return Err(CoordError::NotOwner);
        }
        let rec = inst.renew(self.idle);
        self.persist(&rec);
        Ok(inst)
    }

    /// The owner's instances (every instance for `None`: an
    /// administrator's list).
    pub fn list(&self, owner: Option<&str>) -> Vec<Record> {
        self.map
            .lock()
            .values()
            .map(|i| i.record())
            .filter(|r| owner.is_none_or(|o| r.owner == o))
            .collect()
    }

    /// Every instance (for the status page and the reaper).
    pub fn all(&self) -> Vec<Arc<Instance>> {
        self.map.lock().values().cloned().collect()
    }

    /// Renews instances with a streaming RPC in flight and returns those
    /// whose expiry has passed.
    pub fn expired(&self, now: SystemTime) -> Vec<Arc<Instance>> {
        let mut out = Vec::new();
        for inst in self.all() {
            if inst.active.load(Ordering::SeqCst) > 0 {
                let rec = inst.renew(self.idle);
                self.persist(&rec);
            } else if inst.record().expires <= unix(now) {
                out.push(inst);
            }
        }
        out
    }

    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        self.idle
    }
}
