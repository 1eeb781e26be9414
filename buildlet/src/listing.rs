//! `GET /ls`: list a directory in the exact line format Go's buildlet
//! writes (`<FileMode>\t<path>[/]\t<size>\t<mtime>[\t<sha1>]`), which
//! `gomote push` parses by tab position.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use gomote_shared::digest::DigestCache;
use gomote_shared::{filemode, relpath, safefs};
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::form::{Form, parse_bool};
use crate::reply::{http_error, safefs_error, wrong_method};
use crate::walk::{Next, walk};

/// Bytes of listing gathered before a chunk is sent.
const CHUNK: usize = 32 * 1024;

/// Handles `/ls`.
pub async fn ls(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return wrong_method("GET");
    }
    let form = Form::from_query(req.uri());
    let dir = match form.value("dir") {
        d if d.is_empty() => ".".to_string(),
        d => d,
    };
    let rel = match relpath::validate(&dir) {
        Ok(r) => r,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, e),
    };
    let wd = app.wd.path().to_path_buf();
    if let Err(e) = safefs::check_parents(&wd, &rel) {
        return safefs_error(e);
    }
    let opts = Opts {
        recursive: parse_bool(&form.value("recursive")),
        digests: parse_bool(&form.value("digest")).then(|| app.digests.clone()),
        skip: form.values("skip"),
    };
    let base = wd.join(&rel);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(8);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
    tokio::task::spawn_blocking(move || list(&base, &opts, tx, first_tx));
    // Go answers 500 when the walk fails before any output, and cuts the
    // connection when it fails later; wait for the first chunk to choose.
    match first_rx.await {
        Ok(Err(e)) => http_error(StatusCode::INTERNAL_SERVER_ERROR, e),
        _ => {
            let mut r = Response::new(Body::new(StreamBody::new(ReceiverStream::new(rx))));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    }
}

struct Opts {
    recursive: bool,
    /// Set when digests were asked for: remembered across requests, so a
    /// push that lists an unchanged tree hashes nothing.
    digests: Option<Arc<DigestCache>>,
    skip: Vec<String>,
}

fn list(
    base: &Path,
    opts: &Opts,
    tx: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
    first: tokio::sync::oneshot::Sender<io::Result<()>>,
) {
    let mut first = Some(first);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 512);
    let flush = |buf: &mut Vec<u8>,
                 first: &mut Option<tokio::sync::oneshot::Sender<io::Result<()>>>|
     -> io::Result<()> {
        if let Some(f) = first.take() {
            let _ = f.send(Ok(()));
        }
        let chunk = Bytes::from(std::mem::take(buf));
        tx.blocking_send(Ok(Frame::data(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    };
    let res = walk(base, |rel, abs, md| {
        if rel.is_empty() && md.is_dir() {
            return Ok(Next::Continue);
        }
        if md.is_dir() && opts.skip.iter().any(|s| s == rel) {
            return Ok(Next::SkipDir);
        }
        line(&mut buf, rel, abs, md, opts.digests.as_deref())?;
        if buf.len() >= CHUNK {
            flush(&mut buf, &mut first)?;
        }
        Ok(if md.is_dir() && !opts.recursive {
            Next::SkipDir
        } else {
            Next::Continue
        })
    });
    match res {
        Ok(()) => {
            if !buf.is_empty() {
                let _ = flush(&mut buf, &mut first);
            }
            if let Some(f) = first.take() {
                let _ = f.send(Ok(()));
            }
        }
        Err(e) => match first.take() {
            Some(f) => {
                let _ = f.send(Err(e));
            }
            None => {
                let _ = tx.blocking_send(Err(e));
            }
        },
    }
}

/// Appends one `/ls` line for an entry.
pub fn line(
    out: &mut Vec<u8>,
    rel: &str,
    abs: &Path,
    md: &Metadata,
    digests: Option<&DigestCache>,
) -> io::Result<()> {
    let mode = filemode::from_unix(md.mode());
    out.extend_from_slice(filemode::to_string(mode).as_bytes());
    out.push(b'\t');
    out.extend_from_slice(rel.as_bytes());
    if md.is_file() {
        out.extend_from_slice(format!("\t{}\t{}", md.len(), rfc3339_utc(md.mtime())).as_bytes());
        if let Some(cache) = digests {
            out.push(b'\t');
            out.extend_from_slice(cache.sha1(abs, md)?.as_bytes());
        }
    } else if md.is_dir() {
        out.push(b'/');
    } else if md.file_type().is_symlink()
        && digests.is_some()
        && let Ok(target) = std::fs::read_link(abs)
    {
        // Beyond Go: with digests, a symlink gets the SHA-1 of its target
        // text, so a push can tell an unchanged link from a changed one.
        use std::os::unix::ffi::OsStrExt;
        let t = target.as_os_str().as_bytes();
        out.extend_from_slice(
            format!(
                "\t{}\t{}\t{}",
                t.len(),
                rfc3339_utc(md.mtime()),
                gomote_shared::digest::sha1_bytes(t)
            )
            .as_bytes(),
        );
    }
    out.push(b'\n');
    Ok(())
}

/// Seconds since the epoch as RFC 3339 in UTC without fractions, as Go's
/// `t.UTC().Format(time.RFC3339)` prints it.
pub fn rfc3339_utc(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_714_564_800), "2024-05-01T12:00:00Z");
    }
}
