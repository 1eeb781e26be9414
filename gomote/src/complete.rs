//! Shell completion through clap_complete's environment-driven engine:
//! `gomote completion <shell>` prints a small script that calls gomote back
//! with `COMPLETE=<shell>` set; [`handle_env`] answers those calls before
//! anything else runs. Commands and flags come from the clap definition;
//! instance names and builder types from [`crate::candidates`].

use std::io::Write;

use clap_complete::env::{CompleteEnv, Shells};

use crate::cli;

/// Answers a completion request from a shell script and exits, if this is
/// one (`COMPLETE` is set); otherwise returns.
pub fn handle_env() {
    CompleteEnv::with_factory(cli::command).complete();
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
