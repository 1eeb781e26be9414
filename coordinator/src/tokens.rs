//! Bearer tokens: created by `gomote-coordinator token create`, stored
//! hashed (SHA-256) in `<state>/tokens`, one line each, so a token can be
//! added while the coordinator runs (it rereads the file when it changes).
//! Each maps to an identity: the owner ID (a stable subject derived from
//! the e-mail) and the user name (the e-mail's local part).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The e-mail address the token was made for.
    pub email: String,
    /// The stable owner ID every ownership check compares.
    pub owner: String,
    /// The e-mail's local part, used in instance names.
    pub user: String,
}

/// Token store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The e-mail address is unusable.
    #[error("invalid e-mail address {0:?}: need a non-empty local part and domain")]
    BadEmail(String),
    /// The tokens file could not be read or written.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Splits an e-mail into its local part, as Go's server does (text before
/// the last `@`; empty local part or domain is an error).
pub fn user_of(email: &str) -> Result<String, TokenError> {
    match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(local.to_string()),
        _ => Err(TokenError::BadEmail(email.to_string())),
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The parsed tokens file and the modification time it was read at.
type Cache = (Option<SystemTime>, Vec<(String, Identity)>);

/// The tokens file of a state directory, cached in memory.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl Tokens {
    /// Opens (without reading yet) `<state>/tokens`.
    pub fn new(state: &Path) -> Tokens {
        Tokens {
            path: state.join("tokens"),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    fn io(&self, source: std::io::Error) -> TokenError {
        TokenError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Makes a new token for `email` and records its hash.
    pub fn create(&self, email: &str) -> Result<String, TokenError> {
        user_of(email)?;
        if email.contains(char::is_whitespace) {
            return Err(TokenError::BadEmail(email.to_string()));
        }
        let token = format!("gmt_{}", hex::encode(rand::random::<[u8; 32]>()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode_0600()
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        // One write of one short line: appends of this size are atomic, so
        // concurrent `token create` runs never interleave.
        f.write_all(format!("{} {}\n", hash(&token), email).as_bytes())
            .map_err(|e| self.io(e))?;
        Ok(token)
    }

    /// The identity a bearer token stands for, rereading the file if it
    /// changed since the last look. The file may sit on a slow disk, so it
    /// is looked at off the async workers.
    pub async fn lookup(&self, token: &str) -> Result<Option<Identity>, TokenError> {
        let h = hash(token);
        let mtime = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let stale = {
            let cache = self.cache.lock();
            cache.0.is_none() || cache.0 != mtime
        };
        if stale {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| self.io(e))?;
            // Concurrent lookups may both reread; either result is current.
            *self.cache.lock() = (mtime, parse(&text));
        }
        // Compare every entry in constant time so timing says nothing about
        // which prefix matched.
        use subtle::ConstantTimeEq;
        let mut found = None;
        for (eh, id) in &self.cache.lock().1 {
            if bool::from(eh.as_bytes().ct_eq(h.as_bytes())) {
                found = Some(id.clone());
            }
        }
        Ok(found)
    }
}

/// The entries of a tokens file: hash, then e-mail, per line.
fn parse(text: &str) -> Vec<(String, Identity)> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(h, email)| {
            let user = user_of(email).ok()?;
            Some((
                h.to_string(),
                Identity {
                    email: email.to_string(),
                    owner: format!("local:{email}"),
                    user,
                },
            ))
        })
        .collect()
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_and_lookup() {
        let d = tempfile::tempdir().unwrap();
        let t = Tokens::new(d.path());
        let a = t.create("alice@example.com").unwrap();
        let b = t.create("bob@example.org").unwrap();
        let ida = t.lookup(&a).await.unwrap().unwrap();
        assert_eq!(
            (ida.user.as_str(), ida.owner.as_str()),
            ("alice", "local:alice@example.com")
        );
        assert_eq!(t.lookup(&b).await.unwrap().unwrap().user, "bob");
        assert_eq!(t.lookup("gmt_wrong").await.unwrap(), None);
        let text = std::fs::read_to_string(d.path().join("tokens")).unwrap();
        assert!(!text.contains(&a), "tokens are stored hashed");
    }

    #[test]
    fn emails_like_go() {
        assert_eq!(user_of("a@b@c.com").unwrap(), "a@b");
        assert!(user_of("@x.com").is_err());
        assert!(user_of("alice@").is_err());
        assert!(user_of("alice").is_err());
    }
}
