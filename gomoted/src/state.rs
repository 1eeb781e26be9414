//! The daemon's persistent state in sled under `$XDG_DATA_HOME/gomote/`:
//! groups (the daemon is their single writer, so concurrent CLIs never
//! lose a member), coordinator tokens, and records of runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A failure of the state database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Opening the database.
    #[error("opening state database in {dir}: {source}")]
    Open {
        /// Its directory.
        dir: String,
        /// Why.
        source: sled::Error,
    },
    /// Reading or writing it.
    #[error("state database: {0}")]
    Db(#[from] sled::Error),
    /// Encoding a record.
    #[error("encoding state: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The open database.
#[derive(Debug, Clone)]
pub struct State {
    db: sled::Db,
    groups: sled::Tree,
    tokens: sled::Tree,
    runs: sled::Tree,
}

/// A recorded run, so a daemon restart still knows where output went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The command line.
    pub command: Vec<String>,
    /// Instance -> output file.
    pub files: BTreeMap<String, String>,
    /// Unix seconds when it started.
    pub started: i64,
    /// `running`, `done` or `cancelled`.
    pub state: String,
}

impl State {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        let db = sled::Config::new()
            .path(dir.join("state"))
            .open()
            .map_err(|source| StateError::Open {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok(State {
            groups: db.open_tree("groups")?,
            tokens: db.open_tree("tokens")?,
            runs: db.open_tree("runs")?,
            db,
        })
    }

    fn flush(&self) {
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "flushing state");
        }
    }

    /// All group names, sorted.
    pub fn group_names(&self) -> Vec<String> {
        self.groups
            .iter()
            .keys()
            .filter_map(Result::ok)
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect()
    }

    /// A group's stored members, or `None` if it does not exist.
    pub fn group(&self, name: &str) -> Option<Vec<String>> {
        let v = self.groups.get(name.as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    /// Creates or replaces a group.
    pub fn put_group(&self, name: &str, members: &[String]) -> Result<(), StateError> {
        let mut m: Vec<String> = members.to_vec();
        m.sort();
        m.dedup();
        self.groups
            .insert(name.as_bytes(), serde_json::to_vec(&m)?)?;
        self.flush();
        Ok(())
    }

    /// Deletes a group; returns whether it existed.
    pub fn delete_group(&self, name: &str) -> Result<bool, StateError> {
        let existed = self.groups.remove(name.as_bytes())?.is_some();
        self.flush();
        Ok(existed)
    }

    /// The token stored for a coordinator URL.
    pub fn token(&self, server: &str) -> Option<String> {
        let v = self.tokens.get(server.as_bytes()).ok()??;
        String::from_utf8(v.to_vec()).ok()
    }

    /// Stores the token for a coordinator URL.
    pub fn set_token(&self, server: &str, token: &str) -> Result<(), StateError> {
        self.tokens.insert(server.as_bytes(), token.as_bytes())?;
        self.flush();
        Ok(())
    }

    /// Another named table in the same database (the push manifests, the
    /// watch subscriptions).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Records (or updates) a run.
    pub fn put_run(&self, id: &str, r: &RunRecord) {
        if let Ok(v) = serde_json::to_vec(r) {
            let _ = self.runs.insert(id.as_bytes(), v);
            self.flush();
        }
    }
}
