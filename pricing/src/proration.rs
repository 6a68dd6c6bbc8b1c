//! Proration of fixed fees by days. A period is `[start, end)` in whole days; a part of it pays
//! for its days, counting its start day: a subscription that starts on January 15 pays 17 of
//! January's 31 days.
//!
//! The part `[s, e)` of a period of `T` days pays `round(amount × e/T) − round(amount × s/T)`
//! (offsets in days from the period's start; [`crate::round_line`]). Each part is thus the
//! difference of rounded running totals, so consecutive parts always add up to the whole fee,
//! to the last minor unit, however the period is cut (an upgrade, a cancellation, both).

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::{RateError, arith, round_line};

/// Whole days `[start, end)`; `end` is after `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    start: NaiveDate,
    end: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProrationError {
    #[error("a period must end after it starts")]
    Empty,
    #[error("the part must lie within the period")]
    OutsidePeriod,
    #[error(transparent)]
    Rate(#[from] RateError),
}

impl Period {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Period, ProrationError> {
        if end <= start {
            return Err(ProrationError::Empty);
        }
        Ok(Period { start, end })
    }

    pub fn start(&self) -> NaiveDate {
        self.start
    }

    pub fn end(&self) -> NaiveDate {
        self.end
    }

    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    /// The share of `amount` (a fee for the whole period) that the days of `part` pay, rounded
    /// as the module says to `decimals` places.
    pub fn prorate(&self, amount: Decimal, part: Period, decimals: u32) -> Result<Decimal, ProrationError> {
        if part.start < self.start || part.end > self.end {
            return Err(ProrationError::OutsidePeriod);
        }
        let total = Decimal::from(self.days());
        let running = |day: NaiveDate| -> Result<Decimal, RateError> {
            let offset = Decimal::from((day - self.start).num_days());
            let share = arith::mul(amount, offset)?
                .checked_div(total)
                .ok_or(RateError::TooLarge)?;
            Ok(round_line(share, decimals))
        };
        Ok(arith::sub(running(part.end)?, running(part.start)?)?)
    }
}
