//! Where the CLI and the daemon find each other and keep their files: the
//! socket (`$GOMOTED_SOCKET`, else `$XDG_RUNTIME_DIR/gomote/gomoted.sock`,
//! else a per-user directory under the system temp dir), the data directory
//! (`$XDG_DATA_HOME/gomote`) and the config directory (`$XDG_CONFIG_HOME/gomote`).

use std::path::PathBuf;

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn home() -> PathBuf {
    env_dir("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

fn uid() -> u32 {
    // SAFETY-free: read from /proc rather than calling getuid through libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next().and_then(|u| u.parse().ok()))
        })
        .unwrap_or(0)
}

/// The daemon's socket.
pub fn socket() -> PathBuf {
    if let Some(p) = std::env::var_os("GOMOTED_SOCKET").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    match env_dir("XDG_RUNTIME_DIR") {
        Some(d) => d.join("gomote").join("gomoted.sock"),
        None => std::env::temp_dir()
            .join(format!("gomote-{}", uid()))
            .join("gomoted.sock"),
    }
}

/// The daemon's data directory (state database, run logs, its own log).
pub fn data_dir() -> PathBuf {
    env_dir("XDG_DATA_HOME")
        .unwrap_or_else(|| home().join(".local/share"))
        .join("gomote")
}

/// The configuration directory (`config.toml`).
pub fn config_dir() -> PathBuf {
    env_dir("XDG_CONFIG_HOME")
        .unwrap_or_else(|| home().join(".config"))
        .join("gomote")
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_is_read() {
        // Root in CI, someone else elsewhere; either way a number came back.
        let _ = super::uid();
        assert!(super::socket().ends_with("gomoted.sock"));
    }
}
