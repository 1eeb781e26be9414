//! The coordinator's configuration: timings, the URL hosts transfers may
//! fetch from, the local pool, and the builder and host types it offers
//! (from a TOML file, or a built-in default for the machine it runs on).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything configurable, with defaults for a single machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seconds an instance lives after its last use (Go: 30 minutes).
    pub idle_timeout_secs: u64,
    /// Seconds between reaper passes (Go: one minute).
    pub reap_interval_secs: u64,
    /// Seconds between buildlet heartbeats (three misses mark it dead).
    pub heartbeat_interval_secs: u64,
    /// The URL clients and buildlets reach this coordinator's HTTP side at
    /// (upload and download URLs are built from it) [default: http://<listen address>].
    pub public_url: Option<String>,
    /// Hosts (as `host` or `host:port`) whose URLs WriteTGZFromURL and
    /// WriteFileFromURL may fetch. Empty by default: no server-side request
    /// forgery unless asked for.
    pub allowed_url_hosts: Vec<String>,
    /// The local pool: buildlets as child processes of this coordinator.
    pub local_pool: LocalPool,
    /// Host types: the machines instances run on.
    pub host_types: Vec<HostType>,
    /// Builder types: what users ask for; each runs on a host type. They
    /// add to this machine's built-in ones (a builder of the same name
    /// replaces the built-in one) unless `replace_builtin_builders` is set.
    pub builders: Vec<Builder>,
    /// Offer only the configured builders, none of the built-in ones.
    pub replace_builtin_builders: bool,
}

/// How local buildlets are started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalPool {
    /// The buildlet binary [default: `buildlet` beside this program].
    pub buildlet: Option<PathBuf>,
    /// Sandbox each buildlet with bubblewrap: `auto` (when installed), `bwrap`, `none`.
    pub sandbox: Sandbox,
}

/// Whether and how to sandbox local buildlets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    /// bubblewrap when `bwrap` is on PATH and works, else none.
    Auto,
    /// Always bubblewrap; starting an instance fails without it.
    Bwrap,
    /// No sandbox.
    None,
}

/// A kind of machine, and how many instances of it may run at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostType {
    /// Its name, e.g. `host-linux-amd64-local`.
    pub name: String,
    /// The pool that provides it; only `local` exists so far.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Instances that may exist at once; more requests queue.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

/// A builder type users create instances of.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    /// Its name, e.g. `linux-amd64-race`.
    pub name: String,
    /// The host type it runs on.
    pub host_type: String,
    /// `KEY=value` entries every command on it gets (before the client's).
    #[serde(default)]
    pub env: Vec<String>,
    /// A bootstrap Go toolchain (a directory or a .tar.gz on this host)
    /// AddBootstrap writes into the instance's `go1.4`.
    #[serde(default)]
    pub bootstrap: Option<PathBuf>,
}

fn default_pool() -> String {
    "local".into()
}

fn default_capacity() -> usize {
    8
}

impl Default for LocalPool {
    fn default() -> Self {
        LocalPool {
            buildlet: None,
            sandbox: Sandbox::Auto,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout_secs: 30 * 60,
            reap_interval_secs: 60,
            heartbeat_interval_secs: 10,
            public_url: None,
            allowed_url_hosts: Vec::new(),
            local_pool: LocalPool::default(),
            host_types: Vec::new(),
            builders: Vec::new(),
            replace_builtin_builders: false,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// The contents are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads a TOML file; this machine's built-in builders and the host
    /// type they run on are added (see [`Config::fill_defaults`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut c: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        c.fill_defaults();
        c.validate()?;
        Ok(c)
    }

    /// The built-in default for this machine.
    pub fn builtin() -> Config {
        let mut c = Config::default();
        c.fill_defaults();
        c
    }

    /// Adds this machine's built-in builders to the configured ones (unless
    /// `replace_builtin_builders`; a configured builder of the same name
    /// takes the built-in one's place), then the native host type when a
    /// builder runs on it or no host type is configured at all, so every
    /// builder has its host type. Doing it twice changes nothing.
    pub fn fill_defaults(&mut self) {
        self.fill_defaults_with(|| detect_host_goroot(std::env::vars_os()));
    }

    /// [`Config::fill_defaults`] with the bootstrap toolchain found by
    /// `bootstrap` (asked only when built-in builders are added).
    fn fill_defaults_with(&mut self, bootstrap: impl FnOnce() -> Option<PathBuf>) {
        let host = native_host_type();
        if !self.replace_builtin_builders {
            let configured = std::mem::take(&mut self.builders);
            let mut used = vec![false; configured.len()];
            for b in builtin_builders(&host, bootstrap()) {
                match configured.iter().position(|c| c.name == b.name) {
                    Some(i) => {
                        used[i] = true;
                        self.builders.push(configured[i].clone());
                    }
                    None => self.builders.push(b),
                }
            }
            // A second definition of a built-in name is kept, for
            // validation to refuse.
            self.builders.extend(
                configured
                    .into_iter()
                    .zip(used)
                    .filter(|(_, used)| !used)
                    .map(|(b, _)| b),
            );
        }
        let needed =
            self.host_types.is_empty() || self.builders.iter().any(|b| b.host_type == host);
        if needed && self.host_type(&host).is_none() {
            self.host_types.push(HostType {
                name: host,
                pool: default_pool(),
                capacity: default_capacity(),
            });
        }
    }

    /// Checks builders name existing host types and names are unique.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.builders.is_empty() {
            return Err(ConfigError::Invalid(
                "no builders: replace_builtin_builders = true needs [[builders]]".into(),
            ));
        }
        for b in &self.builders {
            if !self.host_types.iter().any(|h| h.name == b.host_type) {
                return Err(ConfigError::Invalid(format!(
                    "builder {:?} names unknown host type {:?}",
                    b.name, b.host_type
                )));
            }
            if let Some(e) = b.env.iter().find(|e| !e.contains('=')) {
                return Err(ConfigError::Invalid(format!(
                    "builder {:?}: env entry {e:?} has no '='",
                    b.name
                )));
            }
        }
        for h in &self.host_types {
            if h.pool != "local" {
                return Err(ConfigError::Invalid(format!(
                    "host type {:?}: unknown pool {:?} (only \"local\" exists)",
                    h.name, h.pool
                )));
            }
            if h.capacity == 0 {
                return Err(ConfigError::Invalid(format!(
                    "host type {:?}: capacity must be at least 1",
                    h.name
                )));
            }
        }
        let mut names: Vec<&str> = self.builders.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(format!(
                "builder {:?} is defined twice",
                w[0]
            )));
        }
        Ok(())
    }

    /// The builder named `name`.
    pub fn builder(&self, name: &str) -> Option<&Builder> {
        self.builders.iter().find(|b| b.name == name)
    }

    /// The host type named `name`.
    pub fn host_type(&self, name: &str) -> Option<&HostType> {
        self.host_types.iter().find(|h| h.name == name)
    }

    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// This machine's host type, e.g. `host-linux-amd64-local`.
fn native_host_type() -> String {
    format!(
        "host-{}-{}-local",
        gomote_shared::platform::goos(),
        gomote_shared::platform::goarch()
    )
}

/// This machine's builders on `host`: the native one, variants that differ
/// only in environment (as the Go builders do), and 386 on amd64.
fn builtin_builders(host: &str, bootstrap: Option<PathBuf>) -> Vec<Builder> {
    let goos = gomote_shared::platform::goos();
    let goarch = gomote_shared::platform::goarch();
    let native = format!("{goos}-{goarch}");
    let b = |name: String, env: &[&str]| Builder {
        name,
        host_type: host.to_string(),
        env: env.iter().map(|s| s.to_string()).collect(),
        bootstrap: bootstrap.clone(),
    };
    let mut v = vec![
        b(native.clone(), &[]),
        b(
            format!("{native}-race"),
            &["GOFLAGS=-race", "CGO_ENABLED=1", "GO_TEST_TIMEOUT_SCALE=2"],
        ),
        b(format!("{native}-noopt"), &["GO_GCFLAGS=-N -l"]),
        b(
            format!("{native}-longtest"),
            &["GO_TEST_SHORT=0", "GO_TEST_TIMEOUT_SCALE=5"],
        ),
    ];
    if goarch == "amd64" {
        v.push(b(format!("{goos}-386"), &["GOARCH=386", "GOHOSTARCH=386"]));
    }
    v
}

/// The GOROOT of a Go installed on this host, if any, for the built-in
/// builders' bootstrap toolchain. The installed one, not the one `env`
/// selects: a developer's `GOROOT` usually names their own tree, which has
/// no `bin/go` until built. A bounded wait, since a broken toolchain must
/// not hang start-up.
fn detect_host_goroot(
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Option<PathBuf> {
    let p =
        gomote_shared::goenv::installed_goroot_blocking(env, gomote_shared::goenv::TIMEOUT).ok()?;
    p.join("bin/go").exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_offers_native_and_variants() {
        let c = Config::builtin();
        c.validate().unwrap();
        let native = format!(
            "{}-{}",
            gomote_shared::platform::goos(),
            gomote_shared::platform::goarch()
        );
        assert!(c.builder(&native).is_some());
        assert!(c.builder(&format!("{native}-race")).is_some());
        let host = &c.builder(&native).unwrap().host_type;
        assert!(c.builders.iter().all(|b| &b.host_type == host));
    }

    #[test]
    fn parses_toml_and_rejects_inconsistency() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            r#"
idle_timeout_secs = 5
[[host_types]]
name = "h"
capacity = 2
[[builders]]
name = "b1"
host_type = "h"
env = ["A=1"]
"#,
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.idle_timeout_secs, 5);
        assert_eq!(c.builder("b1").unwrap().env, ["A=1"]);
        std::fs::write(
            &p,
            "[[builders]]\nname = \"b\"\nhost_type = \"nope\"\n[[host_types]]\nname=\"h\"\n",
        )
        .unwrap();
        assert!(matches!(Config::load(&p), Err(ConfigError::Invalid(_))));
        std::fs::write(&p, "bogus_key = 1\n").unwrap();
        assert!(matches!(Config::load(&p), Err(ConfigError::Parse { .. })));
    }

    fn named(names: &[&str], host: &str) -> Vec<Builder> {
        names
            .iter()
            .map(|n| Builder {
                name: n.to_string(),
                host_type: host.into(),
                env: vec![format!("MINE={n}")],
                bootstrap: None,
            })
            .collect()
    }

    fn names(c: &Config) -> Vec<&str> {
        c.builders.iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn configured_builders_add_to_the_builtin_ones_by_default() {
        let host = native_host_type();
        let builtin = Config::builtin();
        let native = builtin.builders[0].name.clone();
        let mut c = Config {
            host_types: vec![HostType {
                name: "h".into(),
                pool: default_pool(),
                capacity: 2,
            }],
            builders: named(&["mine"], "h"),
            ..Config::default()
        };
        // A configured builder named like a built-in one takes its place.
        c.builders.extend(named(&[&native], "h"));
        c.fill_defaults_with(|| Some("/boot".into()));
        c.validate().unwrap();
        let mut want = names(&builtin);
        want.push("mine");
        assert_eq!(names(&c), want);
        assert_eq!(c.builder(&native).unwrap().host_type, "h");
        assert_eq!(c.builder(&native).unwrap().env, [format!("MINE={native}")]);
        assert_eq!(c.builders[1].bootstrap.as_deref(), Some(Path::new("/boot")));
        // The built-ins brought the host type they run on.
        let hosts: Vec<_> = c.host_types.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["h", host.as_str()]);
        // Filling again changes nothing.
        let before = toml::to_string(&c).unwrap();
        c.fill_defaults_with(|| Some("/boot".into()));
        assert_eq!(toml::to_string(&c).unwrap(), before);
        // Two definitions of one name are still refused.
        c.builders.extend(named(&[&native], "h"));
        c.fill_defaults_with(|| None);
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(m)) if m.contains("twice")));
    }

    #[test]
    fn replace_builtin_builders_offers_only_the_configured_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            "replace_builtin_builders = true\n[[host_types]]\nname = \"h\"\n\
             [[builders]]\nname = \"b1\"\nhost_type = \"h\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(names(&c), ["b1"]);
        let hosts: Vec<_> = c.host_types.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["h"], "no builder runs on the native host type");

        // Builders on the native host type bring it along.
        let host = native_host_type();
        std::fs::write(
            &p,
            format!(
                "replace_builtin_builders = true\n[[builders]]\nname = \"b1\"\nhost_type = {host:?}\n"
            ),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(names(&c), ["b1"]);
        assert_eq!(c.host_types.len(), 1);
        assert_eq!(c.host_types[0].name, host);

        // Replacing the built-ins by nothing leaves nothing to create.
        std::fs::write(&p, "replace_builtin_builders = true\n").unwrap();
        assert!(
            matches!(Config::load(&p), Err(ConfigError::Invalid(m)) if m.contains("no builders"))
        );
    }

    #[test]
    fn the_bootstrap_is_the_installed_go_whatever_goroot_says() {
        let Some(installed) = detect_host_goroot(std::env::vars_os()) else {
            eprintln!("skipping: no Go installed");
            return;
        };
        // A developer's GOROOT: their own tree, with no bin/go yet.
        let dev = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dev.path().join("src")).unwrap();
        let mut env: Vec<_> = std::env::vars_os().filter(|(k, _)| k != "GOROOT").collect();
        env.push(("GOROOT".into(), dev.path().into()));
        env.push(("GOFLAGS".into(), "-mod=vendor".into()));
        assert_eq!(detect_host_goroot(env), Some(installed));
    }
}
