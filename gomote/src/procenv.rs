//! What a request needs from the process environment, captured once as an
//! [`Env`] so that building requests stays pure and testable.

use std::path::PathBuf;

/// The process environment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// `getcwd` failed (the directory was deleted, or is unreadable).
    #[error("finding the current directory")]
    Cwd(#[source] std::io::Error),
}

/// What the request needs from the process, captured once.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$GOMOTE_GROUP`, if non-empty.
    pub gomote_group: Option<String>,
    /// `$GOROOT`, if set.
    pub goroot: Option<PathBuf>,
    /// `$GOMOTE_BUILDLET_PASSWORD`, if set.
    pub buildlet_password: Option<String>,
    /// The absolute working directory.
    pub cwd: PathBuf,
    /// The temporary directory.
    pub tmpdir: PathBuf,
    /// Whether stderr is a terminal.
    pub tty: bool,
}

impl Env {
    /// Reads the real process environment.
    pub fn from_process() -> Result<Self, EnvError> {
        use std::io::IsTerminal as _;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cwd = std::env::current_dir().map_err(EnvError::Cwd)?;
        Ok(Self {
            gomote_group: var("GOMOTE_GROUP"),
            goroot: std::env::var_os("GOROOT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            buildlet_password: var("GOMOTE_BUILDLET_PASSWORD"),
            cwd: std::path::absolute(&cwd).unwrap_or(cwd),
            tmpdir: std::env::temp_dir(),
            tty: std::io::stderr().is_terminal(),
        })
    }
}
