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
    /// Its TOML.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the line.
        source: Box<toml::de::Error>,
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
                let mut c: Config = toml::from_str(&t).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    source: Box::new(e),
                })?;
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
