//! Command handling: one function per CLI command, each turning a request
//! into coordinator or buildlet calls and reply events. `dispatch` maps the
//! outcome to the CLI's exit code; failures print as Go's client does
//! (`# Error running <cmd>: <error>`), usage mistakes exit 2 without usage text.

mod create;
mod destroy;
mod files;
mod group;
pub mod list;
mod push;
mod run;

use std::sync::Arc;

use gomote_shared::api::{Command, CommandRequest, exit};
use tokio::sync::OnceCell;

use crate::out::Out;
use crate::session::{Session, Sessions};
use crate::state::State;

pub use run::Runs;

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    /// The request.
    pub req: CommandRequest,
    /// Where replies go.
    pub out: Out,
    /// Persistent state.
    pub state: State,
    /// Coordinator sessions.
    pub sessions: Arc<Sessions>,
    /// Serialises group read-modify-writes (the daemon is their single writer).
    pub group_lock: Arc<tokio::sync::Mutex<()>>,
    /// Running commands, for cancellation.
    pub runs: Arc<Runs>,
    sess: OnceCell<Arc<Session>>,
}

/// A command's failure: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// One line.
    pub msg: String,
    /// The exit code.
    pub code: i32,
    /// Print as `Error running <cmd>: ...` (runtime) or as is (usage).
    pub usage: bool,
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure {
            msg,
            code: exit::FAILURE,
            usage: false,
        }
    }
}

/// A usage mistake (exit 2, no usage text).
pub fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: exit::USAGE,
        usage: true,
    }
}

/// What a command returns: its exit code.
pub type CmdResult = Result<i32, Failure>;

impl Ctx {
    /// A context for one request.
    pub fn new(
        req: CommandRequest,
        out: Out,
        state: State,
        sessions: Arc<Sessions>,
        group_lock: Arc<tokio::sync::Mutex<()>>,
        runs: Arc<Runs>,
    ) -> Ctx {
        Ctx {
            req,
            out,
            state,
            sessions,
            group_lock,
            runs,
            sess: OnceCell::new(),
        }
    }

    /// Notes that instances' files may have changed outside a push, so
    /// their manifests are checked again before they are trusted.
    pub fn touched(&self, insts: &[crate::target::Inst]) {
        for i in insts {
            self.sessions.pusher.remotes.touch(&i.key());
        }
    }

    /// The coordinator session for this request (opened on first use).
    pub async fn session(&self) -> Result<Arc<Session>, String> {
        self.sess
            .get_or_try_init(|| self.sessions.get(self.req.server.as_deref()))
            .await
            .cloned()
    }
}

fn name(c: &Command) -> &'static str {
    match c {
        Command::Create { .. } => "create",
        Command::Destroy { .. } => "destroy",
        Command::List { .. } => "list",
        Command::Ls { .. } => "ls",
        Command::Ping { .. } => "ping",
        Command::Push { .. } => "push",
        Command::Put { .. } => "put",
        Command::Puttar { .. } => "puttar",
        Command::Gettar { .. } => "gettar",
        Command::Rm { .. } => "rm",
        Command::Run { .. } => "run",
        Command::Group { .. } => "group",
        Command::Login { .. } => "login",
        Command::CompleteInstances | Command::CompleteBuilders => "complete",
    }
}

/// Runs a command and returns the exit code for the CLI.
pub async fn dispatch(ctx: Ctx) -> i32 {
    let cmd = ctx.req.cmd.clone();
    let res: CmdResult = match cmd.clone() {
        Command::Create {
            args,
            count,
            list,
            new_group,
            setup,
            status,
            json,
        } => create::create(&ctx, args, count, list, new_group, setup, status, json).await,
        Command::Destroy {
            args,
            destroy_group,
        } => destroy::destroy(&ctx, args, destroy_group).await,
        Command::List { json } => list::list(&ctx, json).await,
        Command::Ls {
            args,
            recursive,
            digest,
            skip,
        } => files::ls(&ctx, args, recursive, digest, skip).await,
        Command::Ping { args } => destroy::ping(&ctx, args).await,
        Command::Push {
            args,
            dry_run,
            verbose,
            watch,
            unwatch,
        } => {
            let opts = crate::push::PushOpts {
                dry_run,
                verbose,
                verify: true,
            };
            push::push_cmd(&ctx, args, opts, watch, unwatch).await
        }
        Command::Put {
            args,
            mode,
            stdin_file,
        } => files::put(&ctx, args, mode, stdin_file).await,
        Command::Puttar {
            args,
            dir,
            stdin_file,
        } => files::puttar(&ctx, args, dir, stdin_file).await,
        Command::Gettar { args, dir } => files::gettar(&ctx, args, dir).await,
        Command::Rm { args } => files::rm(&ctx, args).await,
        Command::Run {
            args,
            dir,
            env,
            path,
            system,
            debug,
            firewall,
            builderenv,
            collect,
            until,
        } => {
            run::run(
                &ctx,
                run::RunArgs {
                    args,
                    dir,
                    env,
                    path,
                    system,
                    debug,
                    firewall,
                    builderenv,
                    collect,
                    until,
                },
            )
            .await
        }
        Command::Group { sub, args, json } => group::group(&ctx, &sub, args, json).await,
        Command::Login { token } => login(&ctx, &token).await,
        Command::CompleteInstances => complete_instances(&ctx).await,
        Command::CompleteBuilders => complete_builders(&ctx).await,
    };
    match res {
        Ok(code) => code,
        Err(f) => {
            if f.usage {
                ctx.out.log(format!("{}: {}", name(&cmd), f.msg)).await;
            } else {
                ctx.out
                    .log(format!("Error running {}: {}", name(&cmd), f.msg))
                    .await;
            }
            f.code
        }
    }
}

async fn login(ctx: &Ctx, token: &str) -> CmdResult {
    let Some(server) = ctx.req.server.clone().filter(|s| !s.is_empty()) else {
        return Err(usage(
            "which coordinator? use `gomote -server URL login` (the embedded one needs no login)",
        ));
    };
    ctx.out.log("Authenticating with the gomote service.").await;
    ctx.sessions
        .login(&server, token)
        .await
        .map_err(|e| format!("unable to authenticate into {server}: {e}"))?;
    ctx.out.log(format!("Logged in to {server}.")).await;
    Ok(0)
}

async fn complete_instances(ctx: &Ctx) -> CmdResult {
    for i in crate::resolve::live(ctx).await? {
        ctx.out.stdout(format!("{i}\n")).await;
    }
    Ok(0)
}

async fn complete_builders(ctx: &Ctx) -> CmdResult {
    for b in create::builders(ctx).await? {
        ctx.out.stdout(format!("{b}\n")).await;
    }
    Ok(0)
}
