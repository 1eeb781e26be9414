//! Deciding what one instance needs: compare the local tree with the
//! instance's manifest and list what to delete (tops only) and what to
//! send, leaving alone what `cmd/dist` generates there.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use gomote_shared::relpath::key_below;

use crate::localtree::{self, Kind, LocalTree};
use crate::manifest::{RemoteEntry, RemoteKind};

/// Files `cmd/dist` generates on the remote; never deleted or sent.
pub const DIST_GENERATED: [&str; 9] = [
    "src/cmd/cgo/zdefaultcc.go",
    "src/cmd/go/internal/cfg/zdefaultcc.go",
    "src/cmd/go/internal/cfg/zosarch.go",
    "src/cmd/internal/objabi/zbootstrap.go",
    "src/go/build/zcgo.go",
    "src/internal/buildcfg/zbootstrap.go",
    "src/internal/runtime/sys/zversion.go",
    "src/runtime/internal/sys/zversion.go",
    "src/time/tzdata/zzipdata.go",
];

/// Directories the remote listing skips (build outputs and caches).
pub(super) const REMOTE_SKIP: [&str; 7] = [
    "go/pkg",
    "go/bin",
    "go1.4/src",
    "go1.4/pkg",
    "gocache",
    "goplscache",
    "tmp",
];

/// One thing to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Item {
    File(String),
    Symlink(String, PathBuf),
    FakeVersion,
}

impl Item {
    pub(super) fn name(&self) -> &str {
        match self {
            Item::File(r) | Item::Symlink(r, _) => r,
            Item::FakeVersion => "VERSION",
        }
    }
}

/// What one instance needs.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// `go/...` paths to remove (tops only).
    pub(super) delete: Vec<String>,
    pub(super) send: Vec<Item>,
    pub(super) missing: usize,
    pub(super) changed: usize,
    /// Dry-run only: changed on disk since last hashed, contents unknown.
    pub(super) unverified: usize,
}

pub(super) fn in_scope(rel: &str, scope: Option<&[String]>) -> bool {
    scope.is_none_or(|tops| tops.iter().any(|t| rel == t || key_below(t, rel)))
}

/// Keeps only the paths no other path in the set contains.
pub(super) fn tops(paths: BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        // Sorted order puts a directory right before its contents.
        if let Some(last) = out.last()
            && key_below(last, &p)
        {
            continue;
        }
        out.push(p);
    }
    out
}

fn protected(rel: &str) -> bool {
    rel == "VERSION" || DIST_GENERATED.contains(&rel)
}

pub(super) fn plan(
    tree: &LocalTree,
    remote: &HashMap<String, RemoteEntry>,
    scope: Option<&[String]>,
    verbose: bool,
    logs: &mut Vec<String>,
) -> Plan {
    let mut p = Plan::default();
    let mut delete = BTreeSet::new();
    for (key, r) in remote {
        if !in_scope(key, scope)
            || protected(key)
            || tree.ignores.ignored(key, r.kind == RemoteKind::Dir)
        {
            continue;
        }
        let kind_differs = |l: &localtree::Entry| match (&l.kind, r.kind) {
            (Kind::Dir, RemoteKind::Dir) => false,
            (Kind::Dir, _) | (_, RemoteKind::Dir) => true,
            (Kind::File, k) => k != RemoteKind::File,
            (Kind::Symlink(_), k) => k != RemoteKind::Symlink,
            (Kind::Unpushable(_), _) => false,
        };
        match tree.entries.get(key) {
            None => {
                delete.insert(key.clone());
            }
            Some(l) if kind_differs(l) => {
                delete.insert(key.clone());
            }
            Some(_) => {}
        }
    }
    // A directory holding a protected file (dist's output) stays.
    let keep: Vec<&String> = remote.keys().filter(|k| protected(k)).collect();
    delete.retain(|d| !keep.iter().any(|k| key_below(d, k)));
    p.delete = tops(delete.clone())
        .into_iter()
        .map(|d| format!("go/{d}"))
        .collect();
    let gone = |rel: &str| {
        delete.contains(rel)
            || rel
                .match_indices('/')
                .any(|(i, _)| delete.contains(&rel[..i]))
    };
    for (rel, e) in &tree.entries {
        if !in_scope(rel, scope) || DIST_GENERATED.contains(&rel.as_str()) || rel == "VERSION.cache"
        {
            continue;
        }
        let r = remote.get(rel).filter(|_| !gone(rel));
        let item = match &e.kind {
            Kind::Dir => continue,
            Kind::Unpushable(why) => {
                if verbose {
                    logs.push(format!("Not pushing {rel}: {why}"));
                }
                continue;
            }
            Kind::File => Item::File(rel.clone()),
            Kind::Symlink(t) => Item::Symlink(rel.clone(), t.clone()),
        };
        let Some(r) = r else {
            p.missing += 1;
            if verbose {
                logs.push(format!("Remote doesn't have {rel:?}"));
            }
            p.send.push(item);
            continue;
        };
        let local = match (&e.digest, &item) {
            (Some(d), _) => d.clone(),
            // Sizes differ: changed, no need to read it.
            (None, Item::File(_)) if r.size != e.stamp.size() => String::new(),
            (None, _) => {
                // Only a dry run gets here: the contents were not read.
                p.unverified += 1;
                if verbose {
                    logs.push(format!("{rel} changed on disk since it was last hashed"));
                }
                continue;
            }
        };
        if r.digest != local {
            p.changed += 1;
            if verbose {
                logs.push(format!(
                    "Remote's {rel} digest is {:?}; want {local:?}",
                    r.digest
                ));
            }
            p.send.push(item);
        } else if matches!(item, Item::File(_)) && r.exec != e.mode & 0o111 {
            // Same bytes but `chmod +x` (or -x) locally. Only the execute
            // bits count: the remote umask may strip write bits.
            p.changed += 1;
            if verbose {
                logs.push(format!(
                    "Remote's {rel} mode differs; want {:o}",
                    e.mode & 0o777
                ));
            }
            p.send.push(item);
        }
    }
    if scope.is_none() && !tree.entries.contains_key("VERSION") && !remote.contains_key("VERSION") {
        logs.push("Remote lacks a VERSION file; sending a fake one".into());
        p.send.push(Item::FakeVersion);
    }
    p.send.sort_by(|a, b| a.name().cmp(b.name()));
    p
}

#[cfg(test)]
mod tests {
    use sha1::{Digest, Sha1};

    use super::*;
    use crate::manifest::{LocalManifest, parse_listing};
    use crate::testutil::{hashed, tree};

    fn names(v: &[Item]) -> Vec<&str> {
        v.iter().map(Item::name).collect()
    }

    #[test]
    fn plan_deletes_sends_and_protects() {
        let (_d, t) = tree(
            &[
                ("src/a.go", "a"),
                ("src/new.go", "n"),
                ("VERSION", "go1.99"),
            ],
            "/gen/\n",
        );
        let t = hashed(t);
        let a_sha = hex::encode(Sha1::digest(b"a"));
        let remote = parse_listing(&[
            "drwxr-xr-x\tgo/".to_string(),
            "drwxr-xr-x\tgo/src/".to_string(),
            format!("-rw-r--r--\tgo/src/a.go\t1\t2024-01-01T00:00:00Z\t{a_sha}"),
            "-rw-r--r--\tgo/src/old.go\t1\t2024-01-01T00:00:00Z\tdead".to_string(),
            "drwxr-xr-x\tgo/olddir/".to_string(),
            "-rw-r--r--\tgo/olddir/x\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "-rw-r--r--\tgo/gen/made.txt\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "-rw-r--r--\tgo/src/go/build/zcgo.go\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
        ]);
        let mut logs = vec![];
        let p = plan(&t, &remote, None, true, &mut logs);
        assert_eq!(p.delete, vec!["go/olddir", "go/src/old.go"]);
        // The tree's own .gitignore is an ordinary file and goes too.
        assert_eq!(names(&p.send), vec![".gitignore", "VERSION", "src/new.go"]);
        assert_eq!((p.missing, p.changed), (3, 0));
        // Scoped to one directory, only it is looked at.
        let p = plan(&t, &remote, Some(&["olddir".into()]), false, &mut logs);
        assert_eq!(p.delete, vec!["go/olddir"]);
        assert!(p.send.is_empty());
    }

    #[test]
    fn kind_changes_delete_then_send() {
        let (d, _) = tree(&[("x/inner.go", "i"), ("y", "file now")], "");
        std::os::unix::fs::symlink("y", d.path().join("l")).unwrap();
        let t = hashed(localtree::walk(d.path(), &LocalManifest::default()).unwrap());
        let remote = parse_listing(&[
            "-rw-r--r--\tgo/x\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "drwxr-xr-x\tgo/y/".to_string(),
            "-rw-r--r--\tgo/y/z\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            format!(
                "Lrwxrwxrwx\tgo/l\t1\t2024-01-01T00:00:00Z\t{}",
                gomote_shared::digest::sha1_bytes(b"y")
            ),
            "-rw-r--r--\tgo/VERSION\t1\t2024-01-01T00:00:00Z\tx".to_string(),
            format!(
                "-rw-r--r--\tgo/.gitignore\t0\t2024-01-01T00:00:00Z\t{}",
                hex::encode(Sha1::digest(b""))
            ),
        ]);
        let p = plan(&t, &remote, None, false, &mut vec![]);
        assert_eq!(p.delete, vec!["go/x", "go/y"]);
        assert_eq!(names(&p.send), vec!["x/inner.go", "y"]);
    }

    #[test]
    fn mode_only_changes_are_sent() {
        let (d, _) = tree(&[("run.sh", "x"), ("doc.txt", "y")], "");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(
            d.path().join("doc.txt"),
            std::fs::Permissions::from_mode(0o664),
        )
        .unwrap();
        let t = hashed(localtree::walk(d.path(), &LocalManifest::default()).unwrap());
        let sha = |b: &[u8]| hex::encode(Sha1::digest(b));
        let remote = parse_listing(&[
            format!(
                "-rw-r--r--\tgo/run.sh\t1\t2024-01-01T00:00:00Z\t{}",
                sha(b"x")
            ),
            // Group-writable locally, not remotely (umask): not a change.
            format!(
                "-rw-r--r--\tgo/doc.txt\t1\t2024-01-01T00:00:00Z\t{}",
                sha(b"y")
            ),
            format!(
                "-rw-r--r--\tgo/.gitignore\t0\t2024-01-01T00:00:00Z\t{}",
                sha(b"")
            ),
            "-rw-r--r--\tgo/VERSION\t1\t2024-01-01T00:00:00Z\tx".to_string(),
        ]);
        let p = plan(&t, &remote, None, false, &mut vec![]);
        assert_eq!(names(&p.send), vec!["run.sh"]);
    }

    #[test]
    fn dry_run_plan_reads_nothing() {
        // Digests unknown (nothing hashed): a same-size remote file is
        // "changed on disk", a different size is changed, nothing is read.
        let (_d, t) = tree(&[("a", "1"), ("b", "22")], "");
        let remote = parse_listing(&[
            "-rw-r--r--\tgo/a\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "-rw-r--r--\tgo/b\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
        ]);
        let p = plan(&t, &remote, None, false, &mut vec![]);
        assert_eq!(p.unverified, 1, "a: same size, contents unknown");
        assert_eq!(names(&p.send), vec![".gitignore", "VERSION", "b"]);
        assert_eq!((p.missing, p.changed), (1, 1));
    }

    #[test]
    fn tops_and_scope() {
        assert_eq!(
            tops(["a".into(), "a/b".into(), "ab".into()].into()),
            vec!["a", "ab"]
        );
        assert!(in_scope("src/x", Some(&["src".into()])));
        assert!(!in_scope("srcx", Some(&["src".into()])));
    }
}
