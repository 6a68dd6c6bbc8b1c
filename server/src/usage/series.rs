//! Usage as a time series, for charts (`Customer.usageSeries`): a metric's aggregate per hour,
//! day or month of a time zone, computed by the database in one query.
//!
//! The buckets are calendar intervals of the time zone: a day is local midnight to local
//! midnight (23 or 25 hours across a daylight-saving change), a month starts on the 1st. The
//! first bucket is the one holding `from`, the last the one holding the instant before `to`;
//! only events in `[from, to)` count, so a partial first or last bucket holds what is in range.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::metrics::{self, Aggregation, MetricDef};
use crate::{
    error::{Error, Result},
    store::{
        Conn,
        billable_metrics::{self, Bind},
    },
};

/// At most this many buckets in one series (an hour for 41 days, a day for 2.7 years).
pub const MAX_BUCKETS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum UsageInterval {
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub value: Decimal,
}

/// A time zone by its IANA name (`Europe/Berlin`, `UTC`), naming `field` when unknown.
pub fn parse_time_zone(field: &str, name: &str) -> Result<Tz> {
    if name.len() > 64 {
        return Err(Error::invalid(
            field,
            "is not an IANA time zone name (at most 64 characters)",
        ));
    }
    name.parse::<Tz>()
        .map_err(|_| Error::invalid(field, "is not an IANA time zone name, e.g. `UTC` or `Europe/Berlin`"))
}

/// The bucket boundaries (UTC) covering `[from, to)`: `n + 1` instants for `n` buckets.
pub fn boundaries(
    from: NaiveDateTime,
    to: NaiveDateTime,
    interval: UsageInterval,
    tz: Tz,
) -> Result<Vec<NaiveDateTime>> {
    if from >= to {
        return Err(Error::invalid("to", "must be after `from`"));
    }
    let local_from = tz.from_utc_datetime(&from).naive_local();
    let mut local = match interval {
        UsageInterval::Hour => local_from
            .date()
            .and_time(NaiveTime::from_hms_opt(local_from.hour(), 0, 0).unwrap_or_default()),
        UsageInterval::Day => local_from.date().and_time(NaiveTime::MIN),
        UsageInterval::Month => first_of_month(local_from.date()).and_time(NaiveTime::MIN),
    };
    let mut out = Vec::new();
    // The start of the bucket holding `from`: a local start that falls in a gap moves forward.
    let mut at = to_utc(tz, local)?;
    if at > from {
        // The local floor fell into a daylight-saving gap and resolved past `from`: begin at `from`.
        at = from;
    }
    out.push(at);
    while at < to {
        let next = match interval {
            // An hour is sixty minutes of real time, whatever the clock on the wall says.
            UsageInterval::Hour => at + Duration::hours(1),
            UsageInterval::Day => {
                local = (local.date() + Duration::days(1)).and_time(NaiveTime::MIN);
                to_utc(tz, local)?
            }
            UsageInterval::Month => {
                local = next_month(local.date()).and_time(NaiveTime::MIN);
                to_utc(tz, local)?
            }
        };
        if out.len() > MAX_BUCKETS {
            return Err(Error::invalid(
                "to",
                format!("the series would have more than {MAX_BUCKETS} buckets: shorten it or take a longer interval"),
            ));
        }
        out.push(next);
        at = next;
    }
    Ok(out)
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn next_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
}

/// A local wall-clock time as UTC: the earlier of two when the clock repeats, and the first
/// existing instant after it when the clock skips it (a daylight-saving gap).
fn to_utc(tz: Tz, local: NaiveDateTime) -> Result<NaiveDateTime> {
    for minutes in (0..=180).step_by(15) {
        if let Some(t) = tz.from_local_datetime(&(local + Duration::minutes(minutes))).earliest() {
            return Ok(t.naive_utc());
        }
    }
    Err(Error::invalid(
        "timeZone",
        "has no valid local time near a bucket boundary",
    ))
}

/// Microseconds since 1970 of a UTC column value: what the query compares event times with.
fn micros(t: NaiveDateTime) -> i64 {
    (t - DateTime::<Utc>::UNIX_EPOCH.naive_utc())
        .num_microseconds()
        .unwrap_or(i64::MAX)
}

/// The SQL and parameters of one customer's series: one row per non-empty bucket, the bucket's
/// index in `group_key`. `INTERVAL(x, b1, …)` gives the index of the last boundary `≤ x`.
fn series_sql(project_id: &str, def: &MetricDef, customer: &str, bounds: &[NaiveDateTime]) -> (String, Vec<Bind>) {
    let (from, to) = (bounds[0], bounds[bounds.len() - 1]);
    let mut binds = Vec::new();
    let bucket = interval_index("occurred_at", bounds, &mut binds);
    let (where_sql, where_binds) = metrics::where_clause(project_id, def, &[customer], from, to, None);
    let mut select_binds = Vec::new();
    let sql = match def.aggregation {
        Aggregation::Latest => format!(
            "SELECT customer, CAST(b AS CHAR(20)) AS group_key, value FROM (SELECT customer_external_id AS customer, \
             b, CAST(quantity AS CHAR) AS value, ROW_NUMBER() OVER (PARTITION BY b ORDER BY occurred_at DESC, seq DESC) AS rn \
             FROM (SELECT customer_external_id, quantity, occurred_at, seq, {bucket} AS b FROM usage_events WHERE {where_sql}) e) ranked \
             WHERE rn = 1"
        ),
        other => {
            let value = metrics::grouped_value(def, other, &mut select_binds);
            format!(
                "SELECT customer_external_id AS customer, CAST(b AS CHAR(20)) AS group_key, \
                 CAST(CAST({value} AS DECIMAL(65, 12)) AS CHAR) AS value \
                 FROM (SELECT customer_external_id, quantity, properties, {bucket} AS b FROM usage_events WHERE {where_sql}) e \
                 GROUP BY customer_external_id, b"
            )
        }
    };
    // Parameters in the order they appear: the aggregate's (outer SELECT), then the buckets' and
    // the WHERE clause's (inner).
    select_binds.extend(binds);
    select_binds.extend(where_binds);
    (sql, select_binds)
}

/// `customer`'s series of `def` over `bounds` (from [`boundaries`]): every bucket, zero where no
/// event counts.
pub async fn series(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    bounds: &[NaiveDateTime],
) -> Result<Vec<Bucket>> {
    let values = segment_values(conn, project_id, def, customer, bounds).await?;
    Ok(bounds
        .windows(2)
        .zip(values)
        .map(|(w, value)| Bucket {
            start: w[0],
            end: w[1],
            value: value.unwrap_or_default(),
        })
        .collect())
}

/// The aggregate of `def` over each interval between consecutive `bounds` (at least two): `None`
/// where no event counts, which `MAX` and `LATEST` must tell from a zero.
pub async fn segment_values(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    bounds: &[NaiveDateTime],
) -> Result<Vec<Option<Decimal>>> {
    let intervals = bounds.len().saturating_sub(1);
    if intervals == 0 {
        return Ok(Vec::new());
    }
    let (sql, binds) = series_sql(project_id, def, customer, bounds);
    by_index(billable_metrics::aggregate(conn, &sql, binds).await?, intervals)
}

/// Rows whose `group_key` is an interval's index, as a value per interval (`None` where no row).
fn by_index(rows: Vec<billable_metrics::AggregateRow>, intervals: usize) -> Result<Vec<Option<Decimal>>> {
    let mut values = vec![None; intervals];
    for row in rows {
        let index: usize = row
            .group_key
            .as_deref()
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| Error::Internal("a usage interval without its index".into()))?;
        let slot = values
            .get_mut(index)
            .ok_or_else(|| Error::Internal(format!("usage interval {index} out of range")))?;
        *slot = Some(metrics::exact(row.value.as_deref())?);
    }
    Ok(values)
}

/// `INTERVAL(<micros of expr>, b1, …)` over the inner `bounds` (the first and last only limit the
/// range): the index of the interval holding `expr`, with its parameters pushed onto `binds`.
fn interval_index(expr: &str, bounds: &[NaiveDateTime], binds: &mut Vec<Bind>) -> String {
    let inner = &bounds[1..bounds.len() - 1];
    if inner.is_empty() {
        return "0".to_string();
    }
    let mut out = format!("INTERVAL(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {expr})");
    for b in inner {
        out.push_str(", ?");
        binds.push(Bind::Int(micros(*b)));
    }
    out.push(')');
    out
}

/// For a `UNIQUE_COUNT` metric: how many values occur for the first time within their window
/// in each interval between consecutive `bounds`. `windows` (a subset of `bounds`, first and
/// last included) are where counting starts afresh, as each billing period's count does. The
/// running sum of these over a window is the window's distinct count so far.
pub async fn first_occurrences(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    bounds: &[NaiveDateTime],
    windows: &[NaiveDateTime],
) -> Result<Vec<Decimal>> {
    let intervals = bounds.len().saturating_sub(1);
    let (Some(&from), Some(&to), Some(prop)) = (bounds.first(), bounds.last(), def.property.as_deref()) else {
        return Ok(vec![Decimal::ZERO; intervals]);
    };
    if intervals == 0 || windows.len() < 2 {
        return Ok(vec![Decimal::ZERO; intervals]);
    }
    let mut binds = Vec::new();
    let bucket = interval_index("MIN(occurred_at)", bounds, &mut binds);
    binds.push(Bind::Text(metrics::path(prop)));
    let window = interval_index("occurred_at", windows, &mut binds);
    let (where_sql, where_binds) = metrics::where_clause(project_id, def, &[customer], from, to, None);
    binds.extend(where_binds);
    let sql = format!(
        "SELECT MAX(customer) AS customer, CAST(b AS CHAR(20)) AS group_key, CAST(COUNT(*) AS CHAR) AS value FROM \
         (SELECT MAX(customer_external_id) AS customer, {bucket} AS b FROM \
         (SELECT customer_external_id, occurred_at, JSON_VALUE(properties, ?) AS v, {window} AS w \
         FROM usage_events WHERE {where_sql}) e WHERE v IS NOT NULL GROUP BY w, v) f GROUP BY b"
    );
    let counts = by_index(billable_metrics::aggregate(conn, &sql, binds).await?, intervals)?;
    Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn days_follow_the_time_zone_across_daylight_saving() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: clocks go from 02:00 to 03:00 in Berlin (a 23-hour day).
        let b = boundaries(
            t("2026-03-28 10:00:00"),
            t("2026-03-30 10:00:00"),
            UsageInterval::Day,
            berlin,
        )
        .unwrap();
        assert_eq!(
            b,
            vec![
                t("2026-03-27 23:00:00"),
                t("2026-03-28 23:00:00"),
                t("2026-03-29 22:00:00"),
                t("2026-03-30 22:00:00"),
            ]
        );
    }

    #[test]
    fn hours_in_a_half_hour_zone_and_months_in_utc() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let b = boundaries(
            t("2026-01-01 00:10:00"),
            t("2026-01-01 01:00:00"),
            UsageInterval::Hour,
            kolkata,
        )
        .unwrap();
        // Local 05:40 → the bucket 05:00–06:00 local, 23:30–00:30 UTC.
        assert_eq!(
            b,
            vec![
                t("2025-12-31 23:30:00"),
                t("2026-01-01 00:30:00"),
                t("2026-01-01 01:30:00")
            ]
        );
        let b = boundaries(
            t("2026-11-15 00:00:00"),
            t("2027-01-02 00:00:00"),
            UsageInterval::Month,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(
            b,
            vec![
                t("2026-11-01 00:00:00"),
                t("2026-12-01 00:00:00"),
                t("2027-01-01 00:00:00"),
                t("2027-02-01 00:00:00"),
            ]
        );
    }

    #[test]
    fn bad_ranges_zones_and_too_many_buckets_are_refused() {
        assert!(
            boundaries(
                t("2026-01-02 00:00:00"),
                t("2026-01-01 00:00:00"),
                UsageInterval::Day,
                Tz::UTC
            )
            .is_err()
        );
        assert!(
            boundaries(
                t("2026-01-01 00:00:00"),
                t("2026-03-01 00:00:00"),
                UsageInterval::Hour,
                Tz::UTC
            )
            .is_err()
        );
        assert!(
            boundaries(
                t("2026-01-01 00:00:00"),
                t("2026-02-11 00:00:00"),
                UsageInterval::Hour,
                Tz::UTC
            )
            .is_ok()
        );
        assert!(parse_time_zone("timeZone", "Mars/Olympus").is_err());
        assert!(parse_time_zone("timeZone", "America/New_York").is_ok());
    }
}
