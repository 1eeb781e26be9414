//! Keep-alive by intent: the daemon pings (InstanceAlive) every instance
//! that is in a group, running a command, or was used within
//! `keepalive_idle`, often enough that the coordinator never expires it, and
//! stops when the intent ends, so an abandoned instance still expires on the
//! coordinator's timer. It also remembers why an instance it knew has gone
//! (destroyed, expired after it stopped being kept alive, or vanished), so a
//! later command can say when and why instead of a bare NotFound.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

/// Why an instance is gone.
#[derive(Debug, Clone)]
pub struct Gone {
    /// When the daemon noticed.
    pub when: SystemTime,
    /// What happened.
    pub why: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// Last use, and the session the instance lives in.
    used: HashMap<String, (Instant, String)>,
    active: HashMap<String, usize>,
    kept: BTreeSet<String>,
    known: BTreeSet<String>,
    gone: HashMap<String, Gone>,
}

/// A use as stored, so a restarted daemon keeps what it kept.
#[derive(Debug, Serialize, Deserialize)]
struct StoredUse {
    server: String,
    /// Unix seconds.
    at: u64,
}

/// The daemon's knowledge of which instances to keep alive.
#[derive(Debug)]
pub struct KeepAlive {
    inner: Mutex<Inner>,
    store: Option<sled::Tree>,
    /// How long after its last use an instance is still kept alive.
    pub idle: Duration,
    /// How often kept instances are pinged.
    pub interval: Duration,
}

/// Held while a command runs on an instance.
#[derive(Debug)]
pub struct Active<'a> {
    ka: &'a KeepAlive,
    server: String,
    id: String,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        {
            let mut i = self.ka.lock();
            if let Some(n) = i.active.get_mut(&self.id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    i.active.remove(&self.id);
                }
            }
        }
        // The end of a run is its last use.
        self.ka.touch(&self.server, &self.id);
    }
}

impl KeepAlive {
    /// A keeper with the given idle window and ping interval; uses are
    /// kept in `store` and loaded from it, so they outlive the daemon.
    pub fn new(idle: Duration, interval: Duration, store: Option<sled::Tree>) -> KeepAlive {
        let mut inner = Inner::default();
        if let Some(t) = &store {
            let (now, now_sys) = (Instant::now(), SystemTime::now());
            for (k, v) in t.iter().flatten() {
                let id = String::from_utf8_lossy(&k).into_owned();
                let Ok(u) = serde_json::from_slice::<StoredUse>(&v) else {
                    continue;
                };
                let age = now_sys
                    .duration_since(UNIX_EPOCH + Duration::from_secs(u.at))
                    .unwrap_or_default();
                match now.checked_sub(age).filter(|_| age < idle) {
                    Some(at) => {
                        inner.known.insert(id.clone());
                        inner.used.insert(id, (at, u.server));
                    }
                    None => {
                        let _ = t.remove(&k);
                    }
                }
            }
        }
        KeepAlive {
            inner: Mutex::new(inner),
            store,
            idle,
            interval,
        }
    }

    fn persist(&self, id: &str, server: Option<&str>) {
        let Some(t) = &self.store else { return };
        let r = match server {
            Some(server) => {
                let at =
                    u64::try_from(gomote_shared::timefmt::unix(SystemTime::now())).unwrap_or(0);
                let v = serde_json::to_vec(&StoredUse {
                    server: server.to_string(),
                    at,
                })
                .unwrap_or_default();
                t.insert(id.as_bytes(), v).map(|_| ())
            }
            None => t.remove(id.as_bytes()).map(|_| ()),
        };
        if let Err(e) = r {
            tracing::warn!(%id, error = %e, "storing keep-alive intent");
        }
    }

    /// The sessions holding instances used recently: a restarted daemon
    /// opens them so their instances go on being kept alive.
    pub fn servers(&self) -> BTreeSet<String> {
        self.lock().used.values().map(|(_, s)| s.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Records that a command used instance `id` of session `server`.
    pub fn touch(&self, server: &str, id: &str) {
        {
            let mut i = self.lock();
            i.used
                .insert(id.to_string(), (Instant::now(), server.to_string()));
            i.known.insert(id.to_string());
            i.gone.remove(id);
        }
        self.persist(id, Some(server));
    }

    /// Marks a command as running on an instance until the guard drops.
    pub fn begin(&self, server: &str, id: &str) -> Active<'_> {
        self.touch(server, id);
        *self.lock().active.entry(id.to_string()).or_default() += 1;
        Active {
            ka: self,
            server: server.to_string(),
            id: id.to_string(),
        }
    }

    /// Records that the user destroyed an instance.
    pub fn destroyed(&self, id: &str) {
        self.persist(id, None);
        let mut i = self.lock();
        i.used.remove(id);
        i.kept.remove(id);
        i.known.remove(id);
        i.gone.insert(
            id.to_string(),
            Gone {
                when: SystemTime::now(),
                why: "it was destroyed (gomote destroy)".into(),
            },
        );
    }

    /// Which of the `live` instances to ping now, given group members.
    /// Records instances that disappeared since the last pass.
    pub fn plan(&self, live: &BTreeSet<String>, grouped: &BTreeSet<String>) -> BTreeSet<String> {
        let mut i = self.lock();
        let now = Instant::now();
        let idle = self.idle;
        let expired: Vec<String> = i
            .used
            .iter()
            .filter(|(_, (t, _))| now.duration_since(*t) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            i.used.remove(k);
        }
        let vanished: Vec<String> = i
            .known
            .iter()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for v in vanished {
            let why = if i.kept.contains(&v) {
                "it vanished from its coordinator while gomoted kept it alive (its buildlet died, or the coordinator lost it)".to_string()
            } else {
                "it expired on the coordinator after it was no longer in use (gomoted stops keeping an instance alive when it leaves every group and sits unused)".to_string()
            };
            i.known.remove(&v);
            i.used.remove(&v);
            i.gone.insert(
                v,
                Gone {
                    when: SystemTime::now(),
                    why,
                },
            );
        }
        let wanted: BTreeSet<String> = live
            .iter()
            .filter(|id| {
                grouped.contains(*id) || i.used.contains_key(*id) || i.active.contains_key(*id)
            })
            .cloned()
            .collect();
        for id in live {
            i.known.insert(id.clone());
        }
        i.kept = wanted.clone();
        let forget: Vec<String> = expired
            .into_iter()
            .chain(i.gone.keys().filter(|g| !live.contains(*g)).cloned())
            .collect();
        drop(i);
        for k in forget {
            self.persist(&k, None);
        }
        wanted
    }

    /// Whether the daemon means to keep `id` alive now (for `list`).
    pub fn intends(&self, id: &str, grouped: bool) -> bool {
        let i = self.lock();
        grouped
            || i.active.contains_key(id)
            || i.used.get(id).is_some_and(|(t, _)| t.elapsed() < self.idle)
    }

    /// Instances kept alive as of the last pass.
    pub fn kept(&self) -> BTreeSet<String> {
        self.lock().kept.clone()
    }

    /// Why an instance the daemon knew is gone, if it knows.
    pub fn gone(&self, id: &str) -> Option<Gone> {
        self.lock().gone.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn intent_decides_and_departures_are_explained() {
        let k = KeepAlive::new(Duration::from_secs(3600), Duration::from_secs(60), None);
        k.touch("embedded", "used");
        let guard = k.begin("embedded", "running");
        let wanted = k.plan(
            &set(&["used", "running", "grouped", "idle"]),
            &set(&["grouped"]),
        );
        assert_eq!(wanted, set(&["grouped", "running", "used"]));
        drop(guard);
        k.destroyed("used");
        let wanted = k.plan(&set(&["running", "grouped"]), &set(&[]));
        assert_eq!(wanted, set(&["running"]), "recently used after its run");
        assert!(k.gone("used").unwrap().why.contains("destroyed"));
        // "grouped" left its group and then disappeared: it expired.
        k.plan(&set(&["running"]), &set(&[]));
        assert!(
            k.gone("grouped").unwrap().why.contains("expired"),
            "{:?}",
            k.gone("grouped")
        );
        assert!(k.gone("idle").unwrap().why.contains("expired"));
    }

    #[test]
    fn idle_window_ends_intent() {
        let k = KeepAlive::new(Duration::from_millis(0), Duration::from_secs(60), None);
        k.touch("embedded", "a");
        assert!(k.plan(&set(&["a"]), &set(&[])).is_empty());
    }

    #[test]
    fn intent_survives_a_restart_until_the_idle_window_ends() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let tree = db.open_tree("keepalive").unwrap();
        let hour = Duration::from_secs(3600);
        let k = KeepAlive::new(hour, hour, Some(tree.clone()));
        k.touch("https://c.example", "kept");
        k.touch("embedded", "destroyed");
        k.destroyed("destroyed");
        drop(k);
        // A later daemon over the same database.
        let k = KeepAlive::new(hour, hour, Some(tree.clone()));
        assert_eq!(k.servers(), set(&["https://c.example"]));
        assert!(k.intends("kept", false));
        assert!(!k.intends("destroyed", false));
        assert_eq!(k.plan(&set(&["kept"]), &set(&[])), set(&["kept"]));
        // One whose idle window has passed is not kept, and is forgotten.
        let k = KeepAlive::new(Duration::ZERO, hour, Some(tree.clone()));
        assert!(!k.intends("kept", false));
        assert!(tree.is_empty());
    }
}
