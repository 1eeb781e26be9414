//! `gomoted`: the per-user gomote daemon. It serves the local API on a
//! socket, keeps coordinator sessions (an embedded coordinator with the
//! local pool unless a remote one is configured), owns the groups, and runs
//! commands and pushes for the thin `gomote` CLI.
//!
//! [`run`] is the one entry: the binary takes the per-user [`lock`], binds
//! the socket (or adopts systemd's) and calls it; tests call it in-process.
//! The module map is in docs/architecture.md.

pub mod activation;
mod cmd;
mod config;
mod daemon;
mod keepalive;
mod listener;
mod localtree;
pub mod lock;
mod manifest;
mod out;
mod push;
mod rpc;
mod runs;
mod server;
mod session;
mod state;
mod target;
#[cfg(test)]
mod testutil;
mod tls;
mod transfer;
mod watch;

pub use listener::{ListenError, Listener};
pub use push::plan::DIST_GENERATED;
pub use server::{Dirs, ServeError, run};
