//! A small HTTP/1.1 server connection driver that feeds requests to an axum
//! `Router`. It exists because of two things the buildlet protocol needs and
//! stock hyper will not do:
//!
//! * response trailers are written whether or not the request said
//!   `TE: trailers` (Go clients never send it, and `/exec` reports its result
//!   in the `Process-State` trailer; hyper drops trailers without it);
//! * a client that goes away is noticed while a response is still being
//!   produced (the connection is read for EOF), so `/exec` can kill the
//!   process group of a command whose caller hung up, as Go's CloseNotify did.
//!
//! Request heads are parsed with `httparse`; bodies with Content-Length or
//! chunked framing are streamed to the handler; responses are sent with
//! Content-Length when the body's size is known and chunked otherwise.

use std::convert::Infallible;
use std::io;
use std::pin::pin;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::{Service, ServiceExt};

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 100;
/// Pipelined bytes buffered while a response is being written; past this the
/// driver stops reading until the current exchange ends.
const MAX_PIPELINED: usize = 1 << 20;

/// How long an unread request body may take to drain after the response.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// How long an idle keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            idle_timeout: Duration::from_secs(600),
        }
    }
}

enum Framing {
    Length(u64),
    Chunked,
}

/// Serves HTTP/1.x requests from `io` until the peer closes, an error occurs
/// or a request asks to close.
pub async fn serve<IO, S>(io: IO, svc: S, cfg: ConnConfig) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin,
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send,
    S::Future: Send,
{
    let (mut rd, wr) = tokio::io::split(io);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let head = match tokio::time::timeout(cfg.idle_timeout, read_head(&mut rd, &mut buf)).await
        {
            Err(_) => return Ok(()),
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(HeadError::Io(e))) => return Err(e),
            Ok(Err(HeadError::Bad(status, why))) => {
                write_simple(&mut wr, status, why).await?;
                return Ok(());
            }
        };
        let Head {
            mut req,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        if expect_continue {
            wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            wr.flush().await?;
        }
        let is_head = req.method() == Method::HEAD;
        let req_version = req.version();
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
        *req.body_mut() = Body::new(StreamBody::new(ReceiverStream::new(rx)));

        let mut body_complete = false;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        // Boxed rather than pinned on the stack so it can be dropped (releasing
        // its borrows of the reader and buffer) before the next request.
        let mut pump = Box::pin(pump(
            &mut rd,
            &mut buf,
            framing,
            tx,
            &mut body_complete,
            done_tx,
        ));
        let mut handler = pin!(svc.clone().oneshot(req));

        // Wait for the handler's response while the request body streams in.
        let resp = tokio::select! {
            r = &mut handler => match r { Ok(r) => r, Err(never) => match never {} },
            _gone = &mut pump => return Ok(()),
        };
        let mut keep_alive = keep_alive;
        let (parts, body) = resp.into_parts();
        let mut body = pin!(body);
        let no_body = is_head
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let length = body.size_hint().exact();
        let chunked = !no_body && length.is_none() && req_version == Version::HTTP_11;
        if !no_body && length.is_none() && !chunked {
            // An HTTP/1.0 peer: the end of the body is the end of the connection.
            keep_alive = false;
        }
        let mut headers = parts.headers;
        if !headers.contains_key(header::DATE) {
            let now = httpdate::fmt_http_date(SystemTime::now());
            if let Ok(v) = HeaderValue::from_str(&now) {
                headers.insert(header::DATE, v);
            }
        }
        if chunked {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        } else if let Some(n) = length
            && !headers.contains_key(header::CONTENT_LENGTH)
            && parts.status != StatusCode::NO_CONTENT
            && parts.status != StatusCode::NOT_MODIFIED
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        if !keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        write_head(&mut wr, parts.status, &headers).await?;
        wr.flush().await?;

        let mut trailers: Option<HeaderMap> = None;
        if !no_body {
            loop {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    // The client hung up: dropping the body tells the
                    // producer (an /exec process, a walk) to stop.
                    _gone = &mut pump => return Ok(()),
                };
                match frame {
                    None => break,
                    Some(Err(e)) => {
                        // Mid-stream failure: cut the connection so the client
                        // sees a truncated body, not a clean end.
                        tracing::debug!(error = %e, "response body failed; aborting connection");
                        return Ok(());
                    }
                    Some(Ok(f)) => match f.into_data() {
                        Ok(data) => {
                            if data.is_empty() {
                                continue;
                            }
                            if chunked {
                                wr.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                                    .await?;
                                wr.write_all(&data).await?;
                                wr.write_all(b"\r\n").await?;
                            } else {
                                wr.write_all(&data).await?;
                            }
                            wr.flush().await?;
                        }
                        Err(f) => {
                            if let Ok(t) = f.into_trailers() {
                                trailers.get_or_insert_with(HeaderMap::new).extend(t);
                            }
                        }
                    },
                }
            }
            if chunked {
                wr.write_all(b"0\r\n").await?;
                if let Some(t) = &trailers {
                    write_fields(&mut wr, t).await?;
                }
                wr.write_all(b"\r\n").await?;
            }
        }
        wr.flush().await?;
        if keep_alive {
            // A handler may answer without reading the body (the go1.4 SKIP
            // reply); drain the rest, as Go's server does, so the connection
            // can carry the next request instead of being cut under a client
            // that already pooled it.
            tokio::select! {
                _ = &mut done_rx => {}
                _gone = &mut pump => return Ok(()),
                () = tokio::time::sleep(DRAIN_LIMIT) => {}
            }
        }
        drop(pump);
        if !keep_alive || !body_complete {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
}

struct Head {
    req: Request<Body>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

enum HeadError {
    Io(io::Error),
    Bad(StatusCode, &'static str),
}

async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Option<Head>, HeadError> {
    loop {
        // Tolerate stray CRLFs between requests, as RFC 9112 asks.
        while buf.starts_with(b"\r\n") {
            buf.advance(2);
        }
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = build_head(&parsed)?;
                    buf.advance(n);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Bad(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "too many headers",
                    ));
                }
                Err(_) => return Err(HeadError::Bad(StatusCode::BAD_REQUEST, "malformed request")),
            }
            if buf.len() > MAX_HEAD {
                return Err(HeadError::Bad(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
        }
        let n = rd.read_buf(buf).await.map_err(HeadError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
    }
}

fn build_head(p: &httparse::Request<'_, '_>) -> Result<Head, HeadError> {
    let bad = |why| HeadError::Bad(StatusCode::BAD_REQUEST, why);
    let method =
        Method::from_bytes(p.method.unwrap_or("").as_bytes()).map_err(|_| bad("bad method"))?;
    let version = match p.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(p.path.unwrap_or("/"))
        .version(version);
    let mut headers = HeaderMap::with_capacity(p.headers.len());
    for h in p.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("bad header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("bad header value"))?;
        headers.append(name, value);
    }
    // RFC 9112 6.1 and 6.3: Transfer-Encoding beside Content-Length, or on
    // an HTTP/1.0 request, is how requests get smuggled past a front end that
    // frames them differently. Transfer-Encoding frames the body, the
    // handler never sees the Content-Length, and the connection is not
    // reused, so bytes a front end counted differently cannot become a
    // request of their own.
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let ambiguous =
        has_te && (headers.contains_key(header::CONTENT_LENGTH) || version == Version::HTTP_10);
    if has_te {
        headers.remove(header::CONTENT_LENGTH);
    }
    // Several Transfer-Encoding lines form one list; the last coding of the
    // last line is the one that frames the body.
    let framing = if let Some(te) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let te = te.to_str().unwrap_or("").to_ascii_lowercase();
        if te.rsplit(',').next().map(str::trim) != Some("chunked") {
            return Err(HeadError::Bad(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer-encoding",
            ));
        }
        Framing::Chunked
    } else {
        let mut len: Option<u64> = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("bad content-length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length"));
            }
            len = Some(n);
        }
        Framing::Length(len.unwrap_or(0))
    };
    let conn = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    let keep_alive = !ambiguous
        && match version {
            Version::HTTP_10 => conn.iter().any(|t| t == "keep-alive"),
            _ => !conn.iter().any(|t| t == "close"),
        };
    let expect_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && !matches!(framing, Framing::Length(0));
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let req = builder
        .body(Body::empty())
        .map_err(|_| bad("bad request target"))?;
    Ok(Head {
        req,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// Streams the request body to the handler, then keeps reading the
/// connection so a hang-up is noticed. Returns only when the peer has gone
/// (EOF or a read error); the caller drops it when the exchange is over.
async fn pump<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    tx: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
    complete: &mut bool,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let mut tx = Some(tx);
    let res = match framing {
        Framing::Length(n) => pump_length(rd, buf, n, &mut tx).await,
        Framing::Chunked => pump_chunked(rd, buf, &mut tx).await,
    };
    if let Err(e) = res {
        if let Some(tx) = tx.take() {
            let _ = tx.send(Err(e)).await;
        }
        return;
    }
    *complete = true;
    drop(tx);
    let _ = done.send(());
    loop {
        if buf.len() >= MAX_PIPELINED {
            std::future::pending::<()>().await;
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

type BodyTx = Option<mpsc::Sender<Result<Frame<Bytes>, io::Error>>>;

async fn send_data(tx: &mut BodyTx, data: Bytes) {
    if let Some(t) = tx
        && t.send(Ok(Frame::data(data))).await.is_err()
    {
        // The handler no longer wants the body; keep reading it so the
        // connection stays in step, but throw it away.
        *tx = None;
    }
}

async fn fill<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> io::Result<()> {
    if rd.read_buf(buf).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed mid-body",
        ));
    }
    Ok(())
}

async fn pump_length<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    mut remaining: u64,
    tx: &mut BodyTx,
) -> io::Result<()> {
    while remaining > 0 {
        if buf.is_empty() {
            buf.reserve(64 * 1024);
            fill(rd, buf).await?;
        }
        let take = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.split_to(take).freeze();
        remaining -= take as u64;
        send_data(tx, chunk).await;
    }
    Ok(())
}

async fn read_line<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> io::Result<Bytes> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i).freeze();
            buf.advance(2);
            return Ok(line);
        }
        if buf.len() > 8 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk line too long",
            ));
        }
        fill(rd, buf).await?;
    }
}

async fn pump_chunked<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    tx: &mut BodyTx,
) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    loop {
        let line = read_line(rd, buf).await?;
        let line = std::str::from_utf8(&line).map_err(|_| bad("bad chunk size"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailer fields (ignored) up to the empty line.
            loop {
                if read_line(rd, buf).await?.is_empty() {
                    return Ok(());
                }
            }
        }
        pump_length(rd, buf, size, tx).await?;
        if !read_line(rd, buf).await?.is_empty() {
            return Err(bad("missing CRLF after chunk"));
        }
    }
}

async fn write_head<W: AsyncWrite + Unpin>(
    wr: &mut W,
    status: StatusCode,
    headers: &HeaderMap,
) -> io::Result<()> {
    let reason = status.canonical_reason().unwrap_or("");
    wr.write_all(format!("HTTP/1.1 {} {}\r\n", status.as_u16(), reason).as_bytes())
        .await?;
    write_fields(wr, headers).await?;
    wr.write_all(b"\r\n").await
}

async fn write_fields<W: AsyncWrite + Unpin>(wr: &mut W, headers: &HeaderMap) -> io::Result<()> {
    for (name, value) in headers {
        wr.write_all(canonical_name(name.as_str()).as_bytes())
            .await?;
        wr.write_all(b": ").await?;
        wr.write_all(value.as_bytes()).await?;
        wr.write_all(b"\r\n").await?;
    }
    Ok(())
}

/// `process-state` -> `Process-State`, as Go's server spells header names.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

async fn write_simple<W: AsyncWrite + Unpin>(
    wr: &mut W,
    status: StatusCode,
    why: &str,
) -> io::Result<()> {
    let body = format!("{why}\n");
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    wr.write_all(head.as_bytes()).await?;
    wr.write_all(body.as_bytes()).await?;
    wr.flush().await
}

/// Why a whole request body could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the limit.
    #[error("length limit exceeded")]
    TooLarge,
    /// Reading the body failed (the client went away, bad chunking).
    #[error("{0}")]
    Read(axum::BoxError),
}

/// Collects a whole request body, failing past `limit` bytes.
pub async fn read_body_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::any;

    async fn roundtrip(router: Router, request: &[u8]) -> String {
        let (client, server) = tokio::io::duplex(1 << 20);
        let srv = tokio::spawn(serve(server, router, ConnConfig::default()));
        let (mut r, mut w) = tokio::io::split(client);
        // No half-close: like Go's server, the driver reads EOF as the
        // client hanging up. Requests end with `Connection: close` instead.
        w.write_all(request).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        let _ = srv.await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn trailer_router() -> Router {
        Router::new().route(
            "/t",
            any(|| async {
                let stream = futures_util::stream::iter(vec![
                    Ok::<_, io::Error>(Frame::data(Bytes::from_static(b"hi"))),
                    Ok(Frame::trailers({
                        let mut h = HeaderMap::new();
                        h.insert("process-state", HeaderValue::from_static("ok"));
                        h
                    })),
                ]);
                Response::builder()
                    .header("Trailer", "Process-State")
                    .body(Body::new(StreamBody::new(stream)))
                    .unwrap()
            }),
        )
    }

    #[tokio::test]
    async fn writes_trailers_without_te() {
        let out = roundtrip(
            trailer_router(),
            b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
        assert!(
            out.ends_with("2\r\nhi\r\n0\r\nProcess-State: ok\r\n\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn reads_chunked_and_length_bodies_and_pipelines() {
        let router = Router::new().route(
            "/echo",
            any(|body: Body| async move {
                let b = read_body_limited(body, 1 << 20).await.unwrap();
                Response::new(Body::from(b))
            }),
        );
        let req = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n\
POST /echo HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nwxyz";
        let out = roundtrip(router, req).await;
        assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        assert!(
            out.contains("\r\n\r\nabcdeHTTP/1.1 200 OK\r\n"),
            "pipelined: {out}"
        );
        assert!(out.contains("Content-Length: 4\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nwxyz"), "{out}");
    }

    /// Echoes the body after the Content-Length header the handler saw.
    fn length_echo_router() -> Router {
        Router::new().route(
            "/echo",
            any(|req: Request<Body>| async move {
                let seen = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_else(|| "none".into());
                let b = read_body_limited(req.into_body(), 1 << 20).await.unwrap();
                let mut out = format!("cl={seen} body=").into_bytes();
                out.extend_from_slice(&b);
                Response::new(Body::from(out))
            }),
        )
    }

    #[tokio::test]
    async fn transfer_encoding_with_content_length_is_chunked_then_closed() {
        // A smuggling attempt: a front end trusting Content-Length would see
        // the bytes after the chunked body as part of this request, we would
        // see them as a second one. RFC 9112 6.3: Transfer-Encoding wins, and
        // the connection is closed after the response.
        let req = b"POST /echo HTTP/1.1\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
POST /echo HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwxyz!";
        let out = roundtrip(length_echo_router(), req).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\ncl=none body=abc"), "{out}");
        assert_eq!(
            out.matches("HTTP/1.1 ").count(),
            1,
            "second request served: {out}"
        );
    }

    #[tokio::test]
    async fn transfer_encoding_on_http10_closes() {
        let req = b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
GET /echo HTTP/1.0\r\n\r\n";
        let out = roundtrip(length_echo_router(), req).await;
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(out.ends_with("body=hi"), "{out}");
        assert_eq!(
            out.matches("HTTP/1.1 ").count(),
            1,
            "second request served: {out}"
        );
    }

    #[tokio::test]
    async fn last_transfer_encoding_line_decides_the_framing() {
        let req = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n";
        let out = roundtrip(length_echo_router(), req).await;
        assert!(out.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{out}");
    }

    #[tokio::test]
    async fn malformed_request_gets_400() {
        let out = roundtrip(trailer_router(), b"NOT HTTP\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("process-state"), "Process-State");
        assert_eq!(canonical_name("content-type"), "Content-Type");
    }
}
