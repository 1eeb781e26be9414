//! GomoteService over gRPC: every RPC's authentication, ownership checks
//! and status codes as Go's server gives them (docs/protocol.md 2.2-2.4), each
//! turned into calls on the instance's buildlet. This is the one place a
//! [`CoordError`] becomes a status code.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use gomote_shared::buildlet_client::{ExecEvent, ExecOpts, ExecOutcome};
use gomote_shared::proto::gomote_service_server::GomoteService;
use gomote_shared::proto::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::accounts::{Role, UserState};
use crate::audit::{DenyReason, Event};
use crate::error::CoordError;
use crate::error::ExecFailure;
use crate::explain::{self, ExecAsked};
use crate::fetch::file_body;
use crate::tokens::{Identity, Lookup};
use crate::transfer::TransferError;
use crate::{Coordinator, builder_names, create};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The tonic service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    c: Arc<Coordinator>,
}

impl Service {
    /// Serves `c`.
    pub fn new(c: Arc<Coordinator>) -> Service {
        Service { c }
    }

    async fn ident<T>(&self, req: &Request<T>) -> Result<Identity, Status> {
        identify(&self.c, req).await
    }
}

/// The RPC a request is for (`protos.GomoteService/ListInstances`), for
/// the audit log: tonic does not tell a service which method it serves.
#[derive(Debug, Clone)]
pub struct RpcPath(pub String);

/// Notes each gRPC request's path in its extensions as an [`RpcPath`].
pub async fn note_rpc(mut req: http::Request<axum::body::Body>) -> http::Request<axum::body::Body> {
    let p = RpcPath(req.uri().path().trim_start_matches('/').to_string());
    req.extensions_mut().insert(p);
    req
}

/// Who is calling: the bearer token's identity (every RPC of every
/// service this coordinator serves starts here). A token of a disabled
/// user is refused like an unknown one; a refusal is audited with its
/// reason, while the caller learns nothing about which check failed.
pub(crate) async fn identify<T>(c: &Coordinator, req: &Request<T>) -> Result<Identity, Status> {
    let deny = |reason: DenyReason| {
        let rpc = req
            .extensions()
            .get::<RpcPath>()
            .map_or_else(String::new, |p| p.0.clone());
        c.audit.record(Event::AuthDenied { rpc, reason });
        Status::unauthenticated("request does not contain valid authentication")
    };
    let v = req
        .metadata()
        .get("authorization")
        .ok_or_else(|| deny(DenyReason::Missing))?;
    let v = v.to_str().map_err(|_| deny(DenyReason::Malformed))?;
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .ok_or_else(|| deny(DenyReason::Malformed))?
        .trim();
    let mut id = match c.tokens.lookup(token).await {
        Ok(Lookup::Valid(id)) => id,
        Ok(Lookup::Expired) => return Err(deny(DenyReason::Expired)),
        Ok(Lookup::Unknown) => return Err(deny(DenyReason::Unknown)),
        Err(e) => return Err(Status::internal(format!("checking token: {e}"))),
    };
    // Tokens of e-mails without an account (robots, tokens older than
    // accounts) act as plain users.
    match c.accounts.get(&id.email).await {
        Ok(Some(u)) if u.state == UserState::Disabled => Err(deny(DenyReason::Disabled)),
        Ok(u) => {
            id.admin = u.is_some_and(|u| u.role == Role::Admin);
            Ok(id)
        }
        Err(e) => Err(Status::internal(format!("checking account: {e}"))),
    }
}

impl From<CoordError> for Status {
    fn from(e: CoordError) -> Status {
        let msg = e.to_string();
        match e {
            CoordError::NoSuchInstance | CoordError::Ended(_) | CoordError::NoDirectory { .. } => {
                Status::not_found(msg)
            }
            CoordError::NotOwner | CoordError::ForeignHost(_) => Status::permission_denied(msg),
            CoordError::Dead { .. }
            | CoordError::Exec(_)
            | CoordError::Fetch { .. }
            | CoordError::FetchStatus { .. } => Status::aborted(msg),
            CoordError::ListDir(_) => Status::unimplemented(msg),
            CoordError::UnknownBuilder { .. }
            | CoordError::WrongHostType { .. }
            | CoordError::NotAUrl(_) => Status::invalid_argument(msg),
            CoordError::Vanished
            | CoordError::Create { .. }
            | CoordError::WorkDir(_)
            | CoordError::BootstrapPath { .. }
            | CoordError::BootstrapLink(_)
            | CoordError::BootstrapRead { .. }
            | CoordError::BootstrapStore(_)
            | CoordError::BootstrapWrite(_)
            | CoordError::OpenObject(_) => Status::internal(msg),
            CoordError::Transfer(t) => match t {
                TransferError::NotOwner(_) => Status::permission_denied(msg),
                TransferError::NoObject(_) => Status::not_found(msg),
                TransferError::Io(_) => Status::internal(msg),
                _ => Status::invalid_argument(msg),
            },
        }
    }
}

#[tonic::async_trait]
impl GomoteService for Service {
    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        self.ident(&req).await?;
        Ok(Response::new(AuthenticateResponse {}))
    }

    async fn add_bootstrap(
        &self,
        req: Request<AddBootstrapRequest>,
    ) -> Result<Response<AddBootstrapResponse>, Status> {
        let id = self.ident(&req).await?;
        let inst = self.c.table.session(&req.get_ref().gomote_id, &id.owner)?;
        inst.check_alive()?;
        let url = self.c.add_bootstrap(&inst).await?;
        Ok(Response::new(AddBootstrapResponse {
            bootstrap_go_url: url,
        }))
    }

    type CreateInstanceStream = Stream_<CreateInstanceResponse>;

    async fn create_instance(
        &self,
        req: Request<CreateInstanceRequest>,
    ) -> Result<Response<Self::CreateInstanceStream>, Status> {
        let id = self.ident(&req).await?;
        let bt = req.into_inner().builder_type;
        if bt.is_empty() {
            return Err(Status::invalid_argument("invalid builder type"));
        }
        // Go's names (gotip-linux-amd64) stand for ours (linux-amd64).
        let builder = builder_names::resolve(&self.c.config, &bt)?.clone();
        let (reply, messages) = create::channel();
        tokio::spawn(self.c.clone().create(id, builder, reply));
        Ok(Response::new(Box::pin(
            messages.map(|r| r.map_err(Status::from)),
        )))
    }

    async fn destroy_instance(
        &self,
        req: Request<DestroyInstanceRequest>,
    ) -> Result<Response<DestroyInstanceResponse>, Status> {
        let id = self.ident(&req).await?;
        let gid = &req.get_ref().gomote_id;
        if gid.is_empty() {
            return Err(Status::invalid_argument("invalid gomote ID"));
        }
        self.c.destroy(gid, &id).await?;
        Ok(Response::new(DestroyInstanceResponse {}))
    }

    type ExecuteCommandStream = Stream_<ExecuteCommandResponse>;

    async fn execute_command(
        &self,
        req: Request<ExecuteCommandRequest>,
    ) -> Result<Response<Self::ExecuteCommandStream>, Status> {
        let id = self.ident(&req).await?;
        let r = req.into_inner();
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        let mut env = self.c.builder_env(&inst.record(), &r.imitate_host_type)?;
        env.extend(r.append_environment);
        // What explaining a failure needs, kept before opts takes the request.
        let (cmd, dir, instance) = (r.command.clone(), r.directory.clone(), inst.id());
        let opts = ExecOpts {
            cmd: r.command,
            args: r.args,
            dir: r.directory,
            env,
            // proto3 cannot tell an empty list from none: empty leaves PATH alone.
            path: (!r.path.is_empty()).then_some(r.path),
            system_level: r.system_level,
            debug: r.debug,
        };
        let guard = inst.activate();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _guard = guard;
            let asked = ExecAsked {
                cmd: &cmd,
                dir: &dir,
                instance: &instance,
            };
            let aborted = |f: ExecFailure| Status::from(CoordError::Exec(f));
            let mut stream = match inst.client.exec(&opts).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(explain::exec_refused(asked, e).into())).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(ExecEvent::Output(b))) => {
                            if tx.send(Ok(ExecuteCommandResponse { output: b.to_vec() })).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(ExecEvent::Done(ExecOutcome::Ok))) => return,
                        Some(Ok(ExecEvent::Done(ExecOutcome::Failed(state)))) => {
                            // A start error (not found, ...) is not the
                            // command's failure: it never ran.
                            let status = match explain::not_started(asked, &state) {
                                Some(e) => e.into(),
                                None => Status::unknown(format!("command execution failed: {state}")),
                            };
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(Err(aborted(ExecFailure::Buildlet(e)))).await;
                            return;
                        }
                        None => {
                            let _ = tx.send(Err(aborted(ExecFailure::NoTrailer))).await;
                            return;
                        }
                    },
                    // The caller went away: dropping the stream makes the
                    // buildlet kill the command.
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn instance_alive(
        &self,
        req: Request<InstanceAliveRequest>,
    ) -> Result<Response<InstanceAliveResponse>, Status> {
        let id = self.ident(&req).await?;
        let gid = &req.get_ref().gomote_id;
        if gid.is_empty() {
            return Err(Status::invalid_argument("invalid gomote ID"));
        }
        let inst = self.c.table.session_as(gid, &id.owner, id.admin)?;
        inst.check_alive()?;
        Ok(Response::new(InstanceAliveResponse {}))
    }

    async fn list_directory(
        &self,
        req: Request<ListDirectoryRequest>,
    ) -> Result<Response<ListDirectoryResponse>, Status> {
        let id = self.ident(&req).await?;
        let entries = self.list_dir(&id, req.into_inner()).await?;
        Ok(Response::new(ListDirectoryResponse { entries }))
    }

    type ListDirectoryStreamingStream = Stream_<ListDirectoryResponse>;

    async fn list_directory_streaming(
        &self,
        req: Request<ListDirectoryRequest>,
    ) -> Result<Response<Self::ListDirectoryStreamingStream>, Status> {
        let id = self.ident(&req).await?;
        let entries = self.list_dir(&id, req.into_inner()).await?;
        // 100 entries a message; nothing at all for an empty listing.
        let chunks: Vec<Result<ListDirectoryResponse, Status>> = entries
            .chunks(100)
            .map(|c| {
                Ok(ListDirectoryResponse {
                    entries: c.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }

    async fn list_instances(
        &self,
        req: Request<ListInstancesRequest>,
    ) -> Result<Response<ListInstancesResponse>, Status> {
        let id = self.ident(&req).await?;
        let instances = self
            .c
            .table
            .list((!id.admin).then_some(id.owner.as_str()))
            .into_iter()
            .map(|r| Instance {
                gomote_id: r.id,
                builder_type: r.builder_type,
                host_type: r.host_type,
                expires: r.expires,
                working_dir: String::new(),
            })
            .collect();
        Ok(Response::new(ListInstancesResponse { instances }))
    }

    async fn list_swarming_builders(
        &self,
        req: Request<ListSwarmingBuildersRequest>,
    ) -> Result<Response<ListSwarmingBuildersResponse>, Status> {
        self.ident(&req).await?;
        Ok(Response::new(ListSwarmingBuildersResponse {
            builders: builder_names::listed(&self.c.config),
        }))
    }

    async fn read_tgz_to_url(
        &self,
        req: Request<ReadTgzToUrlRequest>,
    ) -> Result<Response<ReadTgzToUrlResponse>, Status> {
        let id = self.ident(&req).await?;
        let r = req.into_inner();
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        let _guard = inst.activate();
        // Go's buildlet refuses an empty dir; empty means the whole work dir.
        let dir = if r.directory.is_empty() {
            ".".to_string()
        } else {
            r.directory
        };
        let stream = inst
            .client
            .get_tar(&dir)
            .await
            .map_err(|e| Status::aborted(format!("unable to read tar.gz: {e}")))?;
        let name = self.c.transfers.new_name();
        self.c
            .transfers
            .store_stream(stream, &name, &id.owner)
            .await
            .map_err(|e| Status::aborted(format!("unable to store tar.gz: {e}")))?;
        Ok(Response::new(ReadTgzToUrlResponse {
            url: self.c.transfers.signed_get_url(&name),
        }))
    }

    async fn remove_files(
        &self,
        req: Request<RemoveFilesRequest>,
    ) -> Result<Response<RemoveFilesResponse>, Status> {
        let id = self.ident(&req).await?;
        let r = req.into_inner();
        if r.gomote_id.is_empty() || r.paths.is_empty() {
            return Err(Status::invalid_argument("invalid arguments"));
        }
        // Unlike Go's server, check paths here too, before touching anything.
        for p in &r.paths {
            gomote_shared::relpath::validate(p)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        inst.client
            .remove_all(&r.paths)
            .await
            .map_err(|e| Status::unknown(format!("unable to remove files: {e}")))?;
        Ok(Response::new(RemoveFilesResponse {}))
    }

    async fn sign_ssh_key(
        &self,
        req: Request<SignSshKeyRequest>,
    ) -> Result<Response<SignSshKeyResponse>, Status> {
        self.ident(&req).await?;
        Err(Status::unimplemented(
            "SSH access is not available from this coordinator yet",
        ))
    }

    async fn upload_file(
        &self,
        req: Request<UploadFileRequest>,
    ) -> Result<Response<UploadFileResponse>, Status> {
        let id = self.ident(&req).await?;
        let g = self.c.transfers.grant_upload(&id.owner);
        Ok(Response::new(UploadFileResponse {
            url: g.url,
            fields: g.fields,
            object_name: g.object_name,
        }))
    }

    async fn write_file_from_url(
        &self,
        req: Request<WriteFileFromUrlRequest>,
    ) -> Result<Response<WriteFileFromUrlResponse>, Status> {
        let id = self.ident(&req).await?;
        let r = req.into_inner();
        gomote_shared::relpath::validate(&r.filename)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        let _guard = inst.activate();
        let body = self.c.url_body(&r.url, &id.owner).await?;
        inst.client
            .put(&r.filename, r.mode, body)
            .await
            .map_err(|e| Status::aborted(format!("unable to write file: {e}")))?;
        Ok(Response::new(WriteFileFromUrlResponse {}))
    }

    async fn write_tgz_from_url(
        &self,
        req: Request<WriteTgzFromUrlRequest>,
    ) -> Result<Response<WriteTgzFromUrlResponse>, Status> {
        let id = self.ident(&req).await?;
        let r = req.into_inner();
        if r.gomote_id.is_empty() {
            return Err(Status::invalid_argument("invalid gomote ID"));
        }
        if r.url.is_empty() {
            return Err(Status::invalid_argument("missing URL"));
        }
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        let _guard = inst.activate();
        let failed = |e: &dyn std::fmt::Display| {
            Status::failed_precondition(format!("unable to write tar.gz: {e}"))
        };
        match self
            .c
            .transfers
            .resolve_own_url(&r.url, &id.owner)
            .map_err(CoordError::from)?
        {
            // Our own object: stream it to the buildlet, which then needs
            // no route back to this coordinator.
            Some(path) => inst
                .client
                .put_tar(&r.directory, file_body(&path).await?)
                .await
                .map_err(|e| failed(&e))?,
            None => {
                self.c.check_foreign_url(&r.url)?;
                inst.client
                    .put_tar_from_url(&r.directory, &r.url)
                    .await
                    .map_err(|e| failed(&e))?;
            }
        }
        Ok(Response::new(WriteTgzFromUrlResponse {}))
    }
}

impl Service {
    /// ListDirectory and its streaming form: a directory that does not
    /// exist is NotFound, naming it; every other buildlet failure is
    /// `Unimplemented`, an odd code that Go clients expect.
    async fn list_dir(
        &self,
        id: &Identity,
        r: ListDirectoryRequest,
    ) -> Result<Vec<String>, Status> {
        if r.gomote_id.is_empty() || r.directory.is_empty() {
            return Err(Status::invalid_argument("invalid arguments"));
        }
        let inst = self.c.table.session(&r.gomote_id, &id.owner)?;
        inst.check_alive()?;
        inst.client
            .list_dir(&r.directory, r.recursive, r.digest, &r.skip_files)
            .await
            .map_err(|e| explain::list_failed(&r.directory, &inst.id(), e).into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use tonic::Code;

    use super::*;
    use crate::pool::PoolError;
    use crate::tombstones::{Ending, Tombstone};

    fn status(e: CoordError) -> (Code, String) {
        let s = Status::from(e);
        (s.code(), s.message().to_string())
    }

    #[test]
    fn errors_keep_their_codes_and_messages() {
        let cases = [
            (
                CoordError::NoSuchInstance,
                Code::NotFound,
                "specified gomote instance does not exist",
            ),
            (
                CoordError::NotOwner,
                Code::PermissionDenied,
                "not allowed to modify this gomote session",
            ),
            (
                CoordError::Dead {
                    id: "u-b-0".into(),
                    when: UNIX_EPOCH + Duration::from_secs(1_257_894_000),
                    why: "its buildlet was gone when the coordinator restarted".into(),
                },
                Code::Aborted,
                "instance u-b-0 died at 2009-11-10T23:00:00Z: its buildlet was gone when the coordinator restarted",
            ),
            (
                CoordError::Create {
                    instance: "u-b-0".into(),
                    source: PoolError::Start("boom".into()),
                },
                Code::Internal,
                "gomote creation failed instance=u-b-0: starting buildlet: boom",
            ),
            (
                CoordError::UnknownBuilder {
                    name: "x".into(),
                    suggestion: None,
                    offered: vec!["a".into(), "b".into()],
                },
                Code::InvalidArgument,
                "unknown builder type \"x\"; this coordinator offers: a, b (each also as gotip-<type> or go1.NN-<type>)",
            ),
            (
                CoordError::Ended(Tombstone {
                    id: "u-b-0".into(),
                    owner: "o".into(),
                    when: 1_257_894_000,
                    ending: Ending::Destroyed,
                }),
                Code::NotFound,
                "instance \"u-b-0\" was destroyed at 2009-11-10T23:00:00Z by you",
            ),
            (
                CoordError::NoDirectory {
                    dir: "x".into(),
                    instance: "u-b-0".into(),
                },
                Code::NotFound,
                "directory \"x\" does not exist on instance \"u-b-0\"",
            ),
            (
                CoordError::Exec(ExecFailure::NoCommand {
                    cmd: "go/bin/go".into(),
                    instance: "u-b-0".into(),
                    detail: None,
                }),
                Code::Aborted,
                "unable to execute command: command \"go/bin/go\" not found on instance \"u-b-0\"",
            ),
            (
                CoordError::ListDir(gomote_shared::buildlet_client::Error::Status {
                    op: "list dir",
                    status: http::StatusCode::BAD_REQUEST,
                    body: "bad".into(),
                }),
                Code::Unimplemented,
                "method ListDirectory not implemented: buildlet list dir: HTTP 400 Bad Request: bad",
            ),
            (
                CoordError::WrongHostType {
                    builder: "b2".into(),
                    builder_host: "h2".into(),
                    instance_host: "h1".into(),
                },
                Code::InvalidArgument,
                "builder \"b2\" runs on host type \"h2\", not this instance's \"h1\"",
            ),
            (
                CoordError::NotAUrl("x".into()),
                Code::InvalidArgument,
                "not a URL: \"x\"",
            ),
            (
                CoordError::ForeignHost("example.com".into()),
                Code::PermissionDenied,
                "this coordinator does not fetch from \"example.com\": upload the file instead, or add the host to allowed_url_hosts",
            ),
            (
                CoordError::Vanished,
                Code::Internal,
                "instance vanished while being destroyed",
            ),
            (
                CoordError::Transfer(TransferError::NoObject("o".into())),
                Code::NotFound,
                "no such object \"o\"",
            ),
            (
                CoordError::Transfer(TransferError::NotOwner("o".into())),
                Code::PermissionDenied,
                "object \"o\" belongs to another user",
            ),
            (
                CoordError::Transfer(TransferError::BadSignature),
                Code::InvalidArgument,
                "invalid signature",
            ),
            (
                CoordError::BootstrapStore(TransferError::BadSignature),
                Code::Internal,
                "invalid signature",
            ),
            (
                CoordError::OpenObject(std::io::Error::other("gone")),
                Code::Internal,
                "opening object: gone",
            ),
        ];
        for (e, code, msg) in cases {
            assert_eq!(status(e), (code, msg.to_string()));
        }
    }
}
