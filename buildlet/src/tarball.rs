//! `GET /tgz`: stream a gzip'd tar of a directory below the work
//! directory, in lexical order, directories named with a trailing `/`,
//! symlinks kept as links. A walk that fails part-way cuts the connection,
//! so the client sees a truncated stream rather than a clean end.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use gomote_shared::{relpath, safefs, tarpack};
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::form::Form;
use crate::reply::{http_error, safefs_error, wrong_method};
use crate::walk::{Next, walk};

type Tx = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// A `Write` that hands full buffers to the response body.
struct ChannelWriter {
    tx: Tx,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(Frame::data(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Handles `/tgz`.
pub async fn tgz(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return wrong_method("GET");
    }
    let dir = Form::from_query(req.uri()).value("dir");
    if dir.is_empty() {
        return http_error(StatusCode::BAD_REQUEST, "requires 'dir' parameter");
    }
    let rel = match relpath::validate(&dir) {
        Ok(r) => r,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, e),
    };
    let wd = app.wd.path().to_path_buf();
    if let Err(e) = safefs::check_dir(&wd, &rel) {
        return safefs_error(e);
    }
    let base = wd.join(&rel);
    if let Err(e) = std::fs::metadata(&base) {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "lstat {}: {}",
                base.display(),
                gomote_shared::gofmt::errno_text(&e)
            ),
        );
    }
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        if let Err(e) = write_tgz(&base, tx) {
            tracing::warn!(error = %e, dir = %base.display(), "tgz walk failed");
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    let mut r = Response::new(Body::new(StreamBody::new(ReceiverStream::new(rx))));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-compressed-tar"),
    );
    r
}

fn write_tgz(base: &Path, tx: Tx) -> io::Result<()> {
    let w = ChannelWriter {
        tx,
        buf: Vec::with_capacity(ChannelWriter::CHUNK),
    };
    // Level 1: a work directory with a built toolchain is hundreds of
    // megabytes, and the transfer is local or fast; speed beats ratio.
    let gz = GzEncoder::new(w, Compression::fast());
    let mut tar = tar::Builder::new(gz);
    walk(base, |rel, abs, md| {
        if !rel.is_empty() {
            tarpack::append_path(&mut tar, rel, abs, md)?;
        }
        Ok(Next::Continue)
    })?;
    let gz = tar.into_inner()?;
    let mut w = gz.finish()?;
    w.flush()
}
