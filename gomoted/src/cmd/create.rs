//! `create`: list builder types, or create `-count` instances concurrently,
//! printing each name as it completes, recording them in the target group
//! (the active one, `-new-group`, or an auto-created `$GOMOTE_GROUP`), and
//! with `-setup` pushing GOROOT and running make.bash on each.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gomote_shared::api::CreateCmd;
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::{
    CreateInstanceRequest, DestroyInstanceRequest, ListSwarmingBuildersRequest,
};
use tokio_util::sync::CancellationToken;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::rpc::rpc_text;
use crate::state::StateError;
use crate::target::Inst;

/// The builder types the session offers, sorted.
pub async fn builders(ctx: &Ctx) -> Result<Vec<String>, Failure> {
    let sess = ctx.session().await?;
    let mut req = tonic::Request::new(ListSwarmingBuildersRequest {});
    req.set_timeout(Duration::from_secs(5));
    let r = sess
        .grpc
        .clone()
        .list_swarming_builders(req)
        .await
        .map_err(|s| {
            Failure::new(format!(
                "unable to retrieve swarming builders: {}",
                rpc_text(&s)
            ))
        })?;
    Ok(r.into_inner().builders)
}

/// Builder types, one per line, for completion.
pub async fn complete_builders(ctx: &Ctx) -> CmdResult {
    for b in builders(ctx).await? {
        ctx.out.stdout(format!("{b}\n")).await;
    }
    Ok(0)
}

fn go_secs(d: Duration) -> String {
    super::list::go_duration(i128::from(d.as_secs()) * 1_000_000_000)
}

/// `gomote create`.
pub async fn create(ctx: &Ctx, c: &CreateCmd) -> CmdResult {
    let CreateCmd {
        args,
        count,
        list,
        new_group,
        setup,
        status,
        json,
    } = c;
    let (count, status) = (*count, *status);
    if *list || args.is_empty() {
        let b = builders(ctx).await?;
        if *json {
            ctx.out.json(&b).await?;
        } else {
            let mut s = String::new();
            for x in &b {
                s.push_str(x);
                s.push('\n');
            }
            ctx.out.stdout(s).await;
        }
        return Ok(0);
    }
    let [builder] = args.as_slice() else {
        return Err(usage(format!(
            "create takes one builder type, got {}",
            args.len()
        )));
    };
    if count == 0 {
        return Err(usage("-count must be at least 1"));
    }
    let offered = builders(ctx).await?;
    if !offered.contains(builder) {
        return Err(Failure::new(format!(
            "unknown builder type {builder:?}; this coordinator offers: {} (builder types for other systems need a coordinator with such machines: see `gomote -server URL login`)",
            offered.join(", ")
        )));
    }
    // The target group, decided before anything is created.
    let mut group = resolve::active(ctx).await?.map(|g| g.name);
    let state = &ctx.daemon.state;
    if let Some(ng) = new_group {
        let _l = ctx.daemon.groups.lock().await;
        if state.group(ng).is_some() {
            return Err(Failure::new(format!("group {ng:?} already exists")));
        }
        state.put_group(ng, &[])?;
        group = Some(ng.clone());
    } else if group.is_none()
        && ctx.req.group.flag.is_none()
        && let Some(env) = ctx.req.group.env.clone()
    {
        let _l = ctx.daemon.groups.lock().await;
        if state.group(&env).is_none() {
            state.put_group(&env, &[])?;
            ctx.out
                .log(format!("Created group {env:?} from GOMOTE_GROUP"))
                .await;
        }
        group = Some(env);
    }
    let sess = ctx.session().await?;
    let cancel = CancellationToken::new();
    let mut workers = futures_util::stream::FuturesUnordered::new();
    for i in 1..=count {
        let sess = sess.clone();
        let cancel = cancel.clone();
        let builder = builder.clone();
        let out = ctx.out.clone();
        workers.push(async move {
            let start = Instant::now();
            let mut s = sess
                .grpc
                .clone()
                .create_instance(CreateInstanceRequest {
                    builder_type: builder.clone(),
                    experiment_option: vec![],
                })
                .await
                .map_err(|s| format!("failed to create buildlet: {}", rpc_text(&s)))?
                .into_inner();
            let mut name = None;
            loop {
                let m = tokio::select! {
                    m = s.next() => m,
                    () = cancel.cancelled() => return Err("cancelled because another creation failed".to_string()),
                };
                let Some(m) = m else { break };
                let m = m.map_err(|s| format!("failed to create buildlet ({i}): {}", rpc_text(&s)))?;
                if m.status == CreateStatus::Complete as i32 {
                    name = m.instance.map(|i| i.gomote_id);
                } else if status {
                    out.log(format!(
                        "still creating {builder} ({i}) after {}; {} requests ahead of you",
                        go_secs(start.elapsed()),
                        m.waiters_ahead
                    ))
                    .await;
                }
            }
            name.ok_or_else(|| format!("creation ({i}) ended without an instance"))
        });
    }
    let mut made: Vec<String> = Vec::new();
    let mut first_err: Option<String> = None;
    while let Some(r) = workers.next().await {
        match r {
            Ok(name) => {
                ctx.out.stdout(format!("{name}\n")).await;
                // Recorded at once, so a later failure never orphans it.
                if let Some(g) = &group {
                    let _l = ctx.daemon.groups.lock().await;
                    prune_from_groups(ctx, &name, g)?;
                    let mut m = state.group(g).unwrap_or_default();
                    m.push(name.clone());
                    state.put_group(g, &m)?;
                }
                made.push(name);
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    cancel.cancel();
                }
            }
        }
    }
    if let Some(e) = first_err {
        if group.is_none() {
            // Nothing would remember these: destroy rather than orphan them.
            for m in &made {
                ctx.out
                    .log(format!("Destroying {m}: another creation failed"))
                    .await;
                let _ = sess
                    .grpc
                    .clone()
                    .destroy_instance(DestroyInstanceRequest {
                        gomote_id: m.clone(),
                    })
                    .await;
            }
        } else if !made.is_empty() {
            ctx.out
                .log(format!(
                    "Kept {} created instance(s) in group {:?}",
                    made.len(),
                    group.clone().unwrap_or_default()
                ))
                .await;
        }
        return Err(Failure::new(e));
    }
    if *setup {
        let insts: Vec<Inst> = made
            .iter()
            .map(|m| Inst::Remote {
                sess: sess.clone(),
                id: m.clone(),
            })
            .collect();
        return super::run::setup(ctx, &insts).await;
    }
    Ok(0)
}

/// Removes a (reused) instance name from every group but `keep`.
fn prune_from_groups(ctx: &Ctx, name: &str, keep: &str) -> Result<(), StateError> {
    let state = &ctx.daemon.state;
    for g in state.group_names() {
        if g == keep {
            continue;
        }
        if let Some(m) = state.group(&g)
            && m.iter().any(|x| x == name)
        {
            let rest: Vec<String> = m.into_iter().filter(|x| x != name).collect();
            state.put_group(&g, &rest)?;
        }
    }
    Ok(())
}
