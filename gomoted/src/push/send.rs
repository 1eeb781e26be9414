//! Sending one file set to its instances as a pipeline of parts: packing
//! the next part while earlier ones upload and unpack, every instance that
//! needs the same files sharing each upload.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::error::PushError;
use super::pack::{Packer, Part};
use super::plan::Item;
use super::progress::Progress;
use crate::manifest::RemoteEntry;
use crate::out::Out;
use crate::target::Inst;
use crate::transfer::Payload;

/// How many part writes (one part to one instance) are in flight at once;
/// more only makes instances on one machine fight over the disk.
const IN_FLIGHT: usize = 4;

/// Sends one file set to `insts` as a pipeline of parts; returns what the
/// parts put on the remote.
pub(super) async fn send_set(
    out: &Out,
    packer: Packer,
    items: Vec<(Item, u64)>,
    insts: &[Inst],
    progress: &Progress<'_>,
) -> Result<Vec<(String, RemoteEntry)>, PushError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Part, PushError>>(2);
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
                                .map_err(|source| PushError::Write {
                                    inst: t.name().to_string(),
                                    source,
                                })
                        }
                    }))
                    .await;
                    for w in writes {
                        w?;
                    }
                    Ok::<_, PushError>((pe, pb))
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
