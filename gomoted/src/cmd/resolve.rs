//! Turning positional arguments into instances: Go's rules for choosing
//! the active group and for telling an instance name from a command or a
//! path (docs/cli.md, "Groups" and "Instances and arguments"), applied by
//! the daemon with its warm coordinator session.

use std::collections::BTreeSet;

use gomote_shared::api::GroupSel;

use super::ctx::{Ctx, Failure, usage};
use crate::rpc::rpc_text;
use crate::session::SessionError;
use crate::state::StateError;
use crate::target::{Inst, OpError, parse_direct};

/// Why arguments could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No coordinator session.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Listing instances failed.
    #[error("{0}")]
    List(String),
    /// `-group` names a group that does not exist.
    #[error("loading group {0:?}: group does not exist (create it with `gomote group create {0}`)")]
    NoGroup(String),
    /// Checking whether an argument is an instance failed.
    #[error("checking instance {arg:?}: {source}")]
    Check {
        /// The argument.
        arg: String,
        /// Why.
        source: OpError,
    },
    /// Pruning a group.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<ResolveError> for Failure {
    fn from(e: ResolveError) -> Failure {
        Failure::new(e.to_string())
    }
}

/// The active group and its live members.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Live members, sorted.
    pub members: Vec<String>,
}

/// Names of the caller's live instances on the session.
pub async fn live(ctx: &Ctx) -> Result<BTreeSet<String>, ResolveError> {
    let sess = ctx.session().await?;
    let r = sess
        .grpc
        .clone()
        .list_instances(gomote_shared::proto::ListInstancesRequest {})
        .await
        .map_err(|s| ResolveError::List(rpc_text(&s)))?;
    Ok(r.into_inner()
        .instances
        .into_iter()
        .map(|i| i.gomote_id)
        .collect())
}

/// Loads a group, keeping only live members (and forgetting dead ones:
/// names are reused, so a stale member must not come back).
pub async fn load(ctx: &Ctx, name: &str) -> Result<Option<Group>, ResolveError> {
    let state = &ctx.daemon.state;
    let Some(stored) = state.group(name) else {
        return Ok(None);
    };
    let members: Vec<String> = if stored.iter().any(|m| parse_direct(m, None).is_none()) {
        let live = live(ctx).await?;
        let keep: Vec<String> = stored
            .iter()
            .filter(|m| live.contains(*m) || parse_direct(m, None).is_some())
            .cloned()
            .collect();
        if keep.len() != stored.len() {
            let _guard = ctx.daemon.groups.lock().await;
            if let Some(now) = state.group(name) {
                let pruned: Vec<String> = now
                    .into_iter()
                    .filter(|m| keep.contains(m) || !stored.contains(m))
                    .collect();
                state.put_group(name, &pruned)?;
            }
        }
        keep
    } else {
        stored
    };
    Ok(Some(Group {
        name: name.to_string(),
        members,
    }))
}

/// The active group per Go's rules: an explicit `-group` that does not load
/// is an error; `$GOMOTE_GROUP` that does not load means no group.
pub async fn active(ctx: &Ctx) -> Result<Option<Group>, ResolveError> {
    let GroupSel { flag, env } = &ctx.req.group;
    let name = match flag {
        Some(f) => f.clone(),
        None => env.clone().unwrap_or_default(),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let from_env = env.as_deref() == Some(name.as_str());
    match load(ctx, &name).await? {
        Some(g) => {
            // Commands resolve the group more than once; say it once.
            if from_env && ctx.first_mention_of_group() {
                ctx.out
                    .log(format!("Using group {name:?} from GOMOTE_GROUP"))
                    .await;
            }
            Ok(Some(g))
        }
        None if from_env => Ok(None),
        None => Err(ResolveError::NoGroup(name)),
    }
}

/// Is `arg` one of the caller's instances? `TYPE@host:port` always is.
pub async fn instance(ctx: &Ctx, arg: &str) -> Result<Option<Inst>, ResolveError> {
    if let Some(d) = parse_direct(arg, ctx.req.buildlet_password.as_deref()) {
        return Ok(Some(d));
    }
    let sess = ctx.session().await?;
    let server = sess.name.clone();
    let inst = Inst::Remote {
        sess,
        id: arg.to_string(),
    };
    match inst.ping().await {
        Ok(()) => {
            ctx.daemon.keepalive.touch(&server, arg);
            Ok(Some(inst))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(ResolveError::Check {
            arg: arg.to_string(),
            source,
        }),
    }
}

/// What the coordinator says of a name it never had (Go's wording).
const NOT_EXIST: &str = "specified gomote instance does not exist";

/// The message for an instance that does not exist, naming the live ones.
pub async fn unknown_instance(ctx: &Ctx, arg: &str) -> String {
    // A coordinator that remembers how the instance ended says so (when,
    // and whether by you, expiry or the loss of its machine).
    let told = match ctx.session().await {
        Ok(sess) => Inst::Remote {
            sess,
            id: arg.to_string(),
        }
        .ping()
        .await
        .err()
        .filter(|e| e.is_not_found() && !e.message().contains(NOT_EXIST))
        .map(|e| e.message().to_string()),
        Err(_) => None,
    };
    let base = match (told, ctx.daemon.keepalive.gone(arg)) {
        (Some(t), _) => t,
        // Only this daemon noticed (a coordinator without tombstones).
        (None, Some(g)) => format!(
            "instance {arg:?}: rpc error: code = NotFound desc = {NOT_EXIST} (gone since {}: {})",
            gomote_shared::timefmt::rfc3339(g.when),
            g.why
        ),
        (None, None) => format!("instance {arg:?}: rpc error: code = NotFound desc = {NOT_EXIST}"),
    };
    match live(ctx).await {
        Ok(l) if l.is_empty() => {
            format!("{base}; you have no live instances (create one with `gomote create`)")
        }
        Ok(l) => format!(
            "{base}; your live instances: {}",
            l.into_iter().collect::<Vec<_>>().join(", ")
        ),
        Err(_) => base,
    }
}

/// The group's members as instances.
pub async fn members(ctx: &Ctx, g: &Group) -> Result<Vec<Inst>, ResolveError> {
    let mut v = Vec::with_capacity(g.members.len());
    for m in &g.members {
        match parse_direct(m, ctx.req.buildlet_password.as_deref()) {
            Some(d) => v.push(d),
            None => {
                let sess = ctx.session().await?;
                ctx.daemon.keepalive.touch(&sess.name, m);
                v.push(Inst::Remote {
                    sess,
                    id: m.clone(),
                })
            }
        }
    }
    Ok(v)
}

/// An instance by name without checking it exists (the RPC will say).
pub async fn named(ctx: &Ctx, arg: &str) -> Result<Inst, ResolveError> {
    if let Some(d) = parse_direct(arg, ctx.req.buildlet_password.as_deref()) {
        return Ok(d);
    }
    let sess = ctx.session().await?;
    ctx.daemon.keepalive.touch(&sess.name, arg);
    Ok(Inst::Remote {
        sess,
        id: arg.to_string(),
    })
}

/// Targets for commands where exactly one positional means that instance
/// and anything else means the group (push, destroy, gettar, ping); with
/// neither, a usage failure.
pub async fn one_or_group(
    ctx: &Ctx,
    args: &[String],
) -> Result<(Vec<Inst>, Option<Group>), Failure> {
    let g = active(ctx).await?;
    if args.len() == 1 {
        return Ok((vec![named(ctx, &args[0]).await?], g));
    }
    match g {
        Some(g) => Ok((members(ctx, &g).await?, Some(g))),
        None => Err(usage(
            "name an instance, or use a group (-group or GOMOTE_GROUP)",
        )),
    }
}
