//! An instance a command acts on: one owned by a coordinator (reached
//! through GomoteService) or a buildlet reached directly (`TYPE@host:port`,
//! spoken to with the buildlet protocol). Both offer the same operations.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use gomote_shared::buildlet_client::{BuildletClient, ExecEvent, ExecOpts, ExecOutcome};
use gomote_shared::proto::*;
use tonic::Code;

use crate::rpc::rpc_text;
use crate::session::Session;

/// A failed operation on an instance.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct OpError {
    /// The gRPC code, when the coordinator answered.
    pub code: Option<Code>,
    /// What to show (Go's `rpc error: code = ... desc = ...` for RPCs).
    pub text: String,
    /// The coordinator's own message, without Go's framing.
    pub desc: Option<String>,
}

impl OpError {
    fn rpc(s: &tonic::Status) -> OpError {
        OpError {
            code: Some(s.code()),
            text: rpc_text(s),
            desc: Some(s.message().to_string()),
        }
    }

    fn other(e: impl std::fmt::Display) -> OpError {
        OpError {
            code: None,
            text: e.to_string(),
            desc: None,
        }
    }

    /// Whether the instance (or what was named on it) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code == Some(Code::NotFound)
    }

    /// The coordinator's plain message when it answered, else the text.
    pub fn message(&self) -> &str {
        self.desc.as_deref().unwrap_or(&self.text)
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Exit status 0.
    Ok,
    /// It ran and failed: the process state (`exit status 3`).
    Failed(String),
    /// It could not run or the stream broke.
    Infra(String),
    /// The command is not on the instance: the coordinator's one line.
    NoCommand(String),
    /// The directory to run in is not on the instance: its one line.
    NoDirectory(String),
}

impl RunEnd {
    /// A command that could not start. Our coordinator answers Aborted
    /// with one line naming what is missing (docs/protocol.md 2.4); this is
    /// the one place that reads it, so callers match on the variant.
    pub fn start_failure(e: &OpError) -> RunEnd {
        if e.code != Some(Code::Aborted) {
            return RunEnd::Infra(e.to_string());
        }
        let line = e.message();
        let line = line
            .strip_prefix("unable to execute command: ")
            .unwrap_or(line)
            .to_string();
        if line.starts_with("command ") {
            RunEnd::NoCommand(line)
        } else if line.starts_with("directory ") {
            RunEnd::NoDirectory(line)
        } else {
            RunEnd::Infra(line)
        }
    }

    /// The exit code `gomote run` passes through.
    pub fn code(&self) -> i32 {
        match self {
            RunEnd::Ok => 0,
            RunEnd::Failed(s) => s
                .strip_prefix("exit status ")
                .and_then(|n| n.trim().parse().ok())
                .filter(|n: &i32| *n != 0)
                .unwrap_or(1),
            RunEnd::Infra(_) | RunEnd::NoCommand(_) | RunEnd::NoDirectory(_) => 1,
        }
    }
}

/// An instance.
#[derive(Debug, Clone)]
pub enum Inst {
    /// Owned by a coordinator.
    Remote {
        /// The session it lives in.
        sess: Arc<Session>,
        /// Its name.
        id: String,
    },
    /// A buildlet reached directly.
    Direct {
        /// `TYPE@host:port` as given.
        name: String,
        /// Its client.
        client: BuildletClient,
    },
}

/// The key of instance `id` of session `session` (see [`Inst::key`]).
pub fn remote_key(session: &str, id: &str) -> String {
    format!("{session}|{id}")
}

/// Parses `TYPE@host:port` (a buildlet reached directly).
pub fn parse_direct(arg: &str, password: Option<&str>) -> Option<Inst> {
    let (ty, addr) = arg.split_once('@')?;
    let (host, port) = addr.rsplit_once(':')?;
    if ty.is_empty() || host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let client = BuildletClient::new(addr, password.map(str::to_string)).ok()?;
    Some(Inst::Direct {
        name: arg.to_string(),
        client,
    })
}

/// A download: chunks of bytes, or why it broke.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, OpError>> + Send>>;

/// A stream of output chunks ending in a [`RunEnd`].
pub type OutputStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, RunEnd>> + Send>>;

impl Inst {
    /// Its name as shown to the user.
    pub fn name(&self) -> &str {
        match self {
            Inst::Remote { id, .. } => id,
            Inst::Direct { name, .. } => name,
        }
    }

    /// The coordinator session it lives in (`None` for a direct buildlet).
    pub fn server(&self) -> Option<&str> {
        match self {
            Inst::Remote { sess, .. } => Some(&sess.name),
            Inst::Direct { .. } => None,
        }
    }

    /// A key unique across sessions, for per-instance daemon state.
    pub fn key(&self) -> String {
        match self {
            Inst::Remote { sess, id } => remote_key(&sess.name, id),
            Inst::Direct { name, .. } => format!("direct|{name}"),
        }
    }

    /// Whether data reaches it over loopback only (then compressing an
    /// upload costs more time than it saves).
    pub fn is_local(&self) -> bool {
        match self {
            Inst::Remote { sess, .. } => sess.loopback,
            Inst::Direct { client, .. } => client.is_loopback(),
        }
    }

    /// InstanceAlive (or `/status` directly).
    pub async fn ping(&self) -> Result<(), OpError> {
        match self {
            Inst::Remote { sess, id } => sess
                .grpc
                .clone()
                .instance_alive(InstanceAliveRequest {
                    gomote_id: id.clone(),
                })
                .await
                .map(|_| ())
                .map_err(|s| OpError::rpc(&s)),
            Inst::Direct { client, .. } => {
                client.status().await.map(|_| ()).map_err(OpError::other)
            }
        }
    }

    /// Lists a directory (`/ls` lines).
    pub async fn ls(
        &self,
        dir: &str,
        recursive: bool,
        digest: bool,
        skip: &[String],
    ) -> Result<Vec<String>, OpError> {
        match self {
            Inst::Remote { sess, id } => {
                let mut s = sess
                    .grpc
                    .clone()
                    .list_directory_streaming(ListDirectoryRequest {
                        gomote_id: id.clone(),
                        directory: dir.to_string(),
                        recursive,
                        skip_files: skip.to_vec(),
                        digest,
                    })
                    .await
                    .map_err(|s| OpError::rpc(&s))?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(m) = s.next().await {
                    out.extend(m.map_err(|s| OpError::rpc(&s))?.entries);
                }
                Ok(out)
            }
            Inst::Direct { client, .. } => client
                .list_dir(dir, recursive, digest, skip)
                .await
                .map_err(OpError::other),
        }
    }

    /// Removes paths relative to the work directory.
    pub async fn remove(&self, paths: &[String]) -> Result<(), OpError> {
        match self {
            Inst::Remote { sess, id } => sess
                .grpc
                .clone()
                .remove_files(RemoveFilesRequest {
                    gomote_id: id.clone(),
                    paths: paths.to_vec(),
                })
                .await
                .map(|_| ())
                .map_err(|s| OpError::rpc(&s)),
            Inst::Direct { client, .. } => client.remove_all(paths).await.map_err(OpError::other),
        }
    }

    /// Writes a .tar.gz into `dir`. For a remote instance `url` is an
    /// object uploaded to its coordinator (one upload serves a group).
    pub async fn put_tgz(&self, dir: &str, data: &crate::transfer::Payload) -> Result<(), OpError> {
        match self {
            Inst::Remote { sess, id } => {
                let url = data.url_for(sess).await.map_err(OpError::other)?;
                sess.grpc
                    .clone()
                    .write_tgz_from_url(WriteTgzFromUrlRequest {
                        gomote_id: id.clone(),
                        url,
                        directory: dir.to_string(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| OpError::rpc(&s))
            }
            Inst::Direct { client, .. } => client
                .put_tar(dir, data.body().await.map_err(OpError::other)?)
                .await
                .map_err(OpError::other),
        }
    }

    /// Writes one file with a Go file mode.
    pub async fn put_file(
        &self,
        dest: &str,
        mode: u32,
        data: &crate::transfer::Payload,
    ) -> Result<(), OpError> {
        match self {
            Inst::Remote { sess, id } => {
                let url = data.url_for(sess).await.map_err(OpError::other)?;
                sess.grpc
                    .clone()
                    .write_file_from_url(WriteFileFromUrlRequest {
                        gomote_id: id.clone(),
                        url,
                        filename: dest.to_string(),
                        mode,
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| OpError::rpc(&s))
            }
            Inst::Direct { client, .. } => client
                .put(dest, mode, data.body().await.map_err(OpError::other)?)
                .await
                .map_err(OpError::other),
        }
    }

    /// Has the coordinator fetch a URL into `dir` (puttar with a URL).
    pub async fn put_tgz_url(&self, dir: &str, url: &str) -> Result<(), OpError> {
        match self {
            Inst::Remote { sess, id } => sess
                .grpc
                .clone()
                .write_tgz_from_url(WriteTgzFromUrlRequest {
                    gomote_id: id.clone(),
                    url: url.to_string(),
                    directory: dir.to_string(),
                })
                .await
                .map(|_| ())
                .map_err(|s| OpError::rpc(&s)),
            Inst::Direct { client, .. } => client
                .put_tar_from_url(dir, url)
                .await
                .map(|_| ())
                .map_err(OpError::other),
        }
    }

    /// A .tar.gz of `dir`, as a byte stream.
    pub async fn get_tgz(&self, dir: &str) -> Result<ByteStream, OpError> {
        match self {
            Inst::Remote { sess, id } => {
                let url = sess
                    .grpc
                    .clone()
                    .read_tgz_to_url(ReadTgzToUrlRequest {
                        gomote_id: id.clone(),
                        directory: dir.to_string(),
                    })
                    .await
                    .map_err(|s| OpError::rpc(&s))?
                    .into_inner()
                    .url;
                let resp = sess.http.get(&url).send().await.map_err(OpError::other)?;
                if !resp.status().is_success() {
                    return Err(OpError::other(format!(
                        "downloading tarball: HTTP {}",
                        resp.status()
                    )));
                }
                Ok(Box::pin(
                    resp.bytes_stream().map(|r| r.map_err(OpError::other)),
                ))
            }
            Inst::Direct { client, .. } => {
                let dir = if dir.is_empty() { "." } else { dir };
                let s = client.get_tar(dir).await.map_err(OpError::other)?;
                Ok(Box::pin(s.map(|r| r.map_err(OpError::other))))
            }
        }
    }

    /// Makes sure `go1.4` holds the builder's bootstrap toolchain.
    pub async fn add_bootstrap(&self) -> Result<String, OpError> {
        match self {
            Inst::Remote { sess, id } => sess
                .grpc
                .clone()
                .add_bootstrap(AddBootstrapRequest {
                    gomote_id: id.clone(),
                })
                .await
                .map(|r| r.into_inner().bootstrap_go_url)
                .map_err(|s| OpError::rpc(&s)),
            Inst::Direct { .. } => Ok(String::new()),
        }
    }

    /// Runs a command; the stream yields output and ends with its outcome.
    pub async fn exec(&self, opts: ExecOpts, imitate: &str) -> Result<OutputStream, OpError> {
        match self {
            Inst::Remote { sess, id } => {
                let req = ExecuteCommandRequest {
                    gomote_id: id.clone(),
                    command: opts.cmd,
                    system_level: opts.system_level,
                    debug: opts.debug,
                    append_environment: opts.env,
                    path: match opts.path {
                        None => vec![],
                        Some(p) if p.is_empty() => vec!["$EMPTY".into()],
                        Some(p) => p,
                    },
                    directory: opts.dir,
                    args: opts.args,
                    imitate_host_type: imitate.to_string(),
                };
                let s = sess
                    .grpc
                    .clone()
                    .execute_command(req)
                    .await
                    .map_err(|s| OpError::rpc(&s))?
                    .into_inner();
                let st = futures_util::stream::unfold((s, false), |(mut s, done)| async move {
                    if done {
                        return None;
                    }
                    match s.next().await {
                        Some(Ok(m)) => Some((Ok(Bytes::from(m.output)), (s, false))),
                        Some(Err(st)) => {
                            let end = match st.code() {
                                Code::Unknown => RunEnd::Failed(
                                    st.message()
                                        .strip_prefix("command execution failed: ")
                                        .unwrap_or(st.message())
                                        .to_string(),
                                ),
                                // The coordinator says in one line what
                                // could not start (a missing command).
                                Code::Aborted => RunEnd::start_failure(&OpError::rpc(&st)),
                                _ => RunEnd::Infra(rpc_text(&st)),
                            };
                            Some((Err(end), (s, true)))
                        }
                        None => Some((Err(RunEnd::Ok), (s, true))),
                    }
                });
                Ok(Box::pin(st))
            }
            Inst::Direct { client, .. } => {
                let s = client.exec(&opts).await.map_err(OpError::other)?;
                let st = futures_util::stream::unfold((s, false), |(mut s, done)| async move {
                    if done {
                        return None;
                    }
                    match s.next().await {
                        Some(Ok(ExecEvent::Output(b))) => Some((Ok(b), (s, false))),
                        Some(Ok(ExecEvent::Done(ExecOutcome::Ok))) => {
                            Some((Err(RunEnd::Ok), (s, true)))
                        }
                        Some(Ok(ExecEvent::Done(ExecOutcome::Failed(f)))) => {
                            Some((Err(RunEnd::Failed(f)), (s, true)))
                        }
                        Some(Err(e)) => Some((Err(RunEnd::Infra(e.to_string())), (s, true))),
                        None => Some((
                            Err(RunEnd::Infra("missing Process-State trailer".into())),
                            (s, true),
                        )),
                    }
                });
                Ok(Box::pin(st))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(RunEnd::Ok.code(), 0);
        assert_eq!(RunEnd::Failed("exit status 3".into()).code(), 3);
        assert_eq!(RunEnd::Failed("signal: killed".into()).code(), 1);
        assert_eq!(RunEnd::Infra("x".into()).code(), 1);
    }

    #[test]
    fn direct_targets() {
        assert!(parse_direct("linux-amd64@127.0.0.1:5936", None).is_some());
        assert!(parse_direct("alice-linux-amd64-0", None).is_none());
        assert!(parse_direct("x@host:notaport", None).is_none());
    }
}
