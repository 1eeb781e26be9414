//! How a push fails, phase by phase, in the words the user sees.

use crate::localtree::WalkError;
use crate::target::OpError;

/// Why a push failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The local tree could not be read.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A worker task died.
    #[error("push worker: {0}")]
    Task(String),
    /// An instance's files could not be listed.
    #[error("error listing buildlet's existing files on {inst}: {source}")]
    List {
        /// The instance.
        inst: String,
        /// Why.
        source: OpError,
    },
    /// Removing files the tree no longer has.
    #[error("failed to delete remote unwanted files on {inst}: {source}")]
    Delete {
        /// The instance.
        inst: String,
        /// Why.
        source: OpError,
    },
    /// Packing a part.
    #[error("{0}")]
    Pack(String),
    /// Writing a part.
    #[error("failed writing tarball to {inst}: {source}")]
    Write {
        /// The instance.
        inst: String,
        /// Why.
        source: OpError,
    },
    /// Installing `go1.4`.
    #[error("installing the bootstrap toolchain on {inst}: {source}")]
    Bootstrap {
        /// The instance.
        inst: String,
        /// Why.
        source: OpError,
    },
}
