//! A lexical-order directory walk that never follows symlinks, shaped like
//! Go's `filepath.Walk` (the root first, then each directory's entries
//! sorted by name), shared by `/ls` and `/tgz`.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What the visitor wants after seeing an entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on (enter it, if a directory).
    Continue,
    /// Do not enter this directory.
    SkipDir,
}

/// Walks `root`, calling `visit(rel, abs, metadata)` with `rel` the
/// slash-separated path relative to `root` (empty for the root itself).
/// The first error (from the walk or the visitor) ends the walk.
pub fn walk<F>(root: &Path, mut visit: F) -> io::Result<()>
where
    F: FnMut(&str, &Path, &Metadata) -> io::Result<Next>,
{
    let md = fs::symlink_metadata(root)?;
    let next = visit("", root, &md)?;
    if md.is_dir() && next == Next::Continue {
        walk_dir(root, "", &mut visit)?;
    }
    Ok(())
}

fn walk_dir<F>(dir: &Path, rel: &str, visit: &mut F) -> io::Result<()>
where
    F: FnMut(&str, &Path, &Metadata) -> io::Result<Next>,
{
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let abs = dir.join(&name);
        let child_rel = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let md = fs::symlink_metadata(&abs)?;
        let next = visit(&child_rel, &abs, &md)?;
        if md.is_dir() && next == Next::Continue {
            walk_dir(&abs, &child_rel, visit)?;
        }
    }
    Ok(())
}
