//! Time ranges as users type them: relative to now (`-1h`, `7d`, `now`), absolute
//! (`2019-08-26`, `2019-08-26T19:25:00Z`, `2019-08-26 19:25`), or Unix seconds.

use flowscope_record::time::{parse_datetime, parse_duration};

use crate::error::{Error, Result};

/// The last second a range may name: 9999-12-31T23:59:59Z. Later (or negative) times are
/// refused, so no range can size anything absurdly.
pub const LAST_SECOND: i64 = 253_402_300_799;

/// A half-open range of record start times `[start, end)`, in Unix seconds; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// First second included.
    pub start: Option<i64>,
    /// First second excluded.
    pub end: Option<i64>,
}

impl TimeRange {
    /// The range from the `--start`/`--end` texts, read relative to `now` (Unix seconds).
    ///
    /// # Errors
    /// [`Error::Invalid`] when a text is not a time, or the range ends before it starts.
    pub fn parse(start: Option<&str>, end: Option<&str>, now: i64) -> Result<Self> {
        let start = start.map(|t| parse_time(t, now)).transpose()?;
        let end = end.map(|t| parse_time(t, now)).transpose()?;
        for t in [start, end].into_iter().flatten() {
            if !(0..=LAST_SECOND).contains(&t) {
                return Err(Error::Invalid(format!(
                    "the time {t} is out of range: times are Unix seconds from 0 \
                     (1970-01-01) to {LAST_SECOND} (9999-12-31T23:59:59Z)"
                )));
            }
        }
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(Error::Invalid(format!(
                "the time range is empty: --end ({e}) is not after --start ({s})"
            )));
        }
        Ok(Self { start, end })
    }

    /// Whether neither end is set.
    pub fn is_unbounded(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// The range as SQL conditions on `start`, each with a leading ` AND ` (empty when
    /// unbounded): `start >= START - slack` and `start < END + slack`, on the columns of
    /// `alias` (`"f."`, or `""` for none).
    pub fn sql(&self, alias: &str, slack: i64) -> String {
        let mut s = String::new();
        if let Some(lo) = self.start {
            s.push_str(&format!(
                " AND {alias}start >= {}",
                lo.saturating_sub(slack)
            ));
        }
        if let Some(hi) = self.end {
            s.push_str(&format!(" AND {alias}start < {}", hi.saturating_add(slack)));
        }
        s
    }
}

/// Parses one time: `now`; a duration ago (`-1h`, `1h`, `-7d`, `30m`, units s m h d w);
/// `YYYY-MM-DD`; `YYYY-MM-DDTHH:MM[:SS][Z]` (also with a space, UTC); or Unix seconds.
///
/// # Errors
/// [`Error::Invalid`] naming the text and the accepted forms.
pub fn parse_time(text: &str, now: i64) -> Result<i64> {
    let t = text.trim();
    let bad = || {
        Error::Invalid(format!(
            "`{text}` is not a time: use now, -1h / -7d / -30m, 2019-08-26, \
             2019-08-26T19:25:00Z or Unix seconds"
        ))
    };
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    let ago = t.strip_prefix('-').unwrap_or(t);
    if let Some(secs) = parse_duration(ago) {
        return now.checked_sub(secs).ok_or_else(bad);
    }
    parse_datetime(t).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_566_848_000; // 2019-08-26T19:33:20Z

    #[test]
    fn ranges_as_sql_conditions() {
        let both = TimeRange {
            start: Some(100),
            end: Some(200),
        };
        assert_eq!(both.sql("", 0), " AND start >= 100 AND start < 200");
        assert_eq!(both.sql("f.", 5), " AND f.start >= 95 AND f.start < 205");
        let open = TimeRange {
            start: None,
            end: Some(7),
        };
        assert_eq!(open.sql("", 0), " AND start < 7");
        assert_eq!(TimeRange::default().sql("r.", 900), "");
    }

    #[test]
    fn forms() {
        assert_eq!(parse_time("now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("-1h", NOW).unwrap(), NOW - 3_600);
        assert_eq!(parse_time("7d", NOW).unwrap(), NOW - 7 * 86_400);
        assert_eq!(parse_time("2019-08-26", NOW).unwrap(), 1_566_777_600);
        assert_eq!(
            parse_time("2019-08-26T19:25:00Z", NOW).unwrap(),
            1_566_847_500
        );
        assert_eq!(parse_time("2019-08-26 19:25", NOW).unwrap(), 1_566_847_500);
        assert_eq!(parse_time("1566847500", NOW).unwrap(), 1_566_847_500);
        assert!(parse_time("yesterday", NOW).is_err());
        assert!(parse_time("2019-13-01", NOW).is_err());
        assert!(parse_time("-9223372036854775807d", NOW).is_err());
    }

    #[test]
    fn absurd_ranges_are_refused() {
        assert!(TimeRange::parse(Some("0"), Some("9000000000000000000"), NOW).is_err());
        assert!(TimeRange::parse(Some("0"), Some("253402300799"), NOW).is_ok());
        assert!(TimeRange::parse(Some("0"), Some("253402300800"), NOW).is_err());
    }

    #[test]
    fn empty_range_rejected() {
        assert!(TimeRange::parse(Some("-1h"), Some("-2h"), NOW).is_err());
        let r = TimeRange::parse(Some("-2h"), None, NOW).unwrap();
        assert_eq!(r.start, Some(NOW - 7_200));
    }
}
