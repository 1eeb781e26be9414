//! An async HTTP client for one buildlet: the request shapes of
//! docs/protocol.md §4.5 "Endpoints" (`BuildletClient`), streamed command
//! output with its `Process-State` trailer (`ExecStream`, §4.6), and the
//! `/status` heartbeat that decides when a buildlet is dead (`Heartbeat`).
//!
//! The coordinator drives instances through this; a daemon in direct mode
//! talks to a buildlet with it too. Everything a network can influence comes
//! back as an [`Error`]; nothing here panics on a bad peer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::StatusCode;
use http_body::Body as _;
use reqwest::{Method, RequestBuilder, Url};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long `/status`, `/workdir` and `/exec` may take to send headers.
/// `/exec` flushes its headers before starting the process, so a slow
/// command never trips this; a wedged buildlet does.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `/halt` may take to answer. Halting is best-effort: the machine
/// is going away either way, so nobody should wait on it for long.
pub const HALT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `/ls` line accepted, as the Go client's `bufio.Scanner` limit.
pub const MAX_LS_LINE: usize = 64 * 1024;

/// How much of an error reply's body is kept in an [`Error::Status`].
pub const MAX_ERROR_BODY: usize = 4 * 1024;

/// The HTTP Basic-auth user name; the buildlet checks only the password.
const AUTH_USER: &str = "gomote";

/// The trailer carrying an `/exec` result.
const PROCESS_STATE: &str = "process-state";

/// Something went wrong talking to a buildlet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL given to [`BuildletClient::new`] does not parse.
    #[error("invalid buildlet URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The request could not be sent, or the reply could not be read.
    #[error("buildlet {op}: {source}")]
    Transport {
        /// The operation, e.g. `"exec"`.
        op: &'static str,
        /// The underlying HTTP error.
        #[source]
        source: reqwest::Error,
    },
    /// No response headers arrived in time.
    #[error("buildlet {op}: no response headers within {after:?}")]
    Timeout {
        /// The operation, e.g. `"status"`.
        op: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The buildlet answered with something other than 200.
    #[error("buildlet {op}: HTTP {status}: {body}")]
    Status {
        /// The operation, e.g. `"put"`.
        op: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the reply body (at most [`MAX_ERROR_BODY`] bytes).
        body: String,
    },
    /// The buildlet answered 200 with a body this client cannot use.
    #[error("buildlet {op}: bad reply: {detail}")]
    BadReply {
        /// The operation, e.g. `"status"`.
        op: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The `/exec` output ended without a `Process-State` trailer, so the
    /// command's outcome is unknown.
    #[error("buildlet exec: missing Process-State trailer")]
    MissingTrailer,
}

impl Error {
    /// The HTTP status of an [`Error::Status`], if that is what this is.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request hit a time limit, whether ours or reqwest's.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Transport { source, .. } => source.is_timeout(),
            _ => false,
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cheap-to-clone client for one buildlet reached over plain HTTP/1.1.
#[derive(Clone, Debug)]
pub struct BuildletClient {
    http: reqwest::Client,
    base: Url,
    password: Option<String>,
}

impl BuildletClient {
    /// Whether the buildlet is on this machine (a loopback host).
    pub fn is_loopback(&self) -> bool {
        self.base
            .host_str()
            .is_some_and(crate::net::is_loopback_host)
    }

    /// A client for the buildlet at `base_url` (`http://host:port`, or just
    /// `host:port`). With a password every request carries HTTP Basic auth
    /// as user `gomote`.
    pub fn new(base_url: &str, password: Option<String>) -> Result<Self> {
        // Keep-alive and a one-minute idle limit match the Go client; no
        // total timeout, since tar and exec bodies may stream for hours.
        let http = reqwest::Client::builder()
            .http1_only()
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(180))
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: base_url.to_string(),
                reason: format!("building HTTP client: {e}"),
            })?;
        Self::with_http_client(http, base_url, password)
    }

    /// Like [`new`](Self::new) but with a caller-built `reqwest::Client`,
    /// for callers that need their own TLS or connection settings.
    pub fn with_http_client(
        http: reqwest::Client,
        base_url: &str,
        password: Option<String>,
    ) -> Result<Self> {
        let full = if base_url.contains("://") {
            base_url.to_string()
        } else {
            format!("http://{base_url}")
        };
        let base = Url::parse(&full).map_err(|e| Error::InvalidUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl {
                url: base_url.to_string(),
                reason: "want an http or https URL".into(),
            });
        }
        Ok(BuildletClient {
            http,
            base,
            password: password.filter(|p| !p.is_empty()),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /status`: the buildlet's protocol version (29 for the current Go
    /// buildlet). This is the heartbeat probe.
    pub async fn status(&self) -> Result<u32> {
        #[derive(serde::Deserialize)]
        struct Status {
            #[serde(rename = "Version")]
            version: u32,
        }
        const OP: &str = "status";
        let res = self
            .send_within(
                OP,
                self.request(Method::GET, "/status", &[]),
                HEADER_TIMEOUT,
            )
            .await?;
        let body = read_all(OP, res, HEADER_TIMEOUT).await?;
        let st: Status = serde_json::from_slice(&body).map_err(|e| Error::BadReply {
            op: OP,
            detail: format!("decoding {:?}: {e}", String::from_utf8_lossy(&body)),
        })?;
        Ok(st.version)
    }

    /// `GET /workdir`: the absolute path of the buildlet's work directory.
    pub async fn workdir(&self) -> Result<String> {
        const OP: &str = "workdir";
        let res = self
            .send_within(
                OP,
                self.request(Method::GET, "/workdir", &[]),
                HEADER_TIMEOUT,
            )
            .await?;
        let body = read_all(OP, res, HEADER_TIMEOUT).await?;
        String::from_utf8(body.to_vec()).map_err(|e| Error::BadReply {
            op: OP,
            detail: format!("work directory is not UTF-8: {e}"),
        })
    }

    /// `PUT /writetgz?dir=`: extracts a gzip'd tar (the body) into `dir`,
    /// relative to the work directory (empty means the work directory).
    pub async fn put_tar(&self, dir: &str, body: impl Into<reqwest::Body>) -> Result<()> {
        const OP: &str = "put tar";
        let req = self
            .request(Method::PUT, "/writetgz", &[("dir", dir)])
            .body(body);
        self.send(OP, req).await?;
        Ok(())
    }

    /// `POST /writetgz?dir=` with form `url`: the buildlet downloads the
    /// archive itself. Returns true when the buildlet skipped the download
    /// (it answers `SKIP` for `dir=go1.4` when that already exists).
    pub async fn put_tar_from_url(&self, dir: &str, url: &str) -> Result<bool> {
        const OP: &str = "put tar from URL";
        let req = with_form(
            self.request(Method::POST, "/writetgz", &[("dir", dir)]),
            encode_form(&[("url", url)]),
        );
        let res = self.send(OP, req).await?;
        let body = read_all(OP, res, HEADER_TIMEOUT).await?;
        Ok(body.as_ref() == b"SKIP")
    }

    /// `PUT /write?mode=&path=`: writes one file. `go_mode` is a Go
    /// `os.FileMode` bit pattern (see `crate::filemode`), sent in decimal.
    pub async fn put(
        &self,
        path: &str,
        go_mode: u32,
        body: impl Into<reqwest::Body>,
    ) -> Result<()> {
        const OP: &str = "put";
        let mode = go_mode.to_string();
        let req = self
            .request(Method::PUT, "/write", &[("mode", &mode), ("path", path)])
            .body(body);
        self.send(OP, req).await?;
        Ok(())
    }

    /// `GET /tgz?dir=`: the directory as a .tar.gz, streamed. If the
    /// buildlet fails part-way it drops the connection, which shows up as an
    /// error item rather than a clean end.
    pub async fn get_tar(
        &self,
        dir: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static + use<>> {
        const OP: &str = "get tar";
        let res = self
            .send(OP, self.request(Method::GET, "/tgz", &[("dir", dir)]))
            .await?;
        Ok(res
            .bytes_stream()
            .map_err(|source| Error::Transport { op: OP, source }))
    }

    /// `POST /removeall` with form `path` repeated: removes each path
    /// recursively (`.` wipes the work directory). Sends nothing when
    /// `paths` is empty, since the buildlet would reject that.
    pub async fn remove_all<S: AsRef<str>>(&self, paths: &[S]) -> Result<()> {
        const OP: &str = "remove all";
        if paths.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(&str, &str)> = paths.iter().map(|p| ("path", p.as_ref())).collect();
        let req = with_form(
            self.request(Method::POST, "/removeall", &[]),
            encode_form(&pairs),
        );
        self.send(OP, req).await?;
        Ok(())
    }

    /// `GET /ls`: one trimmed line per entry (`<mode>\t<path>[\t<size>\t
    /// <mtime>[\t<sha1>]]`, see `GET /ls` in docs/protocol.md §4.5).
    /// `skip` names directories, relative to `dir`, that are neither listed
    /// nor entered.
    pub async fn list_dir<S: AsRef<str>>(
        &self,
        dir: &str,
        recursive: bool,
        digest: bool,
        skip: &[S],
    ) -> Result<Vec<String>> {
        const OP: &str = "list dir";
        let mut query: Vec<(&str, &str)> = vec![
            ("digest", go_bool(digest)),
            ("dir", dir),
            ("recursive", go_bool(recursive)),
        ];
        query.extend(skip.iter().map(|s| ("skip", s.as_ref())));
        let res = self
            .send(OP, self.request(Method::GET, "/ls", &query))
            .await?;
        let mut lines = LineSplitter::new(MAX_LS_LINE);
        let mut out = Vec::new();
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| Error::Transport { op: OP, source })?;
            lines.push(&chunk, &mut out).map_err(|e| Error::BadReply {
                op: OP,
                detail: e.to_string(),
            })?;
        }
        lines.finish(&mut out);
        Ok(out)
    }

    /// `POST /exec`: starts a command and streams its output. An `Err` here
    /// means the command never started (non-200 reply such as 422 "command
    /// not found", no headers within 20 s, or a transport failure).
    pub async fn exec(&self, opts: &ExecOpts) -> Result<ExecStream> {
        const OP: &str = "exec";
        let req = with_form(self.request(Method::POST, "/exec", &[]), opts.form());
        let res = self.send_within(OP, req, HEADER_TIMEOUT).await?;
        let res: http::Response<reqwest::Body> = res.into();
        Ok(ExecStream {
            body: Some(res.into_body()),
            outcome: None,
        })
    }

    /// `POST /halt`: asks the buildlet to shut its machine down (or, with
    /// `-halt=false`, just exit). Best-effort: waits at most 2 s for the
    /// reply, and callers usually only log a failure.
    pub async fn halt(&self) -> Result<()> {
        const OP: &str = "halt";
        self.send_within(OP, self.request(Method::POST, "/halt", &[]), HALT_TIMEOUT)
            .await?;
        Ok(())
    }

    fn request(&self, method: Method, path: &str, query: &[(&str, &str)]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let req = self.http.request(method, url);
        match &self.password {
            Some(p) => req.basic_auth(AUTH_USER, Some(p)),
            None => req,
        }
    }

    /// Sends and insists on 200, with no time limit.
    async fn send(&self, op: &'static str, req: RequestBuilder) -> Result<reqwest::Response> {
        let res = req
            .send()
            .await
            .map_err(|source| Error::Transport { op, source })?;
        check_ok(op, res).await
    }

    /// Sends and insists on 200, giving up if headers take longer than
    /// `limit`. The body, read later, has no limit.
    async fn send_within(
        &self,
        op: &'static str,
        req: RequestBuilder,
        limit: Duration,
    ) -> Result<reqwest::Response> {
        let res = tokio::time::timeout(limit, req.send())
            .await
            .map_err(|_| Error::Timeout { op, after: limit })?
            .map_err(|source| Error::Transport { op, source })?;
        check_ok(op, res).await
    }
}

/// Turns a non-200 reply into [`Error::Status`] with the start of its body.
async fn check_ok(op: &'static str, res: reqwest::Response) -> Result<reqwest::Response> {
    let status = res.status();
    if status == StatusCode::OK {
        return Ok(res);
    }
    // The body only decorates the error, so a slow or broken one must not
    // hide the status: read what arrives in time and stop.
    let mut buf = BytesMut::new();
    let mut body = res.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(HEADER_TIMEOUT, read).await;
    buf.truncate(MAX_ERROR_BODY);
    Err(Error::Status {
        op,
        status,
        body: String::from_utf8_lossy(&buf).trim_end().to_string(),
    })
}

/// Reads a whole (small) reply body within `limit`.
async fn read_all(op: &'static str, res: reqwest::Response, limit: Duration) -> Result<Bytes> {
    tokio::time::timeout(limit, res.bytes())
        .await
        .map_err(|_| Error::Timeout { op, after: limit })?
        .map_err(|source| Error::Transport { op, source })
}

fn with_form(req: RequestBuilder, body: String) -> RequestBuilder {
    req.header(
        http::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded",
    )
    .body(body)
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Booleans the way Go's `strconv.FormatBool` writes them, which the
/// buildlet's `ParseBool` reads back.
fn go_bool(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// What to run with [`BuildletClient::exec`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOpts {
    /// The command: absolute, relative to the work directory, or a bare
    /// name looked up in the work directory and then on the buildlet's PATH.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The directory to run in; empty means the command's own directory
    /// (or the work directory in system mode).
    pub dir: String,
    /// `KEY=value` entries added to the buildlet's environment.
    pub env: Vec<String>,
    /// PATH entries (`$PATH`, `$WORKDIR` and `$EMPTY` are expanded by the
    /// buildlet). `None` leaves PATH alone; `Some(vec![])` clears it, which
    /// goes over the wire as the single entry `$EMPTY`.
    pub path: Option<Vec<String>>,
    /// Run as a system command (`mode=sys`): `cmd` must be absolute or on
    /// PATH, and `dir` defaults to the work directory.
    pub system_level: bool,
    /// Ask the buildlet to start the output with a line describing the
    /// command, arguments, environment and directory.
    pub debug: bool,
}

impl ExecOpts {
    /// Runs `cmd` with `args` and all other options at their defaults.
    pub fn new<I, S>(cmd: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecOpts {
            cmd: cmd.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// The `application/x-www-form-urlencoded` body of the `/exec` request,
    /// in the Go client's field order. `env`, `path` and `cmdArg` must be in
    /// the body: the buildlet reads them from nowhere else.
    pub fn form(&self) -> String {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("cmd", &self.cmd);
        if self.system_level {
            f.append_pair("mode", "sys");
        }
        f.append_pair("dir", &self.dir);
        for a in &self.args {
            f.append_pair("cmdArg", a);
        }
        for e in &self.env {
            f.append_pair("env", e);
        }
        match &self.path {
            None => {}
            Some(p) if p.is_empty() => {
                f.append_pair("path", "$EMPTY");
            }
            Some(p) => {
                for e in p {
                    f.append_pair("path", e);
                }
            }
        }
        f.append_pair("debug", go_bool(self.debug));
        f.finish()
    }
}

/// How a command that ran to completion ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited 0 (`Process-State: ok`).
    Ok,
    /// It ran but failed; the text is the buildlet's process state, e.g.
    /// `exit status 1` or `signal: killed`, or why it could not start.
    Failed(String),
}

/// One item of an [`ExecStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// A chunk of interleaved stdout and stderr, as it arrived.
    Output(Bytes),
    /// The command's outcome; always the last item.
    Done(ExecOutcome),
}

/// The output of a running command, then its outcome.
///
/// As a [`Stream`] it yields `Output` chunks, then exactly one `Done`, then
/// ends; or an `Err` (broken stream, missing trailer) and then ends. An
/// `Err` means the outcome is unknown: an infrastructure failure, not a
/// failing command. Dropping it closes the connection, and the buildlet
/// kills the command.
pub struct ExecStream {
    /// `None` once the stream has ended.
    body: Option<reqwest::Body>,
    /// The `Process-State` trailer, once seen.
    outcome: Option<ExecOutcome>,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("finished", &self.body.is_none())
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl ExecStream {
    /// The next output chunk, or `Ok(None)` once the output has ended; call
    /// [`outcome`](Self::outcome) then.
    pub async fn next_output(&mut self) -> Result<Option<Bytes>> {
        match self.next().await {
            Some(Ok(ExecEvent::Output(b))) => Ok(Some(b)),
            Some(Ok(ExecEvent::Done(o))) => {
                self.outcome = Some(o);
                Ok(None)
            }
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Discards any remaining output and returns the outcome.
    pub async fn outcome(mut self) -> Result<ExecOutcome> {
        while let Some(item) = self.next().await {
            if let ExecEvent::Done(o) = item? {
                return Ok(o);
            }
        }
        self.outcome.take().ok_or(Error::MissingTrailer)
    }

    /// Collects all output and the outcome; for short commands and tests.
    pub async fn collect_output(mut self) -> Result<(Vec<u8>, ExecOutcome)> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            match item? {
                ExecEvent::Output(b) => out.extend_from_slice(&b),
                ExecEvent::Done(o) => return Ok((out, o)),
            }
        }
        let o = self.outcome.take().ok_or(Error::MissingTrailer)?;
        Ok((out, o))
    }
}

impl Stream for ExecStream {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => return Poll::Ready(Some(Ok(ExecEvent::Output(data)))),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers()
                            && let Some(v) = trailers.get(PROCESS_STATE)
                        {
                            this.outcome = Some(parse_process_state(v.as_bytes()));
                        }
                    }
                },
                Some(Err(source)) => {
                    this.body = None;
                    return Poll::Ready(Some(Err(Error::Transport { op: "exec", source })));
                }
                // Poll to the end rather than stopping at the trailers, so
                // the connection is left clean for reuse.
                None => {
                    this.body = None;
                    return Poll::Ready(Some(match this.outcome.clone() {
                        Some(o) => Ok(ExecEvent::Done(o)),
                        None => Err(Error::MissingTrailer),
                    }));
                }
            }
        }
    }
}

fn parse_process_state(v: &[u8]) -> ExecOutcome {
    let s = String::from_utf8_lossy(v);
    let s = s.trim();
    if s == "ok" {
        ExecOutcome::Ok
    } else {
        ExecOutcome::Failed(s.to_string())
    }
}

/// A line longer than the limit of a [`LineSplitter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {max} bytes")]
struct LineTooLong {
    /// The limit.
    max: usize,
}

/// Splits a byte stream into trimmed lines, refusing overlong ones.
struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max,
        }
    }

    fn push(&mut self, mut chunk: &[u8], out: &mut Vec<String>) -> Result<(), LineTooLong> {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&chunk[..i]);
            self.check()?;
            out.push(trimmed(&self.pending));
            self.pending.clear();
            chunk = &chunk[i + 1..];
        }
        self.pending.extend_from_slice(chunk);
        self.check()
    }

    fn check(&self) -> Result<(), LineTooLong> {
        if self.pending.len() > self.max {
            return Err(LineTooLong { max: self.max });
        }
        Ok(())
    }

    /// A last line without a newline still counts, as in `bufio.Scanner`.
    fn finish(&mut self, out: &mut Vec<String>) {
        if !self.pending.is_empty() {
            out.push(trimmed(&self.pending));
            self.pending.clear();
        }
    }
}

fn trimmed(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim().to_string()
}

/// Whether a buildlet still answers its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last probe succeeded, or too few have failed in a row to judge.
    Alive,
    /// Enough probes in a row failed. This is final: the heartbeat stops.
    Dead {
        /// When the deciding probe failed.
        since: SystemTime,
        /// The deciding probe's error.
        error: String,
    },
}

/// Heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between probes, and the limit on each probe.
    pub interval: Duration,
    /// Consecutive failures that make a buildlet dead.
    pub max_failures: u32,
}

impl Default for HeartbeatConfig {
    /// The Go client's: every 10 s, dead after 3 failures in a row.
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(10),
            max_failures: 3,
        }
    }
}

/// A background task probing `GET /status`; stops when dropped, when the
/// buildlet is declared dead, or when every receiver is gone.
#[derive(Debug)]
pub struct Heartbeat {
    rx: watch::Receiver<Health>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts probing `client` on the current tokio runtime. The first probe
    /// is one interval from now: the caller has usually just talked to it.
    pub fn spawn(client: BuildletClient, config: HeartbeatConfig) -> Heartbeat {
        let (tx, rx) = watch::channel(Health::Alive);
        let task = tokio::spawn(heartbeat_loop(client, config, tx));
        Heartbeat { rx, task }
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.rx.borrow().clone()
    }

    /// A receiver that sees every change, for `select!` loops.
    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.rx.clone()
    }

    /// Waits until the buildlet is declared dead and returns that verdict.
    pub async fn dead(&self) -> Health {
        let mut rx = self.rx.clone();
        let verdict = rx
            .wait_for(|h| matches!(h, Health::Dead { .. }))
            .await
            .map(|h| h.clone());
        // An error means the task ended without a verdict (the runtime is
        // shutting down): report the last known state, don't wait forever.
        verdict.unwrap_or_else(|_| rx.borrow().clone())
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn heartbeat_loop(
    client: BuildletClient,
    config: HeartbeatConfig,
    tx: watch::Sender<Health>,
) {
    let interval = config.interval.max(Duration::from_millis(1));
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tx.closed() => return,
        }
        let err = match tokio::time::timeout(interval, client.status()).await {
            Ok(Ok(_)) => {
                failures = 0;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("buildlet status: no reply within {interval:?}"),
        };
        failures += 1;
        if failures >= config.max_failures.max(1) {
            let _ = tx.send(Health::Dead {
                since: SystemTime::now(),
                error: err,
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn decode(form: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(form.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exec_form_has_go_field_order() {
        let opts = ExecOpts {
            cmd: "go/bin/go".into(),
            args: vec!["test".into(), "a b&c=d".into()],
            dir: "go/src".into(),
            env: vec!["GOOS=linux".into(), "X=1".into()],
            path: Some(vec!["$WORKDIR/go/bin".into(), "$PATH".into()]),
            system_level: true,
            debug: true,
        };
        assert_eq!(
            decode(&opts.form()),
            pairs(&[
                ("cmd", "go/bin/go"),
                ("mode", "sys"),
                ("dir", "go/src"),
                ("cmdArg", "test"),
                ("cmdArg", "a b&c=d"),
                ("env", "GOOS=linux"),
                ("env", "X=1"),
                ("path", "$WORKDIR/go/bin"),
                ("path", "$PATH"),
                ("debug", "true"),
            ])
        );
    }

    #[test]
    fn exec_form_defaults() {
        let opts = ExecOpts::new("true", Vec::<String>::new());
        assert_eq!(
            decode(&opts.form()),
            pairs(&[("cmd", "true"), ("dir", ""), ("debug", "false")])
        );
    }

    #[test]
    fn exec_path_none_vs_empty() {
        let mut opts = ExecOpts::new("sh", ["-c", "echo $PATH"]);
        assert!(!decode(&opts.form()).iter().any(|(k, _)| k == "path"));
        opts.path = Some(vec![]);
        let paths: Vec<_> = decode(&opts.form())
            .into_iter()
            .filter(|(k, _)| k == "path")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(paths, ["$EMPTY"]);
    }

    #[test]
    fn process_state_parsing() {
        assert_eq!(parse_process_state(b"ok"), ExecOutcome::Ok);
        assert_eq!(
            parse_process_state(b"exit status 3"),
            ExecOutcome::Failed("exit status 3".into())
        );
        assert_eq!(
            parse_process_state(b" signal: killed "),
            ExecOutcome::Failed("signal: killed".into())
        );
    }

    #[test]
    fn lines_split_across_chunks_and_trimmed() {
        let mut s = LineSplitter::new(16);
        let mut out = Vec::new();
        s.push(b"-rw-r--r--\ta\t1", &mut out).ok();
        s.push(b"\r\n  drwx\tb/\n", &mut out).ok();
        s.push(b"tail", &mut out).ok();
        s.finish(&mut out);
        assert_eq!(out, ["-rw-r--r--\ta\t1", "drwx\tb/", "tail"]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut s = LineSplitter::new(4);
        let mut out = Vec::new();
        assert!(s.push(b"abcd\n", &mut out).is_ok());
        assert!(s.push(b"abc", &mut out).is_ok());
        assert_eq!(
            s.push(b"de\n", &mut out).map_err(|e| e.to_string()),
            Err("line longer than 4 bytes".to_string())
        );
    }

    #[test]
    fn base_urls() -> Result<()> {
        let c = BuildletClient::new("127.0.0.1:5936", None)?;
        assert_eq!(c.base_url().as_str(), "http://127.0.0.1:5936/");
        let c = BuildletClient::new("https://b.example:443", Some(String::new()))?;
        assert_eq!(c.base_url().scheme(), "https");
        assert!(c.password.is_none());
        assert!(BuildletClient::new("ftp://x", None).is_err());
        assert!(BuildletClient::new("http://", None).is_err());
        Ok(())
    }

    #[test]
    fn request_urls_encode_queries() -> Result<()> {
        let c = BuildletClient::new("http://h:1/ignored?q=1", None)?;
        let req = c
            .request(Method::GET, "/ls", &[("dir", "a b"), ("skip", "x&y")])
            .build()
            .map_err(|source| Error::Transport { op: "t", source })?;
        assert_eq!(req.url().as_str(), "http://h:1/ls?dir=a+b&skip=x%26y");
        Ok(())
    }

    #[tokio::test]
    async fn remove_all_with_no_paths_sends_nothing() -> Result<()> {
        // Port 9 (discard) on a reserved address: any request would fail.
        let c = BuildletClient::new("http://192.0.2.1:9", None)?;
        c.remove_all::<&str>(&[]).await
    }

    /// Serves one connection with a canned raw HTTP reply; returns the
    /// client for it.
    async fn canned(
        reply: Vec<u8>,
    ) -> std::result::Result<BuildletClient, Box<dyn std::error::Error>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
        });
        Ok(BuildletClient::new(&addr.to_string(), None)?)
    }

    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\nTrailer: Process-State\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn exec_reads_trailer() -> TestResult {
        let reply = format!("{CHUNKED}3\r\nhi\n\r\n0\r\nProcess-State: exit status 2\r\n\r\n");
        let c = canned(reply.into_bytes()).await?;
        let (out, o) = c.exec(&ExecOpts::default()).await?.collect_output().await?;
        assert_eq!(out, b"hi\n");
        assert_eq!(o, ExecOutcome::Failed("exit status 2".into()));
        Ok(())
    }

    #[tokio::test]
    async fn exec_without_trailer_is_an_error() -> TestResult {
        let reply = format!("{CHUNKED}3\r\nhi\n\r\n0\r\n\r\n");
        let c = canned(reply.into_bytes()).await?;
        let mut s = c.exec(&ExecOpts::default()).await?;
        assert_eq!(s.next_output().await?, Some(Bytes::from_static(b"hi\n")));
        assert!(matches!(s.next_output().await, Err(Error::MissingTrailer)));
        Ok(())
    }

    #[tokio::test]
    async fn exec_broken_stream_is_an_error() -> TestResult {
        // The connection closes in the middle of a chunk.
        let reply = format!("{CHUNKED}10\r\nhi");
        let c = canned(reply.into_bytes()).await?;
        let r = c.exec(&ExecOpts::default()).await?.outcome().await;
        assert!(
            matches!(r, Err(Error::Transport { op: "exec", .. })),
            "{r:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn error_reply_keeps_status_and_start_of_body() -> TestResult {
        let mut reply =
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10000\r\n\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'e', 10000));
        let c = canned(reply).await?;
        let err = c.put("f", 0o644, "x").await.err();
        let Some(Error::Status { op, status, body }) = err else {
            return Err(format!("want a status error, got {err:?}").into());
        };
        assert_eq!(
            (op, status.as_u16(), body.len()),
            ("put", 500, MAX_ERROR_BODY)
        );
        Ok(())
    }

    #[tokio::test]
    async fn heartbeat_declares_unreachable_buildlet_dead() -> TestResult {
        // Bind then drop a listener so the port refuses connections.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let c = BuildletClient::new(&addr.to_string(), None)?;
        let hb = Heartbeat::spawn(
            c,
            HeartbeatConfig {
                interval: Duration::from_millis(20),
                max_failures: 3,
            },
        );
        assert_eq!(hb.health(), Health::Alive);
        let verdict = tokio::time::timeout(Duration::from_secs(10), hb.dead()).await;
        assert!(matches!(verdict, Ok(Health::Dead { .. })), "{verdict:?}");
        Ok(())
    }
}
