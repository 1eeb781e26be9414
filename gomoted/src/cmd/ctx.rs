//! What every command handler gets ([`Ctx`]: the request, its reply
//! stream, the daemon) and how it fails ([`Failure`]: one line and an exit
//! code). Domain errors become failures here, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gomote_shared::api::{CommandRequest, exit};
use tokio::sync::OnceCell;

use crate::daemon::Daemon;
use crate::out::Out;
use crate::session::{Session, SessionError};

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    /// The request.
    pub req: CommandRequest,
    /// Where replies go.
    pub out: Out,
    /// The daemon's parts.
    pub daemon: Arc<Daemon>,
    sess: OnceCell<Arc<Session>>,
    group_mentioned: AtomicBool,
}

impl Ctx {
    /// A context for one request.
    pub fn new(req: CommandRequest, out: Out, daemon: Arc<Daemon>) -> Ctx {
        Ctx {
            req,
            out,
            daemon,
            sess: OnceCell::new(),
            group_mentioned: AtomicBool::new(false),
        }
    }

    /// True the first time it is asked: the group from `$GOMOTE_GROUP` is
    /// announced once per command, however often it is resolved.
    pub fn first_mention_of_group(&self) -> bool {
        !self.group_mentioned.swap(true, Ordering::Relaxed)
    }

    /// The coordinator session for this request (opened on first use).
    pub async fn session(&self) -> Result<Arc<Session>, SessionError> {
        self.sess
            .get_or_try_init(|| self.daemon.sessions.get(self.req.server.as_deref()))
            .await
            .cloned()
    }
}

/// A command's failure: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// One line.
    pub msg: String,
    /// The exit code.
    pub code: i32,
    /// Print as `Error running <cmd>: ...` (runtime) or as is (usage).
    pub usage: bool,
}

impl Failure {
    /// A runtime failure (exit 1) with this line.
    pub fn new(msg: impl Into<String>) -> Failure {
        Failure {
            msg: msg.into(),
            code: exit::FAILURE,
            usage: false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// A usage mistake (exit 2, no usage text).
pub fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: exit::USAGE,
        usage: true,
    }
}

/// What a command returns: its exit code.
pub type CmdResult = Result<i32, Failure>;

/// Every domain error a command can meet prints as its own text.
macro_rules! failure_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                Failure::new(e.to_string())
            }
        }
    )*};
}

failure_from!(
    SessionError,
    crate::state::StateError,
    crate::push::PushError,
    crate::push::goroot::GorootError,
    crate::target::OpError,
    crate::transfer::TransferError,
    serde_json::Error,
);
