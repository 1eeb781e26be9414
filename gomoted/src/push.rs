//! `push`: sync the local GOROOT into each instance's `go/` (gomote-cli.md
//! section 3). Compares the local tree (digests from the local manifest) with
//! each instance's remote manifest (listed with digests when it cannot be
//! trusted), deletes what is gone, and streams what is new or changed as a
//! pipeline of .tar.gz parts: packing one part while earlier ones upload
//! and unpack. Instances needing the same files share each upload, and
//! `go1.4` gets the bootstrap toolchain.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gomote_shared::api::Event;
use gomote_shared::digest::Stamp;
use gomote_shared::gofmt::quote_list;
use sha1::{Digest, Sha1};
use tokio::sync::OwnedMutexGuard;

use crate::localtree::{self, Ignores, Kind, LocalTree};
use crate::manifest::{LocalManifest, Remote, RemoteEntry, RemoteKind, RemoteSlot, Remotes};
use crate::out::Out;
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

/// How many part writes (one part to one instance) are in flight at once;
/// more only makes instances on one machine fight over the disk.
const IN_FLIGHT: usize = 4;

/// Files up to this size are read in one go; bigger ones are streamed.
const BIG_FILE: u64 = 8 << 20;

/// Progress is reported only for pushes that take longer than this.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// The daemon's push state: manifests on both sides.
#[derive(Debug, Default)]
pub struct Pusher {
    /// Local digests.
    pub local: Arc<LocalManifest>,
    /// Remote manifests.
    pub remotes: Remotes,
}

/// How a push goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOpts {
    /// Say what would happen; read and compress nothing.
    pub dry_run: bool,
    /// One line per file.
    pub verbose: bool,
    /// List each remote tree even if its manifest is trusted.
    pub verify: bool,
}

/// What a push did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The ignore rules, when the whole tree was walked.
    pub ignores: Option<Ignores>,
    /// Files sent, over all instances.
    pub sent: usize,
    /// Remote paths deleted, over all instances.
    pub deleted: usize,
}

/// `$GOROOT` of the request, else `go env GOROOT`.
pub fn goroot(env: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(g) = env.filter(|g| !g.as_os_str().is_empty()) {
        return Ok(g.to_path_buf());
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

/// GOROOT made canonical, with a clear error.
pub fn canonical_root(root: &Path) -> Result<PathBuf, String> {
    root.canonicalize()
        .map_err(|e| format!("GOROOT {}: {e}", root.display()))
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

/// One thing to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Item {
    File(String),
    Symlink(String, PathBuf),
    FakeVersion,
}

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::File(r) | Item::Symlink(r, _) => r,
            Item::FakeVersion => "VERSION",
        }
    }
}

/// What one instance needs.
#[derive(Debug, Default)]
struct Plan {
    /// `go/...` paths to remove (tops only).
    delete: Vec<String>,
    send: Vec<Item>,
    missing: usize,
    changed: usize,
    /// Dry-run only: changed on disk since last hashed, contents unknown.
    unverified: usize,
}

fn in_scope(rel: &str, scope: Option<&[String]>) -> bool {
    scope.is_none_or(|tops| {
        tops.iter().any(|t| {
            rel == t
                || (rel.len() > t.len()
                    && rel.starts_with(t.as_str())
                    && rel.as_bytes()[t.len()] == b'/')
        })
    })
}

/// Keeps only the paths no other path in the set contains.
fn tops(paths: BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        // Sorted order puts a directory right before its contents.
        if let Some(last) = out.last()
            && p.len() > last.len()
            && p.starts_with(last.as_str())
            && p.as_bytes()[last.len()] == b'/'
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

fn plan(
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
    delete.retain(|d| {
        !keep.iter().any(|k| {
            k.len() > d.len() && k.starts_with(d.as_str()) && k.as_bytes()[d.len()] == b'/'
        })
    });
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

/// Reads through, hashing what passes.
struct Hashing<R> {
    r: R,
    h: Sha1,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// One part of the upload.
#[derive(Debug, Default)]
struct Part {
    data: Vec<u8>,
    /// What the part puts on the remote.
    entries: Vec<(String, RemoteEntry)>,
    /// Bytes of file contents in it.
    bytes: u64,
}

struct Packer {
    root: PathBuf,
    local: Arc<LocalManifest>,
    level: Compression,
    part_bytes: u64,
    version: Option<String>,
}

impl Packer {
    fn builder(&self, bytes: u64) -> tar::Builder<GzEncoder<Vec<u8>>> {
        // Room for the whole part up front: no copies while it grows.
        let cap = if self.level == Compression::none() {
            bytes as usize + bytes as usize / 64 + (64 << 10)
        } else {
            (bytes as usize / 3).max(64 << 10)
        };
        tar::Builder::new(GzEncoder::new(Vec::with_capacity(cap), self.level))
    }

    /// Splits `items` (with their sizes) into parts of about `part_bytes`.
    fn split(&self, items: &[(Item, u64)]) -> Vec<(Vec<Item>, u64)> {
        let mut parts = Vec::new();
        let mut cur: Vec<Item> = Vec::new();
        let mut bytes = 0;
        for (it, size) in items {
            cur.push(it.clone());
            bytes += size;
            if bytes >= self.part_bytes {
                parts.push((std::mem::take(&mut cur), bytes));
                bytes = 0;
            }
        }
        if !cur.is_empty() {
            parts.push((cur, bytes));
        }
        parts
    }

    /// Packs `items` into parts of about `part_bytes` on up to `threads`
    /// threads, handing each part over as soon as it is complete (in any
    /// order). Digests of the files read are recorded.
    fn run(
        self: Arc<Self>,
        items: &[(Item, u64)],
        threads: usize,
        tx: tokio::sync::mpsc::Sender<Result<Part, String>>,
    ) {
        let parts = Arc::new(self.split(items));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..threads.min(parts.len()).max(1) {
            let (me, parts, next, tx) = (self.clone(), parts.clone(), next.clone(), tx.clone());
            tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((items, bytes)) = parts.get(i) else {
                        return;
                    };
                    let r = me.pack(items, *bytes, &mut buf);
                    let failed = r.is_err();
                    if tx.blocking_send(r).is_err() || failed {
                        // Stop the others too: nobody wants their parts.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    }

    fn pack(&self, items: &[Item], bytes: u64, buf: &mut Vec<u8>) -> Result<Part, String> {
        let mut b = self.builder(bytes);
        let mut part = Part::default();
        for it in items {
            self.add(&mut b, &mut part, it, buf)?;
        }
        part.data = b
            .into_inner()
            .and_then(|gz| gz.finish())
            .map_err(|e| format!("compressing: {e}"))?;
        Ok(part)
    }

    fn add(
        &self,
        b: &mut tar::Builder<GzEncoder<Vec<u8>>>,
        part: &mut Part,
        it: &Item,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let rel = it.name().to_string();
        let err = |e: std::io::Error| format!("error copying contents of {rel}: {e}");
        match it {
            Item::FakeVersion => {
                let v = self
                    .version
                    .clone()
                    .unwrap_or_else(|| "devel gomote".into());
                let mut h = tar::Header::new_gnu();
                h.set_size(v.len() as u64);
                h.set_mode(0o644);
                gomote_shared::tarpack::append_named(b, h, "VERSION", None, v.as_bytes())
                    .map_err(err)?;
                part.entries.push((
                    rel.clone(),
                    RemoteEntry {
                        kind: RemoteKind::File,
                        size: v.len() as u64,
                        digest: gomote_shared::digest::sha1_bytes(v.as_bytes()),
                        exec: 0,
                    },
                ));
            }
            Item::Symlink(_, target) => {
                use std::os::unix::ffi::OsStrExt;
                let abs = self.root.join(&rel);
                let md = std::fs::symlink_metadata(&abs).map_err(err)?;
                gomote_shared::tarpack::append_path(b, &rel, &abs, &md).map_err(err)?;
                let t = target.as_os_str().as_bytes();
                part.entries.push((
                    rel.clone(),
                    RemoteEntry {
                        kind: RemoteKind::Symlink,
                        size: t.len() as u64,
                        digest: gomote_shared::digest::sha1_bytes(t),
                        exec: 0,
                    },
                ));
            }
            Item::File(_) => {
                let abs = self.root.join(&rel);
                let f = match std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&abs)
                {
                    Ok(f) => f,
                    // Gone since the walk: the next push deletes it remotely.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(err(e)),
                };
                let md = f.metadata().map_err(err)?;
                let len = md.len();
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                // Exactly the header's size even if the file changes while
                // it is read; a changed stamp keeps it out of the manifest.
                let mut hasher = Sha1::new();
                if len <= BIG_FILE {
                    buf.clear();
                    (&f).take(len).read_to_end(buf).map_err(err)?;
                    buf.resize(len as usize, 0);
                    hasher.update(&buf[..]);
                    gomote_shared::tarpack::append_named(b, h, &rel, None, &buf[..])
                        .map_err(err)?;
                } else {
                    let mut data = Hashing {
                        r: (&f).take(len).chain(std::io::repeat(0)).take(len),
                        h: hasher,
                    };
                    gomote_shared::tarpack::append_named(b, h, &rel, None, &mut data)
                        .map_err(err)?;
                    hasher = data.h;
                }
                let digest = hex::encode(hasher.finalize());
                let stamp = Stamp::of(&md);
                if std::fs::symlink_metadata(&abs).is_ok_and(|m| Stamp::of(&m) == stamp) {
                    self.local.record(&abs, stamp, &digest);
                }
                use std::os::unix::fs::PermissionsExt;
                part.bytes += len;
                part.entries.push((
                    rel.clone(),
                    RemoteEntry {
                        kind: RemoteKind::File,
                        size: len,
                        digest,
                        exec: md.permissions().mode() & 0o111,
                    },
                ));
            }
        }
        Ok(())
    }
}

/// Hashes, on every core, the files whose digest is unknown but needed:
/// those an instance has with the same size.
fn hash_needed(
    tree: &mut LocalTree,
    remotes: &[&HashMap<String, RemoteEntry>],
    local: &LocalManifest,
) {
    let need: Vec<String> = tree
        .entries
        .iter()
        .filter(|(rel, e)| {
            e.kind == Kind::File
                && e.digest.is_none()
                && remotes.iter().any(|r| {
                    r.get(*rel)
                        .is_some_and(|x| x.kind == RemoteKind::File && x.size == e.stamp.size())
                })
        })
        .map(|(k, _)| k.clone())
        .collect();
    if need.is_empty() {
        return;
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let root = tree.root.clone();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(rel) = need.get(i) else { break };
                        let abs = root.join(rel);
                        if let Ok(md) = std::fs::symlink_metadata(&abs)
                            && let Ok(d) = local.hash(&abs, &md)
                        {
                            out.push((rel.clone(), d));
                        }
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (rel, d) in results.into_iter().flatten() {
        if let Some(e) = tree.entries.get_mut(&rel) {
            e.digest = Some(d);
        }
    }
}

/// An instance locked for a push.
struct Locked<'a> {
    inst: &'a Inst,
    slot: Arc<RemoteSlot>,
    m: OwnedMutexGuard<Remote>,
    generation: u64,
    trusted: bool,
}

/// Pushes GOROOT (`root`, canonical) to every target. With `dirty`, only
/// those paths (relative to `root`) are looked at, for instances whose
/// manifests are trusted; the others get a whole-tree push.
pub async fn push(
    p: &Arc<Pusher>,
    out: &Out,
    root: &Path,
    targets: &[Inst],
    dirty: Option<(&[String], &Ignores)>,
    opts: PushOpts,
) -> Result<Outcome, String> {
    let start = Instant::now();
    // Lock in a fixed order so overlapping pushes cannot deadlock.
    let mut order: Vec<&Inst> = targets.iter().collect();
    order.sort_by_key(|t| t.key());
    order.dedup_by_key(|t| t.key());
    let mut locked = Vec::new();
    for inst in order {
        let slot = p.remotes.slot(&inst.key());
        let m = slot.manifest.clone().lock_owned().await;
        let generation = slot.generation();
        let trusted =
            !opts.verify && m.verified_at == Some(generation) && m.root.as_deref() == Some(root);
        locked.push(Locked {
            inst,
            slot,
            m,
            generation,
            trusted,
        });
    }
    let all_trusted = locked.iter().all(|l| l.trusted);
    let scope: Option<Vec<String>> = dirty.filter(|_| all_trusted).map(|(d, _)| d.to_vec());
    let mut tree = {
        let r = root.to_path_buf();
        let local = p.local.clone();
        let d = dirty.map(|(d, i)| (d.to_vec(), i.clone()));
        let whole = scope.is_none();
        tokio::task::spawn_blocking(move || match d {
            Some((paths, ignores)) if !whole => localtree::walk_paths(&r, &paths, &ignores, &local),
            _ => localtree::walk(&r, &local),
        })
        .await
        .map_err(|e| e.to_string())??
    };
    tracing::debug!(
        ms = start.elapsed().as_millis() as u64,
        entries = tree.entries.len(),
        "push: local walk"
    );
    if scope.is_none() {
        warn_unpushable(out, &tree, opts.verbose).await;
    }
    // The remote side: listed where the manifest is not trusted.
    let listings =
        futures_util::future::join_all(locked.iter().filter(|l| !l.trusted).map(|l| async move {
            let skip: Vec<String> = REMOTE_SKIP.iter().map(|s| s.to_string()).collect();
            l.inst
                .ls(".", true, true, &skip)
                .await
                .map(|lines| crate::manifest::parse_listing(&lines))
                .map_err(|e| {
                    format!(
                        "error listing buildlet's existing files on {}: {e}",
                        l.inst.name()
                    )
                })
        }))
        .await;
    let mut listings = listings.into_iter();
    for l in locked.iter_mut().filter(|l| !l.trusted) {
        l.m.entries = listings.next().ok_or("listing missing")??;
        l.m.verified_at = None;
        l.m.bootstrapped = false;
    }
    if !opts.dry_run {
        let remotes: Vec<&HashMap<String, RemoteEntry>> =
            locked.iter().map(|l| &l.m.entries).collect();
        // Hashing reads files; the manifest's digests are Arc-shared data, so
        // run it on this thread's blocking budget.
        tokio::task::block_in_place(|| hash_needed(&mut tree, &remotes, &p.local));
    }
    tracing::debug!(
        ms = start.elapsed().as_millis() as u64,
        "push: listed and hashed"
    );
    let mut plans = Vec::new();
    for l in &locked {
        let mut logs = Vec::new();
        let pl = plan(
            &tree,
            &l.m.entries,
            scope.as_deref(),
            opts.verbose,
            &mut logs,
        );
        for line in logs {
            out.log(format!("{}: {line}", l.inst.name())).await;
        }
        let mut summary = format!(
            "{}: {} to send ({} new, {} changed), {} to delete",
            l.inst.name(),
            pl.send.len(),
            pl.missing,
            pl.changed,
            pl.delete.len()
        );
        if pl.unverified > 0 {
            summary.push_str(&format!(
                ", {} changed on disk (contents not read in a dry run)",
                pl.unverified
            ));
        }
        if scope.is_none() || !pl.send.is_empty() || !pl.delete.is_empty() {
            out.log(summary).await;
        }
        plans.push(pl);
    }
    if opts.dry_run {
        for (l, pl) in locked.iter().zip(&plans) {
            if !pl.delete.is_empty() {
                out.log(format!(
                    "(Dry-run) Would have deleted remote files on {}: {}",
                    l.inst.name(),
                    quote_list(&pl.delete)
                ))
                .await;
            }
        }
        out.log("(Dry-run mode; not doing anything.)").await;
        return Ok(Outcome::default());
    }
    // Deletions first: a path may change from a file to a directory.
    let deleted =
        futures_util::future::join_all(locked.iter().zip(&plans).map(|(l, pl)| async move {
            if pl.delete.is_empty() {
                return Ok(());
            }
            l.inst.remove(&pl.delete).await.map_err(|e| {
                format!(
                    "failed to delete remote unwanted files on {}: {e}",
                    l.inst.name()
                )
            })
        }))
        .await;
    for d in deleted {
        d?;
    }
    // One pipeline per distinct file set: a group in step shares each part.
    let mut sets: HashMap<&Vec<Item>, Vec<usize>> = HashMap::new();
    for (i, pl) in plans.iter().enumerate() {
        if !pl.send.is_empty() {
            sets.entry(&pl.send).or_default().push(i);
        }
    }
    let version = fake_version(root).ok();
    let progress = Progress::new(
        out,
        start,
        plans
            .iter()
            .filter(|pl| !pl.send.is_empty())
            .map(|pl| send_bytes(&tree, &pl.send))
            .sum(),
    );
    let results = futures_util::future::join_all(sets.into_iter().map(|(items, who)| {
        let insts: Vec<Inst> = who.iter().map(|&i| locked[i].inst.clone()).collect();
        let packer = Packer {
            root: root.to_path_buf(),
            local: p.local.clone(),
            level: if insts.iter().all(Inst::is_local) {
                Compression::none()
            } else {
                Compression::fast()
            },
            part_bytes: if insts.iter().all(Inst::is_local) {
                8 << 20
            } else {
                32 << 20
            },
            version: version.clone(),
        };
        let progress = &progress;
        let sized: Vec<(Item, u64)> = items
            .iter()
            .map(|i| (i.clone(), send_bytes(&tree, std::slice::from_ref(i))))
            .collect();
        async move {
            let r = send_set(out, packer, sized, &insts, progress).await;
            (who, r)
        }
    }))
    .await;
    tracing::debug!(ms = start.elapsed().as_millis() as u64, "push: sent");
    let mut outcome = Outcome::default();
    let mut failure = None;
    let mut written: HashMap<usize, Vec<(String, RemoteEntry)>> = HashMap::new();
    for (who, r) in results {
        match r {
            Ok(entries) => {
                for i in who {
                    written.insert(i, entries.clone());
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    progress.done().await;
    // Manifests: what was deleted and written is now known to be there.
    for (i, (l, pl)) in locked.iter_mut().zip(&plans).enumerate() {
        let ok = failure.is_none() || written.contains_key(&i) || pl.send.is_empty();
        if !ok {
            l.m.verified_at = None;
            continue;
        }
        let gone: Vec<&str> = pl
            .delete
            .iter()
            .filter_map(|d| d.strip_prefix("go/"))
            .collect();
        l.m.entries.retain(|k, _| {
            !gone
                .iter()
                .any(|g| k == g || (k.starts_with(g) && k.as_bytes().get(g.len()) == Some(&b'/')))
        });
        for (rel, e) in written.remove(&i).unwrap_or_default() {
            l.m.entries.insert(rel, e);
        }
        outcome.sent += pl.send.len();
        outcome.deleted += pl.delete.len();
        l.m.root = Some(root.to_path_buf());
        l.m.verified_at = Some(l.generation);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // The bootstrap toolchain, once per verified manifest.
    let boots =
        futures_util::future::join_all(locked.iter_mut().filter(|l| !l.m.bootstrapped).map(
            |l| async move {
                l.inst.add_bootstrap().await.map_err(|e| {
                    format!(
                        "installing the bootstrap toolchain on {}: {e}",
                        l.inst.name()
                    )
                })?;
                l.m.bootstrapped = true;
                Ok::<(), String>(())
            },
        ))
        .await;
    for b in boots {
        b?;
    }
    // Generation bumped while we pushed (a command ran): not trusted after all.
    for l in &mut locked {
        if l.slot.generation() != l.generation {
            l.m.verified_at = None;
        }
    }
    if scope.is_none() {
        outcome.ignores = Some(tree.ignores.clone());
        out.log(format!("Pushed in {:.2}s", start.elapsed().as_secs_f64()))
            .await;
    }
    Ok(outcome)
}

fn send_bytes(tree: &LocalTree, items: &[Item]) -> u64 {
    items
        .iter()
        .map(|i| match i {
            Item::File(r) => tree.entries.get(r).map_or(0, |e| e.stamp.size()),
            _ => 0,
        })
        .sum()
}

/// Says, once per push, what cannot be pushed (symlinks leaving GOROOT,
/// sockets...), with the Debian GOROOT case spelled out.
async fn warn_unpushable(out: &Out, tree: &LocalTree, verbose: bool) {
    let bad: Vec<(&String, &String)> = tree
        .entries
        .iter()
        .filter_map(|(k, e)| match &e.kind {
            Kind::Unpushable(why) => Some((k, why)),
            _ => None,
        })
        .collect();
    let Some((first, why)) = bad.first() else {
        return;
    };
    if verbose {
        return; // plan() lists each one.
    }
    let top_links = bad.iter().filter(|(k, _)| !k.contains('/')).count();
    let mut line = format!(
        "Not pushing {} local entr{} that cannot be reproduced remotely; first: {first} ({why})",
        bad.len(),
        if bad.len() == 1 { "y" } else { "ies" }
    );
    if top_links > 0 && !tree.entries.contains_key("src") {
        line.push_str(". GOROOT's top level links outside it (as Debian's /usr/lib/go does): push a copy made with `cp -rL`");
    }
    out.log(line).await;
}

/// Sends one file set to `insts` as a pipeline of parts; returns what the
/// parts put on the remote.
async fn send_set(
    out: &Out,
    packer: Packer,
    items: Vec<(Item, u64)>,
    insts: &[Inst],
    progress: &Progress<'_>,
) -> Result<Vec<(String, RemoteEntry)>, String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Part, String>>(2);
    let n_items = items.len();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    Arc::new(packer).run(&items, threads, tx);
    let mut entries = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let mut parts = 0usize;
    let mut bytes = 0usize;
    loop {
        tokio::select! {
            next = rx.recv(), if inflight.len() < (IN_FLIGHT / insts.len()).max(1) => {
                let Some(part) = next else { break };
                let part = part?;
                tracing::debug!(files = part.entries.len(), bytes = part.data.len(), "push: part packed");
                parts += 1;
                bytes += part.data.len();
                let Part { data, entries: pe, bytes: pb } = part;
                let payload = Arc::new(Payload::bytes(data, "go.tar.gz"));
                inflight.push(async move {
                    let writes = futures_util::future::join_all(insts.iter().map(|t| {
                        let payload = payload.clone();
                        async move {
                            t.put_tgz("go", &payload)
                                .await
                                .map_err(|e| format!("failed writing tarball to {}: {e}", t.name()))
                        }
                    }))
                    .await;
                    for w in writes {
                        w?;
                    }
                    Ok::<_, String>((pe, pb))
                });
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let (pe, pb) = done?;
                tracing::debug!(files = pe.len(), "push: part written");
                progress.add(pb).await;
                entries.extend(pe);
            }
        }
    }
    while let Some(done) = inflight.next().await {
        let (pe, pb) = done?;
        progress.add(pb).await;
        entries.extend(pe);
    }
    out.log(format!(
        "Uploaded {n_items} new/changed files to {}; {bytes} byte .tar.gz in {parts} part{}",
        insts.iter().map(Inst::name).collect::<Vec<_>>().join(", "),
        if parts == 1 { "" } else { "s" }
    ))
    .await;
    Ok(entries)
}

/// Progress events for a push that runs longer than [`QUIET_FOR`].
struct Progress<'a> {
    out: &'a Out,
    start: Instant,
    total: u64,
    done: tokio::sync::Mutex<(u64, bool)>,
}

impl<'a> Progress<'a> {
    fn new(out: &'a Out, start: Instant, total: u64) -> Progress<'a> {
        Progress {
            out,
            start,
            total,
            done: tokio::sync::Mutex::new((0, false)),
        }
    }

    async fn add(&self, n: u64) {
        let mut d = self.done.lock().await;
        d.0 += n;
        if self.start.elapsed() >= QUIET_FOR && self.total > 0 {
            d.1 = true;
            self.out
                .send(Event::Progress {
                    what: "pushing".into(),
                    done: d.0.min(self.total),
                    total: Some(self.total),
                })
                .await;
        }
    }

    async fn done(&self) {
        let d = self.done.lock().await;
        if d.1 {
            self.out
                .send(Event::Progress {
                    what: "pushing".into(),
                    done: self.total,
                    total: Some(self.total),
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_listing;

    fn tree(files: &[(&str, &str)], gitignore: &str) -> (tempfile::TempDir, LocalTree) {
        let d = tempfile::tempdir().unwrap();
        for (p, body) in files {
            let abs = d.path().join(p);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, body).unwrap();
        }
        std::fs::write(d.path().join(".gitignore"), gitignore).unwrap();
        let mut t = localtree::walk(d.path(), &LocalManifest::default()).unwrap();
        for e in t.entries.values_mut() {
            if e.kind == Kind::File {
                e.digest = None;
            }
        }
        (d, t)
    }

    fn hashed(mut t: LocalTree) -> LocalTree {
        let root = t.root.clone();
        for (k, e) in t.entries.iter_mut() {
            if e.kind == Kind::File {
                e.digest = Some(gomote_shared::digest::sha1_file(&root.join(k)).unwrap());
            }
        }
        t
    }

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
    fn packer_hashes_what_it_sends() {
        let (d, t) = tree(&[("a.txt", "hello")], "");
        let local = Arc::new(LocalManifest::default());
        let packer = Packer {
            root: d.path().to_path_buf(),
            local: local.clone(),
            level: Compression::none(),
            part_bytes: 1,
            version: Some("go1.19-devel_gomote".into()),
        };
        let items = [(Item::File("a.txt".into()), 5), (Item::FakeVersion, 0)];
        let split = packer.split(&items);
        assert_eq!(split.len(), 2, "one part per item at part_bytes = 1");
        let parts: Vec<Part> = split
            .iter()
            .map(|(it, b)| packer.pack(it, *b, &mut Vec::new()).unwrap())
            .collect();
        assert_eq!(
            parts[0].entries[0].1.digest,
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        let abs = d.path().join("a.txt");
        let md = std::fs::symlink_metadata(&abs).unwrap();
        assert!(local.known(&abs, &Stamp::of(&md)).is_some());
        let _ = t;
        assert_eq!(
            tops(["a".into(), "a/b".into(), "ab".into()].into()),
            vec!["a", "ab"]
        );
        assert!(in_scope("src/x", Some(&["src".into()])));
        assert!(!in_scope("srcx", Some(&["src".into()])));
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
