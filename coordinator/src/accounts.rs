//! User accounts: `<state>/users.json` (0600), changed by
//! `gomote-coordinator user ...` and by the enrolment page, read (and
//! reread when it changes) by every RPC's authentication. A user is an
//! administrator or not, and pending (until they set a password through
//! their one-time enrolment link), active, or disabled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::statefile::{self, Stamp};
use crate::tokens::{now_unix, user_of};

/// How long an enrolment link works unless `user add --link-valid` says.
pub const ENROL_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and may destroy every instance.
    Admin,
    /// Sees only their own.
    User,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::User => "user",
        })
    }
}

/// Where a user stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    /// Added; no password set yet.
    Pending,
    /// May sign in.
    Active,
    /// Refused everywhere, tokens revoked.
    Disabled,
}

impl std::fmt::Display for UserState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserState::Pending => "pending",
            UserState::Active => "active",
            UserState::Disabled => "disabled",
        })
    }
}

/// A one-time enrolment link, kept as the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Enrolment {
    hash: String,
    expires: u64,
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The e-mail (also the key).
    pub email: String,
    /// Its role.
    pub role: Role,
    /// Its state.
    pub state: UserState,
    /// Unix seconds it was added at.
    pub created: u64,
    /// The argon2id PHC string, once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enrol: Option<Enrolment>,
}

impl User {
    /// Whether `password` is this active user's password.
    pub fn check_password(&self, password: &str) -> bool {
        self.state == UserState::Active
            && self
                .password
                .as_deref()
                .is_some_and(|h| crate::password::verify(password, h))
    }
}

/// Account store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The e-mail address is unusable.
    #[error("invalid e-mail address {0:?}: need a non-empty local part and domain")]
    BadEmail(String),
    /// `user add` of an existing user.
    #[error("user {0} already exists")]
    Exists(String),
    /// No such user.
    #[error("no user {0} (see `user list`)")]
    NoSuchUser(String),
    /// A token for a disabled user.
    #[error("user {0} is disabled")]
    Disabled(String),
    /// An enrolment link that is unknown, used or expired (one answer for
    /// all three: which one it was helps nobody but a guesser).
    #[error("this enrolment link is not valid (used, expired or unknown)")]
    BadLink,
    /// The users file is not what this program writes.
    #[error("users file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The users file could not be read or written.
    #[error("users file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

type Users = BTreeMap<String, User>;

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The account store of a state directory.
#[derive(Debug)]
pub struct Accounts {
    state: PathBuf,
    path: PathBuf,
    cache: Mutex<(Stamp, Users)>,
}

impl Accounts {
    /// The store of `state` (nothing is read yet).
    pub fn new(state: &Path) -> Accounts {
        Accounts {
            state: state.to_path_buf(),
            path: state.join("users.json"),
            cache: Mutex::new((None, Users::new())),
        }
    }

    fn io(&self, source: std::io::Error) -> AccountError {
        AccountError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn parse(&self, text: &str) -> Result<Users, AccountError> {
        serde_json::from_str(text).map_err(|e| AccountError::Corrupt {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })
    }

    fn read(&self) -> Result<Users, AccountError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => self.parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Reads, changes and writes back the users under the state lock;
    /// `change` returns what the caller gets.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Users) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        let _lock = statefile::lock(&self.state).map_err(|e| self.io(e))?;
        let mut users = self.read()?;
        let out = change(&mut users)?;
        let text = serde_json::to_vec_pretty(&users).map_err(|e| AccountError::Corrupt {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        statefile::replace(&self.path, &text).map_err(|e| self.io(e))?;
        Ok(out)
    }

    /// Adds a pending user and returns their enrolment token (shown once).
    pub fn add(&self, email: &str, role: Role, link_ttl: Duration) -> Result<String, AccountError> {
        if user_of(email).is_err() || email.contains(char::is_whitespace) {
            return Err(AccountError::BadEmail(email.to_string()));
        }
        let token = format!("gme_{}", hex::encode(rand::random::<[u8; 32]>()));
        let now = now_unix();
        self.update(|users| {
            if users.contains_key(email) {
                return Err(AccountError::Exists(email.to_string()));
            }
            users.insert(
                email.to_string(),
                User {
                    email: email.to_string(),
                    role,
                    state: UserState::Pending,
                    created: now,
                    password: None,
                    enrol: Some(Enrolment {
                        hash: sha256(&token),
                        expires: now.saturating_add(link_ttl.as_secs()),
                    }),
                },
            );
            Ok(())
        })?;
        Ok(token)
    }

    /// Every user, by e-mail.
    pub fn list(&self) -> Result<Vec<User>, AccountError> {
        Ok(self.read()?.into_values().collect())
    }

    /// One user, if they exist.
    pub fn find(&self, email: &str) -> Result<Option<User>, AccountError> {
        Ok(self.read()?.remove(email))
    }

    /// Disables or re-enables a user (re-enabled users without a password
    /// stay pending).
    pub fn set_disabled(&self, email: &str, disabled: bool) -> Result<(), AccountError> {
        self.update(|users| {
            let u = users
                .get_mut(email)
                .ok_or_else(|| AccountError::NoSuchUser(email.to_string()))?;
            u.state = match (disabled, &u.password) {
                (true, _) => UserState::Disabled,
                (false, Some(_)) => UserState::Active,
                (false, None) => UserState::Pending,
            };
            Ok(())
        })
    }

    /// Removes a user.
    pub fn remove(&self, email: &str) -> Result<(), AccountError> {
        self.update(|users| {
            users
                .remove(email)
                .map(drop)
                .ok_or_else(|| AccountError::NoSuchUser(email.to_string()))
        })
    }

    /// The user whose enrolment link carries `token`, while it is valid.
    pub fn enrolment(&self, token: &str) -> Result<User, AccountError> {
        find_enrolment(&self.read()?, &sha256(token), now_unix())
            .cloned()
            .ok_or(AccountError::BadLink)
    }

    /// Sets the password of the user the link `token` is for, and spends
    /// the link. `phc` is the password's argon2id hash.
    pub fn enrol(&self, token: &str, phc: String) -> Result<String, AccountError> {
        let h = sha256(token);
        self.update(|users| {
            let email = find_enrolment(users, &h, now_unix())
                .map(|u| u.email.clone())
                .ok_or(AccountError::BadLink)?;
            let u = users.get_mut(&email).ok_or(AccountError::BadLink)?;
            u.password = Some(phc);
            u.enrol = None;
            u.state = UserState::Active;
            Ok(email)
        })
    }

    /// The user `email` as the file says now (cached; reread when the
    /// file changed), read off the async workers.
    pub async fn get(&self, email: &str) -> Result<Option<User>, AccountError> {
        let stamp = match tokio::fs::metadata(&self.path).await {
            Ok(m) => statefile::stamp(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let stale = {
            let c = self.cache.lock();
            c.0.is_none() || c.0 != stamp
        };
        if stale {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| self.io(e))?;
            let users = self.parse(&text)?;
            *self.cache.lock() = (stamp, users);
        }
        Ok(self.cache.lock().1.get(email).cloned())
    }
}

/// The pending user whose unexpired link has hash `h` (every link is
/// compared, in constant time).
fn find_enrolment<'a>(users: &'a Users, h: &str, now: u64) -> Option<&'a User> {
    let mut found = None;
    for u in users.values() {
        if let Some(e) = &u.enrol
            && bool::from(e.hash.as_bytes().ct_eq(h.as_bytes()))
        {
            found = Some(u);
        }
    }
    found.filter(|u| {
        u.state == UserState::Pending && u.enrol.as_ref().is_some_and(|e| e.expires > now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_is_one_time() {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path());
        let link = a.add("ann@example.com", Role::Admin, ENROL_TTL).unwrap();
        assert!(matches!(
            a.add("ann@example.com", Role::User, ENROL_TTL),
            Err(AccountError::Exists(_))
        ));
        assert_eq!(a.enrolment(&link).unwrap().state, UserState::Pending);
        assert!(matches!(
            a.enrolment("gme_nope"),
            Err(AccountError::BadLink)
        ));
        let phc = crate::password::hash("a long password").unwrap();
        assert_eq!(a.enrol(&link, phc.clone()).unwrap(), "ann@example.com");
        assert!(matches!(a.enrolment(&link), Err(AccountError::BadLink)));
        assert!(matches!(a.enrol(&link, phc), Err(AccountError::BadLink)));
        let u = a.find("ann@example.com").unwrap().unwrap();
        assert_eq!((u.state, u.role), (UserState::Active, Role::Admin));
        assert!(u.check_password("a long password"));
        assert!(!u.check_password("a long passworD"));
        let text = std::fs::read_to_string(d.path().join("users.json")).unwrap();
        assert!(!text.contains(&link) && !text.contains("a long password"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("users.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn enrolment_expires() {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path());
        let link = a
            .add("bo@example.com", Role::User, Duration::from_secs(1))
            .unwrap();
        let now = now_unix();
        let users = a.read().unwrap();
        assert!(find_enrolment(&users, &sha256(&link), now).is_some());
        assert!(find_enrolment(&users, &sha256(&link), now + 2).is_none());
    }

    #[tokio::test]
    async fn disable_enable_remove() {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path());
        a.add("cy@example.com", Role::User, ENROL_TTL).unwrap();
        assert_eq!(
            a.get("cy@example.com").await.unwrap().unwrap().state,
            UserState::Pending
        );
        a.set_disabled("cy@example.com", true).unwrap();
        assert_eq!(
            a.get("cy@example.com").await.unwrap().unwrap().state,
            UserState::Disabled
        );
        a.set_disabled("cy@example.com", false).unwrap();
        assert_eq!(
            a.get("cy@example.com").await.unwrap().unwrap().state,
            UserState::Pending
        );
        a.remove("cy@example.com").unwrap();
        assert_eq!(a.get("cy@example.com").await.unwrap(), None);
        assert!(matches!(
            a.remove("cy@example.com"),
            Err(AccountError::NoSuchUser(_))
        ));
        assert!(matches!(
            a.add("nope", Role::User, ENROL_TTL),
            Err(AccountError::BadEmail(_))
        ));
    }
}
