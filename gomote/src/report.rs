//! Errors as one line of text: the error, then each cause after `: `, as
//! anyhow's `{:#}` prints them. For the messages that carry an error inside
//! another one ([`crate::autostart::DaemonUnavailable`], run notes).

use std::error::Error;
use std::fmt::Write as _;

/// `e` and its causes, `: `-separated.
pub fn one_line(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(line, ": {c}");
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::one_line(&e), "outer: inner");
        let direct = anyhow::Error::new(Outer(std::io::Error::other("inner")));
        assert_eq!(super::one_line(&e), format!("{direct:#}"));
    }
}
