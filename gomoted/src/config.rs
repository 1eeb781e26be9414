//! `$XDG_CONFIG_HOME/gomote/config.toml`: which coordinator to use by
//! default and how the embedded one is set up.

use std::path::Path;

use serde::Deserialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its TOML, on one line (the CLI that started the daemon prints the
    /// log's last line): where, and what is wrong.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The embedded coordinator's part.
    #[error(transparent)]
    Coordinator(#[from] gomote_coordinator::config::ConfigError),
}

/// The daemon's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A remote coordinator URL used when `-server` is not given; empty
    /// means the embedded coordinator.
    pub server: Option<String>,
    /// The embedded coordinator's configuration (same schema as
    /// `gomote-coordinator --config`).
    pub coordinator: Option<gomote_coordinator::config::Config>,
    /// Seconds after its last use that an instance is still kept alive.
    pub keepalive_idle_secs: Option<u64>,
    /// Seconds between keep-alive pings.
    pub keepalive_interval_secs: Option<u64>,
    /// Watch GOROOTs by scanning every this many seconds instead of with
    /// inotify (for file systems without change notification).
    pub watch_poll_secs: Option<u64>,
}

impl Config {
    /// Loads the file if it exists.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let p = dir.join("config.toml");
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                let mut c: Config = toml::from_str(&t).map_err(|e| parse_error(&p, &t, &e))?;
                if let Some(cc) = &mut c.coordinator {
                    cc.fill_defaults();
                    cc.validate()?;
                }
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError::Read {
                path: p.display().to_string(),
                source: e,
            }),
        }
    }
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |r| r.start).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    ConfigError::Parse {
        path: path.display().to_string(),
        line,
        column,
        message: e.message().trim().replace('\n', "; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_mistake_is_one_line_with_its_place() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.toml"),
            "server = \"x\"\nkeepalive_idle_secs = \"soon\"\n",
        )
        .unwrap();
        let e = Config::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml:2:23: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::write(d.path().join("config.toml"), "sever = \"x\"\n").unwrap();
        let e = Config::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml:1:1: unknown field `sever`"), "{e}");
    }
}
