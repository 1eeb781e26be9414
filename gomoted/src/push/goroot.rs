//! Which GOROOT a command pushes: `$GOROOT` as the CLI saw it, else the
//! host's `go env GOROOT` (bounded, off the async workers), made canonical
//! once per command; and the fake VERSION a tree without one gets.

use std::path::{Path, PathBuf};

use gomote_shared::goenv::{self, GoEnvError};

/// Why there is no GOROOT to push.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GorootError {
    /// No `$GOROOT`, and `go env GOROOT` did not say.
    #[error(transparent)]
    GoEnv(#[from] GoEnvError),
    /// The directory is not there.
    #[error("GOROOT {path}: {detail}")]
    Missing {
        /// The path.
        path: String,
        /// Why.
        detail: String,
    },
}

/// The GOROOT to push, canonical: `env` (the CLI's `$GOROOT`) if set, else
/// `go env GOROOT`.
pub async fn resolve(env: Option<&Path>) -> Result<PathBuf, GorootError> {
    let root = match env.filter(|g| !g.as_os_str().is_empty()) {
        Some(g) => g.to_path_buf(),
        None => goenv::goroot(goenv::TIMEOUT).await?,
    };
    tokio::fs::canonicalize(&root)
        .await
        .map_err(|e| GorootError::Missing {
            path: root.display().to_string(),
            detail: e.to_string(),
        })
}

/// The VERSION a tree without one gets: `go1.N-devel_gomote`, N from
/// `src/internal/goversion/goversion.go`.
pub(super) fn fake_version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("src/internal/goversion/goversion.go")).ok()?;
    let n = text.lines().find_map(|l| {
        let digits = l.strip_prefix("const Version = ")?;
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        (end > 0).then(|| digits[..end].to_string())
    })?;
    Some(format!("go1.{n}-devel_gomote"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_version_from_goversion() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("src/internal/goversion/goversion.go");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "package goversion\n\nconst Version = 19\n").unwrap();
        assert_eq!(
            fake_version(d.path()).as_deref(),
            Some("go1.19-devel_gomote")
        );
        std::fs::write(&f, "package goversion\n").unwrap();
        assert_eq!(fake_version(d.path()), None);
    }

    #[tokio::test]
    async fn env_goroot_is_made_canonical_and_missing_is_named() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        let got = resolve(Some(&link)).await.unwrap();
        assert_eq!(got, d.path().canonicalize().unwrap());
        let e = resolve(Some(&d.path().join("nope"))).await.unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
