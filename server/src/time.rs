//! Times a client sends, checked against what a `DATETIME(6)` column holds before anything is
//! written. MariaDB stores a year past 9999 as `0000-00-00`, which no later read can decode (a
//! wallet with such a lot could not be charged or read again), and chrono represents a leap
//! second as a 60th second that the column cannot hold. So both are refused at the edge, for
//! every time a client sends: expiries, event timestamps, ranges and cursors.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Timelike, Utc};

use crate::error::Error;

/// The earliest and latest instants a `DATETIME(6)` column holds.
pub fn column_range() -> (NaiveDateTime, NaiveDateTime) {
    let min = NaiveDate::from_ymd_opt(1000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let max = NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999));
    (min.unwrap_or(NaiveDateTime::MIN), max.unwrap_or(NaiveDateTime::MAX))
}

/// A client's time as the column stores it (UTC, microseconds: finer digits are dropped), or an
/// error naming `field` when the column cannot hold it.
pub fn to_column(field: &str, t: DateTime<Utc>) -> Result<NaiveDateTime, Error> {
    naive_to_column(field, t.naive_utc())
}

pub fn naive_to_column(field: &str, t: NaiveDateTime) -> Result<NaiveDateTime, Error> {
    if t.nanosecond() >= 1_000_000_000 {
        return Err(Error::invalid(
            field,
            "leap seconds (a 60th second) cannot be stored: send 23:59:59.999999 or the next second",
        ));
    }
    let t = t.trunc_subsecs(6);
    let (min, max) = column_range();
    if t < min || t > max {
        return Err(Error::invalid(
            field,
            "must be between 1000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z",
        ));
    }
    Ok(t)
}

/// An RFC 3339 text (`2026-11-25T10:00:00Z`, any offset) as the column stores it.
pub fn parse_rfc3339(field: &str, raw: &str) -> Result<NaiveDateTime, Error> {
    let parsed = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|_| Error::invalid(field, "must be an RFC 3339 timestamp such as 2026-11-25T10:00:00Z"))?;
    to_column(field, parsed.to_utc())
}

/// An optional time argument, checked.
pub fn opt_to_column(field: &str, t: Option<DateTime<Utc>>) -> Result<Option<NaiveDateTime>, Error> {
    t.map(|t| to_column(field, t)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn times_the_column_cannot_hold_are_refused() {
        for bad in [
            "+10000-01-01T00:00:00Z",
            "0999-12-31T23:59:59.999999Z",
            "-0001-01-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2026-11-30T23:59:60.5Z",
        ] {
            let err = to_column("expiresAt", utc(bad)).unwrap_err();
            assert!(
                matches!(err, Error::Invalid { ref field, .. } if field == "expiresAt"),
                "{bad}"
            );
        }
        for good in [
            "1000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-11-30T12:00:00Z",
        ] {
            assert!(to_column("t", utc(good)).is_ok(), "{good}");
        }
        // Digits past the microsecond are dropped, as the column would.
        let t = to_column("t", utc("2026-11-30T12:00:00.1234567Z")).unwrap();
        assert_eq!(t.nanosecond(), 123_456_000);
        // The last microsecond of 9999 stays in range after truncation.
        assert!(to_column("t", utc("9999-12-31T23:59:59.9999999Z")).is_ok());
    }

    #[test]
    fn rfc3339_text_is_checked_the_same_way() {
        assert!(parse_rfc3339("timestamp", "2026-11-25T11:00:00+01:00").is_ok());
        assert!(parse_rfc3339("timestamp", "2026-11-25T23:59:60.5Z").is_err());
        assert!(parse_rfc3339("timestamp", "yesterday").is_err());
    }
}
