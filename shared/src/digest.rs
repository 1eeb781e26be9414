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

/// What must be unchanged for a cached digest to be trusted: any write
/// changes mtime and ctime, a replaced file changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
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
    map: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, (Stamp, String)>>,
}

impl DigestCache {
    const MAX: usize = 1 << 20;

    /// The digest of `path` (whose `lstat` is `md`), hashing only if the
    /// file changed since it was last hashed.
    pub fn sha1(&self, path: &Path, md: &std::fs::Metadata) -> std::io::Result<String> {
        let stamp = Stamp::of(md);
        if let Some((s, d)) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(path)
            && *s == stamp
        {
            return Ok(d.clone());
        }
        let d = sha1_file(path)?;
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
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
    }
}
