//! The audit log: one JSON line per security-relevant event, appended to
//! `<state>/audit.log` (0600). Secrets (tokens, passwords, enrolment
//! links) never appear in it: only e-mails, token IDs and reasons.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::Serialize;

/// Why an RPC was refused as unauthenticated: a category, never the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No `authorization` header.
    Missing,
    /// A header that is not `Bearer <token>`.
    Malformed,
    /// A token the coordinator does not know (or one revoked).
    Unknown,
    /// A token past its expiry.
    Expired,
    /// A token of a disabled (or pending) user.
    Disabled,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    /// `user add`.
    #[serde(rename = "user.add")]
    UserAdd {
        /// Who ran it.
        actor: String,
        /// The new user's e-mail.
        subject: String,
        /// `admin` or `user`.
        role: String,
    },
    /// A password set through the enrolment link.
    #[serde(rename = "user.enroll")]
    UserEnroll {
        /// The user (who is also the actor).
        subject: String,
    },
    /// `user disable`.
    #[serde(rename = "user.disable")]
    UserDisable {
        /// Who ran it.
        actor: String,
        /// The user.
        subject: String,
        /// How many of their tokens were revoked with it.
        tokens_revoked: usize,
    },
    /// `user enable`.
    #[serde(rename = "user.enable")]
    UserEnable {
        /// Who ran it.
        actor: String,
        /// The user.
        subject: String,
    },
    /// `user remove`.
    #[serde(rename = "user.remove")]
    UserRemove {
        /// Who ran it.
        actor: String,
        /// The user.
        subject: String,
        /// How many of their tokens were revoked with it.
        tokens_revoked: usize,
    },
    /// `token create`.
    #[serde(rename = "token.issue")]
    TokenIssue {
        /// Who ran it.
        actor: String,
        /// The user the token acts as.
        subject: String,
        /// The token's ID (not the token).
        token_id: String,
        /// Unix seconds it expires at.
        expires: u64,
    },
    /// `token revoke`.
    #[serde(rename = "token.revoke")]
    TokenRevoke {
        /// Who ran it.
        actor: String,
        /// The user the token acted as.
        subject: String,
        /// The token's ID.
        token_id: String,
    },
    /// An RPC refused as unauthenticated.
    #[serde(rename = "auth.denied")]
    AuthDenied {
        /// The RPC (`Service/Method`).
        rpc: String,
        /// Why, as a category.
        reason: DenyReason,
    },
    /// An instance was created.
    #[serde(rename = "instance.create")]
    InstanceCreate {
        /// Its owner's e-mail (who asked).
        actor: String,
        /// The instance.
        subject: String,
        /// Its builder type.
        builder: String,
    },
    /// DestroyInstance.
    #[serde(rename = "instance.destroy")]
    InstanceDestroy {
        /// Who asked (an admin may destroy others' instances).
        actor: String,
        /// The instance.
        subject: String,
        /// Its owner.
        owner: String,
    },
}

/// The appender of one state directory's audit log.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    // Opened on first use; one short write per event under the lock, so
    // lines never interleave and no async worker waits long.
    file: Mutex<Option<std::fs::File>>,
}

/// The audit log's file in a state directory.
pub fn path(state: &Path) -> PathBuf {
    state.join("audit.log")
}

impl Audit {
    /// The log of `state` (nothing is opened yet).
    pub fn new(state: &Path) -> Audit {
        Audit {
            path: path(state),
            file: Mutex::new(None),
        }
    }

    /// Appends `event` with the current time. A log that cannot be written
    /// is reported in the coordinator's own log rather than failing the
    /// action it records.
    pub fn record(&self, event: Event) {
        if let Err(e) = self.write(&event) {
            tracing::error!(path = %self.path.display(), error = %e, "audit log not written");
        }
    }

    fn write(&self, event: &Event) -> std::io::Result<()> {
        let mut v = serde_json::to_value(event).map_err(std::io::Error::other)?;
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(std::io::Error::other)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("time".into(), serde_json::Value::String(time));
        }
        let mut line = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self.file.lock();
        if guard.is_none() {
            use std::os::unix::fs::OpenOptionsExt as _;
            *guard = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        match guard.as_mut() {
            // One write of the whole line: O_APPEND keeps it in one piece
            // even when a `gomote-coordinator user ...` run appends too.
            Some(f) => f.write_all(&line),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_time_and_private() {
        let d = tempfile::tempdir().unwrap();
        let a = Audit::new(d.path());
        a.record(Event::AuthDenied {
            rpc: "gomoteapi.GomoteService/ListInstances".into(),
            reason: DenyReason::Expired,
        });
        a.record(Event::UserEnroll {
            subject: "a@b.c".into(),
        });
        let text = std::fs::read_to_string(path(d.path())).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "auth.denied");
        assert_eq!(lines[0]["reason"], "expired");
        assert!(lines[0]["time"].is_string());
        assert_eq!(lines[1]["subject"], "a@b.c");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
