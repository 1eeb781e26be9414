//! The local socket the daemon serves: bound by the daemon itself (0600,
//! in a 0700 directory, a stale file from a dead daemon removed after
//! checking nothing answers) or adopted from the service manager.

use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};

use crate::activation::Activated;

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Another daemon already serves it.
    #[error("another daemon answers on {0}")]
    Taken(String),
    /// A file-system or socket call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A listening local socket.
#[derive(Debug)]
pub struct Listener {
    pub(crate) inner: interprocess::local_socket::tokio::Listener,
    /// The socket's path.
    pub path: PathBuf,
    /// Whether the file is ours to remove at shutdown (not systemd's).
    pub(crate) owned: bool,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError {
    let path = path.display().to_string();
    move |source| ListenError::Io { what, path, source }
}

impl Listener {
    /// Binds `socket`, preparing its directory.
    pub async fn bind(socket: &Path) -> Result<Listener, ListenError> {
        use std::os::unix::fs::PermissionsExt;
        prepare(socket).await?;
        let name = socket
            .to_path_buf()
            .to_fs_name::<GenericFilePath>()
            .map_err(io("naming", socket))?;
        let inner = ListenerOptions::new()
            .name(name)
            .create_tokio()
            .map_err(io("listening on", socket))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io("securing", socket))?;
        Ok(Listener {
            inner,
            path: socket.to_path_buf(),
            owned: true,
        })
    }

    /// Serves a socket the service manager passed; its file (path, mode,
    /// directory) is the socket unit's and stays at shutdown.
    pub fn adopt(a: Activated, fallback_path: PathBuf) -> Listener {
        Listener {
            inner: a.listener,
            path: a.path.unwrap_or(fallback_path),
            owned: false,
        }
    }
}

/// Prepares the socket's directory (0700) and removes a stale socket file
/// left by a daemon that died, after checking nothing answers on it.
async fn prepare(socket: &Path) -> Result<(), ListenError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("securing", dir))?;
    }
    if socket.exists() {
        let name = socket
            .to_path_buf()
            .to_fs_name::<GenericFilePath>()
            .map_err(io("naming", socket))?;
        if LocalSocketStream::connect(name).await.is_ok() {
            return Err(ListenError::Taken(socket.display().to_string()));
        }
        std::fs::remove_file(socket).map_err(io("removing stale socket", socket))?;
    }
    Ok(())
}
