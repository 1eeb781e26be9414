//! Why a coordinator operation failed, as the domain code says it. The
//! gRPC service turns each into a status code once, at its edge; the
//! messages are the ones clients (and the Go CLI) have always printed.

use std::path::PathBuf;
use std::time::SystemTime;

use gomote_shared::buildlet_client;
use gomote_shared::timefmt::rfc3339;

use crate::pool::PoolError;
use crate::tombstones::Tombstone;
use crate::transfer::TransferError;

/// A failed coordinator operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// No instance by that name (gRPC NotFound).
    #[error("specified gomote instance does not exist")]
    NoSuchInstance,
    /// One of the caller's instances that ended lately: when and why
    /// (NotFound; only its owner is told).
    #[error("{0}")]
    Ended(Tombstone),
    /// Another user owns the instance (PermissionDenied).
    #[error("not allowed to modify this gomote session")]
    NotOwner,
    /// The instance's machine or buildlet died (Aborted).
    #[error("instance {id} died at {}: {why}", rfc3339(*when))]
    Dead {
        /// The instance.
        id: String,
        /// When its death was noticed.
        when: SystemTime,
        /// Why it is considered dead.
        why: String,
    },
    /// The instance vanished while being destroyed (Internal).
    #[error("instance vanished while being destroyed")]
    Vanished,
    /// No builder type by that name, not even as an alias
    /// (InvalidArgument).
    #[error(
        "unknown builder type {name:?}; {}this coordinator offers: {} (each also as gotip-<type> or go1.NN-<type>)",
        suggestion.as_ref().map(|s| format!("did you mean {s:?}? ")).unwrap_or_default(),
        offered.join(", ")
    )]
    UnknownBuilder {
        /// The name asked for.
        name: String,
        /// A close name, if there is one.
        suggestion: Option<String>,
        /// The canonical names on offer, sorted.
        offered: Vec<String>,
    },
    /// A builder to imitate runs on another host type (InvalidArgument).
    #[error(
        "builder {builder:?} runs on host type {builder_host:?}, not this instance's {instance_host:?}"
    )]
    WrongHostType {
        /// The builder to imitate.
        builder: String,
        /// Its host type.
        builder_host: String,
        /// The instance's host type.
        instance_host: String,
    },
    /// The pool could not provide a machine (Internal).
    #[error("gomote creation failed instance={instance}: {source}")]
    Create {
        /// The instance's name.
        instance: String,
        /// Why.
        source: PoolError,
    },
    /// A new buildlet did not say where its work directory is (Internal).
    #[error("unable to get the work directory: {0}")]
    WorkDir(buildlet_client::Error),
    /// A directory to list does not exist on the instance (NotFound).
    #[error("directory {dir:?} does not exist on instance {instance:?}")]
    NoDirectory {
        /// The directory, as the client named it.
        dir: String,
        /// The instance.
        instance: String,
    },
    /// Any other failure of the buildlet's `/ls` (Unimplemented, the odd
    /// code Go's server gives and Go clients expect).
    #[error("method ListDirectory not implemented: {0}")]
    ListDir(buildlet_client::Error),
    /// A command could not be run, or its output stream broke (Aborted).
    #[error("unable to execute command: {0}")]
    Exec(ExecFailure),
    /// A bootstrap toolchain directory could not be resolved (Internal).
    #[error("bootstrap {}: {source}", path.display())]
    BootstrapPath {
        /// The configured toolchain.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Linking a toolchain directory into the instance failed (Internal).
    #[error("linking bootstrap into go1.4: {0}")]
    BootstrapLink(std::io::Error),
    /// Reading a toolchain archive failed (Internal).
    #[error("reading bootstrap {}: {source}", path.display())]
    BootstrapRead {
        /// The configured archive.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storing a toolchain archive as an object failed (Internal).
    #[error(transparent)]
    BootstrapStore(TransferError),
    /// The buildlet could not unpack the toolchain (Internal).
    #[error("writing bootstrap toolchain: {0}")]
    BootstrapWrite(buildlet_client::Error),
    /// A URL to fetch is not a URL (InvalidArgument).
    #[error("not a URL: {0:?}")]
    NotAUrl(String),
    /// A URL's host is not one the configuration allows (PermissionDenied).
    #[error(
        "this coordinator does not fetch from {0:?}: upload the file instead, or add the host to allowed_url_hosts"
    )]
    ForeignHost(String),
    /// Fetching an allowed foreign URL failed (Aborted).
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An allowed foreign URL answered other than 200 (Aborted).
    #[error("fetching {url}: {status}")]
    FetchStatus {
        /// The URL.
        url: String,
        /// Its answer.
        status: reqwest::StatusCode,
    },
    /// One of this coordinator's objects could not be opened (Internal).
    #[error("opening object: {0}")]
    OpenObject(std::io::Error),
    /// An object or signed URL was refused (the code depends on why).
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

/// Why ExecuteCommand could not run a command, or lost it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecFailure {
    /// No such program on the instance. `detail` is the buildlet's own
    /// words when they add something (the start error names the absolute
    /// path tried; a missing script interpreter reads the same).
    #[error(
        "command {cmd:?} not found on instance {instance:?}{}",
        detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    NoCommand {
        /// The command as the client named it.
        cmd: String,
        /// The instance.
        instance: String,
        /// The buildlet's start error, if it said more than "not found".
        detail: Option<String>,
    },
    /// The working directory asked for does not exist.
    #[error("directory {dir:?} does not exist on instance {instance:?}")]
    NoDirectory {
        /// The directory as the client named it.
        dir: String,
        /// The instance.
        instance: String,
    },
    /// Some other reason it could not start (the buildlet's words, e.g.
    /// `fork/exec /x: permission denied`).
    #[error("{0}")]
    NotStarted(String),
    /// The buildlet refused or did not answer, or the output stream broke.
    #[error(transparent)]
    Buildlet(buildlet_client::Error),
    /// The output ended without saying how the command ended.
    #[error("missing Process-State trailer")]
    NoTrailer,
}
