//! Hashing, on every core, the local files whose digest is unknown but
//! needed: those an instance has with the same size (a different size is
//! a change without reading anything).

use std::collections::HashMap;

use crate::localtree::{Kind, LocalTree};
use crate::manifest::{LocalManifest, RemoteEntry, RemoteKind};

/// Hashes, on every core, the files whose digest is unknown but needed:
/// those an instance has with the same size.
pub(super) fn hash_needed(
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
