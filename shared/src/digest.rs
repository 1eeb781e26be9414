//! File digests as the buildlet protocol carries them: lowercase hex SHA-1
//! (the `/ls` digest column, which `gomote push` compares with its own).

use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

/// Lowercase hex SHA-1 of a file's contents.
pub fn sha1_file(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(
            super::sha1_file(&p).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
    }
}

/// Lowercase hex SHA-1 of some bytes (a symlink's target, for one).
pub fn sha1_bytes(b: &[u8]) -> String {
    hex::encode(Sha1::digest(b))
}

/// What must be unchanged for a cached digest to be trusted: any write
/// changes mtime and ctime, a replaced file changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// Length of [`Stamp::to_bytes`].
    pub const LEN: usize = 56;

    /// A fixed-size encoding, for storing stamps on disk.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..40].copy_from_slice(&self.mtime_ns.to_le_bytes());
        b[40..56].copy_from_slice(&self.ctime_ns.to_le_bytes());
        b
    }

    /// Decodes [`Stamp::to_bytes`]; `None` if `b` is too short.
    pub fn from_bytes(b: &[u8]) -> Option<Stamp> {
        let u = |r: std::ops::Range<usize>| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(r)?.try_into().ok()?))
        };
        let i = |r: std::ops::Range<usize>| -> Option<i128> {
            Some(i128::from_le_bytes(b.get(r)?.try_into().ok()?))
        };
        Some(Stamp {
            dev: u(0..8)?,
            ino: u(8..16)?,
            size: u(16..24)?,
            mtime_ns: i(24..40)?,
            ctime_ns: i(40..56)?,
        })
    }

    /// The file's size when stamped.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stamp of a file's `lstat` metadata.
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

/// SHA-1 digests remembered by file identity, so listing or pushing an
/// unchanged tree hashes nothing. Bounded: past `MAX` entries it starts over.
#[derive(Debug, Default)]
pub struct DigestCache {
    map: parking_lot::Mutex<std::collections::HashMap<std::path::PathBuf, (Stamp, String)>>,
}

impl DigestCache {
    const MAX: usize = 1 << 20;

    /// The digest of `path` (whose `lstat` is `md`), hashing only if the
    /// file changed since it was last hashed.
    pub fn sha1(&self, path: &Path, md: &std::fs::Metadata) -> std::io::Result<String> {
        let stamp = Stamp::of(md);
        if let Some((s, d)) = self.map.lock().get(path)
            && *s == stamp
        {
            return Ok(d.clone());
        }
        let d = sha1_file(path)?;
        let mut m = self.map.lock();
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(path.to_path_buf(), (stamp, d.clone()));
        Ok(d)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_notices_changes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello").unwrap();
        let c = DigestCache::default();
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            c.sha1(&p, &md).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        std::fs::write(&p, "world").unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            c.sha1(&p, &md).unwrap(),
            hex::encode(<Sha1 as Digest>::digest(b"world"))
        );
        let s = Stamp::of(&md);
        assert_eq!(Stamp::from_bytes(&s.to_bytes()), Some(s));
        assert_eq!(Stamp::from_bytes(&[0; 10]), None);
    }
}
