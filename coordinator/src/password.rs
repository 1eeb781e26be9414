//! Passwords: the rules a new one must meet, and argon2id hashing and
//! verification (kept apart from the web forms so the device sign-in page
//! can check passwords the same way).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted.
pub const MIN_LEN: usize = 12;
/// The longest: argon2 is slow on purpose, a huge input must not be free.
pub const MAX_LEN: usize = 1024;

/// Why a password was not accepted or could not be hashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    /// Too short.
    #[error("the password must have at least {MIN_LEN} characters")]
    TooShort,
    /// Too long.
    #[error("the password must have at most {MAX_LEN} characters")]
    TooLong,
    /// The two entries differ.
    #[error("the two passwords differ")]
    Mismatch,
    /// The hasher failed (it should not).
    #[error("hashing the password failed")]
    Hash,
}

/// Checks a new password (entered twice) against the rules.
pub fn check_new(password: &str, again: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    if password != again {
        return Err(PasswordError::Mismatch);
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|_| PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Whether `password` matches a PHC string made by [`hash`] (an
/// unreadable stored hash matches nothing). The comparison inside the
/// verifier is constant-time.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(h, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn rules() {
        assert_eq!(check_new("short", "short"), Err(PasswordError::TooShort));
        assert_eq!(
            check_new("long enough pw", "long enough pW"),
            Err(PasswordError::Mismatch)
        );
        let huge = "x".repeat(MAX_LEN + 1);
        assert_eq!(check_new(&huge, &huge), Err(PasswordError::TooLong));
        assert_eq!(check_new("long enough pw", "long enough pw"), Ok(()));
    }
}
