//! Bearer tokens: created by `gomote-coordinator token create`, stored
//! hashed (SHA-256) in `<state>/tokens`, one line each, so a token can be
//! added or revoked while the coordinator runs (it rereads the file when
//! it changes). Each maps to an identity: the owner ID (a stable subject
//! derived from the e-mail) and the user name (the e-mail's local part).
//!
//! A line is `<sha256> <email> <created> <expires>` (Unix seconds). Lines
//! of only `<sha256> <email>`, written before tokens expired, stay valid
//! and never expire. A token's ID is the start of its hash: enough to name
//! it in `token list` and `token revoke`, useless for finding the token.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::statefile::{self, Stamp};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The e-mail address the token was made for.
    pub email: String,
    /// The stable owner ID every ownership check compares.
    pub owner: String,
    /// The e-mail's local part, used in instance names.
    pub user: String,
    /// An administrator: sees and may destroy every instance.
    pub admin: bool,
}

/// Token store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The e-mail address is unusable.
    #[error("invalid e-mail address {0:?}: need a non-empty local part and domain")]
    BadEmail(String),
    /// No token has this ID.
    #[error("no token with ID {0:?} (see `token list`)")]
    NoSuchToken(String),
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

/// How long a token lives unless `token create --expires` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Length of a token ID (hex digits of its hash).
const ID_LEN: usize = 12;

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// SHA-256 of the token, hex.
    hash: String,
    /// The e-mail it acts as.
    pub email: String,
    /// Unix seconds it was made at (unknown for tokens older than expiry).
    pub created: Option<u64>,
    /// Unix seconds it expires at (never for tokens older than expiry).
    pub expires: Option<u64>,
}

impl Entry {
    /// The token's ID.
    pub fn id(&self) -> &str {
        self.hash.get(..ID_LEN).unwrap_or(&self.hash)
    }

    fn line(&self) -> String {
        match (self.created, self.expires) {
            (Some(c), Some(e)) => format!("{} {} {c} {e}\n", self.hash, self.email),
            (Some(c), None) => format!("{} {} {c} never\n", self.hash, self.email),
            _ => format!("{} {}\n", self.hash, self.email),
        }
    }
}

/// A token just made: shown once, then only its hash is kept.
#[derive(Debug)]
pub struct Issued {
    /// The bearer token.
    pub token: String,
    /// Its ID.
    pub id: String,
    /// Unix seconds it expires at.
    pub expires: u64,
}

/// What a bearer token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A valid token of this identity.
    Valid(Identity),
    /// A token that was valid until it expired.
    Expired,
    /// No such token (never made, or revoked).
    Unknown,
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a lifetime: a number with `s`, `m`, `h` or `d` (`90d`, `1s`).
pub fn parse_ttl(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The parsed tokens file and the version it was read at.
type Cache = (Stamp, Vec<Entry>);

/// The tokens file of a state directory, cached in memory.
#[derive(Debug)]
pub struct Tokens {
    state: PathBuf,
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl Tokens {
    /// Opens (without reading yet) `<state>/tokens`.
    pub fn new(state: &Path) -> Tokens {
        Tokens {
            state: state.to_path_buf(),
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

    /// Makes a new token for `email`, valid for `ttl`, and records its
    /// hash.
    pub fn create(&self, email: &str, ttl: Duration) -> Result<Issued, TokenError> {
        self.issue(email, Some(ttl))
    }

    /// Makes a token that never expires: only for the token an embedded
    /// coordinator's own daemon keeps.
    pub fn create_unexpiring(&self, email: &str) -> Result<Issued, TokenError> {
        self.issue(email, None)
    }

    fn issue(&self, email: &str, ttl: Option<Duration>) -> Result<Issued, TokenError> {
        user_of(email)?;
        if email.contains(char::is_whitespace) {
            return Err(TokenError::BadEmail(email.to_string()));
        }
        let token = format!("gmt_{}", hex::encode(rand::random::<[u8; 32]>()));
        let created = now_unix();
        let entry = Entry {
            hash: hash(&token),
            email: email.to_string(),
            created: Some(created),
            expires: ttl.map(|t| created.saturating_add(t.as_secs())),
        };
        // Under the lock: a concurrent revoke rewrites the file and must
        // not drop this line.
        let _lock = statefile::lock(&self.state).map_err(|e| self.io(e))?;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        f.write_all(entry.line().as_bytes())
            .map_err(|e| self.io(e))?;
        Ok(Issued {
            id: entry.id().to_string(),
            expires: entry.expires.unwrap_or(u64::MAX),
            token,
        })
    }

    /// Every token (for `token list`), oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, TokenError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Removes the tokens `doomed` picks and returns them.
    fn remove_where(&self, doomed: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>, TokenError> {
        let _lock = statefile::lock(&self.state).map_err(|e| self.io(e))?;
        let all = self.list()?;
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = all.into_iter().partition(|e| doomed(e));
        if !gone.is_empty() {
            let text: String = kept.iter().map(Entry::line).collect();
            statefile::replace(&self.path, text.as_bytes()).map_err(|e| self.io(e))?;
        }
        Ok(gone)
    }

    /// Revokes the token with this ID (`token revoke`).
    pub fn revoke(&self, id: &str) -> Result<Entry, TokenError> {
        if id.len() != ID_LEN {
            return Err(TokenError::NoSuchToken(id.to_string()));
        }
        self.remove_where(|e| e.id() == id)?
            .into_iter()
            .next()
            .ok_or_else(|| TokenError::NoSuchToken(id.to_string()))
    }

    /// Revokes every token of `email`; returns how many there were.
    pub fn revoke_user(&self, email: &str) -> Result<usize, TokenError> {
        Ok(self.remove_where(|e| e.email == email)?.len())
    }

    /// What a bearer token stands for, rereading the file if it changed
    /// since the last look. The file may sit on a slow disk, so it is
    /// looked at off the async workers.
    pub async fn lookup(&self, token: &str) -> Result<Lookup, TokenError> {
        let h = hash(token);
        let stamp = match tokio::fs::metadata(&self.path).await {
            Ok(m) => statefile::stamp(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Unknown),
            Err(e) => return Err(self.io(e)),
        };
        let stale = {
            let cache = self.cache.lock();
            cache.0.is_none() || cache.0 != stamp
        };
        if stale {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| self.io(e))?;
            // Concurrent lookups may both reread; either result is current.
            *self.cache.lock() = (stamp, parse(&text));
        }
        // Compare every entry in constant time so timing says nothing about
        // which prefix matched.
        use subtle::ConstantTimeEq;
        let mut found = None;
        for e in &self.cache.lock().1 {
            if bool::from(e.hash.as_bytes().ct_eq(h.as_bytes())) {
                found = Some(e.clone());
            }
        }
        let Some(e) = found else {
            return Ok(Lookup::Unknown);
        };
        if e.expires.is_some_and(|x| x <= now_unix()) {
            return Ok(Lookup::Expired);
        }
        let Ok(user) = user_of(&e.email) else {
            return Ok(Lookup::Unknown);
        };
        Ok(Lookup::Valid(Identity {
            owner: format!("local:{}", e.email),
            email: e.email,
            user,
            admin: false,
        }))
    }
}

/// The entries of a tokens file.
fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let hash = f.next()?.to_string();
            let email = f.next()?.to_string();
            user_of(&email).ok()?;
            let created = f.next().and_then(|v| v.parse().ok());
            let expires = f.next().and_then(|v| v.parse().ok());
            Some(Entry {
                hash,
                email,
                created,
                expires,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(l: Lookup) -> Identity {
        match l {
            Lookup::Valid(id) => id,
            other => panic!("not valid: {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_and_lookup() {
        let d = tempfile::tempdir().unwrap();
        let t = Tokens::new(d.path());
        let a = t.create("alice@example.com", DEFAULT_TTL).unwrap().token;
        let b = t.create("bob@example.org", DEFAULT_TTL).unwrap().token;
        let ida = valid(t.lookup(&a).await.unwrap());
        assert_eq!(
            (ida.user.as_str(), ida.owner.as_str()),
            ("alice", "local:alice@example.com")
        );
        assert_eq!(valid(t.lookup(&b).await.unwrap()).user, "bob");
        assert_eq!(t.lookup("gmt_wrong").await.unwrap(), Lookup::Unknown);
        let text = std::fs::read_to_string(d.path().join("tokens")).unwrap();
        assert!(!text.contains(&a), "tokens are stored hashed");
    }

    #[tokio::test]
    async fn old_lines_never_expire() {
        let d = tempfile::tempdir().unwrap();
        let old = "gmt_old";
        std::fs::write(
            d.path().join("tokens"),
            format!("{} ci@example.com\n", hash(old)),
        )
        .unwrap();
        let t = Tokens::new(d.path());
        assert_eq!(valid(t.lookup(old).await.unwrap()).email, "ci@example.com");
        let l = t.list().unwrap();
        assert_eq!((l[0].created, l[0].expires), (None, None));
        // A new token appended after it leaves it readable.
        t.create("x@example.com", DEFAULT_TTL).unwrap();
        assert!(matches!(t.lookup(old).await.unwrap(), Lookup::Valid(_)));
        let forever = t.create_unexpiring("me@localhost").unwrap();
        assert!(matches!(
            t.lookup(&forever.token).await.unwrap(),
            Lookup::Valid(_)
        ));
        let l = t.list().unwrap();
        assert_eq!(l.last().unwrap().expires, None);
    }

    #[tokio::test]
    async fn expiry_and_revocation() {
        let d = tempfile::tempdir().unwrap();
        let t = Tokens::new(d.path());
        let short = t.create("a@example.com", Duration::from_secs(1)).unwrap();
        let keep = t.create("a@example.com", DEFAULT_TTL).unwrap();
        let other = t.create("b@example.com", DEFAULT_TTL).unwrap();
        assert!(matches!(
            t.lookup(&short.token).await.unwrap(),
            Lookup::Valid(_)
        ));
        // Expire it by hand rather than sleeping.
        let text = std::fs::read_to_string(d.path().join("tokens")).unwrap();
        let past = now_unix() - 1;
        let text = text.replacen(&format!(" {}\n", short.expires), &format!(" {past}\n"), 1);
        statefile::replace(&d.path().join("tokens"), text.as_bytes()).unwrap();
        assert_eq!(t.lookup(&short.token).await.unwrap(), Lookup::Expired);

        assert_eq!(t.revoke(&keep.id).unwrap().email, "a@example.com");
        assert_eq!(t.lookup(&keep.token).await.unwrap(), Lookup::Unknown);
        assert!(matches!(
            t.revoke(&keep.id),
            Err(TokenError::NoSuchToken(_))
        ));
        assert!(matches!(t.revoke(""), Err(TokenError::NoSuchToken(_))));

        assert_eq!(t.revoke_user("b@example.com").unwrap(), 1);
        assert_eq!(t.lookup(&other.token).await.unwrap(), Lookup::Unknown);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("tokens"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_ttl("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_ttl("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_ttl("5"), None);
        assert_eq!(parse_ttl("d"), None);
        assert_eq!(parse_ttl("5y"), None);
    }

    #[test]
    fn emails_like_go() {
        assert_eq!(user_of("a@b@c.com").unwrap(), "a@b");
        assert!(user_of("@x.com").is_err());
        assert!(user_of("alice@").is_err());
        assert!(user_of("alice").is_err());
    }
}
