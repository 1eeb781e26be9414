//! Small private files of the state directory that both the serving
//! coordinator and `gomote-coordinator user|token` commands change: one
//! lock for every read-modify-write, atomic replacement, and a stamp that
//! tells a reader the file changed.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::SystemTime;

/// Held while a state file is read, changed and written back; the other
/// process waits.
#[derive(Debug)]
pub struct Locked(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Takes the accounts lock of `state` (blocking; kept for milliseconds).
pub fn lock(state: &Path) -> std::io::Result<Locked> {
    std::fs::create_dir_all(state)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(state.join("accounts.lock"))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(Locked)
        .map_err(|(_, e)| std::io::Error::from(e))
}

/// Replaces `path` with `data` at once (a reader sees the old or the new
/// file, never half), private to its user.
pub fn replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What identifies one version of a file: a rewrite within the clock's
/// granularity still changes the inode (rename) or the length.
pub type Stamp = Option<(SystemTime, u64, u64)>;

/// The stamp of a file's metadata.
pub fn stamp(m: &std::fs::Metadata) -> Stamp {
    Some((m.modified().ok()?, m.len(), m.ino()))
}
