//! Billing periods. A subscription is billed in periods of `count × unit` (months, years or
//! days). With **anniversary** billing, periods start on the subscription's start day each
//! interval (a month from January 31 ends on the last day of February, and the next starts on
//! March 31 again: every boundary is counted from the start day, never from the previous one).
//! With **calendar** billing, periods are aligned to calendar months (their 1st) or years
//! (January 1); months × 3 are quarters from January, months × 6 halves; the first period is the
//! part of the aligned period from the start day on, and its fixed fee is prorated over the
//! whole aligned period ([`crate::proration`]). Day intervals have no calendar: they are always
//! anniversary.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::proration::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntervalUnit {
    Month,
    Year,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    pub unit: IntervalUnit,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Anchor {
    Calendar,
    Anniversary,
}

/// One billing period: `full` is the whole interval it belongs to, `billed` the part of it the
/// subscription covers (smaller only for a calendar subscription's first period, or a period cut
/// by a cancellation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    pub full: Period,
    pub billed: Period,
}

/// The schedule of a subscription's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start: NaiveDate,
    base: NaiveDate,
    interval: Interval,
}

impl Schedule {
    /// A schedule for a subscription starting on `start`. `count` must be at least 1 (plans
    /// check it); a zero count is read as 1.
    pub fn new(start: NaiveDate, interval: Interval, anchor: Anchor) -> Schedule {
        let interval = Interval {
            unit: interval.unit,
            count: interval.count.max(1),
        };
        let base = match (anchor, interval.unit) {
            (Anchor::Anniversary, _) | (_, IntervalUnit::Day) => start,
            (Anchor::Calendar, IntervalUnit::Month) => {
                let months = start.year() * 12 + start.month0() as i32;
                let aligned = months - months.rem_euclid(interval.count as i32);
                NaiveDate::from_ymd_opt(aligned.div_euclid(12), aligned.rem_euclid(12) as u32 + 1, 1).unwrap_or(start)
            }
            (Anchor::Calendar, IntervalUnit::Year) => {
                let year = start.year() - start.year().rem_euclid(interval.count as i32);
                NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(start)
            }
        };
        Schedule { start, base, interval }
    }

    /// The `i`-th boundary after the base (`None` past the calendar's end).
    fn boundary(&self, i: u32) -> Option<NaiveDate> {
        let steps = i.checked_mul(self.interval.count)?;
        match self.interval.unit {
            IntervalUnit::Month => self.base.checked_add_months(Months::new(steps)),
            IntervalUnit::Year => self.base.checked_add_months(Months::new(steps.checked_mul(12)?)),
            IntervalUnit::Day => self.base.checked_add_days(Days::new(u64::from(steps))),
        }
    }

    /// The period containing `day`, or `None` before the start or past the calendar's end.
    pub fn period_containing(&self, day: NaiveDate) -> Option<BillingPeriod> {
        if day < self.start {
            return None;
        }
        let days = (day - self.base).num_days().max(0) as u64;
        // An estimate from below (a month has at least 28 days), then step forward.
        let per_step = match self.interval.unit {
            IntervalUnit::Month => 31 * u64::from(self.interval.count),
            IntervalUnit::Year => 366 * u64::from(self.interval.count),
            IntervalUnit::Day => u64::from(self.interval.count),
        };
        let mut i = u32::try_from(days / per_step).ok()?;
        loop {
            let (from, to) = (self.boundary(i)?, self.boundary(i + 1)?);
            if day < to {
                let full = Period::new(from, to).ok()?;
                let billed = Period::new(from.max(self.start), to).ok()?;
                return Some(BillingPeriod { full, billed });
            }
            i += 1;
        }
    }

    /// The first period.
    pub fn first(&self) -> Option<BillingPeriod> {
        self.period_containing(self.start)
    }

    /// The period after `period`.
    pub fn next(&self, period: &BillingPeriod) -> Option<BillingPeriod> {
        self.period_containing(period.full.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn span(p: Period) -> (String, String) {
        (p.start().to_string(), p.end().to_string())
    }

    fn months(count: u32) -> Interval {
        Interval {
            unit: IntervalUnit::Month,
            count,
        }
    }

    #[test]
    fn anniversary_months_count_from_the_start_day() {
        let s = Schedule::new(day("2027-01-31"), months(1), Anchor::Anniversary);
        let first = s.first().unwrap();
        assert_eq!(span(first.full), ("2027-01-31".into(), "2027-02-28".into()));
        assert_eq!(first.billed, first.full);
        let second = s.next(&first).unwrap();
        assert_eq!(span(second.full), ("2027-02-28".into(), "2027-03-31".into()));
        let third = s.next(&second).unwrap();
        assert_eq!(span(third.full), ("2027-03-31".into(), "2027-04-30".into()));
        assert_eq!(s.period_containing(day("2027-01-30")), None);
    }

    #[test]
    fn calendar_months_align_to_the_first_and_the_first_period_is_partial() {
        let s = Schedule::new(day("2027-01-15"), months(1), Anchor::Calendar);
        let first = s.first().unwrap();
        assert_eq!(span(first.full), ("2027-01-01".into(), "2027-02-01".into()));
        assert_eq!(span(first.billed), ("2027-01-15".into(), "2027-02-01".into()));
        assert_eq!(first.billed.days(), 17);
        let second = s.next(&first).unwrap();
        assert_eq!(span(second.billed), ("2027-02-01".into(), "2027-03-01".into()));
        let in_june = s.period_containing(day("2027-06-30")).unwrap();
        assert_eq!(span(in_june.full), ("2027-06-01".into(), "2027-07-01".into()));
    }

    #[test]
    fn calendar_quarters_and_years() {
        let q = Schedule::new(day("2027-05-10"), months(3), Anchor::Calendar);
        assert_eq!(
            span(q.first().unwrap().full),
            ("2027-04-01".into(), "2027-07-01".into())
        );
        let y = Schedule::new(
            day("2027-05-10"),
            Interval {
                unit: IntervalUnit::Year,
                count: 1,
            },
            Anchor::Calendar,
        );
        let first = y.first().unwrap();
        assert_eq!(span(first.full), ("2027-01-01".into(), "2028-01-01".into()));
        assert_eq!(
            span(y.next(&first).unwrap().full),
            ("2028-01-01".into(), "2029-01-01".into())
        );
    }

    #[test]
    fn day_intervals_are_anniversary() {
        let s = Schedule::new(
            day("2027-01-15"),
            Interval {
                unit: IntervalUnit::Day,
                count: 10,
            },
            Anchor::Calendar,
        );
        let p = s.period_containing(day("2027-02-04")).unwrap();
        assert_eq!(span(p.full), ("2027-02-04".into(), "2027-02-14".into()));
        let p = s.period_containing(day("2027-02-03")).unwrap();
        assert_eq!(span(p.full), ("2027-01-25".into(), "2027-02-04".into()));
    }

    #[test]
    fn consecutive_periods_tile_time_without_gaps() {
        for anchor in [Anchor::Calendar, Anchor::Anniversary] {
            for interval in [
                months(1),
                months(3),
                Interval {
                    unit: IntervalUnit::Day,
                    count: 7,
                },
            ] {
                let s = Schedule::new(day("2028-01-31"), interval, anchor);
                let mut p = s.first().unwrap();
                for _ in 0..40 {
                    let next = s.next(&p).unwrap();
                    assert_eq!(next.full.start(), p.full.end(), "{anchor:?} {interval:?}");
                    assert_eq!(s.period_containing(next.full.start()), Some(next));
                    let last_day = next.full.end().pred_opt().unwrap();
                    assert_eq!(s.period_containing(last_day), Some(next));
                    p = next;
                }
            }
        }
    }
}
