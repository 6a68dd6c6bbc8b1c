//! Instants as the portal shows them, and the usage periods it offers: the subscription's
//! current period, the one before, and the last twelve months. Pure functions of "now", so the
//! period arithmetic is tested without a browser.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

/// Parses the server's RFC 3339 text.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// `30 Nov 2026` (UTC); the text as given when it does not parse.
pub fn date(text: &str) -> String {
    parse(text).map_or_else(|| text.to_owned(), |t| t.format("%-d %b %Y").to_string())
}

/// `30 Nov 2026, 14:05 UTC`.
pub fn date_time(text: &str) -> String {
    parse(text).map_or_else(|| text.to_owned(), |t| t.format("%-d %b %Y, %H:%M UTC").to_string())
}

/// `1 Nov – 30 Nov 2026` for the half-open span `[from, to)`: the end shown is the last day in it.
pub fn span(from: &str, to: &str) -> String {
    match (parse(from), parse(to)) {
        (Some(f), Some(t)) => {
            let last = if t > f { t - Duration::seconds(1) } else { t };
            if f.date_naive() == last.date_naive() {
                f.format("%-d %b %Y").to_string()
            } else if f.year() == last.year() {
                format!("{} – {}", f.format("%-d %b"), last.format("%-d %b %Y"))
            } else {
                format!("{} – {}", f.format("%-d %b %Y"), last.format("%-d %b %Y"))
            }
        }
        _ => format!("{from} – {to}"),
    }
}

/// The current instant, from the browser's clock (wasm) or the system's (tests).
pub fn now() -> DateTime<Utc> {
    #[cfg(target_arch = "wasm32")]
    {
        let ms = js_sys::Date::now() as i64;
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Utc::now()
    }
}

/// How a period's usage is bucketed for the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
    Month,
}

/// The unit of a plan's billing interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Day,
    Month,
    Year,
}

/// One period the usage page offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub key: &'static str,
    pub label: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
}

impl Period {
    pub fn start_rfc3339(&self) -> String {
        self.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
    pub fn end_rfc3339(&self) -> String {
        self.to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

/// Hours for a day or two, days up to about a quarter, months beyond.
pub fn bucket_for(from: DateTime<Utc>, to: DateTime<Utc>) -> Bucket {
    let span = to - from;
    if span <= Duration::days(2) {
        Bucket::Hour
    } else if span <= Duration::days(93) {
        Bucket::Day
    } else {
        Bucket::Month
    }
}

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).unwrap_or_default();
    Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The period one billing interval before `[from, to)`.
fn previous(from: DateTime<Utc>, to: DateTime<Utc>, unit: IntervalUnit, count: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let back = |t: DateTime<Utc>| match unit {
        IntervalUnit::Day => t - Duration::days(i64::from(count)),
        IntervalUnit::Month => t.checked_sub_months(Months::new(count)).unwrap_or(t),
        IntervalUnit::Year => t.checked_sub_months(Months::new(12 * count)).unwrap_or(t),
    };
    // The previous period ends where this one starts, whatever its own length.
    (back(from), if to > from { from } else { back(to) })
}

/// The periods to offer: the subscription's current one (`current`, with its plan's interval),
/// or the calendar month without one; the period before it; and the last twelve months.
pub fn usage_periods(
    current: Option<(DateTime<Utc>, DateTime<Utc>)>,
    interval: (IntervalUnit, u32),
    now: DateTime<Utc>,
) -> Vec<Period> {
    let (from, to) = current.unwrap_or_else(|| {
        let start = month_start(now);
        (start, start.checked_add_months(Months::new(1)).unwrap_or(now))
    });
    let (unit, count) = if current.is_some() {
        interval
    } else {
        (IntervalUnit::Month, 1)
    };
    let (prev_from, prev_to) = previous(from, to, unit, count.max(1));
    let year_to = month_start(now).checked_add_months(Months::new(1)).unwrap_or(now);
    let year_from = year_to.checked_sub_months(Months::new(12)).unwrap_or(now);
    vec![
        Period {
            key: "current",
            label: "Current period".into(),
            from,
            to,
            bucket: bucket_for(from, to),
        },
        Period {
            key: "previous",
            label: "Previous period".into(),
            from: prev_from,
            to: prev_to,
            bucket: bucket_for(prev_from, prev_to),
        },
        Period {
            key: "year",
            label: "Last 12 months".into(),
            from: year_from,
            to: year_to,
            bucket: Bucket::Month,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse(text).unwrap()
    }

    #[test]
    fn dates_are_shown_in_utc_and_bad_text_as_is() {
        assert_eq!(date("2026-11-30T23:30:00-01:00"), "1 Dec 2026");
        assert_eq!(date_time("2026-11-30T14:05:09Z"), "30 Nov 2026, 14:05 UTC");
        assert_eq!(date("soon"), "soon");
    }

    #[test]
    fn a_span_shows_its_last_day_not_the_exclusive_end() {
        assert_eq!(
            span("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
            "1 Nov – 30 Nov 2026"
        );
        assert_eq!(
            span("2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"),
            "15 Dec 2026 – 14 Jan 2027"
        );
        assert_eq!(span("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"), "1 Nov 2026");
    }

    #[test]
    fn a_monthly_subscription_gets_its_period_the_month_before_and_twelve_months() {
        let periods = usage_periods(
            Some((at("2026-11-15T00:00:00Z"), at("2026-12-15T00:00:00Z"))),
            (IntervalUnit::Month, 1),
            at("2026-11-30T12:00:00Z"),
        );
        assert_eq!(periods.len(), 3);
        assert_eq!(
            (periods[0].from, periods[0].to),
            (at("2026-11-15T00:00:00Z"), at("2026-12-15T00:00:00Z"))
        );
        assert_eq!(periods[0].bucket, Bucket::Day);
        assert_eq!(
            (periods[1].from, periods[1].to),
            (at("2026-10-15T00:00:00Z"), at("2026-11-15T00:00:00Z"))
        );
        assert_eq!(
            (periods[2].from, periods[2].to),
            (at("2025-12-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(periods[2].bucket, Bucket::Month);
    }

    #[test]
    fn a_shortened_first_period_is_followed_back_by_a_whole_interval() {
        // A calendar subscription that started mid-month: its previous period is the month
        // before its start, ending where it starts.
        let periods = usage_periods(
            Some((at("2026-11-20T00:00:00Z"), at("2026-12-01T00:00:00Z"))),
            (IntervalUnit::Month, 1),
            at("2026-11-30T12:00:00Z"),
        );
        assert_eq!(
            (periods[1].from, periods[1].to),
            (at("2026-10-20T00:00:00Z"), at("2026-11-20T00:00:00Z"))
        );
    }

    #[test]
    fn without_a_subscription_the_calendar_month_is_the_current_period() {
        let periods = usage_periods(None, (IntervalUnit::Year, 1), at("2026-03-31T10:00:00Z"));
        assert_eq!(
            (periods[0].from, periods[0].to),
            (at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"))
        );
        assert_eq!(
            (periods[1].from, periods[1].to),
            (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn daily_and_yearly_intervals_step_back_by_their_length() {
        let daily = usage_periods(
            Some((at("2026-11-30T00:00:00Z"), at("2026-12-01T00:00:00Z"))),
            (IntervalUnit::Day, 1),
            at("2026-11-30T12:00:00Z"),
        );
        assert_eq!(daily[0].bucket, Bucket::Hour);
        assert_eq!(daily[1].from, at("2026-11-29T00:00:00Z"));
        let yearly = usage_periods(
            Some((at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))),
            (IntervalUnit::Year, 1),
            at("2026-11-30T12:00:00Z"),
        );
        assert_eq!(yearly[0].bucket, Bucket::Month);
        assert_eq!(yearly[1].from, at("2025-01-01T00:00:00Z"));
    }
}
