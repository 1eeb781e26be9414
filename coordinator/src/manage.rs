//! The `user` and `token` commands: account and token changes made from
//! the shell on a state directory (whether or not a coordinator is serving
//! from it: it notices the files change), each one audited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accounts::{AccountError, Accounts, Role, User, UserState};
use crate::audit::{Audit, Event};
use crate::statefile;
use crate::tokens::{Entry, Issued, TokenError, Tokens};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The accounts.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The tokens.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `user add` without a URL to put the link under.
    #[error(
        "no public URL known for {0}: pass --url, set public_url in the configuration, or start the coordinator once"
    )]
    NoUrl(String),
}

fn url_file(state: &Path) -> PathBuf {
    state.join("public_url")
}

/// Records the URL the serving coordinator is reached at.
pub fn note_public_url(state: &Path, url: &str) -> std::io::Result<()> {
    statefile::replace(&url_file(state), url.as_bytes())
}

/// The commands on one state directory, run by `actor`.
#[derive(Debug)]
pub struct Manage {
    state: PathBuf,
    accounts: Accounts,
    tokens: Tokens,
    audit: Audit,
    actor: String,
}

impl Manage {
    /// Commands on `state`, audited as run by the local user.
    pub fn new(state: &Path) -> Manage {
        let who = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| nix::unistd::getuid().to_string(), |u| u.name);
        Manage {
            state: state.to_path_buf(),
            accounts: Accounts::new(state),
            tokens: Tokens::new(state),
            audit: Audit::new(state),
            actor: format!("cli:{who}"),
        }
    }

    /// `user add`: the enrolment link to give the person.
    pub fn user_add(
        &self,
        email: &str,
        admin: bool,
        url: Option<&str>,
        link_ttl: Duration,
    ) -> Result<String, ManageError> {
        let base = match url {
            Some(u) => u.to_string(),
            None => std::fs::read_to_string(url_file(&self.state))
                .map_err(|_| ManageError::NoUrl(self.state.display().to_string()))?,
        };
        let role = if admin { Role::Admin } else { Role::User };
        let token = self.accounts.add(email, role, link_ttl)?;
        self.audit.record(Event::UserAdd {
            actor: self.actor.clone(),
            subject: email.to_string(),
            role: role.to_string(),
        });
        Ok(format!(
            "{}/enroll/{token}",
            base.trim().trim_end_matches('/')
        ))
    }

    /// `user list`.
    pub fn user_list(&self) -> Result<Vec<User>, ManageError> {
        Ok(self.accounts.list()?)
    }

    /// `user disable`: the user and every token of theirs stop working.
    pub fn user_disable(&self, email: &str) -> Result<usize, ManageError> {
        // The state first: it alone refuses the user's tokens at once,
        // even ones made by a concurrent `token create`.
        self.accounts.set_disabled(email, true)?;
        let n = self.tokens.revoke_user(email)?;
        self.audit.record(Event::UserDisable {
            actor: self.actor.clone(),
            subject: email.to_string(),
            tokens_revoked: n,
        });
        Ok(n)
    }

    /// `user enable` (their old tokens stay revoked).
    pub fn user_enable(&self, email: &str) -> Result<(), ManageError> {
        self.accounts.set_disabled(email, false)?;
        self.audit.record(Event::UserEnable {
            actor: self.actor.clone(),
            subject: email.to_string(),
        });
        Ok(())
    }

    /// `user remove`: the account and its tokens.
    pub fn user_remove(&self, email: &str) -> Result<usize, ManageError> {
        self.accounts.remove(email)?;
        let n = self.tokens.revoke_user(email)?;
        self.audit.record(Event::UserRemove {
            actor: self.actor.clone(),
            subject: email.to_string(),
            tokens_revoked: n,
        });
        Ok(n)
    }

    /// `token create`: refused for a disabled user (an e-mail without an
    /// account is fine: robots and users from before accounts).
    pub fn token_create(&self, email: &str, ttl: Duration) -> Result<Issued, ManageError> {
        if let Some(u) = self.accounts.find(email)?
            && u.state == UserState::Disabled
        {
            return Err(AccountError::Disabled(email.to_string()).into());
        }
        let issued = self.tokens.create(email, ttl)?;
        self.audit.record(Event::TokenIssue {
            actor: self.actor.clone(),
            subject: email.to_string(),
            token_id: issued.id.clone(),
            expires: issued.expires,
        });
        Ok(issued)
    }

    /// `token list`.
    pub fn token_list(&self) -> Result<Vec<Entry>, ManageError> {
        Ok(self.tokens.list()?)
    }

    /// `token revoke`.
    pub fn token_revoke(&self, id: &str) -> Result<Entry, ManageError> {
        let e = self.tokens.revoke(id)?;
        self.audit.record(Event::TokenRevoke {
            actor: self.actor.clone(),
            subject: e.email.clone(),
            token_id: id.to_string(),
        });
        Ok(e)
    }
}
