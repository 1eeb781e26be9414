//! `list`: the caller's instances in Go's line format
//! (`<id>[ (<groups>)]\t<builder>\t<host>\texpires in <duration>`), or JSON.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gomote_shared::api::ListCmd;
use gomote_shared::proto::{DeadInstancesRequest, ListInstancesRequest};
use serde::Serialize;

use super::ctx::{CmdResult, Ctx, Failure};
use crate::rpc::rpc_text;
use crate::session::Session;

#[derive(Serialize)]
struct Row {
    id: String,
    builder_type: String,
    host_type: String,
    expires: i64,
    expires_in_secs: f64,
    groups: Vec<String>,
    kept_alive: bool,
    /// The GOROOT pushed to it on every save.
    #[serde(skip_serializing_if = "Option::is_none")]
    watching: Option<String>,
    /// Why the last of those pushes failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    watch_error: Option<String>,
    /// Its machine is gone: since when (RFC 3339) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    dead: Option<Dead>,
}

#[derive(Clone, Serialize)]
struct Dead {
    since: String,
    reason: String,
}

/// The caller's dead instances, from our coordinator's extension (a Go
/// coordinator has none to offer: nothing is marked).
async fn dead_instances(sess: &Session) -> HashMap<String, Dead> {
    match sess
        .ext
        .clone()
        .dead_instances(DeadInstancesRequest {})
        .await
    {
        Ok(r) => r
            .into_inner()
            .instances
            .into_iter()
            .map(|d| {
                let since = UNIX_EPOCH + Duration::from_secs(u64::try_from(d.died).unwrap_or(0));
                (
                    d.gomote_id,
                    Dead {
                        since: gomote_shared::timefmt::rfc3339(since),
                        reason: d.reason,
                    },
                )
            })
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// Go's `time.Duration.String()` for a span in nanoseconds.
pub fn go_duration(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u128, digits: u32| -> String {
        let p = 10u128.pow(digits);
        let (int, rem) = (v / p, v % p);
        if rem == 0 {
            int.to_string()
        } else {
            let s = format!("{int}.{rem:0width$}", width = digits as usize);
            s.trim_end_matches('0').to_string()
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 6));
    }
    let secs_total = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = frac((secs_total % 60) * 1_000_000_000 + sub, 9);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h{m}m"));
    } else if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// `gomote list`.
pub async fn list(ctx: &Ctx, c: &ListCmd) -> CmdResult {
    let (d, json) = (&ctx.daemon, c.json);
    let sess = ctx.session().await?;
    // Both questions at once: one round trip, not two.
    let mut grpc = sess.grpc.clone();
    let (insts, dead) = tokio::join!(
        grpc.list_instances(ListInstancesRequest {}),
        dead_instances(&sess)
    );
    let insts = insts
        .map_err(|s| Failure::new(format!("unable to list instance: {}", rpc_text(&s))))?
        .into_inner()
        .instances;
    let mut groups_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in d.state.group_names() {
        for m in d.state.group(&g).unwrap_or_default() {
            groups_of.entry(m).or_default().push(g.clone());
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let mut rows = Vec::new();
    for i in insts {
        let key = crate::target::remote_key(&sess.name, &i.gomote_id);
        let watching = d.watches.watching(&key);
        let watch_error = d.watches.error(&key);
        let in_group = groups_of.contains_key(&i.gomote_id);
        let died = dead.get(&i.gomote_id).cloned();
        let kept_alive = died.is_none()
            && d.keepalive
                .intends(&i.gomote_id, in_group || watching.is_some());
        let groups = groups_of.remove(&i.gomote_id).unwrap_or_default();
        let left = i128::from(i.expires) * 1_000_000_000 - now;
        if json {
            rows.push(Row {
                id: i.gomote_id,
                builder_type: i.builder_type,
                host_type: i.host_type,
                expires: i.expires,
                expires_in_secs: left as f64 / 1e9,
                groups,
                kept_alive,
                watching: watching.map(|w| w.display().to_string()),
                watch_error,
                dead: died,
            });
        } else {
            // A fifth field, so tools reading the first four by tab are unaffected.
            let mut notes = Vec::new();
            if let Some(x) = &died {
                notes.push(format!("DEAD since {}: {} (destroy it)", x.since, x.reason));
            }
            if kept_alive {
                notes.push("kept alive by gomoted".to_string());
            }
            if let Some(w) = &watching {
                notes.push(format!("pushing {} on save", w.display()));
            }
            if let Some(e) = &watch_error {
                notes.push(format!("last push failed: {e}"));
            }
            let g = if groups.is_empty() {
                String::new()
            } else {
                format!(" ({})", groups.join(", "))
            };
            ctx.out
                .stdout(format!(
                    "{}{g}\t{}\t{}\texpires in {}{}\n",
                    i.gomote_id,
                    i.builder_type,
                    i.host_type,
                    go_duration(left),
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!("\t{}", notes.join("; "))
                    }
                ))
                .await;
        }
    }
    if json {
        ctx.out.json(&rows).await?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_781_580_421_398), "29m41.580421398s");
        assert_eq!(go_duration(-3_200_000_000), "-3.2s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
    }
}
