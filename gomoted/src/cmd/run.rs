//! `run`: execute a command on one instance or every group member at once.
//! The daemon writes each instance's output to `<dir>/<instance>.stdout` as
//! it arrives (so nothing is lost if the terminal dies), streams it to the
//! CLI for a single instance, repeats with `-until` until the output
//! matches, and with `-collect` fetches the work directory afterwards.
//! A single instance's exit status passes through; on a group, one failure
//! does not cancel the others and the CLI exits 1 with a line per failure.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures_util::StreamExt;
use gomote_shared::api::{Event, RunCmd, exit};
use gomote_shared::buildlet_client::ExecOpts;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::state::RunRecord;
use crate::target::{Inst, RunEnd};

/// One instance's job within a run.
struct Job<'a> {
    inst: &'a Inst,
    opts: ExecOpts,
    imitate: &'a str,
    file: PathBuf,
    echo: bool,
    until: Option<&'a regex::bytes::Regex>,
    cancel: CancellationToken,
}

/// What a job ended with.
enum JobEnd {
    Done(RunEnd),
    Cancelled,
}

async fn run_once(ctx: &Ctx, j: &Job<'_>) -> (JobEnd, Vec<u8>) {
    let mut f = match tokio::fs::File::create(&j.file).await {
        Ok(f) => f,
        Err(e) => {
            return (
                JobEnd::Done(RunEnd::Infra(format!("creating {}: {e}", j.file.display()))),
                vec![],
            );
        }
    };
    let mut buf = Vec::new();
    let mut s = match j.inst.exec(j.opts.clone(), j.imitate).await {
        Ok(s) => s,
        Err(e) => return (JobEnd::Done(RunEnd::start_failure(&e)), buf),
    };
    loop {
        let item = tokio::select! {
            i = s.next() => i,
            () = j.cancel.cancelled() => return (JobEnd::Cancelled, buf),
        };
        match item {
            Some(Ok(chunk)) => {
                // Written before anything else: the file is the record.
                let _ = f.write_all(&chunk).await;
                let _ = f.flush().await;
                if j.echo {
                    ctx.out.output(&chunk).await;
                }
                if j.until.is_some() {
                    buf.extend_from_slice(&chunk);
                }
            }
            Some(Err(end)) => return (JobEnd::Done(end), buf),
            None => {
                return (
                    JobEnd::Done(RunEnd::Infra("output ended without a result".into())),
                    buf,
                );
            }
        }
    }
}

async fn run_job(ctx: &Ctx, j: Job<'_>, collect_to: Option<&Path>) -> JobEnd {
    let name = j.inst.name().to_string();
    // A command running for hours keeps its instance alive throughout.
    let _intent = j
        .inst
        .server()
        .map(|server| ctx.daemon.keepalive.begin(server, &name));
    ctx.out
        .log(format!(
            "Streaming results from {name:?} to {:?}...",
            j.file.display().to_string()
        ))
        .await;
    let mut iterations = 0u64;
    let end = loop {
        iterations += 1;
        let (end, out) = run_once(ctx, &j).await;
        let Some(re) = j.until else { break end };
        match end {
            JobEnd::Cancelled => break end,
            JobEnd::Done(ref e) => {
                if re.is_match(&out) {
                    ctx.out
                        .log(format!(
                            "Match found on {name:?} after {iterations} iteration(s)."
                        ))
                        .await;
                    break end;
                }
                if !matches!(e, RunEnd::Ok) {
                    ctx.out
                        .log(format!("No match on {name:?}, and the command failed; stopping after {iterations} iteration(s)."))
                        .await;
                    break end;
                }
                ctx.out
                    .log(format!("No match found on {name:?}, running again..."))
                    .await;
            }
        }
    };
    if let (Some(dir), JobEnd::Done(_)) = (collect_to, &end) {
        let file = format!("{name}.tar.gz");
        ctx.out
            .log(format!(
                "Downloading work dir tarball for {name:?} to {file:?}..."
            ))
            .await;
        if let Err(e) = super::files::download(j.inst, ".", &dir.join(&file)).await {
            ctx.out
                .log(format!("failed to retrieve instance tarball: {e}"))
                .await;
        }
    }
    let line = match end {
        JobEnd::Cancelled => format!(
            "Interrupted {:?} on {name:?}; its output so far is in {:?}.",
            j.opts.cmd,
            j.file.display().to_string()
        ),
        JobEnd::Done(_) => format!(
            "Wrote results from {name:?} to {:?}.",
            j.file.display().to_string()
        ),
    };
    ctx.out.log(line).await;
    end
}

fn output_dir(ctx: &Ctx, collect: bool) -> Result<PathBuf, Failure> {
    if collect {
        return Ok(ctx.req.cwd.clone());
    }
    let base = ctx.req.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    for _ in 0..100 {
        let p = base.join(format!("gomote{}", rand::random::<u32>()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Failure::new(format!(
                    "creating an output directory in {}: {e}",
                    base.display()
                )));
            }
        }
    }
    Err(Failure::new("cannot create an output directory"))
}

/// `gomote run`.
pub async fn run(ctx: &Ctx, a: &RunCmd) -> CmdResult {
    let until = match &a.until {
        Some(re) => Some(regex::bytes::Regex::new(re).map_err(|e| {
            // The regex crate's message spans lines; one line here.
            let why = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            usage(format!("bad regexp {re:?} for 'until': {why}"))
        })?),
        None => None,
    };
    if let Some(bad) = a.env.iter().find(|e| !e.is_empty() && !e.contains('=')) {
        return Err(usage(format!(
            "-e argument {bad:?} doesn't contain an '=' sign"
        )));
    }
    let Some(first) = a.args.first() else {
        return Err(usage("name an instance (or use a group) and a command"));
    };
    let (targets, cmdline) = match resolve::instance(ctx, first).await? {
        Some(i) => (vec![i], a.args[1..].to_vec()),
        None => match resolve::active(ctx).await? {
            Some(g) => (resolve::members(ctx, &g).await?, a.args.clone()),
            None => return Err(Failure::new(resolve::unknown_instance(ctx, first).await)),
        },
    };
    let Some(cmd) = cmdline.first().cloned() else {
        return Err(usage("missing command"));
    };
    if targets.is_empty() {
        return Ok(0);
    }
    let mut env: Vec<String> = a.env.iter().filter(|e| !e.is_empty()).cloned().collect();
    env.push(format!("GO_DISABLE_OUTBOUND_NETWORK={}", a.firewall));
    let opts = ExecOpts {
        cmd: cmd.clone(),
        args: cmdline[1..].to_vec(),
        dir: a.dir.clone(),
        env,
        path: match a.path.as_deref() {
            None | Some("") => None,
            Some("EMPTY") => Some(vec![]),
            Some(p) => Some(p.split(',').map(str::to_string).collect()),
        },
        system_level: a.system || cmd.starts_with('/'),
        debug: a.debug,
    };
    let outdir = output_dir(ctx, a.collect)?;
    let id = format!("{:016x}", rand::random::<u64>());
    let cancel = ctx.daemon.runs.add(&id);
    ctx.out.send(Event::RunStarted { id: id.clone() }).await;
    let many = targets.len() > 1;
    let files: Vec<PathBuf> = targets
        .iter()
        .map(|t| outdir.join(format!("{}.stdout", t.name())))
        .collect();
    let mut record = RunRecord {
        command: cmdline.clone(),
        files: targets
            .iter()
            .zip(&files)
            .map(|(t, f)| (t.name().to_string(), f.display().to_string()))
            .collect(),
        started: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        state: "running".into(),
    };
    ctx.daemon.state.put_run(&id, &record);
    let collect_to = a.collect.then(|| outdir.clone());
    ctx.daemon.touched(&targets);
    let ends = futures_util::future::join_all(targets.iter().zip(&files).map(|(t, f)| {
        let job = Job {
            inst: t,
            opts: opts.clone(),
            imitate: &a.builderenv,
            file: f.clone(),
            echo: !many,
            until: until.as_ref(),
            cancel: cancel.clone(),
        };
        let ctx = &ctx;
        let collect_to = collect_to.clone();
        async move {
            if many {
                ctx.out
                    .log(format!("Running command on {:?}...", t.name()))
                    .await;
            }
            run_job(ctx, job, collect_to.as_deref()).await
        }
    }))
    .await;
    ctx.daemon.runs.remove(&id);
    // The command may have changed go/: check it again now, while the user
    // reads the output, so the next save pushes at full speed.
    ctx.daemon.touched(&targets);
    for t in &targets {
        ctx.daemon.watches.rescan(&t.key());
    }
    let cancelled = ends.iter().any(|e| matches!(e, JobEnd::Cancelled));
    record.state = if cancelled { "cancelled" } else { "done" }.into();
    ctx.daemon.state.put_run(&id, &record);
    if cancelled {
        // Each job has said where its partial output is.
        return Ok(exit::INTERRUPTED);
    }
    if !many {
        return match &ends[0] {
            JobEnd::Done(RunEnd::NoCommand(e)) => {
                Err(Failure::new(format!("{e}{}", flag_hint(&cmd))))
            }
            JobEnd::Done(RunEnd::NoDirectory(e)) => Err(Failure::new(e.clone())),
            JobEnd::Done(RunEnd::Infra(e)) => {
                Err(Failure::new(format!("unable to execute {cmd}: {e}")))
            }
            JobEnd::Done(e) => Ok(e.code()),
            JobEnd::Cancelled => Ok(exit::INTERRUPTED),
        };
    }
    let mut failed = 0;
    for (t, e) in targets.iter().zip(&ends) {
        match e {
            JobEnd::Done(RunEnd::NoCommand(s)) => {
                failed += 1;
                ctx.out.log(format!("{s}{}", flag_hint(&cmd))).await;
            }
            JobEnd::Done(RunEnd::Failed(s) | RunEnd::Infra(s) | RunEnd::NoDirectory(s)) => {
                failed += 1;
                ctx.out
                    .log(format!("Command {cmd:?} failed on {:?}: {s}", t.name()))
                    .await;
            }
            _ => {}
        }
    }
    Ok(if failed > 0 { exit::FAILURE } else { 0 })
}

/// A "command" that looks like a flag was most likely meant for gomote.
fn flag_hint(cmd: &str) -> &'static str {
    if cmd.starts_with('-') {
        " (gomote's flags go before the instance name: gomote run -flag NAME cmd)"
    } else {
        ""
    }
}

/// `create -setup`: push GOROOT to each instance and run make.bash there,
/// output in `<tmp>/gomoteNNN/<instance>.stdout`.
pub async fn setup(ctx: &Ctx, insts: &[Inst]) -> CmdResult {
    let root = crate::push::goroot::resolve(ctx.req.goroot.as_deref()).await?;
    super::push::push_to(ctx, &root, insts, crate::push::PushOpts::default()).await?;
    let outdir = output_dir(ctx, false)?;
    let detailed = insts.len() == 1;
    let cancel = ctx.daemon.runs.add("setup");
    let ends = futures_util::future::join_all(insts.iter().map(|t| {
        let cmd = "go/src/make.bash".to_string();
        let job = Job {
            inst: t,
            opts: ExecOpts::new(cmd, Vec::<String>::new()),
            imitate: "",
            file: outdir.join(format!("{}.stdout", t.name())),
            echo: detailed,
            until: None,
            cancel: cancel.clone(),
        };
        async move {
            if !detailed {
                ctx.out
                    .log(format!("Running \"go/src/make.bash\" on {:?}...", t.name()))
                    .await;
            }
            run_job(ctx, job, None).await
        }
    }))
    .await;
    ctx.daemon.runs.remove("setup");
    for (t, e) in insts.iter().zip(ends) {
        if let JobEnd::Done(
            RunEnd::Failed(s) | RunEnd::Infra(s) | RunEnd::NoCommand(s) | RunEnd::NoDirectory(s),
        ) = e
        {
            return Err(Failure::new(format!(
                "make.bash failed on {}: {s}",
                t.name()
            )));
        }
    }
    Ok(0)
}
