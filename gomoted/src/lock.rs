//! One daemon per user: an exclusive `flock` on `<data>/gomoted.lock`,
//! held for the daemon's life. The lock file records the pid and version.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use nix::fcntl::{Flock, FlockArg};

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct PidLock {
    _file: Flock<std::fs::File>,
}

/// Takes the lock or says which daemon holds it.
pub fn acquire(data: &Path) -> anyhow::Result<PidLock> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join("gomoted.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            f.set_len(0)?;
            writeln!(f, "{} {}", std::process::id(), gomote_shared::api::VERSION)?;
            Ok(PidLock { _file: f })
        }
        Err((_, _)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another gomoted is running (pid and version: {}); lock {}",
                holder.trim(),
                path.display()
            )
        }
    }
}
