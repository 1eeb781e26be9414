//! `gomote login` (store a token for a coordinator after checking it) and
//! the instance names shell completion offers.

use gomote_shared::api::{Event, LoginCmd};

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::session::SessionError;

/// `gomote -server URL login`, the token on standard input.
pub async fn login(ctx: &Ctx, c: &LoginCmd) -> CmdResult {
    let Some(server) = ctx.req.server.clone().filter(|s| !s.is_empty()) else {
        return Err(usage(
            "which coordinator? use `gomote -server URL login` (the embedded one needs no login)",
        ));
    };
    ctx.out.log("Authenticating with the gomote service.").await;
    match ctx
        .daemon
        .sessions
        .login(&server, &c.token, c.fingerprint.as_deref())
        .await
    {
        Ok(()) => {}
        Err(e @ SessionError::Untrusted { .. }) => {
            if let SessionError::Untrusted { url, seen } = &e {
                ctx.out
                    .send(Event::UntrustedCertificate {
                        url: url.clone(),
                        fingerprint: seen.clone(),
                    })
                    .await;
            }
            return Err(Failure::new(e.to_string()));
        }
        Err(e) => {
            return Err(Failure::new(format!(
                "unable to authenticate into {server}: {e}"
            )));
        }
    }
    ctx.out.log(format!("Logged in to {server}.")).await;
    Ok(0)
}

/// Live instance names, one per line, for completion.
pub async fn complete_instances(ctx: &Ctx) -> CmdResult {
    for i in resolve::live(ctx).await? {
        ctx.out.stdout(format!("{i}\n")).await;
    }
    Ok(0)
}
