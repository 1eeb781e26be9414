//! Endpoints that change files: `PUT /write` (one file), `PUT|POST
//! /writetgz` (a gzip'd tar, from the body or a URL) and `POST /removeall`.
//! Every path is validated before anything changes, nothing is written or
//! removed through a symlink inside the work directory, and files appear by
//! atomic rename, never half-written.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::TryStreamExt;
use gomote_shared::{filemode, relpath, safefs, untar};
use http::Method;
use http_body_util::BodyExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::app::App;
use crate::form::Form;
use crate::reply::{bad, internal, safefs_error, text, wrong_method};

/// A blocking reader over a request or response body, for the tar reader.
fn body_reader<B>(body: B) -> SyncIoBridge<impl tokio::io::AsyncRead + Unpin>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let stream = Box::pin(body)
        .into_data_stream()
        .map_err(|e| io::Error::other(e.to_string()));
    SyncIoBridge::new(StreamReader::new(stream))
}

/// Handles `/writetgz`.
pub async fn writetgz(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().clone();
    if method != Method::PUT && method != Method::POST {
        return wrong_method("PUT or POST");
    }
    let query = Form::from_query(req.uri());
    // `dir` comes only from the query, as in Go.
    let dir_param = query.query_value("dir");
    let base = if dir_param.is_empty() {
        PathBuf::new()
    } else {
        match relpath::validate(&dir_param) {
            Ok(p) => p,
            Err(e) => return bad(e),
        }
    };
    if let Err(e) = app.wd.ensure() {
        return internal(e);
    }
    let wd = app.wd.path().to_path_buf();
    if method == Method::POST && base == Path::new("go1.4") {
        let abs = wd.join(&base);
        if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            tracing::info!("writetgz: skipping URL put to go1.4; it already exists");
            return text("SKIP");
        }
    }
    let reader: Box<dyn io::Read + Send> = if method == Method::PUT {
        Box::new(body_reader(req.into_body()))
    } else {
        let (parts, body) = req.into_parts();
        let form = match Form::parse(&parts.method, &parts.uri, &parts.headers, body).await {
            Ok(f) => f,
            Err(e) => return bad(e),
        };
        let url = form.value("url");
        if url.is_empty() {
            return bad("missing url POST param");
        }
        let resp = match app.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => return internal(format!("fetching URL {url}: {e}")),
        };
        if resp.status() != reqwest::StatusCode::OK {
            return internal(format!("fetching provided url: {}", resp.status()));
        }
        let body = http_body_util::StreamBody::new(
            resp.bytes_stream()
                .map_ok(http_body::Frame::data)
                .map_err(|e| io::Error::other(e.to_string())),
        );
        Box::new(body_reader(body))
    };
    let staging = app.wd.staging();
    let result =
        tokio::task::spawn_blocking(move || untar::extract_tgz(reader, &wd, &base, &staging)).await;
    match result {
        Ok(Ok(stats)) => {
            tracing::debug!(?stats, dir = %dir_param, "writetgz");
            text("OK")
        }
        Ok(Err(e)) if e.is_bad_request() => bad(e),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(format!("extraction task failed: {e}")),
    }
}

/// Handles `/write`.
pub async fn write(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::PUT {
        return wrong_method("PUT");
    }
    let q = Form::from_query(req.uri());
    let rel = match relpath::validate(&q.query_value("path")) {
        Ok(p) if relpath::is_base(&p) => return bad("path must name a file"),
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let mode: u32 = match q.query_value("mode").parse::<i64>() {
        Ok(m)
            if (0..=i64::from(u32::MAX)).contains(&m) && (m as u32) & filemode::MODE_TYPE == 0 =>
        {
            m as u32
        }
        _ => return bad("bad mode"),
    };
    if let Err(e) = app.wd.ensure() {
        return internal(e);
    }
    let wd = app.wd.path().to_path_buf();
    if let Err(e) = safefs::check_parents(&wd, &rel) {
        return safefs_error(e);
    }
    if std::fs::symlink_metadata(wd.join(&rel)).is_ok_and(|m| m.is_dir()) {
        return bad(format!(
            "path {:?} is a directory",
            rel.display().to_string()
        ));
    }
    let staging = app.wd.staging();
    let mut reader = body_reader(req.into_body());
    let res =
        tokio::task::spawn_blocking(move || write_file(&mut reader, &wd, &rel, &staging, mode))
            .await;
    match res {
        Ok(Ok(())) => text("OK"),
        Ok(Err(WriteError::Body(e))) => bad(format!("reading body: {e}")),
        Ok(Err(WriteError::Fs(e))) => safefs_error(e),
        Err(e) => internal(format!("write task failed: {e}")),
    }
}

enum WriteError {
    Body(io::Error),
    Fs(safefs::SafeFsError),
}

/// Streams the body to a staging file, then renames it into place.
fn write_file(
    body: &mut dyn io::Read,
    wd: &Path,
    rel: &Path,
    staging: &Path,
    go_mode: u32,
) -> Result<(), WriteError> {
    let fs_err = |op, p: &Path, e| WriteError::Fs(safefs::SafeFsError::io(op, p, e));
    std::fs::create_dir_all(staging).map_err(|e| fs_err("mkdir", staging, e))?;
    let tmp = staging.join(format!(".write-{:016x}", rand::random::<u64>()));
    let unix_mode = filemode::to_unix_perm(go_mode);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(unix_mode & 0o777)
            .open(&tmp)
            .map_err(|e| fs_err("open", &tmp, e))?;
        let mut buf = vec![0u8; 256 * 1024];
        safefs::copy(body, &mut f, &mut buf).map_err(|e| match e {
            safefs::CopyError::Read(e) => WriteError::Body(e),
            safefs::CopyError::Write(e) => fs_err("write", &tmp, e),
        })?;
        // Go chmods after writing so the exact mode (setuid included) wins
        // over the umask.
        f.set_permissions(std::fs::Permissions::from_mode(unix_mode))
            .map_err(|e| fs_err("chmod", &tmp, e))?;
        let mut dirs = safefs::DirCache::default();
        if let Some(parent) = rel.parent() {
            dirs.create_dir_all(wd, parent, 0o755)
                .map_err(WriteError::Fs)?;
        }
        untar::rename_into_place(&tmp, &wd.join(rel)).map_err(WriteError::Fs)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Handles `/removeall`.
pub async fn removeall(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::POST {
        return wrong_method("POST");
    }
    let (parts, body) = req.into_parts();
    let form = match Form::parse(&parts.method, &parts.uri, &parts.headers, body).await {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let raw = form.values("path");
    if raw.is_empty() {
        return bad("requires 'path' parameter");
    }
    let wd = app.wd.path().to_path_buf();
    // Validate everything before deleting anything.
    let mut rels = Vec::with_capacity(raw.len());
    for p in &raw {
        let rel = match relpath::validate(p) {
            Ok(r) => r,
            Err(e) => return bad(e),
        };
        if let Err(e) = safefs::check_parents(&wd, &rel) {
            return safefs_error(e);
        }
        rels.push(rel);
    }
    let res = tokio::task::spawn_blocking(move || {
        for rel in &rels {
            safefs::remove_all(&wd, rel)?;
        }
        Ok::<(), safefs::SafeFsError>(())
    })
    .await;
    match res {
        Ok(Ok(())) => Response::new(Body::empty()),
        Ok(Err(e)) => safefs_error(e),
        Err(e) => internal(format!("remove task failed: {e}")),
    }
}
