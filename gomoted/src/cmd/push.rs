//! `gomote push`: a push to instances or a group, `-watch` to subscribe
//! them to GOROOT, `-unwatch`, and the barrier a plain push becomes for a
//! subscriber (it waits for the watcher instead of walking anything).

use crate::cmd::{CmdResult, Ctx, Failure};
use crate::push::{self, PushOpts};
use crate::resolve;
use crate::target::Inst;

/// `gomote push [-watch|-unwatch] [instance]`.
pub async fn push_cmd(
    ctx: &Ctx,
    args: Vec<String>,
    opts: PushOpts,
    watch: bool,
    unwatch: bool,
) -> CmdResult {
    let (targets, _) = resolve::one_or_group(ctx, &args).await?;
    let watches = &ctx.sessions.watches;
    if unwatch {
        let keys: Vec<String> = targets.iter().map(Inst::key).collect();
        let roots = watches.unsubscribe(&keys);
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
    let root = push::canonical_root(&push::goroot(ctx.req.goroot.as_deref())?)?;
    if watch {
        if opts.dry_run {
            return Err(crate::cmd::usage("-watch and -dry-run do not go together"));
        }
        announce(ctx, &root, &targets).await;
        let o = push::push(&ctx.sessions.pusher, &ctx.out, &root, &targets, None, opts)
            .await
            .map_err(Failure::from)?;
        let how = watches.subscribe(&root, &targets, o.ignores);
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
        if !opts.dry_run && watches.watching(&t.key()).as_deref() == Some(root.as_path()) {
            waits.push(t);
        } else {
            plain.push(t.clone());
        }
    }
    let r0 = root.as_path();
    let barriers = futures_util::future::join_all(waits.iter().map(|t| async move {
        let start = std::time::Instant::now();
        let r = watches.barrier(r0, &t.key()).await;
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
            Some(Err(e)) => return Err(Failure::from(e)),
            // Unsubscribed meanwhile: push like any other.
            None => plain.push((*t).clone()),
        }
    }
    if plain.is_empty() {
        return Ok(0);
    }
    push_to(ctx, &plain, opts).await
}

async fn announce(ctx: &Ctx, root: &std::path::Path, targets: &[Inst]) {
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

/// Pushes GOROOT to every target, listing each remote tree to check it.
pub async fn push_to(ctx: &Ctx, targets: &[Inst], opts: PushOpts) -> CmdResult {
    let root = push::canonical_root(&push::goroot(ctx.req.goroot.as_deref())?)?;
    announce(ctx, &root, targets).await;
    push::push(
        &ctx.sessions.pusher,
        &ctx.out,
        &root,
        targets,
        None,
        PushOpts {
            verify: true,
            ..opts
        },
    )
    .await
    .map_err(Failure::from)?;
    Ok(0)
}
