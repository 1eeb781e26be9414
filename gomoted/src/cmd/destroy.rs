//! `destroy` and `ping`: the named instances, or with none named every
//! member of the active group, one after another.

use gomote_shared::api::{DestroyCmd, PingCmd};
use gomote_shared::proto::DestroyInstanceRequest;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::rpc::rpc_text;
use crate::target::Inst;

/// `gomote destroy [instance]`.
pub async fn destroy(ctx: &Ctx, c: &DestroyCmd) -> CmdResult {
    let DestroyCmd {
        args,
        destroy_group,
    } = c;
    let d = &ctx.daemon;
    if args.is_empty() && resolve::active(ctx).await?.is_none() {
        let live = resolve::live(ctx).await.unwrap_or_default();
        let hint = if live.is_empty() {
            "you have no live instances".to_string()
        } else {
            format!(
                "possible instances: {}",
                live.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        return Err(usage(format!(
            "name an instance, or use a group (-group or GOMOTE_GROUP); {hint}"
        )));
    }
    // Names mean exactly those instances (Go's client destroyed the whole
    // group when given two names); none means the group.
    let (targets, group) = if args.len() > 1 {
        let mut v = Vec::with_capacity(args.len());
        for a in args {
            v.push(resolve::named(ctx, a).await?);
        }
        (v, None)
    } else {
        resolve::one_or_group(ctx, args).await?
    };
    let mut destroyed = Vec::new();
    for t in &targets {
        ctx.out.log(format!("Destroying {}", t.name())).await;
        d.watches.unsubscribe(&[t.key()]);
        d.pusher.remotes.forget(&t.key());
        match t {
            Inst::Remote { sess, id } => {
                sess.grpc
                    .clone()
                    .destroy_instance(DestroyInstanceRequest {
                        gomote_id: id.clone(),
                    })
                    .await
                    .map_err(|s| {
                        Failure::new(format!("unable to destroy instance: {}", rpc_text(&s)))
                    })?;
                d.keepalive.destroyed(id);
                destroyed.push(id.clone());
            }
            Inst::Direct { client, name } => {
                client
                    .halt()
                    .await
                    .map_err(|e| Failure::new(format!("unable to halt {name}: {e}")))?;
                destroyed.push(name.clone());
            }
        }
    }
    // Names are reused: a destroyed instance must leave every group now.
    {
        let _guard = d.groups.lock().await;
        for g in d.state.group_names() {
            if let Some(m) = d.state.group(&g)
                && m.iter().any(|x| destroyed.contains(x))
            {
                let keep: Vec<String> = m.into_iter().filter(|x| !destroyed.contains(x)).collect();
                d.state.put_group(&g, &keep)?;
            }
        }
    }
    if *destroy_group && let Some(g) = group {
        if args.len() == 1 {
            ctx.out
                .log(format!(
                    "Not deleting group {:?}: only one instance was named",
                    g.name
                ))
                .await;
        } else {
            d.state
                .delete_group(&g.name)
                .map_err(|e| Failure::new(format!("deleting group {:?}: {e}", g.name)))?;
            ctx.out.log(format!("Deleted group {:?}", g.name)).await;
        }
    }
    Ok(0)
}

/// `gomote ping [instance]`: exits 1 if any instance did not answer.
pub async fn ping(ctx: &Ctx, c: &PingCmd) -> CmdResult {
    let (targets, _) = resolve::one_or_group(ctx, &c.args).await?;
    let mut failed = 0;
    for t in &targets {
        match t.ping().await {
            Ok(()) => ctx.out.log(format!("{}: alive", t.name())).await,
            Err(e) => {
                failed += 1;
                let msg = if e.is_not_found() {
                    resolve::unknown_instance(ctx, t.name()).await
                } else {
                    e.to_string()
                };
                ctx.out
                    .log(format!("{}: unable to ping instance: {msg}", t.name()))
                    .await;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
