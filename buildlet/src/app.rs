//! The state every handler shares: the work directory, the password, the
//! halt signal, the outbound HTTP client, the digest cache and the time of
//! the last request.

use std::sync::Arc;

use axum::extract::State;
use tokio::sync::mpsc;

use crate::workdir::WorkDir;

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The work directory.
    pub wd: WorkDir,
    /// The Basic-auth password; `None` means no check.
    pub password: Option<String>,
    /// Told when `/halt` asks the buildlet to go away.
    pub halt: mpsc::Sender<()>,
    /// Fetches `/writetgz` POST URLs.
    pub http: reqwest::Client,
    /// Whether `GO_DISABLE_OUTBOUND_NETWORK=true` may install iptables rules.
    pub allow_firewall: bool,
    /// File digests remembered between `/ls` requests.
    pub digests: Arc<gomote_shared::digest::DigestCache>,
    /// When the last request arrived (for `--halt-after-idle`).
    pub activity: crate::idle::Activity,
}

/// The state type handlers receive.
pub type AppState = State<Arc<App>>;
