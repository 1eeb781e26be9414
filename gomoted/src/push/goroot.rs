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
    /// It is not a Go source tree.
    #[error(
        "GOROOT {path}{from} is not a Go source tree: it has no src/make.bash, src/make.bat or src/make.rc ({found}); point GOROOT at a Go checkout, e.g. `GOROOT=$HOME/go gomote push NAME`"
    )]
    NotGoroot {
        /// The path.
        path: String,
        /// Where it came from, when not `$GOROOT`.
        from: &'static str,
        /// What is there instead.
        found: String,
    },
}

/// The GOROOT to push, canonical: `env` (the CLI's `$GOROOT`) if set, else
/// `go env GOROOT`. A tree that cannot build Go (no `src/make.*`) is
/// refused: pushing it would "succeed" with nothing useful on the instance.
pub async fn resolve(env: Option<&Path>) -> Result<PathBuf, GorootError> {
    let (root, from) = match env.filter(|g| !g.as_os_str().is_empty()) {
        Some(g) => (g.to_path_buf(), ""),
        None => (
            goenv::goroot(goenv::TIMEOUT).await?,
            " (from `go env GOROOT`; $GOROOT is not set)",
        ),
    };
    let root = tokio::fs::canonicalize(&root)
        .await
        .map_err(|e| GorootError::Missing {
            path: root.display().to_string(),
            detail: e.to_string(),
        })?;
    let r = root.clone();
    let found = tokio::task::spawn_blocking(move || source_tree_or_contents(&r))
        .await
        .unwrap_or_else(|e| Some(e.to_string()));
    match found {
        None => Ok(root),
        Some(found) => Err(GorootError::NotGoroot {
            path: root.display().to_string(),
            from,
            found,
        }),
    }
}

/// `None` when `root` holds a Go source tree, else a short description of
/// what it holds.
fn source_tree_or_contents(root: &Path) -> Option<String> {
    if ["make.bash", "make.bat", "make.rc"]
        .iter()
        .any(|m| root.join("src").join(m).is_file())
    {
        return None;
    }
    let mut names: Vec<String> = match std::fs::read_dir(root) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return Some(e.to_string()),
    };
    names.sort();
    Some(match names.len() {
        0 => "it is empty".to_string(),
        n if n <= 6 => format!("found: {}", names.join(", ")),
        n => format!("found {n} entries: {}, ...", names[..5].join(", ")),
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
        std::fs::create_dir(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("src/make.bash"), "#!/bin/sh\n").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        let got = resolve(Some(&link)).await.unwrap();
        assert_eq!(got, d.path().canonicalize().unwrap());
        let e = resolve(Some(&d.path().join("nope"))).await.unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[tokio::test]
    async fn a_tree_without_make_bash_is_refused_saying_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.go"), "package main\n").unwrap();
        std::fs::write(d.path().join("go.mod"), "module x\n").unwrap();
        let e = resolve(Some(d.path())).await.unwrap_err().to_string();
        assert!(e.contains("is not a Go source tree"), "{e}");
        assert!(e.contains("found: go.mod, main.go"), "{e}");
        assert!(e.contains("point GOROOT at a Go checkout"), "{e}");
        std::fs::create_dir(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("src/make.rc"), "#!/bin/rc\n").unwrap();
        assert!(resolve(Some(d.path())).await.is_ok(), "make.rc is enough");
    }
}
