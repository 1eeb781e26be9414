//! Dynamic completion candidates, asked from a running daemon when the
//! shell presses Tab: live instance names ([`instances`]) and builder types
//! ([`builders`]). A daemon is never started for this, and the question has
//! a short timeout, so a Tab press cannot hang; any failure means no
//! candidates.

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::CompletionCandidate;
use gomote_shared::api::{self, Command as ApiCmd, GroupSel};

use crate::client;
use crate::procenv::Env;

/// How long completion waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Live instance names.
pub fn instances(current: &OsStr) -> Vec<CompletionCandidate> {
    candidates(ApiCmd::CompleteInstances, current)
}

/// Builder types.
pub fn builders(current: &OsStr) -> Vec<CompletionCandidate> {
    candidates(ApiCmd::CompleteBuilders, current)
}

fn candidates(cmd: ApiCmd, current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    fetch(cmd)
        .into_iter()
        .filter(|n| n.starts_with(prefix.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

fn fetch(cmd: ApiCmd) -> Vec<String> {
    let Ok(env) = Env::from_process() else {
        return Vec::new();
    };
    let req = completion_request(&env, cmd);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let socket = gomote_shared::paths::socket();
    rt.block_on(async {
        match tokio::time::timeout(TIMEOUT, client::query_lines(&socket, &req)).await {
            Ok(Ok(names)) => names,
            _ => Vec::new(),
        }
    })
}

/// A request that names daemon-side logic for shell completion.
fn completion_request(env: &Env, cmd: ApiCmd) -> api::CommandRequest {
    api::CommandRequest {
        group: GroupSel {
            flag: None,
            env: env.gomote_group.clone(),
        },
        server: None,
        cwd: env.cwd.clone(),
        tmpdir: Some(env.tmpdir.clone()),
        goroot: None,
        buildlet_password: env.buildlet_password.clone(),
        tty: false,
        cmd,
    }
}
