//! Command handling: one module per CLI command, each turning a request
//! into coordinator or buildlet calls and reply events. `dispatch` maps the
//! outcome to the CLI's exit code; failures print as Go's client does
//! (`# Error running <cmd>: <error>`), usage mistakes exit 2 without usage
//! text. To add a command: a variant and its struct in
//! `gomote_shared::api`, a handler module here, and one arm below.

mod create;
mod ctx;
mod destroy;
mod files;
mod group;
mod list;
mod login;
mod push;
mod resolve;
mod run;

use gomote_shared::api::Command;

use ctx::CmdResult;
pub use ctx::Ctx;

/// Runs a command and returns the exit code for the CLI.
pub async fn dispatch(ctx: Ctx) -> i32 {
    let cmd = ctx.req.cmd.clone();
    let res: CmdResult = match &cmd {
        Command::Create(c) => create::create(&ctx, c).await,
        Command::Destroy(c) => destroy::destroy(&ctx, c).await,
        Command::List(c) => list::list(&ctx, c).await,
        Command::Ls(c) => files::ls(&ctx, c).await,
        Command::Ping(c) => destroy::ping(&ctx, c).await,
        Command::Push(c) => push::push_cmd(&ctx, c).await,
        Command::Put(c) => files::put(&ctx, c).await,
        Command::Puttar(c) => files::puttar(&ctx, c).await,
        Command::Gettar(c) => files::gettar(&ctx, c).await,
        Command::Rm(c) => files::rm(&ctx, c).await,
        Command::Run(c) => run::run(&ctx, c).await,
        Command::Group(c) => group::group(&ctx, c).await,
        Command::Login(c) => login::login(&ctx, c).await,
        Command::CompleteInstances => login::complete_instances(&ctx).await,
        Command::CompleteBuilders => create::complete_builders(&ctx).await,
    };
    match res {
        Ok(code) => code,
        Err(f) => {
            if f.usage {
                ctx.out.log(format!("{}: {}", cmd.name(), f.msg)).await;
            } else {
                ctx.out
                    .log(format!("Error running {}: {}", cmd.name(), f.msg))
                    .await;
            }
            f.code
        }
    }
}
