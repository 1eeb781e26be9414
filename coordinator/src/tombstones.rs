//! Tombstones: what became of ended instances (destroyed by their owner,
//! expired, or lost with their machine), kept for a day in the
//! coordinator's state so they survive restarts, so that an RPC naming
//! one tells its owner when and why it ended instead of that it does not
//! exist. Only the owner is told; for anyone else it never existed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gomote_shared::timefmt::{rfc3339, unix};
use serde::{Deserialize, Serialize};

/// How long a tombstone is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many are kept (the oldest go first): names are per user
/// and reused, so this bounds a coordinator with many users or a script
/// that creates and destroys in a loop.
pub const MAX: usize = 10_000;

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Ending {
    /// Its owner destroyed it.
    Destroyed,
    /// Nobody used it for `idle_secs`.
    Expired {
        /// The idle timeout then in force.
        idle_secs: u64,
    },
    /// Its machine died (or could not be reached after a restart).
    Lost {
        /// Why, as the health check or the pool put it.
        why: String,
    },
}

/// What is kept of an ended instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Its name.
    pub id: String,
    /// Its owner ID; nobody else is told about it.
    pub owner: String,
    /// When it ended (for a lost instance, when its death was noticed),
    /// Unix seconds.
    pub when: i64,
    /// How.
    #[serde(flatten)]
    pub ending: Ending,
}

impl Tombstone {
    fn at(&self) -> String {
        let secs = u64::try_from(self.when).unwrap_or(0);
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }
}

impl std::fmt::Display for Tombstone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (id, at) = (&self.id, self.at());
        match &self.ending {
            Ending::Destroyed => write!(f, "instance {id:?} was destroyed at {at} by you"),
            Ending::Expired { idle_secs } => write!(
                f,
                "instance {id:?} expired at {at} after {} idle",
                go_duration(*idle_secs)
            ),
            Ending::Lost { why } => write!(f, "instance {id:?} was lost at {at}: {why}"),
        }
    }
}

/// Whole seconds as Go's `time.Duration.String` prints them (`30m0s`).
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The tombstones, in a sled tree keyed by instance name (a reused name
/// keeps only its latest ending).
#[derive(Debug)]
pub struct Tombstones {
    db: sled::Tree,
}

impl Tombstones {
    /// Tombstones kept in `db`.
    pub fn new(db: sled::Tree) -> Tombstones {
        Tombstones { db }
    }

    /// Records how an instance ended.
    pub fn bury(&self, t: &Tombstone) {
        match serde_json::to_vec(t) {
            Ok(v) => {
                if let Err(e) = self.db.insert(t.id.as_bytes(), v) {
                    tracing::error!(id = %t.id, error = %e, "recording tombstone");
                }
            }
            Err(e) => tracing::error!(id = %t.id, error = %e, "encoding tombstone"),
        }
    }

    /// `owner`'s tombstone for `id`, if it ended less than [`KEEP`] ago.
    pub fn find(&self, id: &str, owner: &str, now: SystemTime) -> Option<Tombstone> {
        let v = self.db.get(id.as_bytes()).ok()??;
        let t: Tombstone = serde_json::from_slice(&v).ok()?;
        (t.owner == owner && !too_old(&t, now)).then_some(t)
    }

    /// Forgets tombstones older than [`KEEP`], then the oldest beyond
    /// [`MAX`]. A full scan: called by the reaper, not per RPC.
    pub fn prune(&self, now: SystemTime) {
        let mut kept: Vec<(i64, sled::IVec)> = Vec::new();
        for (k, v) in self.db.iter().filter_map(Result::ok) {
            match serde_json::from_slice::<Tombstone>(&v) {
                Ok(t) if !too_old(&t, now) => kept.push((t.when, k)),
                // Expired, or unreadable (from another version).
                _ => {
                    let _ = self.db.remove(k);
                }
            }
        }
        if kept.len() > MAX {
            kept.sort();
            for (_, k) in kept.iter().take(kept.len() - MAX) {
                let _ = self.db.remove(k);
            }
        }
    }
}

fn too_old(t: &Tombstone, now: SystemTime) -> bool {
    let keep = i64::try_from(KEEP.as_secs()).unwrap_or(i64::MAX);
    unix(now).saturating_sub(t.when) > keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary database");
        db.open_tree("t").expect("a tree")
    }

    fn stone(id: &str, owner: &str, when: i64, ending: Ending) -> Tombstone {
        Tombstone {
            id: id.into(),
            owner: owner.into(),
            when,
            ending,
        }
    }

    #[test]
    fn messages_say_when_and_why() {
        let at = 1_796_162_400; // 2026-12-01T22:00:00Z
        let cases = [
            (
                Ending::Destroyed,
                "instance \"alice-linux-amd64-0\" was destroyed at 2026-12-01T22:00:00Z by you",
            ),
            (
                Ending::Expired { idle_secs: 1800 },
                "instance \"alice-linux-amd64-0\" expired at 2026-12-01T22:00:00Z after 30m0s idle",
            ),
            (
                Ending::Lost {
                    why: "its machine stopped answering".into(),
                },
                "instance \"alice-linux-amd64-0\" was lost at 2026-12-01T22:00:00Z: its machine stopped answering",
            ),
        ];
        for (ending, want) in cases {
            assert_eq!(
                stone("alice-linux-amd64-0", "o", at, ending).to_string(),
                want
            );
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(1800), "30m0s");
        assert_eq!(go_duration(3661), "1h1m1s");
    }

    #[test]
    fn only_the_owner_finds_a_fresh_tombstone() {
        let t = Tombstones::new(tree());
        let now = SystemTime::now();
        t.bury(&stone("a-b-0", "alice", unix(now), Ending::Destroyed));
        assert!(t.find("a-b-0", "alice", now).is_some());
        assert!(t.find("a-b-0", "bob", now).is_none());
        assert!(t.find("a-b-1", "alice", now).is_none());
        let later = now + KEEP + Duration::from_secs(1);
        assert!(t.find("a-b-0", "alice", later).is_none(), "kept a day only");
    }

    #[test]
    fn prune_drops_old_then_oldest_beyond_max() {
        let t = Tombstones::new(tree());
        let now = SystemTime::now();
        let n = unix(now);
        t.bury(&stone("old", "o", n - 2 * 86_400, Ending::Destroyed));
        for i in 0..MAX + 2 {
            let when = n - 1000 + i64::try_from(i).unwrap_or(0) / 100;
            t.bury(&stone(&format!("i{i:05}"), "o", when, Ending::Destroyed));
        }
        t.prune(now);
        assert_eq!(t.db.len(), MAX);
        assert!(t.find("old", "o", now).is_none());
        assert!(t.find("i00000", "o", now).is_none(), "the oldest went");
        assert!(t.find(&format!("i{:05}", MAX + 1), "o", now).is_some());
    }
}
