//! What the daemon knows about file contents without reading them: the
//! local manifest (each GOROOT file's digest under its stat stamp, kept in
//! sled so a restarted daemon rehashes nothing unchanged) and each
//! instance's remote manifest (what its `go/` holds as last listed or
//! pushed, and whether that can still be trusted).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use gomote_shared::digest::{Stamp, sha1_file};

/// Digests of local files by path, valid while the file's stamp (device,
/// inode, size, mtime, ctime) is unchanged. Memory first, sled behind it.
#[derive(Debug, Default)]
pub struct LocalManifest {
    mem: Mutex<HashMap<PathBuf, (Stamp, String)>>,
    disk: Option<sled::Tree>,
}

impl LocalManifest {
    /// Past this many entries the manifest starts over (a bound, not a
    /// size any GOROOT reaches).
    const MAX: usize = 1 << 21;

    /// The manifest stored in `tree`, loaded now.
    pub fn load(tree: sled::Tree) -> LocalManifest {
        let mut mem = HashMap::new();
        for (k, v) in tree.iter().flatten() {
            if v.len() <= Stamp::LEN {
                continue;
            }
            let (s, d) = v.split_at(Stamp::LEN);
            if let (Some(stamp), Ok(d)) = (Stamp::from_bytes(s), std::str::from_utf8(d)) {
                mem.insert(
                    PathBuf::from(std::ffi::OsStr::from_bytes(&k)),
                    (stamp, d.to_string()),
                );
            }
        }
        LocalManifest {
            mem: Mutex::new(mem),
            disk: Some(tree),
        }
    }

    fn mem(&self) -> MutexGuard<'_, HashMap<PathBuf, (Stamp, String)>> {
        self.mem.lock()
    }

    /// The digest of `path` if it is known for this stamp.
    pub fn known(&self, path: &Path, stamp: &Stamp) -> Option<String> {
        match self.mem().get(path) {
            Some((s, d)) if s == stamp => Some(d.clone()),
            _ => None,
        }
    }

    /// Remembers a digest.
    pub fn record(&self, path: &Path, stamp: Stamp, digest: &str) {
        {
            let mut m = self.mem();
            if m.len() >= Self::MAX {
                m.clear();
                if let Some(t) = &self.disk {
                    let _ = t.clear();
                }
            }
            m.insert(path.to_path_buf(), (stamp, digest.to_string()));
        }
        if let Some(t) = &self.disk {
            let mut v = stamp.to_bytes().to_vec();
            v.extend_from_slice(digest.as_bytes());
            if let Err(e) = t.insert(path.as_os_str().as_bytes(), v) {
                tracing::warn!(error = %e, "storing a manifest entry");
            }
        }
    }

    /// The digest of `path` (whose `lstat` is `md`), hashing only when the
    /// stamp changed since it was last hashed.
    pub fn hash(&self, path: &Path, md: &std::fs::Metadata) -> std::io::Result<String> {
        let stamp = Stamp::of(md);
        if let Some(d) = self.known(path, &stamp) {
            return Ok(d);
        }
        let d = sha1_file(path)?;
        // Only if the file did not change while it was read.
        if std::fs::symlink_metadata(path).is_ok_and(|m| Stamp::of(&m) == stamp) {
            self.record(path, stamp, &d);
        }
        Ok(d)
    }
}

/// What a remote entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink.
    Symlink,
    /// Anything else.
    Other,
}

/// One entry of an instance's `go/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Its kind.
    pub kind: RemoteKind,
    /// Size in bytes (files; a symlink's target length).
    pub size: u64,
    /// Hex SHA-1 (files; a symlink's target with our buildlet), else empty.
    pub digest: String,
    /// The execute bits (0o111 mask).
    pub exec: u32,
}

/// The execute bits (0o111) of a Go `FileMode.String()` like `-rwxr-xr-x`.
pub fn exec_bits(mode: &str) -> u32 {
    let perms: Vec<char> = mode.chars().rev().take(9).collect();
    // Reversed: index 0 is other-x, 3 is group-x, 6 is owner-x.
    [(0usize, 0o001u32), (3, 0o010), (6, 0o100)]
        .iter()
        .filter(|(i, _)| perms.get(*i) == Some(&'x'))
        .map(|(_, b)| b)
        .sum()
}

/// Parses buildlet `/ls` lines of the work directory into entries of
/// `go/`, keyed by path relative to it (directories without the slash).
pub fn parse_listing(lines: &[String]) -> HashMap<String, RemoteEntry> {
    let mut m = HashMap::new();
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        let (Some(mode), Some(name)) = (f.first(), f.get(1)) else {
            continue;
        };
        let Some(key) = name.strip_prefix("go/") else {
            continue;
        };
        let dir = key.ends_with('/');
        let key = key.trim_end_matches('/');
        if key.is_empty() {
            continue;
        }
        let kind = if dir {
            RemoteKind::Dir
        } else if mode.starts_with('L') {
            RemoteKind::Symlink
        } else if mode.starts_with('-') {
            RemoteKind::File
        } else {
            RemoteKind::Other
        };
        m.insert(
            key.to_string(),
            RemoteEntry {
                kind,
                size: f.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
                digest: f.get(4).unwrap_or(&"").to_string(),
                exec: exec_bits(mode),
            },
        );
    }
    m
}

/// One instance's `go/` as the daemon believes it to be.
#[derive(Debug, Default)]
pub struct Remote {
    /// Path (relative to `go/`) -> entry.
    pub entries: HashMap<String, RemoteEntry>,
    /// The instance's change generation when `entries` was last known to be
    /// right; trusted only while it is still current.
    pub verified_at: Option<u64>,
    /// Whether `go1.4` was seen to hold the bootstrap toolchain.
    pub bootstrapped: bool,
    /// The GOROOT last pushed here.
    pub root: Option<PathBuf>,
}

/// Per-instance state: the manifest behind a lock that also serialises
/// pushes to the instance, and a generation bumped by anything else that
/// may change its files (a command, put, puttar, rm).
#[derive(Debug, Default)]
pub struct RemoteSlot {
    /// The manifest; hold the lock for a whole push.
    pub manifest: Arc<tokio::sync::Mutex<Remote>>,
    generation: AtomicU64,
}

impl RemoteSlot {
    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Notes that the instance's files may have changed.
    pub fn touch(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Remote manifests by instance key.
#[derive(Debug, Default)]
pub struct Remotes {
    slots: Mutex<HashMap<String, Arc<RemoteSlot>>>,
}

impl Remotes {
    /// The slot of an instance (created empty and untrusted).
    pub fn slot(&self, key: &str) -> Arc<RemoteSlot> {
        self.slots
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Notes that an instance's files may have changed behind the manifest.
    pub fn touch(&self, key: &str) {
        self.slot(key).touch();
    }

    /// Forgets a destroyed instance.
    pub fn forget(&self, key: &str) {
        self.slots.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_manifest_persists_and_notices_changes() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello").unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let m = LocalManifest::load(db.open_tree("m").unwrap());
        assert_eq!(
            m.hash(&p, &md).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        // A second manifest on the same table knows it without reading.
        let m2 = LocalManifest::load(db.open_tree("m").unwrap());
        assert!(m2.known(&p, &Stamp::of(&md)).is_some());
        std::fs::write(&p, "hellO").unwrap();
        let md2 = std::fs::symlink_metadata(&p).unwrap();
        assert!(m2.known(&p, &Stamp::of(&md2)).is_none());
        assert_ne!(m2.hash(&p, &md2).unwrap(), m.hash(&p, &md).unwrap());
    }

    #[test]
    fn listing_kinds_and_exec_bits() {
        let l = parse_listing(&[
            "drwxr-xr-x\tgo/".into(),
            "drwxr-xr-x\tgo/src/".into(),
            "-rwxr-xr-x\tgo/run.sh\t3\t2024-01-01T00:00:00Z\tabc".into(),
            "Lrwxrwxrwx\tgo/link\t1\t2024-01-01T00:00:00Z\tdef".into(),
            "-rw-r--r--\tgo1.4/x\t1\t2024-01-01T00:00:00Z\tabc".into(),
        ]);
        assert_eq!(l.len(), 3);
        assert_eq!(l["src"].kind, RemoteKind::Dir);
        assert_eq!(l["run.sh"].exec, 0o111);
        assert_eq!(l["run.sh"].size, 3);
        assert_eq!(l["link"].kind, RemoteKind::Symlink);
        assert_eq!(exec_bits("-rwxr-x---"), 0o110);
        assert_eq!(exec_bits("urwxr-xr-x"), 0o111);
    }
}
