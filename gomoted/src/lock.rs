//! One daemon per user: an exclusive `flock` on `<data>/gomoted.lock`,
//! held for the daemon's life. The lock file records the pid and version.

use std::io::Write as _;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another daemon holds it.
    #[error("another gomoted is running (pid and version: {holder}); lock {path}")]
    Held {
        /// What the lock file says (pid and version).
        holder: String,
        /// The lock file.
        path: String,
    },
    /// The lock file could not be made.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct PidLock {
    _file: Flock<std::fs::File>,
}

/// Takes the lock or says which daemon holds it.
pub fn acquire(data: &Path) -> Result<PidLock, LockError> {
    let io = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| LockError::Io { what, path, source }
    };
    std::fs::create_dir_all(data).map_err(io("creating", data))?;
    let path = data.join("gomoted.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            f.set_len(0).map_err(io("writing", &path))?;
            writeln!(f, "{} {}", std::process::id(), gomote_shared::api::VERSION)
                .map_err(io("writing", &path))?;
            Ok(PidLock { _file: f })
        }
        Err((_, _)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(LockError::Held {
                holder: holder.trim().to_string(),
                path: path.display().to_string(),
            })
        }
    }
}
