//! `create`: list builder types, or create `-count` instances concurrently,
//! printing each name as it completes, recording them in the target group
//! (the active one, `-new-group`, or an auto-created `$GOMOTE_GROUP`), and
//! with `-setup` pushing GOROOT and running make.bash on each.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use std::sync::Arc;

use gomote_shared::api::{CreateCmd, Event, exit};
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::{
    BuilderCapacityRequest, CreateInstanceRequest, DestroyInstanceRequest,
    ListSwarmingBuildersRequest,
};
use tokio_util::sync::CancellationToken;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::rpc::rpc_text;
use crate::session::Session;
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
    if let Some(g) = new_group {
        super::group::valid(g)?;
    }
    let sess = ctx.session().await?;
    // Checked before anything changes (a -new-group is made only after).
    check_room(ctx, &sess, builder, count).await?;
    let group = target_group(ctx, new_group.as_deref()).await?;
    // Ctrl-C in the CLI cancels this like a run: queued requests are
    // withdrawn and nothing appears afterwards.
    let run_id = format!("create-{:08x}", rand::random::<u32>());
    let interrupt = ctx.daemon.runs.add(&run_id);
    ctx.out.send(Event::RunStarted { id: run_id.clone() }).await;
    let outcome = make(
        ctx,
        &sess,
        builder,
        count,
        status,
        group.as_deref(),
        &interrupt,
    )
    .await;
    ctx.daemon.runs.remove(&run_id);
    let Outcome {
        made,
        failure,
        withdrawn,
    } = outcome?;
    let interrupted = interrupt.is_cancelled();
    if failure.is_some() || interrupted {
        let why = if interrupted {
            "create was interrupted"
        } else {
            "another creation failed"
        };
        leave_nothing_behind(ctx, &sess, group.as_deref(), &made, why).await;
        if interrupted {
            ctx.out
                .log(format!(
                    "Interrupted: withdrew {withdrawn} request(s) still waiting for {builder}"
                ))
                .await;
            return Ok(exit::INTERRUPTED);
        }
    }
    if let Some(e) = failure {
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

/// After a failure or Ctrl-C: instances no group remembers are destroyed
/// rather than orphaned; those in a group stay there, and the user is told.
async fn leave_nothing_behind(
    ctx: &Ctx,
    sess: &Session,
    group: Option<&str>,
    made: &[String],
    why: &str,
) {
    match group {
        // Nothing would remember these: destroy rather than orphan them.
        None => {
            for m in made {
                ctx.out.log(format!("Destroying {m}: {why}")).await;
                if let Err(e) = sess
                    .grpc
                    .clone()
                    .destroy_instance(DestroyInstanceRequest {
                        gomote_id: m.clone(),
                    })
                    .await
                {
                    ctx.out
                        .log(format!("unable to destroy {m}: {}", rpc_text(&e)))
                        .await;
                }
            }
        }
        Some(g) if !made.is_empty() => {
            ctx.out
                .log(format!(
                    "Kept {} created instance(s) in group {g:?}",
                    made.len()
                ))
                .await;
        }
        Some(_) => {}
    }
}

/// Checks that `builder` exists and that `count` instances of it can
/// ever run at once, and says how many will wait. A coordinator without
/// our extension (Go's) gets the plain builder-list check.
async fn check_room(ctx: &Ctx, sess: &Session, builder: &str, count: u32) -> Result<(), Failure> {
    let req = BuilderCapacityRequest {
        builder_type: builder.to_string(),
    };
    let c = match sess.ext.clone().builder_capacity(req).await {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == tonic::Code::Unimplemented => {
            let offered = builders(ctx).await?;
            if !offered.iter().any(|b| b == builder) {
                return Err(Failure::new(format!(
                    "unknown builder type {builder:?}; this coordinator offers: {} (builder types for other systems need a coordinator with such machines: see `gomote -server URL login`)",
                    offered.join(", ")
                )));
            }
            return Ok(());
        }
        // Unknown names come back with a "did you mean".
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            return Err(Failure::new(e.message().to_string()));
        }
        Err(e) => {
            return Err(Failure::new(format!(
                "failed to create buildlet: {}",
                rpc_text(&e)
            )));
        }
    };
    let want = i64::from(count);
    if want > c.capacity {
        return Err(Failure::new(format!(
            "{builder} runs on host type {} with room for {} instance(s) at once on this coordinator, so -count={count} could never finish; ask for at most {}",
            c.host_type, c.capacity, c.capacity
        )));
    }
    let free = (c.capacity - c.running).max(0);
    if want > free || c.queued > 0 {
        let wait = (want - (free - c.queued).max(0)).clamp(0, want);
        ctx.out
            .log(format!(
                "{wait} of {count} will wait: {} of {} {} slot(s) are taken ({} by you), {} request(s) already waiting ({} yours)",
                c.running,
                c.capacity,
                c.host_type,
                c.running_yours,
                c.queued,
                c.queued_yours
            ))
            .await;
    }
    Ok(())
}

/// The group new instances join, decided before anything is created: the
/// active one, `-new-group` (made now), or `$GOMOTE_GROUP` (made if needed).
async fn target_group(ctx: &Ctx, new_group: Option<&str>) -> Result<Option<String>, Failure> {
    let mut group = resolve::active(ctx).await?.map(|g| g.name);
    let state = &ctx.daemon.state;
    if let Some(ng) = new_group {
        let _l = ctx.daemon.groups.lock().await;
        if state.group(ng).is_some() {
            return Err(Failure::new(format!("group {ng:?} already exists")));
        }
        state.put_group(ng, &[])?;
        group = Some(ng.to_string());
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
    Ok(group)
}

/// How one creation ended.
enum WorkerEnd {
    Made(String),
    /// Given up while still waiting or starting (the stream was dropped,
    /// which withdraws the request).
    Withdrawn,
    Failed(String),
}

/// What a `create -count=N` produced.
struct Outcome {
    made: Vec<String>,
    failure: Option<String>,
    withdrawn: usize,
}

/// Runs `count` creations at once, printing each name as it completes and
/// recording it in `group` at once (so a later failure never orphans it).
/// The first failure, or `interrupt`, stops the others.
async fn make(
    ctx: &Ctx,
    sess: &Arc<Session>,
    builder: &str,
    count: u32,
    status: bool,
    group: Option<&str>,
    interrupt: &CancellationToken,
) -> Result<Outcome, Failure> {
    let stop = interrupt.child_token();
    let mut workers: futures_util::stream::FuturesUnordered<_> = (1..=count)
        .map(|i| create_one(ctx, sess, builder, i, status, &stop))
        .collect();
    let mut out = Outcome {
        made: Vec::new(),
        failure: None,
        withdrawn: 0,
    };
    while let Some(end) = workers.next().await {
        match end {
            WorkerEnd::Made(name) => {
                ctx.out.stdout(format!("{name}\n")).await;
                if let Some(g) = group {
                    add_to_group(ctx, &name, g).await?;
                }
                out.made.push(name);
            }
            WorkerEnd::Withdrawn => out.withdrawn += 1,
            WorkerEnd::Failed(e) => {
                if out.failure.is_none() {
                    out.failure = Some(e);
                    stop.cancel();
                }
            }
        }
    }
    Ok(out)
}

/// One CreateInstance stream, until its instance is ready or `stop`.
async fn create_one(
    ctx: &Ctx,
    sess: &Session,
    builder: &str,
    i: u32,
    status: bool,
    stop: &CancellationToken,
) -> WorkerEnd {
    let start = Instant::now();
    let mut grpc = sess.grpc.clone();
    let call = grpc.create_instance(CreateInstanceRequest {
        builder_type: builder.to_string(),
        experiment_option: vec![],
    });
    let mut s = tokio::select! {
        r = call => match r {
            Ok(r) => r.into_inner(),
            Err(e) => return WorkerEnd::Failed(format!("failed to create buildlet: {}", rpc_text(&e))),
        },
        () = stop.cancelled() => return WorkerEnd::Withdrawn,
    };
    let mut name = None;
    loop {
        let m = tokio::select! {
            m = s.next() => m,
            () = stop.cancelled() => return WorkerEnd::Withdrawn,
        };
        let Some(m) = m else { break };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                return WorkerEnd::Failed(format!(
                    "failed to create buildlet ({i}): {}",
                    rpc_text(&e)
                ));
            }
        };
        if m.status == CreateStatus::Complete as i32 {
            name = m.instance.map(|i| i.gomote_id);
        } else if status {
            ctx.out
                .log(format!(
                    "still creating {builder} ({i}) after {}; {} requests ahead of you",
                    go_secs(start.elapsed()),
                    m.waiters_ahead
                ))
                .await;
        }
    }
    match name {
        Some(n) => WorkerEnd::Made(n),
        None => WorkerEnd::Failed(format!("creation ({i}) ended without an instance")),
    }
}

async fn add_to_group(ctx: &Ctx, name: &str, g: &str) -> Result<(), StateError> {
    let state = &ctx.daemon.state;
    let _l = ctx.daemon.groups.lock().await;
    prune_from_groups(ctx, name, g)?;
    let mut m = state.group(g).unwrap_or_default();
    m.push(name.to_string());
    state.put_group(g, &m)
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
