//! `push`: sync the local GOROOT into each instance's `go/` (gomote-cli.md
//! section 3): list the remote tree with digests, walk the local one with
//! Go's exclusions and .gitignore rules (read in-process, never through a
//! `git` subprocess), delete what is gone, upload one .tar.gz of what is
//! new or changed, and make sure `go1.4` holds the bootstrap toolchain.
//! Instances that need the same files share one upload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use gomote_shared::gofmt::quote_list;

use gomote_shared::digest::DigestCache;

use crate::cmd::{CmdResult, Ctx, Failure};
use crate::resolve;
use crate::target::Inst;
use crate::transfer::Payload;

/// Files `cmd/dist` generates on the remote; never deleted or sent.
const DIST_GENERATED: [&str; 9] = [
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
const REMOTE_SKIP: [&str; 7] = [
    "go/pkg",
    "go/bin",
    "go1.4/src",
    "go1.4/pkg",
    "gocache",
    "goplscache",
    "tmp",
];

/// One local entry.
#[derive(Debug, Clone)]
struct Local {
    /// Unix mode bits.
    mode: u32,
    /// SHA-1 for regular files.
    sha1: Option<String>,
    /// Whether it is a directory.
    dir: bool,
}

/// The local tree and its ignore rules.
struct LocalTree {
    root: PathBuf,
    entries: BTreeMap<String, Local>,
    ignores: Vec<(String, ignore::gitignore::Gitignore)>,
}

impl LocalTree {
    /// Reports whether a relative path is ignored by some .gitignore.
    fn ignored(&self, rel: &str, dir: bool) -> bool {
        let mut verdict = false;
        for (base, gi) in &self.ignores {
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

fn editor_backup(rel: &str) -> bool {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    (base.starts_with('.') && base.ends_with(".swp"))
        || rel.ends_with('~')
        || rel.ends_with('#')
        || base.starts_with('#')
        || base.starts_with(".#")
}

/// Walks GOROOT as Go's push does.
fn walk_local(root: &Path, digests: &DigestCache) -> Result<LocalTree, String> {
    let mut entries = BTreeMap::new();
    let mut ignores = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let exclude = root.join(".git/info/exclude");
    if exclude.is_file() {
        let (gi, _) = ignore::gitignore::Gitignore::new(&exclude);
        ignores.push((String::new(), gi));
    }
    while let Some((dir, rel)) = stack.pop() {
        let gitignore = dir.join(".gitignore");
        if gitignore.is_file() {
            let (gi, _) = ignore::gitignore::Gitignore::new(&gitignore);
            ignores.push((rel.clone(), gi));
        }
        let rd = std::fs::read_dir(&dir).map_err(|e| {
            format!(
                "error enumerating local GOROOT files: {}: {e}",
                dir.display()
            )
        })?;
        for e in rd {
            let e = e.map_err(|e| format!("error enumerating local GOROOT files: {e}"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(e.path())
                .map_err(|e| format!("error enumerating local GOROOT files: {e}"))?;
            if rel.is_empty()
                && (name == ".git" || (md.is_dir() && (name == "pkg" || name == "bin")))
            {
                continue;
            }
            if md.is_dir() {
                stack.push((e.path(), r.clone()));
            }
            if editor_backup(&r) {
                continue;
            }
            let sha1 = if md.is_file() {
                Some(
                    digests
                        .sha1(&e.path(), &md)
                        .map_err(|err| format!("hashing {}: {err}", e.path().display()))?,
                )
            } else {
                None
            };
            entries.insert(
                r,
                Local {
                    mode: md.mode(),
                    sha1,
                    dir: md.is_dir(),
                },
            );
        }
    }
    // Outer rules first, so deeper .gitignore files can override them.
    ignores.sort_by_key(|(base, _)| base.matches('/').count() + usize::from(!base.is_empty()));
    let mut t = LocalTree {
        root: root.to_path_buf(),
        entries,
        ignores,
    };
    let ignored: Vec<String> = t
        .entries
        .iter()
        .filter(|(k, v)| t.ignored(k, v.dir))
        .map(|(k, _)| k.clone())
        .collect();
    for k in ignored {
        t.entries.remove(&k);
    }
    Ok(t)
}

/// `$GOROOT` of the request, else `go env GOROOT`.
fn goroot(ctx: &Ctx) -> Result<PathBuf, String> {
    if let Some(g) = ctx.req.goroot.clone().filter(|g| !g.as_os_str().is_empty()) {
        return Ok(g);
    }
    let out = std::process::Command::new("go")
        .args(["env", "GOROOT"])
        .output()
        .map_err(|e| format!("failed to get GOROOT from go env: {e}"))?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if s.is_empty() {
        return Err("Failed to get $GOROOT from environment or go env".into());
    }
    Ok(PathBuf::from(s))
}

/// A .tar.gz holding one file (the fake VERSION, puttar's VERSION).
pub fn single_file_tgz(name: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_path(name).map_err(|e| e.to_string())?;
    h.set_cksum();
    b.append(&h, data).map_err(|e| e.to_string())?;
    b.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| e.to_string())
}

fn fake_version(root: &Path) -> Result<String, String> {
    let p = root.join("src/internal/goversion/goversion.go");
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    let re = regex::Regex::new(r"(?m)^const Version = (\d+)").map_err(|e| e.to_string())?;
    let n = re
        .captures(&text)
        .and_then(|c| c.get(1))
        .ok_or("internal/goversion/goversion.go does not contain 'const Version = ...'")?;
    Ok(format!("go1.{}-devel_gomote", n.as_str()))
}

/// Builds the .tar.gz of `files` (relative to GOROOT), plus a fake VERSION.
fn build_tgz(tree: &LocalTree, files: &[String], version: Option<&str>) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for rel in files {
        if rel == "VERSION"
            && let Some(v) = version
            && !tree.entries.contains_key("VERSION")
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(v.len() as u64);
            h.set_mode(0o644);
            h.set_path("VERSION").map_err(|e| e.to_string())?;
            h.set_cksum();
            b.append(&h, v.as_bytes()).map_err(|e| e.to_string())?;
            continue;
        }
        let abs = tree.root.join(rel);
        let md =
            std::fs::symlink_metadata(&abs).map_err(|e| format!("error reading {rel}: {e}"))?;
        gomote_shared::tarpack::append_path(&mut b, rel, &abs, &md)
            .map_err(|e| format!("error copying contents of {rel}: {e}"))?;
    }
    let gz = b.into_inner().map_err(|e| e.to_string())?;
    let mut v = gz.finish().map_err(|e| e.to_string())?;
    v.flush().map_err(|e| e.to_string())?;
    Ok(v)
}

/// The execute bits (0o111) of a Go `FileMode.String()` like `-rwxr-xr-x`.
fn exec_bits(mode: &str) -> u32 {
    let perms: Vec<char> = mode.chars().rev().take(9).collect();
    // Reversed: index 0 is other-x, 3 is group-x, 6 is owner-x.
    [(0usize, 0o001u32), (3, 0o010), (6, 0o100)]
        .iter()
        .filter(|(i, _)| perms.get(*i) == Some(&'x'))
        .map(|(_, b)| b)
        .sum()
}

/// What one instance needs.
struct Plan {
    delete: Vec<String>,
    send: Vec<String>,
    missing: usize,
    changed: usize,
}

fn plan(tree: &LocalTree, remote_lines: &[String], verbose: bool, logs: &mut Vec<String>) -> Plan {
    // Remote digest and the execute bits of its Go mode string.
    let mut remote: HashMap<String, String> = HashMap::new();
    let mut remote_exec: HashMap<String, u32> = HashMap::new();
    for l in remote_lines {
        let f: Vec<&str> = l.split('\t').collect();
        let Some(name) = f.get(1) else { continue };
        let Some(key) = name.strip_prefix("go/") else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        remote.insert(key.to_string(), f.get(4).unwrap_or(&"").to_string());
        if let Some(mode) = f.first() {
            remote_exec.insert(key.to_string(), exec_bits(mode));
        }
    }
    let mut delete = BTreeSet::new();
    for key in remote.keys() {
        let is_dir = key.ends_with('/');
        let k = key.trim_end_matches('/');
        if k == "VERSION" || DIST_GENERATED.contains(&k) || tree.ignored(k, is_dir) {
            continue;
        }
        if !tree.entries.contains_key(k) {
            delete.insert(k.to_string());
        }
    }
    // Removing a directory removes its contents: keep only the tops.
    let tops: Vec<String> = delete
        .iter()
        .filter(|d| {
            !delete.iter().any(|p| {
                d.len() > p.len() && d.starts_with(p.as_str()) && d.as_bytes()[p.len()] == b'/'
            })
        })
        .map(|d| format!("go/{d}"))
        .collect();
    let (mut missing, mut changed) = (0, 0);
    let mut send = Vec::new();
    for (rel, e) in &tree.entries {
        if e.dir || DIST_GENERATED.contains(&rel.as_str()) || rel == "VERSION.cache" {
            continue;
        }
        let Some(local) = &e.sha1 else {
            if verbose {
                logs.push(format!(
                    "Ignoring local non-regular, non-directory file {rel}: {:o}",
                    e.mode
                ));
            }
            continue;
        };
        match remote.get(rel) {
            None => {
                missing += 1;
                if verbose {
                    logs.push(format!("Remote doesn't have {rel:?}"));
                }
                send.push(rel.clone());
            }
            Some(r) if r != local => {
                changed += 1;
                if verbose {
                    logs.push(format!("Remote's {rel} digest is {r:?}; want {local:?}"));
                }
                send.push(rel.clone());
            }
            // Same bytes but `chmod +x` (or -x) locally: send it again.
            // Only the execute bits count; the remote umask may well strip
            // group and other write bits, which must not resend forever.
            Some(_) if remote_exec.get(rel).is_some_and(|x| *x != e.mode & 0o111) => {
                changed += 1;
                if verbose {
                    logs.push(format!(
                        "Remote's {rel} mode differs; want {:o}",
                        e.mode & 0o777
                    ));
                }
                send.push(rel.clone());
            }
            Some(_) => {}
        }
    }
    if !tree.entries.contains_key("VERSION") && !remote.contains_key("VERSION") {
        logs.push("Remote lacks a VERSION file; sending a fake one".into());
        send.push("VERSION".into());
    }
    send.sort();
    Plan {
        delete: tops,
        send,
        missing,
        changed,
    }
}

/// `gomote push [instance]`.
pub async fn push_cmd(ctx: &Ctx, args: Vec<String>, dry_run: bool, verbose: bool) -> CmdResult {
    goroot(ctx)?;
    let (targets, _) = resolve::one_or_group(ctx, &args).await?;
    push_to(ctx, &targets, dry_run, verbose).await
}

/// Pushes GOROOT to every target.
pub async fn push_to(ctx: &Ctx, targets: &[Inst], dry_run: bool, verbose: bool) -> CmdResult {
    let root = goroot(ctx)?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("GOROOT {}: {e}", root.display()))?;
    for t in targets {
        ctx.out
            .log(format!(
                "Pushing GOROOT {:?} to {:?}...",
                root.display().to_string(),
                t.name()
            ))
            .await;
    }
    let start = std::time::Instant::now();
    let tree = {
        let r = root.clone();
        let digests = ctx.sessions.digests.clone();
        tokio::task::spawn_blocking(move || walk_local(&r, &digests))
            .await
            .map_err(|e| e.to_string())??
    };
    let listings = futures_util::future::join_all(targets.iter().map(|t| async move {
        let skip: Vec<String> = REMOTE_SKIP.iter().map(|s| s.to_string()).collect();
        t.ls(".", true, true, &skip).await.map_err(|e| {
            format!(
                "error listing buildlet's existing files on {}: {e}",
                t.name()
            )
        })
    }))
    .await;
    let mut plans = Vec::new();
    for (t, l) in targets.iter().zip(listings) {
        let mut logs = Vec::new();
        let p = plan(&tree, &l?, verbose, &mut logs);
        for line in logs {
            ctx.out.log(format!("{}: {line}", t.name())).await;
        }
        plans.push(p);
    }
    let version = fake_version(&root).ok();
    // One archive per distinct set of files: a group in step shares one.
    let mut payloads: HashMap<Vec<String>, std::sync::Arc<Payload>> = HashMap::new();
    let mut results = Vec::new();
    for (t, p) in targets.iter().zip(&plans) {
        let summary = format!(
            "{}: {} to send ({} new, {} changed), {} to delete",
            t.name(),
            p.send.len(),
            p.missing,
            p.changed,
            p.delete.len()
        );
        ctx.out.log(summary).await;
        if dry_run {
            if !p.delete.is_empty() {
                ctx.out
                    .log(format!(
                        "(Dry-run) Would have deleted remote files: {}",
                        quote_list(&p.delete)
                    ))
                    .await;
            }
            continue;
        }
        let payload = if p.send.is_empty() {
            None
        } else if let Some(pl) = payloads.get(&p.send) {
            Some(pl.clone())
        } else {
            let data = {
                let tree_files = p.send.clone();
                let v = version.clone();
                let r = tree.root.clone();
                let entries = tree.entries.clone();
                tokio::task::spawn_blocking(move || {
                    let t = LocalTree {
                        root: r,
                        entries,
                        ignores: Vec::new(),
                    };
                    build_tgz(&t, &tree_files, v.as_deref())
                })
                .await
                .map_err(|e| e.to_string())??
            };
            ctx.out
                .log(format!(
                    "Uploading {} new/changed files; {} byte .tar.gz",
                    p.send.len(),
                    data.len()
                ))
                .await;
            let pl = std::sync::Arc::new(Payload::bytes(data, "go.tar.gz"));
            payloads.insert(p.send.clone(), pl.clone());
            Some(pl)
        };
        results.push((t, p.delete.clone(), payload));
    }
    if dry_run {
        ctx.out.log("(Dry-run mode; not doing anything.").await;
        return Ok(0);
    }
    let outcomes =
        futures_util::future::join_all(results.into_iter().map(|(t, del, payload)| async move {
            if !del.is_empty() {
                t.remove(&del).await.map_err(|e| {
                    format!(
                        "failed to delete remote unwanted files on {}: {e}",
                        t.name()
                    )
                })?;
            }
            if let Some(pl) = payload {
                t.put_tgz("go", &pl)
                    .await
                    .map_err(|e| format!("failed writing tarball to {}: {e}", t.name()))?;
            }
            t.add_bootstrap()
                .await
                .map_err(|e| format!("installing the bootstrap toolchain on {}: {e}", t.name()))?;
            Ok::<(), String>(())
        }))
        .await;
    for o in outcomes {
        o.map_err(Failure::from)?;
    }
    ctx.out
        .log(format!("Pushed in {:.2}s", start.elapsed().as_secs_f64()))
        .await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    fn tree(files: &[(&str, &str)], gitignore: &str) -> (tempfile::TempDir, LocalTree) {
        let d = tempfile::tempdir().unwrap();
        for (p, body) in files {
            let abs = d.path().join(p);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, body).unwrap();
        }
        std::fs::write(d.path().join(".gitignore"), gitignore).unwrap();
        let t = walk_local(d.path(), &DigestCache::default()).unwrap();
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
        assert!(t.ignored("gen/out.txt", false));
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
        let a_sha = hex::encode(Sha1::digest(b"a"));
        let remote = vec![
            "drwxr-xr-x\tgo/".to_string(),
            "drwxr-xr-x\tgo/src/".to_string(),
            format!("-rw-r--r--\tgo/src/a.go\t1\t2024-01-01T00:00:00Z\t{a_sha}"),
            "-rw-r--r--\tgo/src/old.go\t1\t2024-01-01T00:00:00Z\tdead".to_string(),
            "drwxr-xr-x\tgo/olddir/".to_string(),
            "-rw-r--r--\tgo/olddir/x\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "-rw-r--r--\tgo/gen/made.txt\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
            "-rw-r--r--\tgo/src/go/build/zcgo.go\t1\t2024-01-01T00:00:00Z\tbeef".to_string(),
        ];
        let mut logs = vec![];
        let p = plan(&t, &remote, true, &mut logs);
        assert_eq!(p.delete, vec!["go/olddir", "go/src/old.go"]);
        // The tree's own .gitignore is an ordinary file and goes too.
        assert_eq!(p.send, vec![".gitignore", "VERSION", "src/new.go"]);
        assert_eq!((p.missing, p.changed), (3, 0));
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
        let t = walk_local(d.path(), &DigestCache::default()).unwrap();
        let sha = |b: &[u8]| hex::encode(Sha1::digest(b));
        let gi = sha(b"");
        let remote = vec![
            format!(
                "-rw-r--r--\tgo/run.sh\t1\t2024-01-01T00:00:00Z\t{}",
                sha(b"x")
            ),
            // Group-writable locally, not remotely (umask): not a change.
            format!(
                "-rw-r--r--\tgo/doc.txt\t1\t2024-01-01T00:00:00Z\t{}",
                sha(b"y")
            ),
            format!("-rw-r--r--\tgo/.gitignore\t0\t2024-01-01T00:00:00Z\t{gi}"),
            "-rw-r--r--\tgo/VERSION\t1\t2024-01-01T00:00:00Z\tx".to_string(),
        ];
        let p = plan(&t, &remote, false, &mut vec![]);
        assert_eq!(p.send, vec!["run.sh"]);
        assert_eq!(exec_bits("-rwxr-x---"), 0o110);
        assert_eq!(exec_bits("urwxr-xr-x"), 0o111);
    }

    #[test]
    fn fake_version_from_goversion() {
        let (d, _) = tree(
            &[(
                "src/internal/goversion/goversion.go",
                "package goversion\n\nconst Version = 19\n",
            )],
            "",
        );
        assert_eq!(fake_version(d.path()).unwrap(), "go1.19-devel_gomote");
    }
}
