//! Commands running now, by id, so `POST /v0/runs/<id>/cancel` (Ctrl-C in
//! the CLI) and daemon shutdown can stop them.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Running commands and their cancellation tokens.
#[derive(Debug, Default)]
pub struct Runs {
    map: Mutex<HashMap<String, CancellationToken>>,
}

impl Runs {
    /// Registers a run; its token is cancelled by [`Runs::cancel`].
    pub fn add(&self, id: &str) -> CancellationToken {
        let t = CancellationToken::new();
        self.map.lock().insert(id.to_string(), t.clone());
        t
    }

    /// Forgets a finished run.
    pub fn remove(&self, id: &str) {
        self.map.lock().remove(id);
    }

    /// Cancels a run; returns whether it existed.
    pub fn cancel(&self, id: &str) -> bool {
        match self.map.lock().get(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels everything (daemon shutdown).
    pub fn cancel_all(&self) {
        for t in self.map.lock().values() {
            t.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reaches_only_the_named_run() {
        let runs = Runs::default();
        let a = runs.add("a");
        let b = runs.add("b");
        assert!(runs.cancel("a"));
        assert!(a.is_cancelled() && !b.is_cancelled());
        runs.remove("b");
        assert!(!runs.cancel("b"), "a removed run is not cancellable");
        runs.cancel_all();
        assert!(!b.is_cancelled(), "cancel_all reaches only registered runs");
    }
}
