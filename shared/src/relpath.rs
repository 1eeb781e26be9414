//! The one validation function every client-supplied path goes through
//! (docs/protocol.md 4.4, Go's `nativeRelPath`), made a little stricter than Go's,
//! and the lexical path rules it rests on: cleaning, and whether a path
//! stays under a directory.

use std::path::{Component, Path, PathBuf};

/// Why a client path was refused. The text is what the HTTP 400 body says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelPathError {
    /// The path was empty.
    #[error("path not provided")]
    Empty,
    /// The path was absolute.
    #[error("path {0:?} is not relative")]
    Absolute(String),
    /// The path climbs out of its base with `..`.
    #[error("path {0:?} refers to a parent directory")]
    Parent(String),
    /// The path starts with a Windows drive letter or a UNC/backslash root.
    #[error("path {0:?} has a volume name")]
    Volume(String),
    /// The path holds a NUL byte, which no file system accepts.
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

/// Checks a slash-separated client path and returns it cleaned, as a relative
/// native path with only normal components. `"."` (and anything that cleans to
/// it) yields an empty path, meaning the base directory itself.
///
/// Like Go's `nativeRelPath` it rejects empty, absolute and parent-escaping
/// paths. Beyond Go (whose Linux build never sees a volume name) it also
/// rejects drive letters (`C:x`, `c:/x`) and backslash roots, so a Windows
/// client's path means the same thing on every buildlet.
pub fn validate(p: &str) -> Result<PathBuf, RelPathError> {
    if p.is_empty() {
        return Err(RelPathError::Empty);
    }
    if p.contains('\0') {
        return Err(RelPathError::Nul(p.to_string()));
    }
    let bytes = p.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(RelPathError::Volume(p.to_string()));
    }
    if p.starts_with('\\') {
        return Err(RelPathError::Volume(p.to_string()));
    }
    if p.starts_with('/') {
        return Err(RelPathError::Absolute(p.to_string()));
    }
    if !is_under(Path::new(""), Path::new(p)) {
        return Err(RelPathError::Parent(p.to_string()));
    }
    Ok(clean(Path::new(p)))
}

/// Cleans `p` lexically, as Go's `filepath.Clean` does, without looking at
/// the file system: drops `.` and empty components, folds `name/..`, drops
/// `..` right after the root (`/..` is `/`), and keeps the leading `..` of
/// a relative path that climbs above its start. An empty result stands for
/// the starting directory itself (Go would write `.`).
pub fn clean(p: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                None | Some(Component::ParentDir | Component::CurDir) => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// Reports whether `path` is `dir` or lies below it, judged lexically on
/// whole components after cleaning both: `a/bc` is not under `a/b`, and
/// `a/b/../../x` is not under `a`. A relative path is never under an
/// absolute directory, nor the reverse. Symlinks are not resolved: callers
/// that touch the file system pair this with [`crate::safefs`].
pub fn is_under(dir: &Path, path: &Path) -> bool {
    let (dir, path) = (clean(dir), clean(path));
    path.strip_prefix(&dir)
        .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
}

/// Reports whether `key` lies strictly below `dir`, both clean relative
/// paths with `/` separators (manifest keys). [`is_under`] for text that is
/// already clean: no cleaning and no allocation, as it runs once per file
/// of a tree.
pub fn key_below(dir: &str, key: &str) -> bool {
    key.len() > dir.len() && key.starts_with(dir) && key.as_bytes()[dir.len()] == b'/'
}

/// Reports whether `rel` (already validated) names the base directory itself.
pub fn is_base(rel: &Path) -> bool {
    rel.components().next().is_none()
}

/// Lexically resolves a symlink target relative to the directory holding the
/// link (`link_rel`, relative to the root) and reports whether it stays inside
/// the root. Absolute targets never do: the client cannot know where the root
/// lives on the remote machine.
pub fn symlink_target_stays_inside(link_rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let from = link_rel.parent().unwrap_or(Path::new(""));
    is_under(Path::new(""), &from.join(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_cleans_relative_paths() {
        assert_eq!(validate("go/src").unwrap(), PathBuf::from("go/src"));
        assert_eq!(validate("./a//b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(validate("a/../b").unwrap(), PathBuf::from("b"));
        assert!(is_base(&validate(".").unwrap()));
        assert!(is_base(&validate("a/..").unwrap()));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(validate(""), Err(RelPathError::Empty));
        assert!(matches!(validate("/etc"), Err(RelPathError::Absolute(_))));
        assert!(matches!(validate(".."), Err(RelPathError::Parent(_))));
        assert!(matches!(validate("../x"), Err(RelPathError::Parent(_))));
        assert!(matches!(
            validate("a/../../x"),
            Err(RelPathError::Parent(_))
        ));
    }

    #[test]
    fn rejects_volumes_and_nul() {
        assert!(matches!(validate("C:x"), Err(RelPathError::Volume(_))));
        assert!(matches!(
            validate("c:/windows"),
            Err(RelPathError::Volume(_))
        ));
        assert!(matches!(
            validate("\\\\server\\share"),
            Err(RelPathError::Volume(_))
        ));
        assert!(matches!(validate("a\0b"), Err(RelPathError::Nul(_))));
    }

    #[test]
    fn error_text_is_one_line() {
        let e = validate("../etc/passwd").unwrap_err().to_string();
        assert_eq!(e, "path \"../etc/passwd\" refers to a parent directory");
    }

    #[test]
    fn keys_below_a_directory() {
        assert!(key_below("a", "a/b"));
        assert!(key_below("a/b", "a/b/c"));
        assert!(!key_below("a", "a"));
        assert!(!key_below("a", "ab"));
        assert!(!key_below("a/b", "a"));
    }

    #[test]
    fn cleans_like_go() {
        for (input, want) in [
            ("", ""),
            (".", ""),
            ("a/./b/", "a/b"),
            ("a//b", "a/b"),
            ("a/b/..", "a"),
            ("a/../..", ".."),
            ("../../a/../b", "../../b"),
            ("/", "/"),
            ("/..", "/"),
            ("/../a/./b/../c", "/a/c"),
            ("//a", "/a"),
        ] {
            assert_eq!(clean(Path::new(input)), PathBuf::from(want), "{input:?}");
        }
    }

    #[test]
    fn under_a_directory() {
        let yes = |d: &str, p: &str| is_under(Path::new(d), Path::new(p));
        assert!(yes("a/b", "a/b"));
        assert!(yes("a/b", "a/b/c"));
        assert!(yes("a/b", "a/./b/c/../d"));
        assert!(yes("", "x"));
        assert!(yes("", "."));
        assert!(yes("/", "/etc"));
        assert!(yes("/w", "/w/go/../src"));
        assert!(yes("..", "../a"));
        assert!(!yes("a/b", "a/bc"), "a sibling sharing a prefix");
        assert!(!yes("a/b", "a"));
        assert!(!yes("a", "a/b/../../x"));
        assert!(!yes("", ".."));
        assert!(!yes("", "a/../../x"));
        assert!(!yes("/w", "/w/../etc"));
        assert!(!yes("/w", "w/x"), "relative is not under absolute");
        assert!(!yes("w", "/w/x"), "absolute is not under relative");
    }

    #[test]
    fn symlink_targets() {
        let l = Path::new("go/src/link");
        assert!(symlink_target_stays_inside(l, Path::new("x")));
        assert!(symlink_target_stays_inside(l, Path::new("../../y")));
        assert!(!symlink_target_stays_inside(l, Path::new("../../../y")));
        assert!(!symlink_target_stays_inside(l, Path::new("/etc")));
        assert!(!symlink_target_stays_inside(
            Path::new("top"),
            Path::new("..")
        ));
    }
}
