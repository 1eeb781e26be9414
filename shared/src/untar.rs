//! Safe, all-or-nothing extraction of a gzip'd tar into a directory below a
//! root. The archive is first read completely into a private staging
//! directory (so invalid gzip, a truncated tar or a bad entry name leaves the
//! target untouched), every target path is then checked against the live
//! tree, and only then are files renamed into place, one atomic rename each,
//! so no reader ever sees a half-written file.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::relpath;
use crate::safefs::{self, CopyError, DirCache, SafeFsError};

/// Why an extraction failed. Nothing in the target changed unless the error
/// is [`UntarError::Commit`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UntarError {
    /// The body is not gzip.
    #[error("requires gzip-compressed body: {0}")]
    NotGzip(io::Error),
    /// The archive could not be read to its end (bad tar, truncated stream).
    #[error("bad tar archive: {0}")]
    BadArchive(io::Error),
    /// An entry's name is not an acceptable relative path.
    #[error("bad tar entry name: {0}")]
    BadName(#[from] relpath::RelPathError),
    /// An entry's name is not UTF-8.
    #[error("bad tar entry name: {0:?} is not UTF-8")]
    NonUtf8Name(String),
    /// An entry type the buildlet does not write (devices, fifos).
    #[error("tar entry {name:?}: unsupported type {kind:?}")]
    UnsupportedType {
        /// The entry name.
        name: String,
        /// The tar type flag.
        kind: char,
    },
    /// A symlink entry points outside the root.
    #[error("tar entry {name:?}: symlink target {target:?} leaves the work directory")]
    SymlinkEscapes {
        /// The entry name.
        name: String,
        /// The link target.
        target: String,
    },
    /// A hard link to a file that is not earlier in the same archive.
    #[error("tar entry {name:?}: hard link to {target:?}, which is not earlier in the archive")]
    BadHardLink {
        /// The entry name.
        name: String,
        /// The link target.
        target: String,
    },
    /// An entry would be written under a symlink of the same archive.
    #[error("tar entry {name:?} goes through symlink {link:?} of the same archive")]
    ThroughArchiveSymlink {
        /// The entry name.
        name: String,
        /// The symlink entry it would pass through.
        link: String,
    },
    /// An entry would replace a directory with a file or link.
    #[error("tar entry {name:?} would replace a directory")]
    ReplacesDirectory {
        /// The entry name.
        name: String,
    },
    /// A target path is unsafe in the live tree (goes through a symlink).
    #[error("{0}")]
    Unsafe(SafeFsError),
    /// Writing the staging copy failed (disk full, permissions).
    #[error("staging: {0}")]
    Staging(io::Error),
    /// Moving staged files into place failed part-way.
    #[error("{0}")]
    Commit(SafeFsError),
}

impl UntarError {
    /// Reports whether the client sent something bad (HTTP 400) rather than
    /// the machine failing (HTTP 500).
    pub fn is_bad_request(&self) -> bool {
        match self {
            UntarError::Staging(_) | UntarError::Commit(_) => false,
            UntarError::Unsafe(e) => e.is_bad_request(),
            _ => true,
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Regular files written.
    pub files: u64,
    /// Directories created or confirmed.
    pub dirs: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

enum Kind {
    File { staged: PathBuf },
    Dir,
    Symlink { target: PathBuf },
}

struct Planned {
    rel: PathBuf,
    name: String,
    kind: Kind,
}

/// Extracts the gzip'd tar read from `src` into `root/base` (`base` already
/// validated, relative to `root`). `staging_parent` must be on the same file
/// system as `root`; a private directory is made there and removed after.
///
/// Differences from Go's buildlet, all deliberate: nothing changes unless the
/// whole archive is valid; symlink entries are written when their target
/// stays inside `root` (Go drops them silently); hard links to an earlier
/// entry are written as links (Go writes empty files); file modes come from
/// the archive even when the file already exists (Go keeps the old mode).
/// Like Go, modification times are clamped to the start of the extraction
/// and file permissions are the entry's, less the umask.
pub fn extract_tgz<R: Read>(
    src: R,
    root: &Path,
    base: &Path,
    staging_parent: &Path,
) -> Result<Stats, UntarError> {
    fs::create_dir_all(staging_parent).map_err(UntarError::Staging)?;
    let staging = tempdir_in(staging_parent).map_err(UntarError::Staging)?;
    let result = extract_staged(src, root, base, &staging);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn tempdir_in(parent: &Path) -> io::Result<PathBuf> {
    for _ in 0..16 {
        let p = parent.join(format!(".untar-{:016x}", rand::random::<u64>()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a staging directory"))
}

fn extract_staged<R: Read>(
    src: R,
    root: &Path,
    base: &Path,
    staging: &Path,
) -> Result<Stats, UntarError> {
    let start = SystemTime::now();
    let planned = stage(src, base, staging, start)?;
    check(root, base, &planned)?;
    commit(root, base, &planned)
}

/// Phase 1: read the whole archive, writing file contents into `staging`.
fn stage<R: Read>(
    src: R,
    base: &Path,
    staging: &Path,
    start: SystemTime,
) -> Result<Vec<Planned>, UntarError> {
    let mut gz = flate2::read::GzDecoder::new(src);
    // Read the gzip header up front so "not gzip" is told apart from a bad
    // tar inside a good gzip stream.
    if let Err(e) = gz.header_probe() {
        return Err(UntarError::NotGzip(e));
    }
    let mut ar = tar::Archive::new(gz);
    let mut planned: Vec<Planned> = Vec::new();
    let mut staged_by_rel: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    let entries = ar.entries().map_err(UntarError::BadArchive)?;
    let mut buf = vec![0u8; 256 * 1024];
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(UntarError::BadArchive)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw.clone())
            .map_err(|_| UntarError::NonUtf8Name(String::from_utf8_lossy(&raw).into_owned()))?;
        let rel_in = relpath::validate(&name)?;
        let rel = base.join(&rel_in);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if relpath::is_base(&rel_in) {
                    return Err(UntarError::ReplacesDirectory { name });
                }
                let mode = entry.header().mode().map_err(UntarError::BadArchive)? & 0o777;
                let mtime = entry.header().mtime().map_err(UntarError::BadArchive)?;
                let staged = staging.join(n.to_string());
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&staged)
                    .map_err(UntarError::Staging)?;
                safefs::copy(&mut entry, &mut f, &mut buf).map_err(|e| match e {
                    CopyError::Read(e) => UntarError::BadArchive(e),
                    CopyError::Write(e) => UntarError::Staging(e),
                })?;
                let when = clamp_mtime(mtime, start);
                // Errors setting times are ignored, as Go does.
                let _ = f.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when));
                staged_by_rel.insert(rel.clone(), staged.clone());
                planned.push(Planned {
                    rel,
                    name,
                    kind: Kind::File { staged },
                });
            }
            tar::EntryType::Directory => planned.push(Planned {
                rel,
                name,
                kind: Kind::Dir,
            }),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UntarError::BadArchive)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.as_os_str().is_empty()
                    || !relpath::symlink_target_stays_inside(&rel, &target)
                    || relpath::is_base(&rel_in)
                {
                    return Err(UntarError::SymlinkEscapes {
                        name,
                        target: target.display().to_string(),
                    });
                }
                planned.push(Planned {
                    rel,
                    name,
                    kind: Kind::Symlink { target },
                });
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UntarError::BadArchive)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let earlier = relpath::validate(&target)
                    .ok()
                    .and_then(|t| staged_by_rel.get(&base.join(t)).cloned());
                let Some(earlier) = earlier else {
                    return Err(UntarError::BadHardLink { name, target });
                };
                let staged = staging.join(n.to_string());
                fs::hard_link(&earlier, &staged).map_err(UntarError::Staging)?;
                staged_by_rel.insert(rel.clone(), staged.clone());
                planned.push(Planned {
                    rel,
                    name,
                    kind: Kind::File { staged },
                });
            }
            other => {
                return Err(UntarError::UnsupportedType {
                    name,
                    kind: other.as_byte() as char,
                });
            }
        }
    }
    // Drain the rest of the gzip stream so a corrupt trailer (bad CRC,
    // truncation after the tar end) is still caught before anything moves.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UntarError::BadArchive)?;
    Ok(planned)
}

fn clamp_mtime(mtime: u64, start: SystemTime) -> SystemTime {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    if t > start { start } else { t }
}

/// Phase 2: check every target against the live tree and against symlinks
/// the archive itself creates, before anything is moved.
fn check(root: &Path, base: &Path, planned: &[Planned]) -> Result<(), UntarError> {
    let mut cache = DirCache::default();
    cache
        .check_parents(root, &base.join("x"))
        .map_err(UntarError::Unsafe)?;
    let mut archive_links: HashSet<&Path> = HashSet::new();
    for p in planned {
        let mut anc = p.rel.parent();
        while let Some(a) = anc {
            if archive_links.contains(a) {
                return Err(UntarError::ThroughArchiveSymlink {
                    name: p.name.clone(),
                    link: a.display().to_string(),
                });
            }
            anc = a.parent();
        }
        cache
            .check_parents(root, &p.rel)
            .map_err(UntarError::Unsafe)?;
        match p.kind {
            Kind::Symlink { .. } => {
                archive_links.insert(&p.rel);
            }
            Kind::Dir => {
                archive_links.remove(p.rel.as_path());
            }
            Kind::File { .. } => {
                archive_links.remove(p.rel.as_path());
            }
        }
        if !matches!(p.kind, Kind::Dir)
            && let Ok(md) = fs::symlink_metadata(root.join(&p.rel))
            && md.is_dir()
        {
            return Err(UntarError::ReplacesDirectory {
                name: p.name.clone(),
            });
        }
    }
    Ok(())
}

/// Phase 3: create directories and rename staged files into place.
fn commit(root: &Path, base: &Path, planned: &[Planned]) -> Result<Stats, UntarError> {
    let mut cache = DirCache::default();
    let mut stats = Stats::default();
    cache
        .create_dir_all(root, base, 0o755)
        .map_err(UntarError::Commit)?;
    for p in planned {
        let abs = root.join(&p.rel);
        match &p.kind {
            Kind::Dir => {
                cache
                    .create_dir_all(root, &p.rel, 0o755)
                    .map_err(UntarError::Commit)?;
                stats.dirs += 1;
            }
            Kind::File { staged } => {
                if let Some(parent) = p.rel.parent() {
                    cache
                        .create_dir_all(root, parent, 0o755)
                        .map_err(UntarError::Commit)?;
                }
                let len = fs::symlink_metadata(staged).map(|m| m.len()).unwrap_or(0);
                rename_into_place(staged, &abs).map_err(UntarError::Commit)?;
                stats.files += 1;
                stats.bytes += len;
            }
            Kind::Symlink { target } => {
                if let Some(parent) = p.rel.parent() {
                    cache
                        .create_dir_all(root, parent, 0o755)
                        .map_err(UntarError::Commit)?;
                }
                let tmp = abs.with_file_name(format!(
                    ".{}.link-{:08x}",
                    abs.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    rand::random::<u32>()
                ));
                symlink(target, &tmp)
                    .map_err(|e| UntarError::Commit(SafeFsError::io("symlink", &tmp, e)))?;
                fs::rename(&tmp, &abs).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    UntarError::Commit(SafeFsError::io("rename", &abs, e))
                })?;
                stats.symlinks += 1;
            }
        }
    }
    Ok(stats)
}

/// Renames `staged` to `abs` (replacing a file or a symlink itself, never
/// writing through it). When staging sits on another file system, copies
/// next to the target first so the final step is still one rename.
pub fn rename_into_place(staged: &Path, abs: &Path) -> Result<(), SafeFsError> {
    match fs::rename(staged, abs) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
            let tmp = abs.with_file_name(format!(".buildlet-copy-{:016x}", rand::random::<u64>()));
            fs::copy(staged, &tmp).map_err(|e| SafeFsError::io("copy", &tmp, e))?;
            fs::rename(&tmp, abs).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                SafeFsError::io("rename", abs, e)
            })
        }
        Err(e) => Err(SafeFsError::io("rename", abs, e)),
    }
}

const fn libc_exdev() -> i32 {
    18 // EXDEV on Linux, the BSDs and macOS alike
}

/// A tiny extension so the gzip header is parsed before the tar reader asks
/// for data: flate2 reports a missing magic number only on the first read.
trait HeaderProbe {
    fn header_probe(&mut self) -> io::Result<()>;
}

impl<R: Read> HeaderProbe for flate2::read::GzDecoder<R> {
    fn header_probe(&mut self) -> io::Result<()> {
        // A zero-length read drives the header parser without consuming data.
        let mut none = [0u8; 0];
        let _empty = self.read(&mut none)?;
        if self.header().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid gzip header",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn tgz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8], mode: u32) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`, so write raw names for the hostile cases.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        let t = target.as_bytes();
        h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("wd");
        fs::create_dir_all(root.join("tmp")).unwrap();
        let staging = root.join("tmp");
        (d, root, staging)
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut v = Vec::new();
        fn walk(root: &Path, dir: &Path, v: &mut Vec<String>) {
            let mut es: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
            es.sort_by_key(|e| e.file_name());
            for e in es {
                let p = e.path();
                v.push(p.strip_prefix(root).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    walk(root, &p, v);
                }
            }
        }
        walk(root, root, &mut v);
        v
    }

    #[test]
    fn extracts_files_dirs_and_links() {
        let (_d, root, staging) = setup();
        let data = tgz(|b| {
            file(b, "a/b.txt", b"hello", 0o644);
            file(b, "run.sh", b"#!/bin/sh\n", 0o755);
            link(b, "a/l", "b.txt");
        });
        let st = extract_tgz(&data[..], &root, Path::new("go"), &staging).unwrap();
        assert_eq!((st.files, st.symlinks, st.bytes), (2, 1, 15));
        assert_eq!(fs::read(root.join("go/a/b.txt")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(root.join("go/a/l")).unwrap(),
            Path::new("b.txt")
        );
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(root.join("go/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o100, 0o100);
        // The staging directory is gone.
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[test]
    fn bad_input_changes_nothing() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dotdot",
                tgz(|b| {
                    file(b, "ok.txt", b"x", 0o644);
                    file(b, "../evil", b"x", 0o644);
                }),
            ),
            (
                "absolute",
                tgz(|b| {
                    file(b, "ok.txt", b"x", 0o644);
                    file(b, "/tmp/evil", b"x", 0o644);
                }),
            ),
            ("drive", tgz(|b| file(b, "C:evil", b"x", 0o644))),
            ("escaping link", tgz(|b| link(b, "l", "../../etc"))),
            (
                "through own link",
                tgz(|b| {
                    link(b, "l", "sub");
                    file(b, "l/x", b"x", 0o644);
                }),
            ),
            ("not gzip", b"this is not gzip at all".to_vec()),
        ];
        for (what, data) in cases {
            let (_d, root, staging) = setup();
            let before = listing(&root);
            let err = extract_tgz(&data[..], &root, Path::new(""), &staging).unwrap_err();
            assert!(err.is_bad_request(), "{what}: {err}");
            assert_eq!(listing(&root), before, "{what} changed the tree");
        }
    }

    #[test]
    fn truncated_archive_changes_nothing() {
        let (_d, root, staging) = setup();
        let data = tgz(|b| {
            file(b, "a.txt", &[7u8; 10_000], 0o644);
            file(b, "b.txt", &[9u8; 10_000], 0o644);
        });
        let cut = &data[..data.len() / 2];
        let err = extract_tgz(cut, &root, Path::new(""), &staging).unwrap_err();
        assert!(err.is_bad_request(), "{err}");
        assert!(!root.join("a.txt").exists());
    }

    #[test]
    fn refuses_existing_symlinked_dir() {
        let (_d, root, staging) = setup();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.join("a")).unwrap();
        let data = tgz(|b| file(b, "a/passwd", b"pwned", 0o644));
        let err = extract_tgz(&data[..], &root, Path::new(""), &staging).unwrap_err();
        assert!(err.is_bad_request(), "{err}");
        assert!(!outside.path().join("passwd").exists());
        // Nor through the base directory.
        let err = extract_tgz(&data[..], &root, Path::new("a"), &staging).unwrap_err();
        assert!(err.is_bad_request(), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn replaces_a_symlink_file_itself() {
        let (_d, root, staging) = setup();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("target"), "orig").unwrap();
        symlink(outside.path().join("target"), root.join("f")).unwrap();
        let data = tgz(|b| file(b, "f", b"new", 0o644));
        extract_tgz(&data[..], &root, Path::new(""), &staging).unwrap();
        assert_eq!(fs::read(outside.path().join("target")).unwrap(), b"orig");
        assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
        assert!(
            !fs::symlink_metadata(root.join("f"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn clamps_future_mtimes() {
        let start = SystemTime::now();
        let far = u64::MAX / 4_000_000_000;
        assert_eq!(clamp_mtime(far, start), start);
        assert!(clamp_mtime(1, start) < start);
    }
}
