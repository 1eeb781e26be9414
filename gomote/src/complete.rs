//! Shell completion through clap_complete's environment-driven engine:
//! `gomote completion <shell>` prints a small script that calls gomote back
//! with `COMPLETE=<shell>` set; [`handle_env`] answers those calls before
//! anything else runs. Commands and flags come from the clap definition;
//! instance names ([`instances`]) and builder types ([`builders`]) are asked
//! from a running daemon (never started for this, and given a short
//! timeout, so a Tab press cannot hang).

use std::ffi::OsStr;
use std::io::Write;
use std::time::Duration;

use clap_complete::CompletionCandidate;
use clap_complete::env::{CompleteEnv, Shells};
use gomote_shared::api::Command as ApiCmd;

use crate::{client, request};

/// How long completion waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Answers a completion request from a shell script and exits, if this is
/// one (`COMPLETE` is set); otherwise returns.
pub fn handle_env() {
    CompleteEnv::with_factory(crate::cli::command).complete();
}

/// Writes the registration script for `shell`.
pub fn script(shell: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let shells = Shells::builtins();
    let completer = shells
        .completer(shell)
        .ok_or_else(|| anyhow::anyhow!("unknown shell {shell:?}"))?;
    // The script calls this very binary back, wherever it is installed.
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gomote".to_string());
    completer.write_registration("COMPLETE", "gomote", "gomote", &exe, out)?;
    Ok(())
}

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
    let Ok(env) = request::Env::from_process() else {
        return Vec::new();
    };
    let req = request::completion_request(&env, cmd);
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

#[cfg(test)]
mod tests {
    #[test]
    fn scripts_for_every_offered_shell() {
        for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
            let mut out = Vec::new();
            super::script(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("COMPLETE"), "{shell}: {text}");
        }
        assert!(super::script("tcsh", &mut Vec::new()).is_err());
    }
}
