//! Go's `strconv` syntax for flag values ([`go_bool`], [`go_int`],
//! [`go_count`]), so `-count=0x10` and `-setup=T` mean what they mean to
//! Go's gomote; clap calls these as value parsers.

/// A flag value Go's `strconv` would refuse; clap prints it after
/// "invalid value '...' for '...': ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not one of Go's boolean spellings.
    #[error("parse error: {0:?} is not a boolean")]
    NotBool(String),
    /// Not a Go integer literal.
    #[error("parse error: {0:?} is not an integer")]
    NotInt(String),
    /// An integer, but not one that fits a `u32`.
    #[error("{0} is out of range (0 to {max})", max = u32::MAX)]
    OutOfRange(i64),
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ValueError::NotBool(s.to_string())),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/`0`
/// prefixes, `_` between digits.
pub fn go_int(s: &str) -> Result<i64, ValueError> {
    let bad = || ValueError::NotInt(s.to_string());
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores only between digits (or right after a base prefix).
    if digits.is_empty()
        || digits.ends_with('_')
        || digits.contains("__")
        || (digits.starts_with('_') && !prefixed)
    {
        return Err(bad());
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() || clean.starts_with(['+', '-']) {
        return Err(bad());
    }
    let v = i64::from_str_radix(&clean, radix).map_err(|_| bad())?;
    Ok(if neg { -v } else { v })
}

/// `-count`: a Go integer that fits a `u32`.
pub fn go_count(s: &str) -> Result<u32, ValueError> {
    let v = go_int(s)?;
    u32::try_from(v).map_err(|_| ValueError::OutOfRange(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ints() {
        assert_eq!(go_int("3"), Ok(3));
        assert_eq!(go_int("0x10"), Ok(16));
        assert_eq!(go_int("0X1f"), Ok(31));
        assert_eq!(go_int("010"), Ok(8));
        assert_eq!(go_int("0o17"), Ok(15));
        assert_eq!(go_int("0b101"), Ok(5));
        assert_eq!(go_int("1_000"), Ok(1000));
        assert_eq!(go_int("0"), Ok(0));
        assert_eq!(go_int("-2"), Ok(-2));
        for bad in ["", "x", "0x", "1_", "_1", "1__0", "09", "--1", "+-1", "1.5"] {
            assert!(go_int(bad).is_err(), "{bad}");
        }
        assert_eq!(go_count("0x10"), Ok(16));
        assert!(go_count("-1").is_err());
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        assert!(go_bool("yes").is_err());
    }

    #[test]
    fn messages_read_like_go() {
        assert_eq!(
            go_bool("yes").unwrap_err().to_string(),
            r#"parse error: "yes" is not a boolean"#
        );
        assert_eq!(
            go_int("1.5").unwrap_err().to_string(),
            r#"parse error: "1.5" is not an integer"#
        );
        assert_eq!(
            go_count("-1").unwrap_err().to_string(),
            format!("-1 is out of range (0 to {})", u32::MAX)
        );
    }
}
