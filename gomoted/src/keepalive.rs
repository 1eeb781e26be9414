//! Keep-alive by intent: the daemon pings (InstanceAlive) every instance
//! that is in a group, running a command, or was used within
//! `keepalive_idle`, often enough that the coordinator never expires it, and
//! stops when the intent ends, so an abandoned instance still expires on the
//! coordinator's timer. It also remembers why an instance it knew has gone
//! (destroyed, expired after it stopped being kept alive, or vanished), so a
//! later command can say when and why instead of a bare NotFound.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, MutexGuard};

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
    used: HashMap<String, Instant>,
    active: HashMap<String, usize>,
    kept: BTreeSet<String>,
    known: BTreeSet<String>,
    gone: HashMap<String, Gone>,
}

/// The daemon's knowledge of which instances to keep alive.
#[derive(Debug)]
pub struct KeepAlive {
    inner: Mutex<Inner>,
    /// How long after its last use an instance is still kept alive.
    pub idle: Duration,
    /// How often kept instances are pinged.
    pub interval: Duration,
}

/// Held while a command runs on an instance.
#[derive(Debug)]
pub struct Active<'a> {
    ka: &'a KeepAlive,
    id: String,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let mut i = self.ka.lock();
        if let Some(n) = i.active.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                i.active.remove(&self.id);
            }
        }
        i.used.insert(self.id.clone(), Instant::now());
    }
}

impl KeepAlive {
    /// A keeper with the given idle window and ping interval.
    pub fn new(idle: Duration, interval: Duration) -> KeepAlive {
        KeepAlive {
            inner: Mutex::default(),
            idle,
            interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Records that a command used an instance.
    pub fn touch(&self, id: &str) {
        let mut i = self.lock();
        i.used.insert(id.to_string(), Instant::now());
        i.known.insert(id.to_string());
        i.gone.remove(id);
    }

    /// Marks a command as running on an instance until the guard drops.
    pub fn begin(&self, id: &str) -> Active<'_> {
        self.touch(id);
        *self.lock().active.entry(id.to_string()).or_default() += 1;
        Active {
            ka: self,
            id: id.to_string(),
        }
    }

    /// Records that the user destroyed an instance.
    pub fn destroyed(&self, id: &str) {
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
        i.used.retain(|_, t| now.duration_since(*t) < idle);
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
        wanted
    }

    /// Whether the daemon means to keep `id` alive now (for `list`).
    pub fn intends(&self, id: &str, grouped: bool) -> bool {
        let i = self.lock();
        grouped
            || i.active.contains_key(id)
            || i.used.get(id).is_some_and(|t| t.elapsed() < self.idle)
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
        let k = KeepAlive::new(Duration::from_secs(3600), Duration::from_secs(60));
        k.touch("used");
        let guard = k.begin("running");
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
        let k = KeepAlive::new(Duration::from_millis(0), Duration::from_secs(60));
        k.touch("a");
        assert!(k.plan(&set(&["a"]), &set(&[])).is_empty());
    }
}
