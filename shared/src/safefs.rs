//! File-system operations confined to a root directory: nothing is created,
//! removed or read through a symlink that already exists below the root.
//! Go's buildlet follows such links; ours refuses (issue: a tar entry `a/b`
//! where `a` links to `/etc` must not write into `/etc`). Also the one copy
//! loop that streams a client's bytes into a file below the root.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Why a confined operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafeFsError {
    /// A component of the path is a symlink; following it could leave the root.
    #[error("path {path:?} goes through symlink {link:?}")]
    ThroughSymlink {
        /// The client path.
        path: String,
        /// The component that is a symlink.
        link: String,
    },
    /// A component that must be a directory is something else.
    #[error("path {path:?}: {component:?} is not a directory")]
    NotADirectory {
        /// The client path.
        path: String,
        /// The component that is not a directory.
        component: String,
    },
    /// The operating system refused.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The absolute path involved.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl SafeFsError {
    /// Reports whether the client asked for something unsafe (HTTP 400) rather
    /// than the machine failing (HTTP 500).
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, SafeFsError::Io { .. })
    }

    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        SafeFsError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Which side of [`copy`] failed: the callers answer a bad source (the
/// client's body, an archive) differently from a failed destination (disk).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed.
    #[error("read: {0}")]
    Read(io::Error),
    /// Writing the destination failed.
    #[error("write: {0}")]
    Write(io::Error),
}

/// Copies `src` to `dst` through `buf` until `src` ends, retrying reads a
/// signal interrupted, and returns the bytes copied. `std::io::copy` would
/// do, but cannot say which side failed.
pub fn copy<R, W>(src: &mut R, dst: &mut W, buf: &mut [u8]) -> Result<u64, CopyError>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn rel_display(rel: &Path) -> String {
    rel.display().to_string()
}

/// Checks every existing component of `rel` below `root`, except the last,
/// is a real directory (not a symlink). Components that do not exist yet
/// end the check: they will be created as directories.
pub fn check_parents(root: &Path, rel: &Path) -> Result<(), SafeFsError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    check_dir_chain(root, parent, rel, &mut None)
}

/// Like [`check_parents`] but includes the last component, which must be a
/// real directory if it exists.
pub fn check_dir(root: &Path, rel: &Path) -> Result<(), SafeFsError> {
    check_dir_chain(root, rel, rel, &mut None)
}

/// Walks `chain` (a prefix of `full`) component by component. `known` caches
/// directories already proven real, so extracting thousands of entries under
/// the same parents costs one `lstat` per directory, not per entry.
fn check_dir_chain(
    root: &Path,
    chain: &Path,
    full: &Path,
    known: &mut Option<&mut HashSet<PathBuf>>,
) -> Result<(), SafeFsError> {
    let mut cur = PathBuf::new();
    for comp in chain.components() {
        cur.push(comp);
        if let Some(k) = known.as_deref()
            && k.contains(&cur)
        {
            continue;
        }
        let abs = root.join(&cur);
        match fs::symlink_metadata(&abs) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(SafeFsError::ThroughSymlink {
                    path: rel_display(full),
                    link: rel_display(&cur),
                });
            }
            Ok(md) if !md.is_dir() => {
                return Err(SafeFsError::NotADirectory {
                    path: rel_display(full),
                    component: rel_display(&cur),
                });
            }
            Ok(_) => {
                if let Some(k) = known.as_deref_mut() {
                    k.insert(cur.clone());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SafeFsError::io("lstat", &abs, e)),
        }
    }
    Ok(())
}

/// A cache of directories proven to be real directories below a root, for
/// callers that check or create many paths in one operation.
#[derive(Debug, Default)]
pub struct DirCache {
    known: HashSet<PathBuf>,
}

impl DirCache {
    /// Checks the parents of `rel` as [`check_parents`] does, remembering
    /// directories already proven real.
    pub fn check_parents(&mut self, root: &Path, rel: &Path) -> Result<(), SafeFsError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        check_dir_chain(root, parent, rel, &mut Some(&mut self.known))
    }

    /// Creates `rel` and its missing parents below `root` (mode `mode`, less
    /// the umask), refusing to pass through symlinks.
    pub fn create_dir_all(
        &mut self,
        root: &Path,
        rel: &Path,
        mode: u32,
    ) -> Result<(), SafeFsError> {
        let mut cur = PathBuf::new();
        for comp in rel.components() {
            cur.push(comp);
            if self.known.contains(&cur) {
                continue;
            }
            let abs = root.join(&cur);
            match fs::symlink_metadata(&abs) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(SafeFsError::ThroughSymlink {
                        path: rel_display(rel),
                        link: rel_display(&cur),
                    });
                }
                Ok(md) if !md.is_dir() => {
                    return Err(SafeFsError::NotADirectory {
                        path: rel_display(rel),
                        component: rel_display(&cur),
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(mode).create(&abs) {
                        Ok(()) => {}
                        // Another request made it meanwhile; the next lstat
                        // (on a later call) re-checks it is a directory.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(SafeFsError::io("mkdir", &abs, e)),
                    }
                }
                Err(e) => return Err(SafeFsError::io("lstat", &abs, e)),
            }
            self.known.insert(cur.clone());
        }
        Ok(())
    }
}

/// Removes `rel` below `root` recursively without following symlinks: a
/// symlink is removed itself, never its target. An empty `rel` removes the
/// root itself (as Go's `removeall .` does); if that fails but the root is
/// left empty (a busy mount point), the failure is ignored.
pub fn remove_all(root: &Path, rel: &Path) -> Result<(), SafeFsError> {
    check_parents(root, rel)?;
    let abs = if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    match remove_tree(&abs) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Read-only directories (Go's module cache makes them) cannot be
            // emptied; make everything owner-writable and try once more.
            make_owner_writable(&abs);
            remove_tree(&abs).or_else(|e| ignore_if_empty_root(rel, &abs, e))
        }
        Err(e) => ignore_if_empty_root(rel, &abs, e),
    }
}

fn ignore_if_empty_root(rel: &Path, abs: &Path, e: io::Error) -> Result<(), SafeFsError> {
    if rel.as_os_str().is_empty()
        && fs::read_dir(abs)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    {
        return Ok(());
    }
    Err(SafeFsError::io("remove", abs, e))
}

fn remove_tree(abs: &Path) -> io::Result<()> {
    match fs::symlink_metadata(abs) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(abs),
        Ok(_) => fs::remove_file(abs),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_owner_writable(abs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = fs::symlink_metadata(abs) else {
        return;
    };
    if md.file_type().is_symlink() {
        return;
    }
    let mode = md.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(abs, fs::Permissions::from_mode(mode | 0o700));
    }
    if md.is_dir()
        && let Ok(rd) = fs::read_dir(abs)
    {
        for e in rd.flatten() {
            make_owner_writable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn refuses_symlinked_parents() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("a")).unwrap();
        let err = check_parents(root.path(), Path::new("a/b")).unwrap_err();
        assert!(err.is_bad_request());
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(check_parents(root.path(), Path::new("a")).is_ok());
        assert!(check_dir(root.path(), Path::new("a")).is_err());
        let mut c = DirCache::default();
        assert!(
            c.create_dir_all(root.path(), Path::new("a/x"), 0o755)
                .is_err()
        );
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn remove_all_removes_link_not_target() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "x").unwrap();
        symlink(outside.path(), root.path().join("link")).unwrap();
        assert!(remove_all(root.path(), Path::new("link/keep")).is_err());
        remove_all(root.path(), Path::new("link")).unwrap();
        assert!(!root.path().join("link").exists());
        assert!(outside.path().join("keep").exists());
    }

    /// Fails its first read with EINTR, then its second with `fail`.
    struct Flaky {
        reads: usize,
        fail: Option<io::ErrorKind>,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            match self.reads {
                1 => Err(io::ErrorKind::Interrupted.into()),
                2 => match self.fail {
                    Some(k) => Err(k.into()),
                    None => {
                        buf[..3].copy_from_slice(b"abc");
                        Ok(3)
                    }
                },
                3 => {
                    buf[..2].copy_from_slice(b"de");
                    Ok(2)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn copy_retries_interrupted_reads_and_names_the_failing_side() {
        let mut out = Vec::new();
        let mut buf = [0u8; 8];
        let mut src = Flaky {
            reads: 0,
            fail: None,
        };
        assert_eq!(copy(&mut src, &mut out, &mut buf).unwrap(), 5);
        assert_eq!(out, b"abcde");

        let mut src = Flaky {
            reads: 0,
            fail: Some(io::ErrorKind::ConnectionReset),
        };
        let e = copy(&mut src, &mut Vec::new(), &mut buf).unwrap_err();
        assert!(matches!(e, CopyError::Read(ref e) if e.kind() == io::ErrorKind::ConnectionReset));

        let mut full = [0u8; 2];
        let mut src = Flaky {
            reads: 0,
            fail: None,
        };
        let e = copy(&mut src, &mut &mut full[..], &mut buf).unwrap_err();
        assert!(matches!(e, CopyError::Write(ref e) if e.kind() == io::ErrorKind::WriteZero));
    }

    #[test]
    fn remove_all_handles_read_only_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("ro/sub");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("f"), "x").unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).unwrap();
        remove_all(root.path(), Path::new("ro")).unwrap();
        assert!(!root.path().join("ro").exists());
    }
}
