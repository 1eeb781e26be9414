//! `POST /exec`: run a command in the work directory and stream its merged
//! stdout and stderr, ending with the `Process-State` trailer. Parameter
//! sources, command and directory resolution, and the environment order are
//! those of Go's buildlet (docs/protocol.md 4.5-4.6). When the client hangs up, the
//! command's whole process group is killed (Go kills only the direct child).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use gomote_shared::{gofmt, relpath};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use http_body::Frame;
use http_body_util::StreamBody;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::form::{Form, parse_bool};
use crate::reply::{http_error, wrong_method};

/// Everything needed to start one command, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// Working directory.
    pub dir: PathBuf,
    /// The environment in assembly order; later duplicates win.
    pub env: Vec<OsString>,
    /// Whether to write the `:: Running ...` preamble.
    pub debug: bool,
}

/// A request refused before the command starts.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// 400, 422 or 500.
    pub status: StatusCode,
    /// The one-line reason.
    pub msg: String,
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal {
        status,
        msg: msg.into(),
    }
}

/// Handles `/exec`.
pub async fn exec(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::POST {
        return wrong_method("POST");
    }
    if req.version() < Version::HTTP_11 {
        return http_error(StatusCode::BAD_REQUEST, "requires HTTP/1.1");
    }
    if let Err(e) = app.wd.ensure() {
        return http_error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let (parts, body) = req.into_parts();
    let form = match Form::parse(&parts.method, &parts.uri, &parts.headers, body).await {
        Ok(f) => f,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, e),
    };
    let spec = match resolve(&app, &form) {
        Ok(s) => s,
        Err(r) => return http_error(r.status, r.msg),
    };
    if app.allow_firewall && firewall_requested(&spec.env) {
        crate::firewall::enable_once().await;
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(16);
    tokio::spawn(run(app, spec, tx));
    let mut resp = Response::new(Body::new(StreamBody::new(ReceiverStream::new(rx))));
    resp.headers_mut()
        .insert("trailer", HeaderValue::from_static("Process-State"));
    resp
}

/// Resolves `cmd`, `dir` and the environment from the form.
pub fn resolve(app: &App, form: &Form) -> Result<Spec, Refusal> {
    let wd = app.wd.path();
    let sys = form.value("mode") == "sys";
    let cmd = form.value("cmd");
    let mut env = assemble_env(
        app.wd.base_env(),
        app.wd.goroot_bootstrap(),
        &form.post_values("env"),
        wd,
        &form.post_values("path"),
    );
    // A bare name is searched on the PATH the command itself gets, so
    // `-path '$PATH,$WORKDIR/go/bin' go` finds the pushed go, as a shell
    // would; then, as Go's buildlet does, on the buildlet's own PATH (an
    // empty `-path` still runs `sh`).
    let own = std::env::var_os("PATH");
    let search: Vec<&OsStr> = [last_value(&env, b"PATH"), own.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect();
    let path = resolve_cmd(wd, &cmd, sys, &search)?;
    let dir = resolve_dir(wd, &form.value("dir"), &path, sys)?;
    env.push(kv("PWD", &dir));
    Ok(Spec {
        path,
        args: form.post_values("cmdArg"),
        dir,
        env,
        debug: parse_bool(&form.value("debug")),
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Go's `exec.LookPath` over `path` (a PATH value). Entries that are not
/// executable files, dangling links among them, are skipped.
fn look_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .map(|d| d.join(name))
        .find(|c| is_executable(c))
}

/// The program `cmd` names; a bare name is searched for on each PATH value
/// in `search` in turn.
fn resolve_cmd(wd: &Path, cmd: &str, sys: bool, search: &[&OsStr]) -> Result<PathBuf, Refusal> {
    if cmd.is_empty() {
        return Err(refuse(StatusCode::BAD_REQUEST, "requires 'cmd' parameter"));
    }
    if cmd.starts_with('/') {
        return Ok(relpath::clean(Path::new(cmd)));
    }
    let rel = relpath::validate(cmd).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    if cmd.contains('/') {
        if sys {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "'sys' mode requires absolute or system 'cmd' path",
            ));
        }
        return Ok(wd.join(rel));
    }
    if !sys {
        let local = wd.join(cmd);
        if is_executable(&local) {
            return Ok(local);
        }
    }
    search
        .iter()
        .find_map(|p| look_path(cmd, p))
        .ok_or_else(|| {
            refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("command {cmd:?} not found"),
            )
        })
}

fn resolve_dir(wd: &Path, dir: &str, cmd: &Path, sys: bool) -> Result<PathBuf, Refusal> {
    if dir.is_empty() {
        return Ok(if sys {
            wd.to_path_buf()
        } else {
            cmd.parent()
                .map_or_else(|| wd.to_path_buf(), Path::to_path_buf)
        });
    }
    if dir.starts_with('/') {
        return Ok(relpath::clean(Path::new(dir)));
    }
    let rel = relpath::validate(dir).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(wd.join(rel))
}

fn kv(k: &str, v: impl AsRef<OsStr>) -> OsString {
    let mut s = OsString::from(k);
    s.push("=");
    s.push(v);
    s
}

fn split_kv(e: &OsStr) -> (&[u8], &[u8]) {
    let b = e.as_bytes();
    match b.iter().position(|&c| c == b'=') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, b""),
    }
}

/// The value of the last `key=` entry of `env`, the one a process sees.
fn last_value<'a>(env: &'a [OsString], key: &[u8]) -> Option<&'a OsStr> {
    env.iter()
        .rev()
        .map(|e| split_kv(e))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| OsStr::from_bytes(v))
}

/// The environment in Go's order: the buildlet's own, `GOROOT_BOOTSTRAP`,
/// the client's `env`, the scratch directories (overriding the client),
/// and the recomputed `PATH`; `PWD` follows once the directory is known.
pub fn assemble_env(
    base: &[(OsString, OsString)],
    bootstrap: OsString,
    client_env: &[String],
    wd: &Path,
    path: &[String],
) -> Vec<OsString> {
    let mut env: Vec<OsString> = base
        .iter()
        .map(|(k, v)| {
            let mut s = k.clone();
            s.push("=");
            s.push(v);
            s
        })
        .collect();
    env.push(kv("GOROOT_BOOTSTRAP", bootstrap));
    env.extend(client_env.iter().map(OsString::from));
    env.push(kv("TMPDIR", wd.join("tmp")));
    env.push(kv("GOCACHE", wd.join("gocache")));
    env.push(kv("GOPLSCACHE", wd.join("goplscache")));
    set_path_env(&mut env, path, wd);
    env
}

/// Go's `setPathEnv`: expands `$PATH`, `$WORKDIR` and `$EMPTY` in the
/// client's path elements, drops empty ones, and appends the result when it
/// differs from the current PATH.
fn set_path_env(env: &mut Vec<OsString>, path: &[String], wd: &Path) {
    if path.is_empty() {
        return;
    }
    let orig: Vec<u8> = env
        .iter()
        .rev()
        .map(|e| split_kv(e))
        .find(|(k, _)| *k == b"PATH")
        .map(|(_, v)| v.to_vec())
        .unwrap_or_default();
    let wd_bytes = wd.as_os_str().as_bytes();
    let elems: Vec<Vec<u8>> = path
        .iter()
        .map(|p| expand(p.as_bytes(), &orig, wd_bytes))
        .filter(|p| !p.is_empty())
        .collect();
    let joined = elems.join(&b':');
    if joined != orig {
        let mut s = OsString::from("PATH=");
        s.push(OsStr::from_bytes(&joined));
        env.push(s);
    }
}

/// Replaces `$PATH`, `$WORKDIR` and `$EMPTY` left to right without
/// re-scanning replacements, as Go's `strings.Replacer` does.
fn expand(s: &[u8], path: &[u8], wd: &[u8]) -> Vec<u8> {
    let table: [(&[u8], &[u8]); 3] = [(b"$PATH", path), (b"$WORKDIR", wd), (b"$EMPTY", b"")];
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        for (from, to) in table {
            if s[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
                continue 'outer;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn firewall_requested(env: &[OsString]) -> bool {
    env.iter()
        .rev()
        .map(|e| split_kv(e))
        .find(|(k, _)| *k == b"GO_DISABLE_OUTBOUND_NETWORK")
        .is_some_and(|(_, v)| parse_bool(&String::from_utf8_lossy(v)))
}

fn data(b: impl Into<Bytes>) -> Result<Frame<Bytes>, io::Error> {
    Ok(Frame::data(b.into()))
}

fn trailer(state: &str) -> Result<Frame<Bytes>, io::Error> {
    let clean: String = state
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&clean)
        .unwrap_or_else(|_| HeaderValue::from_static("unrepresentable process state"));
    h.insert("process-state", v);
    Ok(Frame::trailers(h))
}

/// Runs the command, streaming output into `tx` and ending with the trailer.
async fn run(app: Arc<App>, spec: Spec, tx: mpsc::Sender<Result<Frame<Bytes>, io::Error>>) {
    if spec.debug {
        let mut argv = vec![spec.path.as_os_str().as_bytes().to_vec()];
        argv.extend(spec.args.iter().map(|a| a.as_bytes().to_vec()));
        let env: Vec<&[u8]> = spec.env.iter().map(|e| e.as_bytes()).collect();
        let pre = format!(
            ":: Running {} with args {} and env {} in dir {}\n\n",
            spec.path.display(),
            gofmt::quote_list(&argv),
            gofmt::quote_list(&env),
            spec.dir.display()
        );
        if tx.send(data(pre)).await.is_err() {
            return;
        }
    }
    let state = match start_and_stream(&app, &spec, &tx).await {
        Ok(Some(state)) => state,
        Ok(None) => return, // client gone; nothing to report
        Err(start_err) => start_err.to_string(),
    };
    let _ = tx.send(trailer(&state)).await;
}

/// Why a command could not be started or waited for. The text is Go's,
/// and is what the `Process-State` trailer reports.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The working directory does not exist.
    #[error("chdir {}: no such file or directory", .0.display())]
    NoDir(PathBuf),
    /// The output pipe could not be made.
    #[error("pipe: {}", gofmt::errno_text(.0))]
    Pipe(io::Error),
    /// The program could not be started.
    #[error("fork/exec {}: {}", path.display(), gofmt::errno_text(source))]
    Spawn { path: PathBuf, source: io::Error },
    /// The child exited before its pid could be read.
    #[error("process vanished at start")]
    Vanished,
    /// Waiting for the child failed.
    #[error("wait: {}", gofmt::errno_text(.0))]
    Wait(io::Error),
}

/// Starts the process and copies its output. Returns the process state
/// text, `None` if the client went away, or `Err` with Go's start-error text.
async fn start_and_stream(
    app: &App,
    spec: &Spec,
    tx: &mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
) -> Result<Option<String>, StartError> {
    if !spec.dir.is_dir() {
        return Err(StartError::NoDir(spec.dir.clone()));
    }
    // One pipe for both stdout and stderr keeps their relative order, as
    // Go's exec package does when both go to the same writer.
    let (reader, writer) = io::pipe().map_err(StartError::Pipe)?;
    let writer2 = writer.try_clone().map_err(StartError::Pipe)?;
    let mut cmd = tokio::process::Command::new(&spec.path);
    cmd.arg0(spec.path.as_os_str())
        .args(&spec.args)
        .env_clear()
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    for e in &spec.env {
        let (k, v) = split_kv(e);
        if !k.is_empty() {
            cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
        }
    }
    let spawned = cmd.spawn();
    // Drop our copies of the pipe's write end so EOF arrives when the
    // process (and anything it started) closes its own.
    drop(cmd);
    let mut child = spawned.map_err(|source| StartError::Spawn {
        path: spec.path.clone(),
        source,
    })?;
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return Err(StartError::Vanished);
    };
    let _guard = app.wd.track(pid);
    let mut out =
        tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(StartError::Pipe)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut gone = false;
    loop {
        tokio::select! {
            r = out.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(data(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        gone = true;
                        break;
                    }
                }
            },
            _ = tx.closed() => { gone = true; break; }
        }
    }
    if gone {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.wait().await;
        return Ok(None);
    }
    let status = child.wait().await.map_err(StartError::Wait)?;
    if status.success() {
        return Ok(Some("ok".into()));
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(Some(gofmt::process_state(
        status.code(),
        status.signal(),
        status.core_dumped(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_expansion_like_go() {
        let wd = Path::new("/w");
        let mut env = vec![OsString::from("PATH=/bin:/usr/bin")];
        set_path_env(
            &mut env,
            &["$PATH".into(), "$WORKDIR/go/bin".into(), "".into()],
            wd,
        );
        assert_eq!(env.last().unwrap(), "PATH=/bin:/usr/bin:/w/go/bin");
        let mut env = vec![OsString::from("PATH=/bin")];
        set_path_env(&mut env, &["$EMPTY".into()], wd);
        assert_eq!(env.last().unwrap(), "PATH=");
        let mut env = vec![OsString::from("PATH=/bin")];
        set_path_env(&mut env, &["$PATH".into()], wd);
        assert_eq!(env.len(), 1, "unchanged PATH is not appended");
        assert_eq!(expand(b"$WORKDIR$PATHx$EMPTY", b"P", b"W"), b"WPx");
    }

    #[test]
    fn env_order_and_overrides() {
        let base = vec![
            ("HOME".into(), "/root".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let env = assemble_env(
            &base,
            "/w/go1.4".into(),
            &["TMPDIR=/client".into(), "FOO=bar".into()],
            Path::new("/w"),
            &[],
        );
        let s: Vec<String> = env
            .iter()
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            s,
            vec![
                "HOME=/root",
                "PATH=/bin",
                "GOROOT_BOOTSTRAP=/w/go1.4",
                "TMPDIR=/client",
                "FOO=bar",
                "TMPDIR=/w/tmp",
                "GOCACHE=/w/gocache",
                "GOPLSCACHE=/w/goplscache",
            ]
        );
    }

    #[test]
    fn command_resolution() {
        let wd = Path::new("/w");
        let sys_path = std::env::var_os("PATH").unwrap_or_default();
        let resolve_cmd = |wd, cmd, sys| resolve_cmd(wd, cmd, sys, &[&sys_path]);
        assert_eq!(
            resolve_cmd(wd, "/bin/../bin/sh", false).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_cmd(wd, "/../bin/./sh", false).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_dir(wd, "/w/go/../src/", Path::new("/bin/sh"), false).unwrap(),
            PathBuf::from("/w/src")
        );
        assert_eq!(
            resolve_cmd(wd, "go/bin/go", false).unwrap(),
            PathBuf::from("/w/go/bin/go")
        );
        assert_eq!(
            resolve_cmd(wd, "go/bin/go", true).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            resolve_cmd(wd, "../x", false).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            resolve_cmd(wd, "", false).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let nf = resolve_cmd(wd, "no-such-command-xyz", false).unwrap_err();
        assert_eq!(nf.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(nf.msg, "command \"no-such-command-xyz\" not found");
        assert!(resolve_cmd(wd, "sh", true).unwrap().is_absolute());
        assert_eq!(
            resolve_dir(wd, "", Path::new("/w/go/bin/go"), false).unwrap(),
            PathBuf::from("/w/go/bin")
        );
        assert_eq!(
            resolve_dir(wd, "", Path::new("/bin/sh"), true).unwrap(),
            PathBuf::from("/w")
        );
        assert_eq!(
            resolve_dir(wd, "src", Path::new("/bin/sh"), true).unwrap(),
            PathBuf::from("/w/src")
        );
    }

    #[test]
    fn bare_names_are_searched_on_the_commands_path() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (sys, pushed) = (d.path().join("usr/bin"), d.path().join("wd/go/bin"));
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&pushed).unwrap();
        // The host's go, its toolchain hidden: a dangling link, skipped.
        symlink("../lib/go-1.19/bin/go", sys.join("go")).unwrap();
        std::fs::write(pushed.join("go"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(pushed.join("go"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let base = vec![("PATH".into(), sys.clone().into_os_string())];
        let wd = d.path().join("wd");
        let env = assemble_env(
            &base,
            "/b".into(),
            &[],
            &wd,
            &["$PATH".into(), "$WORKDIR/go/bin".into()],
        );
        let search = last_value(&env, b"PATH").unwrap();
        assert_eq!(
            resolve_cmd(&wd, "go", false, &[search]).unwrap(),
            pushed.join("go")
        );
        let plain = assemble_env(&base, "/b".into(), &[], &wd, &[]);
        let search = last_value(&plain, b"PATH").unwrap();
        let nf = resolve_cmd(&wd, "go", false, &[search]).unwrap_err();
        assert_eq!(nf.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            resolve_cmd(&wd, "go", false, &[]).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // The command's PATH first, then another (the buildlet's own).
        let both = [OsStr::new("/nonexistent"), pushed.as_os_str()];
        assert_eq!(
            resolve_cmd(&wd, "go", false, &both).unwrap(),
            pushed.join("go")
        );
    }

    #[test]
    fn firewall_flag_reads_last_value() {
        let env = vec![
            OsString::from("GO_DISABLE_OUTBOUND_NETWORK=true"),
            OsString::from("GO_DISABLE_OUTBOUND_NETWORK=false"),
        ];
        assert!(!firewall_requested(&env));
        assert!(firewall_requested(&env[..1]));
    }
}
