//! The outbound firewall Go's Linux buildlets install when a command's
//! environment sets `GO_DISABLE_OUTBOUND_NETWORK=true`: allow 10/8, reject
//! new outbound TCP to ports 443, 80 and 22, once for the process's life.
//! It rewrites the host's iptables, so it runs only when the buildlet was
//! started with `--allow-firewall` (on a developer's own machine it must not).

use std::sync::Once;

static ONCE: Once = Once::new();

/// Installs the rules the first time it is called.
pub fn enable_once() {
    ONCE.call_once(|| {
        let rules: [&[&str]; 4] = [
            &[
                "-I",
                "OUTPUT",
                "1",
                "-m",
                "state",
                "--state",
                "NEW",
                "-d",
                "10.0.0.0/8",
                "-j",
                "ACCEPT",
            ],
            &[
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-m",
                "state",
                "--state",
                "NEW",
                "--dport",
                "443",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
            &[
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-m",
                "state",
                "--state",
                "NEW",
                "--dport",
                "80",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
            &[
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-m",
                "state",
                "--state",
                "NEW",
                "--dport",
                "22",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
        ];
        for r in rules {
            match std::process::Command::new("iptables").args(r).status() {
                Ok(s) if s.success() => {}
                Ok(s) => tracing::warn!(?r, %s, "iptables rule failed"),
                Err(e) => tracing::warn!(error = %e, "cannot run iptables"),
            }
        }
    });
}
