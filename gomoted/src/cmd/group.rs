//! `group create|destroy|add|remove|list`. Groups live in the daemon's
//! database and are changed under one lock, so two CLIs adding members at
//! once never lose one (the Go client's per-file scheme could).

use gomote_shared::api::GroupCmd;
use serde::Serialize;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;

/// Group names become keys and, in Go's client, file names: no paths.
pub fn valid(name: &str) -> Result<(), Failure> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return Err(Failure::new(format!("invalid group name {name:?}")));
    }
    Ok(())
}

/// Dispatches a `group` sub-command.
pub async fn group(ctx: &Ctx, c: &GroupCmd) -> CmdResult {
    let GroupCmd { sub, args, json } = c;
    let (d, sub) = (&ctx.daemon, sub.as_str());
    match sub {
        "create" => {
            let [name] = args.as_slice() else {
                return Err(usage("group create takes exactly one group name"));
            };
            valid(name)?;
            let _g = d.groups.lock().await;
            if d.state.group(name).is_some() {
                return Err(Failure::new(format!("group {name:?} already exists")));
            }
            d.state.put_group(name, &[])?;
            Ok(0)
        }
        "destroy" => {
            let [name] = args.as_slice() else {
                return Err(usage("group destroy takes exactly one group name"));
            };
            let _g = d.groups.lock().await;
            if !d.state.delete_group(name)? {
                return Err(Failure::new(format!("group {name:?} does not exist")));
            }
            if ctx.req.group.env.as_deref() == Some(name.as_str()) {
                ctx.out.log("You may wish to now clear GOMOTE_GROUP.").await;
            }
            Ok(0)
        }
        "add" | "remove" => {
            if args.is_empty() {
                return Err(usage(format!(
                    "group {sub} needs at least one instance name"
                )));
            }
            let Some(g) = resolve::active(ctx).await? else {
                return Err(usage("No active group found. Use -group or GOMOTE_GROUP."));
            };
            if sub == "add" {
                for a in args {
                    if resolve::instance(ctx, a).await?.is_none() {
                        return Err(Failure::new(resolve::unknown_instance(ctx, a).await));
                    }
                }
            }
            let _l = d.groups.lock().await;
            let mut members = d.state.group(&g.name).unwrap_or_default();
            if sub == "add" {
                members.extend(args.iter().cloned());
            } else {
                members.retain(|m| !args.contains(m));
            }
            d.state.put_group(&g.name, &members)?;
            Ok(0)
        }
        "list" => {
            if !args.is_empty() {
                return Err(usage("group list takes no arguments"));
            }
            let names = d.state.group_names();
            let mut groups = Vec::new();
            for n in &names {
                if let Some(g) = resolve::load(ctx, n).await? {
                    groups.push(g);
                }
            }
            if *json {
                #[derive(Serialize)]
                struct G<'a> {
                    name: &'a str,
                    instances: &'a [String],
                }
                let v: Vec<G<'_>> = groups
                    .iter()
                    .map(|g| G {
                        name: &g.name,
                        instances: &g.members,
                    })
                    .collect();
                ctx.out.json(&v).await?;
                return Ok(0);
            }
            let mut s = String::from("Name\tInstances\t\n");
            if groups.is_empty() {
                s.push_str("(none)\n");
            }
            for g in &groups {
                if g.members.is_empty() {
                    s.push_str(&format!("{}\t(none)\t\n", g.name));
                }
                for (i, m) in g.members.iter().enumerate() {
                    let first = if i == 0 { g.name.as_str() } else { "" };
                    s.push_str(&format!("{first}\t{m}\t\n"));
                }
            }
            ctx.out.stdout(s).await;
            Ok(0)
        }
        other => Err(usage(format!(
            "unknown sub-command {other:?} (create, destroy, add, remove, list)"
        ))),
    }
}
