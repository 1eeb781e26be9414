//! `push`: sync the local GOROOT into each instance's `go/` (docs/cli.md,
//! "push"). Compares the local tree (digests from the local manifest) with
//! each instance's remote manifest (listed with digests when it cannot be
//! trusted), deletes what is gone, and streams what is new or changed as a
//! pipeline of .tar.gz parts: packing one part while earlier ones upload
//! and unpack. Instances needing the same files share each upload, and
//! `go1.4` gets the bootstrap toolchain.
//!
//! The phases, each in its own module: [`goroot`] (which tree), walk
//! (`localtree`), list (the remote manifests), [`hash`] (digests needed to
//! compare), [`plan`] (what each instance needs), delete, [`send`] (parts
//! from [`pack`], with [`progress`]), record (manifests), bootstrap.

mod error;
pub mod goroot;
mod hash;
pub mod pack;
pub mod plan;
mod progress;
mod report;
mod send;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flate2::Compression;
use gomote_shared::gofmt::quote_list;
use gomote_shared::relpath::key_below;
use tokio::sync::OwnedMutexGuard;

use crate::localtree::{self, Ignores, LocalTree};
use crate::manifest::{LocalManifest, Remote, RemoteEntry, RemoteSlot, Remotes};
use crate::out::Out;
use crate::target::Inst;
pub use error::PushError;
use pack::Packer;
use plan::{Item, Plan};
use progress::Progress;

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
}

/// What starts a push, which decides whether remote manifests are trusted.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// A user's command: every remote tree is listed, since anything may
    /// have changed it since the daemon last looked.
    Command,
    /// The watcher: manifests it kept up to date are trusted; with paths,
    /// only those (relative to GOROOT, with the ignore rules of the last
    /// whole walk) are looked at when every instance's manifest is trusted.
    Watch(Option<(&'a [String], &'a Ignores)>),
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

/// An instance locked for a push.
struct Locked<'a> {
    inst: &'a Inst,
    slot: Arc<RemoteSlot>,
    m: OwnedMutexGuard<Remote>,
    generation: u64,
    trusted: bool,
}

/// Pushes GOROOT (`root`, canonical) to every target.
pub async fn push(
    p: &Arc<Pusher>,
    out: &Out,
    root: &Path,
    targets: &[Inst],
    trigger: Trigger<'_>,
    opts: PushOpts,
) -> Result<Outcome, PushError> {
    let start = Instant::now();
    let (verify, dirty) = match trigger {
        Trigger::Command => (true, None),
        Trigger::Watch(dirty) => (false, dirty),
    };
    let mut locked = lock(p, root, targets, verify).await;
    let all_trusted = locked.iter().all(|l| l.trusted);
    let scope: Option<Vec<String>> = dirty.filter(|_| all_trusted).map(|(d, _)| d.to_vec());
    let mut tree = walk(p, root, dirty, scope.is_none()).await?;
    tracing::debug!(
        ms = start.elapsed().as_millis() as u64,
        entries = tree.entries.len(),
        "push: local walk"
    );
    if scope.is_none() {
        report::warn_unpushable(out, &tree, opts.verbose).await;
    }
    list_untrusted(&mut locked).await?;
    if !opts.dry_run {
        let remotes: Vec<&HashMap<String, RemoteEntry>> =
            locked.iter().map(|l| &l.m.entries).collect();
        // Hashing reads files; the manifest's digests are Arc-shared data, so
        // run it on this thread's blocking budget.
        tokio::task::block_in_place(|| hash::hash_needed(&mut tree, &remotes, &p.local));
    }
    tracing::debug!(
        ms = start.elapsed().as_millis() as u64,
        "push: listed and hashed"
    );
    let plans = make_plans(out, &tree, &locked, scope.as_deref(), opts.verbose).await;
    if opts.dry_run {
        report_dry_run(out, &locked, &plans).await;
        return Ok(Outcome::default());
    }
    delete(&locked, &plans).await?;
    let (written, failure) = send(p, out, root, &tree, &locked, &plans, start).await;
    tracing::debug!(ms = start.elapsed().as_millis() as u64, "push: sent");
    let mut outcome = record(&mut locked, &plans, written, failure.is_none(), root);
    if let Some(e) = failure {
        return Err(e);
    }
    bootstrap(&mut locked).await?;
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

/// Locks each instance's manifest, in a fixed order so overlapping pushes
/// cannot deadlock, and decides whether it can be trusted.
async fn lock<'a>(p: &Pusher, root: &Path, targets: &'a [Inst], verify: bool) -> Vec<Locked<'a>> {
    let mut order: Vec<&Inst> = targets.iter().collect();
    order.sort_by_key(|t| t.key());
    order.dedup_by_key(|t| t.key());
    let mut locked = Vec::new();
    for inst in order {
        let slot = p.remotes.slot(&inst.key());
        let m = slot.manifest.clone().lock_owned().await;
        let generation = slot.generation();
        let trusted =
            !verify && m.verified_at == Some(generation) && m.root.as_deref() == Some(root);
        locked.push(Locked {
            inst,
            slot,
            m,
            generation,
            trusted,
        });
    }
    locked
}

/// Walks the local tree: all of it, or only the dirty paths.
async fn walk(
    p: &Pusher,
    root: &Path,
    dirty: Option<(&[String], &Ignores)>,
    whole: bool,
) -> Result<LocalTree, PushError> {
    let r = root.to_path_buf();
    let local = p.local.clone();
    let d = dirty.map(|(d, i)| (d.to_vec(), i.clone()));
    let tree = tokio::task::spawn_blocking(move || match d {
        Some((paths, ignores)) if !whole => localtree::walk_paths(&r, &paths, &ignores, &local),
        _ => localtree::walk(&r, &local),
    })
    .await
    .map_err(|e| PushError::Task(e.to_string()))??;
    Ok(tree)
}

/// Lists, with digests, the remote tree of every instance whose manifest
/// is not trusted, and makes that listing its manifest.
async fn list_untrusted(locked: &mut [Locked<'_>]) -> Result<(), PushError> {
    let listings =
        futures_util::future::join_all(locked.iter().filter(|l| !l.trusted).map(|l| async move {
            let skip: Vec<String> = plan::REMOTE_SKIP.iter().map(|s| s.to_string()).collect();
            l.inst
                .ls(".", true, true, &skip)
                .await
                .map(|lines| crate::manifest::parse_listing(&lines))
                .map_err(|source| PushError::List {
                    inst: l.inst.name().to_string(),
                    source,
                })
        }))
        .await;
    for (l, listing) in locked.iter_mut().filter(|l| !l.trusted).zip(listings) {
        l.m.entries = listing?;
        l.m.verified_at = None;
        l.m.bootstrapped = false;
    }
    Ok(())
}

/// Plans each instance and says what it needs.
async fn make_plans(
    out: &Out,
    tree: &LocalTree,
    locked: &[Locked<'_>],
    scope: Option<&[String]>,
    verbose: bool,
) -> Vec<Plan> {
    let mut plans = Vec::new();
    for l in locked {
        let mut logs = Vec::new();
        let pl = plan::plan(tree, &l.m.entries, scope, verbose, &mut logs);
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
    plans
}

async fn report_dry_run(out: &Out, locked: &[Locked<'_>], plans: &[Plan]) {
    for (l, pl) in locked.iter().zip(plans) {
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
}

/// Deletions go first: a path may change from a file to a directory.
async fn delete(locked: &[Locked<'_>], plans: &[Plan]) -> Result<(), PushError> {
    let deleted =
        futures_util::future::join_all(locked.iter().zip(plans).map(|(l, pl)| async move {
            if pl.delete.is_empty() {
                return Ok(());
            }
            l.inst
                .remove(&pl.delete)
                .await
                .map_err(|source| PushError::Delete {
                    inst: l.inst.name().to_string(),
                    source,
                })
        }))
        .await;
    deleted.into_iter().collect()
}

/// What each instance (by index) got, and the first failure.
type Sent = (
    HashMap<usize, Vec<(String, RemoteEntry)>>,
    Option<PushError>,
);

/// Sends each distinct file set through its own pipeline: a group in step
/// shares each part.
async fn send(
    p: &Pusher,
    out: &Out,
    root: &Path,
    tree: &LocalTree,
    locked: &[Locked<'_>],
    plans: &[Plan],
    start: Instant,
) -> Sent {
    let mut sets: HashMap<&Vec<Item>, Vec<usize>> = HashMap::new();
    for (i, pl) in plans.iter().enumerate() {
        if !pl.send.is_empty() {
            sets.entry(&pl.send).or_default().push(i);
        }
    }
    let version = goroot::fake_version(root);
    let progress = Progress::new(
        out,
        start,
        plans
            .iter()
            .filter(|pl| !pl.send.is_empty())
            .map(|pl| send_bytes(tree, &pl.send))
            .sum(),
    );
    let results = futures_util::future::join_all(sets.into_iter().map(|(items, who)| {
        let insts: Vec<Inst> = who.iter().map(|&i| locked[i].inst.clone()).collect();
        // On loopback compressing costs more time than it saves.
        let local = insts.iter().all(Inst::is_local);
        let packer = Packer {
            root: root.to_path_buf(),
            local: p.local.clone(),
            level: if local {
                Compression::none()
            } else {
                Compression::fast()
            },
            part_bytes: if local { 8 << 20 } else { 32 << 20 },
            version: version.clone(),
        };
        let progress = &progress;
        let sized: Vec<(Item, u64)> = items
            .iter()
            .map(|i| (i.clone(), send_bytes(tree, std::slice::from_ref(i))))
            .collect();
        async move {
            let r = send::send_set(out, packer, sized, &insts, progress).await;
            (who, r)
        }
    }))
    .await;
    let mut failure = None;
    let mut written = HashMap::new();
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
    (written, failure)
}

/// Manifests: what was deleted and written is now known to be there.
fn record(
    locked: &mut [Locked<'_>],
    plans: &[Plan],
    mut written: HashMap<usize, Vec<(String, RemoteEntry)>>,
    all_ok: bool,
    root: &Path,
) -> Outcome {
    let mut outcome = Outcome::default();
    for (i, (l, pl)) in locked.iter_mut().zip(plans).enumerate() {
        let ok = all_ok || written.contains_key(&i) || pl.send.is_empty();
        if !ok {
            l.m.verified_at = None;
            continue;
        }
        let gone: Vec<&str> = pl
            .delete
            .iter()
            .filter_map(|d| d.strip_prefix("go/"))
            .collect();
        l.m.entries
            .retain(|k, _| !gone.iter().any(|g| k == g || key_below(g, k)));
        for (rel, e) in written.remove(&i).unwrap_or_default() {
            l.m.entries.insert(rel, e);
        }
        outcome.sent += pl.send.len();
        outcome.deleted += pl.delete.len();
        l.m.root = Some(root.to_path_buf());
        l.m.verified_at = Some(l.generation);
    }
    outcome
}

/// The bootstrap toolchain, once per verified manifest.
async fn bootstrap(locked: &mut [Locked<'_>]) -> Result<(), PushError> {
    let boots =
        futures_util::future::join_all(locked.iter_mut().filter(|l| !l.m.bootstrapped).map(
            |l| async move {
                l.inst
                    .add_bootstrap()
                    .await
                    .map_err(|source| PushError::Bootstrap {
                        inst: l.inst.name().to_string(),
                        source,
                    })?;
                l.m.bootstrapped = true;
                Ok::<(), PushError>(())
            },
        ))
        .await;
    boots.into_iter().collect()
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
