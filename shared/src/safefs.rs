//! File-system operations confined to a root directory: nothing is created,
//! removed or read through a symlink that already exists below the root.
//! Go's buildlet follows such links; ours refuses (issue: a tar entry `a/b`
//! where `a` links to `/etc` must not write into `/etc`).

use std::collections::HashSet;
use std::fs;
use std::io;
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
