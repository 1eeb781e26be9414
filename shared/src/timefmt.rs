//! Time as gomote prints and stores it: RFC 3339 in UTC to the second (in
//! messages such as "instance X died at ..."), and Unix seconds (the
//! GomoteService API's timestamps).

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds of a time, rounded down; times before 1970 give 0, as the
/// API has no use for them.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// RFC 3339 in UTC without fractions (`2009-11-10T23:00:00Z`), or `None`
/// for a time RFC 3339 cannot write (beyond year 9999).
pub fn rfc3339_opt(t: SystemTime) -> Option<String> {
    // Whole seconds rounded down, before 1970 too, as dropping the
    // nanoseconds of a calendar time does.
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).ok()?;
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// [`rfc3339_opt`], or `@<unix seconds>` for a time it cannot write.
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_opt(t).unwrap_or_else(|| format!("@{}", unix(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_seconds_without_fraction() {
        let t = UNIX_EPOCH + Duration::new(1_257_894_000, 999_999_999);
        assert_eq!(rfc3339(t), "2009-11-10T23:00:00Z");
        assert_eq!(unix(t), 1_257_894_000);
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn before_1970_rounds_down() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(rfc3339(t), "1969-12-31T23:59:59Z");
        assert_eq!(unix(t), 0);
    }

    #[test]
    fn matches_the_calendar_formatting_it_replaces() {
        // What the coordinator and the daemon wrote by hand before.
        let t = UNIX_EPOCH + Duration::new(1_700_000_123, 456_000_000);
        let old = OffsetDateTime::from(t)
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok());
        assert_eq!(rfc3339_opt(t), old);
    }

    #[test]
    fn beyond_year_9999_falls_back_to_unix_seconds() {
        let secs = 253_402_300_800u64; // 10000-01-01T00:00:00Z
        if let Some(t) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
            assert_eq!(rfc3339_opt(t), None);
            assert_eq!(rfc3339(t), format!("@{secs}"));
        }
    }
}
