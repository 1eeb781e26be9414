//! Packing what to send into .tar.gz parts of about a fixed size, on
//! several threads, recording each file's digest as it is read (so the
//! manifest learns it for free).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
use gomote_shared::digest::Stamp;
use sha1::{Digest, Sha1};

use super::error::PushError;
use super::plan::Item;
use crate::manifest::{LocalManifest, RemoteEntry, RemoteKind};

/// Files up to this size are read in one go; bigger ones are streamed.
const BIG_FILE: u64 = 8 << 20;

/// A .tar.gz holding one file (the fake VERSION, puttar's VERSION).
pub fn single_file_tgz(name: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_path(name)?;
    h.set_cksum();
    b.append(&h, data)?;
    b.into_inner().and_then(|gz| gz.finish())
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
pub(super) struct Part {
    pub(super) data: Vec<u8>,
    /// What the part puts on the remote.
    pub(super) entries: Vec<(String, RemoteEntry)>,
    /// Bytes of file contents in it.
    pub(super) bytes: u64,
}

pub(super) struct Packer {
    pub(super) root: PathBuf,
    pub(super) local: Arc<LocalManifest>,
    pub(super) level: Compression,
    pub(super) part_bytes: u64,
    pub(super) version: Option<String>,
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
    pub(super) fn split(&self, items: &[(Item, u64)]) -> Vec<(Vec<Item>, u64)> {
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
    pub(super) fn run(
        self: Arc<Self>,
        items: &[(Item, u64)],
        threads: usize,
        tx: tokio::sync::mpsc::Sender<Result<Part, PushError>>,
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

    pub(super) fn pack(
        &self,
        items: &[Item],
        bytes: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Part, PushError> {
        let mut b = self.builder(bytes);
        let mut part = Part::default();
        for it in items {
            self.add(&mut b, &mut part, it, buf)?;
        }
        part.data = b
            .into_inner()
            .and_then(|gz| gz.finish())
            .map_err(|e| PushError::Pack(format!("compressing: {e}")))?;
        Ok(part)
    }

    fn add(
        &self,
        b: &mut tar::Builder<GzEncoder<Vec<u8>>>,
        part: &mut Part,
        it: &Item,
        buf: &mut Vec<u8>,
    ) -> Result<(), PushError> {
        let rel = it.name().to_string();
        let err =
            |e: std::io::Error| PushError::Pack(format!("error copying contents of {rel}: {e}"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::tree;

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
    }
}
