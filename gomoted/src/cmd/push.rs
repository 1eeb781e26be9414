//! `gomote push`: a push to instances or a group, `-watch` to subscribe
//! them to GOROOT, `-unwatch`, and the barrier a plain push becomes for a
//! subscriber (it waits for the watcher instead of walking anything).

use std::path::Path;

use gomote_shared::api::PushCmd;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::push::{self, PushOpts, Trigger, goroot};
use crate::target::Inst;

/// `gomote push [-watch|-unwatch] [instance]`.
pub async fn push_cmd(ctx: &Ctx, c: &PushCmd) -> CmdResult {
    let (targets, _) = resolve::one_or_group(ctx, &c.args).await?;
    let d = &ctx.daemon;
    let opts = PushOpts {
        dry_run: c.dry_run,
        verbose: c.verbose,
    };
    if c.unwatch {
        let keys: Vec<String> = targets.iter().map(Inst::key).collect();
        let roots = d.watches.unsubscribe(&keys);
        if roots.is_empty() {
            ctx.out.log("Not watching: nothing to stop").await;
        }
        for r in roots {
            ctx.out
                .log(format!("Stopped pushing {} on save", r.display()))
                .await;
        }
        return Ok(0);
    }
    let root = goroot::resolve(ctx.req.goroot.as_deref()).await?;
    if c.watch {
        if opts.dry_run {
            return Err(usage("-watch and -dry-run do not go together"));
        }
        announce(ctx, &root, &targets).await;
        let o = push::push(&d.pusher, &ctx.out, &root, &targets, Trigger::Command, opts).await?;
        let how = d.watches.subscribe(&root, &targets, o.ignores);
        ctx.out
            .log(format!(
                "Watching {} ({how}): each saved file goes to {} as it changes; `gomote push` waits for it, `gomote push -unwatch` stops",
                root.display(),
                targets.iter().map(Inst::name).collect::<Vec<_>>().join(", ")
            ))
            .await;
        return Ok(0);
    }
    // Subscribers catch up through their watcher; the rest get a push.
    let mut plain = Vec::new();
    let mut waits = Vec::new();
    for t in &targets {
        if !opts.dry_run && d.watches.watching(&t.key()).as_deref() == Some(root.as_path()) {
            waits.push(t);
        } else {
            plain.push(t.clone());
        }
    }
    let r0 = root.as_path();
    let barriers = futures_util::future::join_all(waits.iter().map(|t| async move {
        let start = std::time::Instant::now();
        let r = d.watches.barrier(r0, &t.key()).await;
        (t, r, start.elapsed())
    }))
    .await;
    for (t, r, took) in barriers {
        match r {
            Some(Ok(())) => {
                ctx.out
                    .log(format!(
                        "{}: in sync with {} (watching; caught up in {:.1}ms)",
                        t.name(),
                        root.display(),
                        took.as_secs_f64() * 1000.0
                    ))
                    .await
            }
            Some(Err(e)) => return Err(Failure::new(e.to_string())),
            // Unsubscribed meanwhile: push like any other.
            None => plain.push((*t).clone()),
        }
    }
    if plain.is_empty() {
        return Ok(0);
    }
    push_to(ctx, &root, &plain, opts).await
}

async fn announce(ctx: &Ctx, root: &Path, targets: &[Inst]) {
    for t in targets {
        ctx.out
            .log(format!(
                "Pushing GOROOT {:?} to {:?}...",
                root.display().to_string(),
                t.name()
            ))
            .await;
    }
}

/// Pushes GOROOT (`root`, resolved by the caller) to every target,
/// listing each remote tree to check it.
pub async fn push_to(ctx: &Ctx, root: &Path, targets: &[Inst], opts: PushOpts) -> CmdResult {
    announce(ctx, root, targets).await;
    push::push(
        &ctx.daemon.pusher,
        &ctx.out,
        root,
        targets,
        Trigger::Command,
        opts,
    )
    .await?;
    Ok(0)
}
