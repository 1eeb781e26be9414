//! The buildlet's work directory: its layout (`tmp`, `gocache`,
//! `goplscache`), the environment every command starts from, and the
//! registry of running process groups that must die with the buildlet.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;

/// Subdirectories the buildlet creates and points the Go tool at.
pub const SCRATCH_DIRS: [&str; 3] = ["tmp", "gocache", "goplscache"];

/// The work directory and what every request needs to know about it.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// The buildlet's own environment at start-up, plus `WORKDIR`.
    base_env: Vec<(OsString, OsString)>,
    /// `GOROOT_BOOTSTRAP` inherited from whoever started the buildlet.
    inherited_bootstrap: Option<OsString>,
    procs: Arc<Mutex<HashSet<i32>>>,
}

impl WorkDir {
    /// Sets up `path` as the work directory: creates it, and creates (or
    /// empties, as Go's buildlet does at start-up) the scratch directories.
    pub fn init(path: &Path) -> io::Result<WorkDir> {
        std::fs::create_dir_all(path)?;
        let path = path.canonicalize()?;
        for d in SCRATCH_DIRS {
            let p = path.join(d);
            if p.exists() {
                gomote_shared::safefs::remove_all(&path, Path::new(d))
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            std::fs::create_dir_all(&p)?;
        }
        let mut base_env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != "WORKDIR")
            .collect();
        base_env.push(("WORKDIR".into(), path.clone().into_os_string()));
        let inherited_bootstrap = std::env::var_os("GOROOT_BOOTSTRAP").filter(|v| !v.is_empty());
        Ok(WorkDir {
            path,
            base_env,
            inherited_bootstrap,
            procs: Arc::default(),
        })
    }

    /// The absolute work directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Recreates the work directory and its scratch directories if a client
    /// removed them (`removeall .`), as Go's `mkdirAllWorkdirOr500` does.
    pub fn ensure(&self) -> io::Result<()> {
        for d in SCRATCH_DIRS {
            std::fs::create_dir_all(self.path.join(d))?;
        }
        Ok(())
    }

    /// Where staged uploads are written before being renamed into place:
    /// inside the work directory, so on the same file system.
    pub fn staging(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// The environment a command starts from (step 1 of the env order).
    pub fn base_env(&self) -> &[(OsString, OsString)] {
        &self.base_env
    }

    /// `GOROOT_BOOTSTRAP` for commands: `<wd>/go1.4`, unless that does not
    /// exist and the buildlet inherited a value.
    pub fn goroot_bootstrap(&self) -> OsString {
        let own = self.path.join("go1.4");
        match &self.inherited_bootstrap {
            Some(v) if !own.exists() => v.clone(),
            _ => own.into_os_string(),
        }
    }

    /// Remembers a running process group until the guard is dropped.
    pub fn track(&self, pgid: i32) -> ProcGuard {
        self.procs.lock().insert(pgid);
        ProcGuard {
            pgid,
            procs: self.procs.clone(),
        }
    }

    /// Kills every running process group (on halt and shutdown).
    pub fn kill_all(&self) {
        let groups: Vec<i32> = self.procs.lock().iter().copied().collect();
        for g in groups {
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
        }
    }
}

/// Removes a process group from the registry when its command is done.
#[derive(Debug)]
pub struct ProcGuard {
    pgid: i32,
    procs: Arc<Mutex<HashSet<i32>>>,
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.procs.lock().remove(&self.pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_survives_a_panic_while_the_registry_is_locked() {
        // A poisoned std Mutex made `track` silently stop registering
        // process groups, so `kill_all` on halt would have missed them.
        let d = tempfile::tempdir().unwrap();
        let wd = WorkDir::init(d.path()).unwrap();
        let procs = wd.procs.clone();
        let _ = std::thread::spawn(move || {
            let _held = procs.lock();
            panic!("panicking while holding the process registry");
        })
        .join();
        let guard = wd.track(4_000_000);
        assert!(wd.procs.lock().contains(&4_000_000));
        drop(guard);
        assert!(wd.procs.lock().is_empty());
    }
}
