//! `gomote push -watch`: instances subscribed to a GOROOT get every saved
//! change pushed as it happens. One watcher per GOROOT (inotify through
//! `notify`, or periodic scanning when the watch limit is reached) feeds a
//! task that debounces bursts and pushes the dirty paths to every
//! subscriber, trusting the manifests it keeps up to date. A plain `push`
//! to a subscriber is a barrier: it returns once the instance has caught up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::Watcher as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::localtree::{self, Ignores};
use crate::out::Out;
use crate::push::{PushError, PushOpts, Pusher, Trigger};
use crate::target::Inst;

/// Quiet time that ends a burst of events (an editor's write, rename, chmod).
const SETTLE: Duration = Duration::from_millis(4);
/// A burst is cut off after this long, so a busy tree still gets pushed.
const BURST_MAX: Duration = Duration::from_millis(100);
/// Scan interval when inotify cannot be used.
const POLL_DEFAULT: Duration = Duration::from_secs(1);
/// Messages waiting for the push task; beyond this the watcher stops
/// queueing paths and asks for one whole-tree look instead (a `git
/// checkout` of thousands of files must not grow memory without bound).
const QUEUE: usize = 1024;

/// Why a subscriber has not caught up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The push to it failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// It was unsubscribed before catching up.
    #[error("no longer watching")]
    Unsubscribed,
    /// The watcher's task ended.
    #[error("the watcher stopped")]
    Stopped,
}

enum Msg {
    /// Paths that changed (absolute).
    Changed(Vec<PathBuf>),
    /// Look at the whole tree.
    Rescan,
    /// Reply once the instance with this key has caught up.
    Barrier(String, oneshot::Sender<Result<(), WatchError>>),
}

/// The sending side of a watch's queue. Producers that cannot wait (the
/// notify callback, [`Watches::rescan`]) never block: when the queue is
/// full they raise `overflow`, which the push task turns into a rescan.
#[derive(Clone)]
struct Queue {
    tx: mpsc::Sender<Msg>,
    overflow: Arc<AtomicBool>,
}

impl Queue {
    fn offer(&self, m: Msg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(m) {
            self.overflow.store(true, Ordering::SeqCst);
            // If the task drained the queue between the failed send and the
            // flag, this wakes it; if the queue is still full, a message it
            // has yet to take will make it see the flag.
            let _ = self.tx.try_send(Msg::Rescan);
        }
    }
}

/// One subscriber.
#[derive(Debug, Clone)]
struct Sub {
    inst: Inst,
    /// The last push's failure, shown by `gomote list`.
    error: Option<String>,
}

/// One watched GOROOT.
struct Watch {
    root: PathBuf,
    subs: Mutex<BTreeMap<String, Sub>>,
    queue: Queue,
    /// `inotify` or a note on the scanning fallback.
    how: String,
    cancel: CancellationToken,
    /// Kept so the kernel watches stay.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// A stored subscription, restored when the daemon starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The session's name (`embedded` or a coordinator URL).
    pub server: String,
    /// The instance.
    pub id: String,
}

/// Every watch the daemon holds.
pub struct Watches {
    pusher: Arc<Pusher>,
    db: Option<sled::Tree>,
    poll: Option<Duration>,
    map: Mutex<HashMap<PathBuf, Arc<Watch>>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

impl Watches {
    /// Watches backed by `db` (subscriptions survive restarts); `poll`
    /// forces scanning at that interval instead of inotify.
    pub fn new(pusher: Arc<Pusher>, db: Option<sled::Tree>, poll: Option<Duration>) -> Watches {
        Watches {
            pusher,
            db,
            poll,
            map: Mutex::default(),
        }
    }

    /// The subscriptions stored by an earlier daemon.
    pub fn stored(&self) -> Vec<(PathBuf, Vec<Stored>)> {
        let Some(db) = &self.db else {
            return Vec::new();
        };
        db.iter()
            .flatten()
            .filter_map(|(k, v)| {
                let root = PathBuf::from(String::from_utf8_lossy(&k).into_owned());
                Some((root, serde_json::from_slice(&v).ok()?))
            })
            .collect()
    }

    fn persist(&self, w: &Watch) {
        let Some(db) = &self.db else { return };
        let subs: Vec<Stored> = w
            .subs
            .lock()
            .values()
            .filter_map(|s| match &s.inst {
                Inst::Remote { sess, id } => Some(Stored {
                    server: sess.name.clone(),
                    id: id.clone(),
                }),
                // A direct buildlet's password is not stored.
                Inst::Direct { .. } => None,
            })
            .collect();
        let key = w.root.to_string_lossy().into_owned();
        let r = if subs.is_empty() {
            db.remove(key.as_bytes()).map(|_| ())
        } else {
            serde_json::to_vec(&subs)
                .map_err(|e| sled::Error::Unsupported(e.to_string()))
                .and_then(|v| db.insert(key.as_bytes(), v).map(|_| ()))
        };
        if let Err(e) = r.and_then(|()| db.flush().map(|_| ())) {
            tracing::warn!(error = %e, "storing watch subscriptions");
        }
    }

    /// Subscribes instances to `root` (canonical), starting its watcher if
    /// needed. Returns how it is watched (`inotify`, or the fallback).
    pub fn subscribe(&self, root: &Path, insts: &[Inst], ignores: Option<Ignores>) -> String {
        let w = {
            let mut map = self.map.lock();
            // An instance follows one GOROOT at a time.
            for (r, other) in map.iter() {
                if r != root {
                    let mut subs = other.subs.lock();
                    for i in insts {
                        subs.remove(&i.key());
                    }
                }
            }
            map.entry(root.to_path_buf())
                .or_insert_with(|| self.start(root, ignores))
                .clone()
        };
        {
            let mut subs = w.subs.lock();
            for i in insts {
                subs.insert(
                    i.key(),
                    Sub {
                        inst: i.clone(),
                        error: None,
                    },
                );
            }
        }
        self.persist(&w);
        self.reap();
        w.how.clone()
    }

    /// Makes `insts` the whole subscriber list of `root` (restoring).
    pub fn replace(&self, root: &Path, insts: &[Inst]) {
        if insts.is_empty() {
            if let Some(db) = &self.db {
                let _ = db.remove(root.to_string_lossy().as_bytes());
            }
            return;
        }
        self.subscribe(root, insts, None);
    }

    /// Unsubscribes instances (from whatever they watch); returns the
    /// GOROOTs they were following.
    pub fn unsubscribe(&self, keys: &[String]) -> Vec<PathBuf> {
        let watches: Vec<Arc<Watch>> = self.map.lock().values().cloned().collect();
        let mut roots = Vec::new();
        for w in watches {
            let removed = {
                let mut subs = w.subs.lock();
                keys.iter().filter(|k| subs.remove(*k).is_some()).count()
            };
            if removed > 0 {
                roots.push(w.root.clone());
                self.persist(&w);
            }
        }
        self.reap();
        roots
    }

    /// Stops watchers nobody follows any more.
    fn reap(&self) {
        self.map.lock().retain(|_, w| {
            let keep = !w.subs.lock().is_empty();
            if !keep {
                w.cancel.cancel();
            }
            keep
        });
    }

    /// The GOROOT an instance follows.
    pub fn watching(&self, key: &str) -> Option<PathBuf> {
        self.map
            .lock()
            .values()
            .find(|w| w.subs.lock().contains_key(key))
            .map(|w| w.root.clone())
    }

    /// The last push failure for a subscriber, if the last push failed.
    pub fn error(&self, key: &str) -> Option<String> {
        self.map
            .lock()
            .values()
            .find_map(|w| w.subs.lock().get(key).and_then(|s| s.error.clone()))
    }

    /// Ids of every subscriber (kept alive while watched).
    pub fn subscriber_ids(&self) -> BTreeSet<String> {
        self.map
            .lock()
            .values()
            .flat_map(|w| {
                w.subs
                    .lock()
                    .values()
                    .map(|s| s.inst.name().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// One line per watch, for `gomote daemon status`.
    pub fn describe(&self) -> Vec<String> {
        self.map
            .lock()
            .values()
            .map(|w| {
                let subs: Vec<String> = w
                    .subs
                    .lock()
                    .values()
                    .map(|s| s.inst.name().to_string())
                    .collect();
                format!("{} ({}): {}", w.root.display(), w.how, subs.join(", "))
            })
            .collect()
    }

    /// Waits until the instance (`key`, subscribed to `root`) has every
    /// change made so far. `None` if it is not subscribed to `root`.
    pub async fn barrier(&self, root: &Path, key: &str) -> Option<Result<(), WatchError>> {
        let w = self.map.lock().get(root).cloned()?;
        if !w.subs.lock().contains_key(key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        w.queue
            .tx
            .send(Msg::Barrier(key.to_string(), tx))
            .await
            .ok()?;
        Some(rx.await.unwrap_or(Err(WatchError::Stopped)))
    }

    /// Asks every watcher to look at its whole tree (after a command ran on
    /// a subscriber, say).
    pub fn rescan(&self, key: &str) {
        for w in self.map.lock().values() {
            if w.subs.lock().contains_key(key) {
                w.queue.offer(Msg::Rescan);
            }
        }
    }

    fn start(&self, root: &Path, ignores: Option<Ignores>) -> Arc<Watch> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queue = Queue {
            tx,
            overflow: Arc::default(),
        };
        let cancel = CancellationToken::new();
        let (watcher, how) = match self.poll {
            Some(every) => (None, format!("scanning every {}s", every.as_secs_f64())),
            None => match inotify(root, queue.clone()) {
                Ok(w) => (Some(w), "inotify".to_string()),
                Err(e) => {
                    let how = if is_watch_limit(&e) {
                        format!(
                            "scanning every {}s: the inotify watch limit is reached; raise fs.inotify.max_user_watches to watch instead",
                            POLL_DEFAULT.as_secs()
                        )
                    } else {
                        format!(
                            "scanning every {}s: inotify failed: {e}",
                            POLL_DEFAULT.as_secs()
                        )
                    };
                    tracing::warn!(root = %root.display(), "{how}");
                    (None, how)
                }
            },
        };
        if watcher.is_none() {
            let every = self.poll.unwrap_or(POLL_DEFAULT);
            let tx = queue.tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if tx.send(Msg::Rescan).await.is_err() {
                        return;
                    }
                }
            });
        }
        let w = Arc::new(Watch {
            root: root.to_path_buf(),
            subs: Mutex::default(),
            queue,
            how,
            cancel,
            _watcher: watcher,
        });
        tokio::spawn(run(w.clone(), rx, self.pusher.clone(), ignores));
        w
    }
}

fn is_watch_limit(e: &notify::Error) -> bool {
    matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28))
}

fn inotify(root: &Path, q: Queue) -> Result<notify::RecommendedWatcher, notify::Error> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if ev.need_rescan() {
                q.offer(Msg::Rescan);
            } else if !matches!(ev.kind, notify::EventKind::Access(_)) && !ev.paths.is_empty() {
                q.offer(Msg::Changed(ev.paths));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "watch error; rescanning");
            q.offer(Msg::Rescan);
        }
    })?;
    w.watch(root, notify::RecursiveMode::Recursive)?;
    Ok(w)
}

/// What a batch of messages asks for.
#[derive(Default)]
struct Batch {
    dirty: BTreeSet<String>,
    rescan: bool,
    barriers: Vec<(String, oneshot::Sender<Result<(), WatchError>>)>,
}

impl Batch {
    fn absorb(&mut self, root: &Path, m: Msg) {
        match m {
            Msg::Rescan => self.rescan = true,
            Msg::Barrier(k, tx) => self.barriers.push((k, tx)),
            Msg::Changed(paths) => {
                for p in paths {
                    match p.strip_prefix(root) {
                        Ok(rel) if rel.as_os_str().is_empty() => self.rescan = true,
                        Ok(rel) => {
                            let rel = rel.to_string_lossy().into_owned();
                            if localtree::is_rules_file(&rel) {
                                self.rescan = true;
                            } else if !localtree::excluded_top(&rel, root)
                                && !localtree::editor_backup(&rel)
                            {
                                self.dirty.insert(rel);
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && !self.rescan && self.barriers.is_empty()
    }
}

/// A sink for a watch push's lines: the daemon's log.
fn log_out(root: &Path) -> Out {
    let (out, mut rx) = Out::channel();
    let root = root.display().to_string();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let gomote_shared::api::Event::Log { line } = ev {
                tracing::info!(goroot = %root, "watch: {line}");
            }
        }
    });
    out
}

async fn run(
    w: Arc<Watch>,
    mut rx: mpsc::Receiver<Msg>,
    pusher: Arc<Pusher>,
    ignores: Option<Ignores>,
) {
    let mut ignores = ignores;
    loop {
        let mut b = Batch::default();
        tokio::select! {
            () = w.cancel.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => b.absorb(&w.root, m),
                None => return,
            },
        }
        // Gather the rest of the burst; a barrier only waits for events
        // already on their way.
        let started = tokio::time::Instant::now();
        loop {
            let wait = if b.barriers.is_empty() {
                SETTLE
            } else {
                Duration::from_millis(1)
            };
            if started.elapsed() >= BURST_MAX {
                break;
            }
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(m)) => b.absorb(&w.root, m),
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if w.queue.overflow.swap(false, Ordering::SeqCst) {
            b.rescan = true;
        }
        if b.is_empty() {
            continue;
        }
        let subs: Vec<(String, Inst)> = w
            .subs
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.inst.clone()))
            .collect();
        let insts: Vec<Inst> = subs.iter().map(|(_, i)| i.clone()).collect();
        let dirty: Vec<String> = b.dirty.iter().cloned().collect();
        let scoped = !b.rescan && ignores.is_some();
        let out = log_out(&w.root);
        let t = std::time::Instant::now();
        let first = crate::push::push(
            &pusher,
            &out,
            &w.root,
            &insts,
            Trigger::Watch(
                ignores
                    .as_ref()
                    .filter(|_| scoped)
                    .map(|i| (dirty.as_slice(), i)),
            ),
            PushOpts::default(),
        )
        .await;
        let mut results: HashMap<String, Result<(), WatchError>> = HashMap::new();
        match first {
            Ok(o) => {
                if let Some(i) = o.ignores {
                    ignores = Some(i);
                }
                tracing::debug!(
                    files = o.sent,
                    deleted = o.deleted,
                    ms = t.elapsed().as_millis() as u64,
                    "watch push"
                );
                for (k, _) in &subs {
                    results.insert(k.clone(), Ok(()));
                }
            }
            // One failing instance must not hold the others back: retry
            // each on its own (their manifests now force whole-tree pushes).
            Err(_) => {
                for (k, inst) in &subs {
                    let r = crate::push::push(
                        &pusher,
                        &out,
                        &w.root,
                        std::slice::from_ref(inst),
                        Trigger::Watch(None),
                        PushOpts::default(),
                    )
                    .await
                    .map(|o| {
                        if let Some(i) = o.ignores {
                            ignores = Some(i);
                        }
                    })
                    .map_err(WatchError::from);
                    if let Err(e) = &r {
                        tracing::warn!(instance = %inst.name(), error = %e, "watch push failed");
                    }
                    results.insert(k.clone(), r);
                }
            }
        }
        {
            let mut s = w.subs.lock();
            for (k, r) in &results {
                if let Some(sub) = s.get_mut(k) {
                    sub.error = r.as_ref().err().map(ToString::to_string);
                }
            }
        }
        for (k, tx) in b.barriers {
            let r = results.remove(&k).unwrap_or(Err(WatchError::Unsubscribed));
            let _ = tx.send(r.clone());
            results.insert(k, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_asks_for_a_rescan_instead_of_growing() {
        let (tx, mut rx) = mpsc::channel(2);
        let q = Queue {
            tx,
            overflow: Arc::default(),
        };
        for i in 0..10 {
            q.offer(Msg::Changed(vec![PathBuf::from(format!("/r/f{i}"))]));
        }
        assert!(q.overflow.load(Ordering::SeqCst), "overflow was raised");
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2, "the queue never holds more than its capacity");
    }

    #[test]
    fn batches_turn_paths_into_dirty_keys_and_rules_files_into_rescans() {
        let root = Path::new("/r");
        let mut b = Batch::default();
        b.absorb(
            root,
            Msg::Changed(vec![
                PathBuf::from("/r/src/a.go"),
                PathBuf::from("/elsewhere"),
            ]),
        );
        assert_eq!(b.dirty.iter().collect::<Vec<_>>(), ["src/a.go"]);
        assert!(!b.rescan);
        b.absorb(root, Msg::Changed(vec![PathBuf::from("/r/.gitignore")]));
        assert!(b.rescan);
    }
}
