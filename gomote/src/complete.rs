//! Shell completion through clap_complete's environment-driven engine:
//! `gomote completion <shell>` prints a small script that calls gomote back
//! with `COMPLETE=<shell>` set; [`handle_env`] answers those calls before
//! anything else runs. Commands and flags come from the clap definition;
//! instance names and builder types from [`crate::candidates`].

use std::ffi::OsString;
use std::io::Write;

use clap_complete::env::{CompleteEnv, Shells};

use crate::cli;

/// Answers a completion request from a shell script and exits, if this is
/// one (`COMPLETE` is set); otherwise returns.
pub fn handle_env() {
    if let Some(out) = go_style_flag() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
        std::process::exit(0);
    }
    CompleteEnv::with_factory(cli::command).complete();
}

/// Go users type flags with one dash (`push -w<Tab>`), which clap reads as
/// short options and cannot complete. The word under the cursor is asked
/// about as `--w` and the answers come back as `-watch`, the spelling
/// typed (both spellings parse the same).
fn go_style_flag() -> Option<Vec<u8>> {
    let shell = std::env::var("COMPLETE")
        .ok()
        .filter(|s| !s.is_empty() && s != "0")?;
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let words = args.split_off(args.iter().position(|a| a == "--")? + 1);
    let index = std::env::var("_CLAP_COMPLETE_INDEX")
        .ok()
        .and_then(|i| i.parse().ok());
    let sep = std::env::var("_CLAP_IFS").unwrap_or_else(|_| "\n".into());
    complete_single_dash(&shell, words, index, &sep)
}

/// The completions for `words` when the word at `index` (the last when
/// `None`) is a single-dash flag; `None` when it is not one.
fn complete_single_dash(
    shell: &str,
    mut words: Vec<OsString>,
    index: Option<usize>,
    sep: &str,
) -> Option<Vec<u8>> {
    let at = index.unwrap_or(words.len().checked_sub(1)?);
    let cur = words.get(at)?.to_str()?;
    if !cur.starts_with('-') || cur.starts_with("--") {
        return None;
    }
    words[at] = format!("-{cur}").into();
    // Only the values are written: every shell's script takes a bare value.
    let _ = Shells::builtins().completer(shell)?;
    let mut cmd = cli::command();
    cmd.build();
    let found = clap_complete::engine::complete(&mut cmd, words, at, None).ok()?;
    let out: Vec<String> = found
        .iter()
        .map(|c| {
            let v = c.get_value().to_string_lossy();
            v.strip_prefix('-')
                .filter(|rest| rest.starts_with('-'))
                .unwrap_or(&v)
                .to_string()
        })
        .collect();
    Some(out.join(sep).into_bytes())
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

    fn words(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(Into::into).collect()
    }

    #[test]
    fn single_dash_flags_complete_with_one_dash() {
        let out =
            super::complete_single_dash("bash", words(&["gomote", "push", "-w"]), Some(2), "\n")
                .unwrap();
        let got = String::from_utf8(out).unwrap();
        assert_eq!(got.lines().collect::<Vec<_>>(), ["-watch"], "{got}");
        let out =
            super::complete_single_dash("bash", words(&["gomote", "run", "-"]), Some(2), "\n")
                .unwrap();
        let got = String::from_utf8(out).unwrap();
        assert!(got.lines().any(|l| l == "-until"), "{got}");
        assert!(!got.contains("--"), "{got}");
        // Not a flag, or already two dashes: clap's own completion.
        assert!(
            super::complete_single_dash("bash", words(&["gomote", "pu"]), Some(1), "\n").is_none()
        );
        assert!(
            super::complete_single_dash("bash", words(&["gomote", "push", "--w"]), None, "\n")
                .is_none()
        );
    }
}
