//! systemd socket activation: [`take`] claims the listening Unix socket
//! that systemd (or `systemd-socket-activate`) passed as fd 3 with
//! `LISTEN_FDS` and `LISTEN_PID`, and removes those variables so children
//! (buildlets, the embedded coordinator's processes) neither see nor try to
//! adopt it. It must run before the async runtime starts threads (removing
//! environment variables is unsound while another thread reads them);
//! [`Inherited::into_listener`] then makes it an interprocess tokio
//! [`Listener`] inside the runtime.
//!
//! The protocol (sd_listen_fds(3)): `LISTEN_PID` must equal our pid (a
//! child that inherited the variables must ignore them), `LISTEN_FDS` is
//! the number of fds starting at 3. We serve exactly one socket; extra fds
//! are left alone and reported.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use interprocess::local_socket::tokio::Listener;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// A socket handed over by the service manager, not yet registered with
/// the runtime.
#[derive(Debug)]
pub struct Inherited {
    listener: StdUnixListener,
    path: Option<PathBuf>,
}

impl Inherited {
    /// The listener, ready for `accept`; needs the tokio runtime.
    pub fn into_listener(self) -> Result<Activated, ActivationError> {
        // Built from an fd, the listener has no name to reclaim, so dropping
        // it never deletes the socket file systemd owns.
        let uds = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(
            OwnedFd::from(self.listener),
        )?;
        Ok(Activated {
            listener: Listener::from(uds),
            path: self.path,
        })
    }
}

/// A socket handed over by the service manager.
#[derive(Debug)]
pub struct Activated {
    /// The listener, ready for `accept`.
    pub listener: Listener,
    /// The path it is bound to, when the kernel tells us.
    pub path: Option<PathBuf>,
}

/// Why an advertised socket could not be adopted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS={0:?} is not a number of file descriptors")]
    BadCount(String),
    /// fd 3 is not a socket.
    #[error(
        "fd 3 passed by the service manager is not a socket; check ListenStream= in gomoted.socket"
    )]
    NotASocket,
    /// The fd could not be inspected or converted.
    #[error("adopting the socket passed by the service manager: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether the variables address this process, and how many fds they pass.
fn advertised() -> Result<Option<usize>, ActivationError> {
    let Some(pid) = std::env::var_os("LISTEN_PID") else {
        return Ok(None);
    };
    // A mismatch means we inherited them from an activated parent.
    if pid.to_str().and_then(|p| p.trim().parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let raw = std::env::var("LISTEN_FDS").unwrap_or_default();
    let n = raw
        .trim()
        .parse::<usize>()
        .map_err(|_| ActivationError::BadCount(raw.clone()))?;
    Ok((n > 0).then_some(n))
}

/// Removes the activation variables from our environment.
#[allow(unsafe_code)]
fn forget_env() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: `remove_var` is unsound only while another thread reads
        // or writes the environment. `take` runs first thing in `main`,
        // before the async runtime or any other thread exists.
        unsafe { std::env::remove_var(var) };
    }
}

/// Claims the socket passed by the service manager, if this process was
/// socket-activated; `None` means "bind the socket yourself". Call it
/// before starting any thread.
pub fn take() -> Result<Option<Inherited>, ActivationError> {
    let n = advertised();
    forget_env();
    let Some(n) = n? else {
        return Ok(None);
    };
    if n > 1 {
        tracing::warn!(
            fds = n,
            "the service manager passed several sockets; serving only the first"
        );
    }
    let st = nix::sys::stat::fstat(LISTEN_FDS_START).map_err(std::io::Error::from)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
        return Err(ActivationError::NotASocket);
    }
    // Inherited fds are not close-on-exec; without it every buildlet we
    // start would keep the listening socket open.
    nix::fcntl::fcntl(
        LISTEN_FDS_START,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: fd 3 is open (fstat succeeded), is a socket, and by the
    // activation protocol belongs to this process alone; nothing else in
    // gomoted uses fd 3 by number, so this OwnedFd is its only owner.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let std_listener = StdUnixListener::from(fd);
    let path = std_listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(PathBuf::from));
    Ok(Some(Inherited {
        listener: std_listener,
        path,
    }))
}
