//! The local side of a push: GOROOT walked as Go's push walks it (no
//! top-level `.git`, `pkg` or `bin`, no editor backups, `.gitignore` and
//! `.git/info/exclude` applied in-process), with each file's stat stamp
//! and, when the local manifest already knows it, its digest. Nothing here
//! reads a file's contents.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gomote_shared::digest::{Stamp, sha1_bytes};
use ignore::gitignore::Gitignore;

use crate::manifest::LocalManifest;

/// What a local entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink whose target stays inside GOROOT.
    Symlink(PathBuf),
    /// A symlink pointing outside GOROOT, a socket, a device...: not pushed.
    Unpushable(String),
}

/// One local entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Unix mode bits.
    pub mode: u32,
    /// Its stat stamp.
    pub stamp: Stamp,
    /// SHA-1 when known without reading (files: from the manifest;
    /// symlinks: of the target text).
    pub digest: Option<String>,
}

/// The `.gitignore` rules of a tree, outermost first.
#[derive(Debug, Clone, Default)]
pub struct Ignores {
    rules: Vec<(String, Gitignore)>,
}

impl Ignores {
    fn add(&mut self, base: String, gi: Gitignore) {
        self.rules.push((base, gi));
        // Outer rules first, so deeper .gitignore files can override them.
        self.rules
            .sort_by_key(|(b, _)| b.matches('/').count() + usize::from(!b.is_empty()));
    }

    /// Reports whether a path relative to GOROOT is ignored.
    pub fn ignored(&self, rel: &str, dir: bool) -> bool {
        let mut verdict = false;
        for (base, gi) in &self.rules {
            let sub = if base.is_empty() {
                rel
            } else if let Some(s) = rel
                .strip_prefix(base.as_str())
                .and_then(|s| s.strip_prefix('/'))
            {
                s
            } else {
                continue;
            };
            match gi.matched_path_or_any_parents(sub, dir) {
                ignore::Match::Ignore(_) => verdict = true,
                ignore::Match::Whitelist(_) => verdict = false,
                ignore::Match::None => {}
            }
        }
        verdict
    }
}

/// Whether a path names a file holding ignore rules (a change to one means
/// the whole tree must be walked again).
pub fn is_rules_file(rel: &str) -> bool {
    rel == ".git/info/exclude" || rel == ".gitignore" || rel.ends_with("/.gitignore")
}

/// Editor backups and lock files, never pushed.
pub fn editor_backup(rel: &str) -> bool {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    (base.starts_with('.') && base.ends_with(".swp"))
        || rel.ends_with('~')
        || rel.ends_with('#')
        || base.starts_with('#')
        || base.starts_with(".#")
}

/// Go's fixed exclusions: the top-level `.git`, `pkg` and `bin`.
pub fn excluded_top(rel: &str, root: &Path) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    top == ".git" || ((top == "pkg" || top == "bin") && root.join(top).is_dir())
}

/// A walked tree (or part of one).
#[derive(Debug, Default)]
pub struct LocalTree {
    /// GOROOT, canonical.
    pub root: PathBuf,
    /// Path relative to GOROOT -> entry.
    pub entries: BTreeMap<String, Entry>,
    /// The ignore rules in force.
    pub ignores: Ignores,
}

/// A local GOROOT that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("error enumerating local GOROOT files: {path}: {detail}")]
pub struct WalkError {
    /// The path that failed.
    pub path: String,
    /// Why.
    pub detail: String,
}

fn walk_err(p: &Path, e: std::io::Error) -> WalkError {
    WalkError {
        path: p.display().to_string(),
        detail: e.to_string(),
    }
}

fn entry(root: &Path, rel: &str, md: &std::fs::Metadata, manifest: &LocalManifest) -> Entry {
    let abs = root.join(rel);
    let stamp = Stamp::of(md);
    let ft = md.file_type();
    let (kind, digest) = if ft.is_dir() {
        (Kind::Dir, None)
    } else if ft.is_file() {
        (Kind::File, manifest.known(&abs, &stamp))
    } else if ft.is_symlink() {
        match std::fs::read_link(&abs) {
            Ok(t) if gomote_shared::relpath::symlink_target_stays_inside(Path::new(rel), &t) => {
                use std::os::unix::ffi::OsStrExt;
                let d = sha1_bytes(t.as_os_str().as_bytes());
                (Kind::Symlink(t), Some(d))
            }
            Ok(t) => (
                Kind::Unpushable(format!("symlink to {} leaves GOROOT", t.display())),
                None,
            ),
            Err(e) => (Kind::Unpushable(format!("unreadable symlink: {e}")), None),
        }
    } else {
        (
            Kind::Unpushable(format!("not a regular file: mode {:o}", md.mode())),
            None,
        )
    };
    Entry {
        kind,
        mode: md.mode(),
        stamp,
        digest,
    }
}

/// Walks the whole of GOROOT, collecting its ignore rules on the way.
pub fn walk(root: &Path, manifest: &LocalManifest) -> Result<LocalTree, WalkError> {
    let mut t = LocalTree {
        root: root.to_path_buf(),
        ..LocalTree::default()
    };
    let exclude = root.join(".git/info/exclude");
    if exclude.is_file() {
        t.ignores.add(String::new(), Gitignore::new(&exclude).0);
    }
    walk_dir(&mut t, String::new(), true, manifest)?;
    t.drop_ignored();
    Ok(t)
}

/// Walks only `paths` (and everything under those that are directories),
/// with ignore rules from an earlier full walk. Paths that no longer exist
/// simply have no entries.
pub fn walk_paths(
    root: &Path,
    paths: &[String],
    ignores: &Ignores,
    manifest: &LocalManifest,
) -> Result<LocalTree, WalkError> {
    let mut t = LocalTree {
        root: root.to_path_buf(),
        ignores: ignores.clone(),
        ..LocalTree::default()
    };
    for rel in paths {
        if rel.is_empty() || excluded_top(rel, root) || editor_backup(rel) {
            continue;
        }
        let abs = root.join(rel);
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(walk_err(&abs, e)),
        };
        t.entries
            .insert(rel.clone(), entry(root, rel, &md, manifest));
        if md.is_dir() {
            walk_dir(&mut t, rel.clone(), false, manifest)?;
        }
    }
    t.drop_ignored();
    Ok(t)
}

fn walk_dir(
    t: &mut LocalTree,
    start: String,
    collect_rules: bool,
    manifest: &LocalManifest,
) -> Result<(), WalkError> {
    let root = t.root.clone();
    let mut stack = vec![start];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        if collect_rules {
            let gitignore = dir.join(".gitignore");
            if gitignore.is_file() {
                t.ignores.add(rel.clone(), Gitignore::new(&gitignore).0);
            }
        }
        let rd = std::fs::read_dir(&dir).map_err(|e| walk_err(&dir, e))?;
        for e in rd {
            let e = e.map_err(|e| walk_err(&dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(e.path()).map_err(|err| walk_err(&e.path(), err))?;
            if rel.is_empty() && excluded_top(&r, &root) {
                continue;
            }
            if md.is_dir() {
                stack.push(r.clone());
            }
            if editor_backup(&r) {
                continue;
            }
            t.entries.insert(r.clone(), entry(&root, &r, &md, manifest));
        }
    }
    Ok(())
}

impl LocalTree {
    fn drop_ignored(&mut self) {
        let ignores = &self.ignores;
        self.entries
            .retain(|k, v| !ignores.ignored(k, v.kind == Kind::Dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)], gitignore: &str) -> (tempfile::TempDir, LocalTree) {
        let d = crate::testutil::files(files, gitignore);
        let t = walk(d.path(), &LocalManifest::default()).unwrap();
        (d, t)
    }

    #[test]
    fn walk_applies_go_exclusions_and_gitignore() {
        let (_d, t) = tree(
            &[
                ("src/a.go", "a"),
                ("src/.a.go.swp", "x"),
                ("src/b.go~", "x"),
                ("pkg/x.a", "x"),
                ("bin/go", "x"),
                ("src/pkg/keep.go", "k"),
                ("gen/out.txt", "x"),
                (".git/HEAD", "x"),
            ],
            "/gen/\n",
        );
        let keys: Vec<&str> = t.entries.keys().map(String::as_str).collect();
        assert!(keys.contains(&"src/a.go"));
        assert!(
            keys.contains(&"src/pkg/keep.go"),
            "only top-level pkg is pruned"
        );
        for gone in [
            "src/.a.go.swp",
            "src/b.go~",
            "pkg/x.a",
            "bin/go",
            "gen/out.txt",
            "gen",
            ".git/HEAD",
        ] {
            assert!(!keys.contains(&gone), "{gone} should be excluded: {keys:?}");
        }
        assert!(t.ignores.ignored("gen/out.txt", false));
    }

    #[test]
    fn symlinks_inside_are_kept_and_escaping_ones_marked() {
        let (d, _) = tree(&[("src/a.go", "a")], "");
        std::os::unix::fs::symlink("a.go", d.path().join("src/in")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("src/out")).unwrap();
        std::os::unix::fs::symlink("../../x", d.path().join("src/up")).unwrap();
        let t = walk(d.path(), &LocalManifest::default()).unwrap();
        assert_eq!(t.entries["src/in"].kind, Kind::Symlink("a.go".into()));
        assert_eq!(
            t.entries["src/in"].digest.as_deref(),
            Some(sha1_bytes(b"a.go").as_str())
        );
        assert!(matches!(t.entries["src/out"].kind, Kind::Unpushable(_)));
        assert!(matches!(t.entries["src/up"].kind, Kind::Unpushable(_)));
    }

    #[test]
    fn walk_paths_covers_subtrees_and_skips_the_gone() {
        let (d, full) = tree(
            &[("src/a/x.go", "x"), ("src/a/y.go", "y"), ("gen/z", "z")],
            "/gen/\n",
        );
        let t = walk_paths(
            d.path(),
            &[
                "src/a".into(),
                "gone.go".into(),
                "gen/z".into(),
                "pkg/q".into(),
            ],
            &full.ignores,
            &LocalManifest::default(),
        )
        .unwrap();
        let keys: Vec<&str> = t.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["src/a", "src/a/x.go", "src/a/y.go"]);
    }
}
