//! Builder type names: ours (`linux-amd64`), and the Go project's names
//! for the same builders (`gotip-linux-amd64`, `go1.23-linux-amd64`), which
//! Go developers type from habit; and for a name that is almost right, a
//! suggestion ("did you mean ...?").

use crate::config::{Builder, Config};
use crate::error::CoordError;

/// The prefix the Go project's builder names put on a builder type, if
/// `name` has one: `gotip-` or `go1.NN-` (Go's LUCI builders are named
/// `gotip-linux-amd64`, `go1.23-linux-amd64-race`).
fn go_prefix(name: &str) -> Option<(&str, &str)> {
    if let Some(rest) = name.strip_prefix("gotip-") {
        return Some(("gotip-", rest));
    }
    let minor = name.strip_prefix("go1.")?;
    let digits = minor.bytes().take_while(u8::is_ascii_digit).count();
    let rest = minor[digits..].strip_prefix('-')?;
    (digits > 0).then(|| (&name[..name.len() - rest.len()], rest))
}

/// The builder `name` stands for: one of ours by name, or by a Go-style
/// name. An unknown name gets the closest one on offer as a suggestion,
/// spelled the way the caller spelled theirs.
pub fn resolve<'c>(config: &'c Config, name: &str) -> Result<&'c Builder, CoordError> {
    if let Some(b) = config.builder(name) {
        return Ok(b);
    }
    let (prefix, core) = go_prefix(name).unwrap_or(("", name));
    if let Some(b) = config.builder(core) {
        return Ok(b);
    }
    let mut offered: Vec<String> = config.builders.iter().map(|b| b.name.clone()).collect();
    offered.sort();
    let suggestion = closest(core, &offered).map(|c| format!("{prefix}{c}"));
    Err(CoordError::UnknownBuilder {
        name: name.to_string(),
        suggestion,
        offered,
    })
}

/// Every name ListSwarmingBuilders shows: ours and their `gotip-` forms
/// (`go1.NN-` forms are accepted but not listed: there is one per release).
pub fn listed(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .builders
        .iter()
        .flat_map(|b| [b.name.clone(), format!("gotip-{}", b.name)])
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The candidate nearest to `name` in edit distance (a transposition
/// counts once), if it is near enough to be a typo: at most 2 edits, or a
/// fifth of the name for long names. Ties go to the first in order.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let limit = 2.max(name.chars().count() / 5);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent
/// transpositions (`amd46` is one edit from `amd64`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * w] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostType;

    fn config(names: &[&str]) -> Config {
        Config {
            host_types: vec![HostType {
                name: "h".into(),
                pool: "local".into(),
                capacity: 1,
            }],
            builders: names
                .iter()
                .map(|n| Builder {
                    name: (*n).into(),
                    host_type: "h".into(),
                    env: vec![],
                    bootstrap: None,
                })
                .collect(),
            ..Config::default()
        }
    }

    fn name(c: &Config, n: &str) -> Result<String, String> {
        resolve(c, n)
            .map(|b| b.name.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn go_names_are_aliases() {
        let c = config(&["linux-amd64", "linux-amd64-race", "gotip-weird"]);
        for (asked, want) in [
            ("linux-amd64", "linux-amd64"),
            ("gotip-linux-amd64", "linux-amd64"),
            ("go1.23-linux-amd64-race", "linux-amd64-race"),
            ("go1.9-linux-amd64", "linux-amd64"),
            // A configured name that looks like an alias is itself.
            ("gotip-weird", "gotip-weird"),
        ] {
            assert_eq!(name(&c, asked), Ok(want.to_string()), "{asked}");
        }
        for bad in ["go1.-linux-amd64", "go1.2x-linux-amd64", "gotip-", "go1.23"] {
            assert!(name(&c, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_names_get_a_suggestion_when_one_is_close() {
        let c = config(&["linux-386", "linux-amd64", "linux-amd64-race"]);
        let e = name(&c, "linux-amd46").unwrap_err();
        assert_eq!(
            e,
            "unknown builder type \"linux-amd46\"; did you mean \"linux-amd64\"? this coordinator offers: linux-386, linux-amd64, linux-amd64-race (each also as gotip-<type> or go1.NN-<type>)"
        );
        let e = name(&c, "gotip-linux-amd64-rac").unwrap_err();
        assert!(
            e.contains("did you mean \"gotip-linux-amd64-race\"?"),
            "{e}"
        );
        let e = name(&c, "go1.22-linx-amd64").unwrap_err();
        assert!(e.contains("did you mean \"go1.22-linux-amd64\"?"), "{e}");
        let e = name(&c, "windows-arm64").unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
        assert!(e.contains("linux-amd64"), "lists what is offered: {e}");
    }

    #[test]
    fn listed_has_ours_and_gotip_forms() {
        let c = config(&["linux-amd64", "linux-386"]);
        assert_eq!(
            listed(&c),
            vec![
                "gotip-linux-386",
                "gotip-linux-amd64",
                "linux-386",
                "linux-amd64"
            ]
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("amd64", "amd64"), 0);
        assert_eq!(edit_distance("amd46", "amd64"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("linux-386", "linux-amd64"), 4);
    }
}
