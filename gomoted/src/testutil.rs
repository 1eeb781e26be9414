//! Local trees for unit tests: written to a temporary directory, walked
//! as push walks them.

use crate::localtree::{self, Kind, LocalTree};
use crate::manifest::LocalManifest;

/// A temporary directory holding `files` and a top-level `.gitignore`.
pub fn files(files: &[(&str, &str)], gitignore: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, body) in files {
        let abs = d.path().join(p);
        std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
        std::fs::write(abs, body).unwrap();
    }
    std::fs::write(d.path().join(".gitignore"), gitignore).unwrap();
    d
}

/// [`files`] walked, with no file's digest known yet (as before hashing).
pub fn tree(files_: &[(&str, &str)], gitignore: &str) -> (tempfile::TempDir, LocalTree) {
    let d = files(files_, gitignore);
    let mut t = localtree::walk(d.path(), &LocalManifest::default()).unwrap();
    for e in t.entries.values_mut() {
        if e.kind == Kind::File {
            e.digest = None;
        }
    }
    (d, t)
}

/// `t` with every file's digest computed.
pub fn hashed(mut t: LocalTree) -> LocalTree {
    let root = t.root.clone();
    for (k, e) in t.entries.iter_mut() {
        if e.kind == Kind::File {
            e.digest = Some(gomote_shared::digest::sha1_file(&root.join(k)).unwrap());
        }
    }
    t
}
