//! The percentage price, rated one event at a time so that a billing run can stream a period's
//! events through it without holding them: memory is constant in the number of events.
//!
//! For each event, in the order the events occurred:
//! 1. While the free allowance lasts, the event is free. The allowance is `freeEvents` events
//!    and `freeAmount` of amount; with both, it ends when either is used up. An event that
//!    crosses `freeAmount` is charged on the part above it.
//! 2. An event that is not wholly free pays `rate` % of its charged amount plus `fixedFee`.
//! 3. That fee is raised to `eventMinimum` and cut to `eventMaximum`.

use rust_decimal::Decimal;

use crate::{
    PercentageSpec, RateError, Rating, Step, StepKind,
    arith::{self, percent_of},
    price::check_quantity,
};

/// Accumulates a percentage price's rating over a stream of event amounts.
#[derive(Debug, Clone)]
pub struct PercentageRater<'a> {
    terms: &'a PercentageSpec,
    free_events_left: Option<u64>,
    free_amount_left: Option<Decimal>,
    free_count: u64,
    free_total: Decimal,
    charged_count: u64,
    charged_total: Decimal,
    raised_count: u64,
    raised_total: Decimal,
    cut_count: u64,
    cut_total: Decimal,
}

impl<'a> PercentageRater<'a> {
    pub fn new(terms: &'a PercentageSpec) -> Self {
        PercentageRater {
            terms,
            free_events_left: terms.free_events,
            free_amount_left: terms.free_amount,
            free_count: 0,
            free_total: Decimal::ZERO,
            charged_count: 0,
            charged_total: Decimal::ZERO,
            raised_count: 0,
            raised_total: Decimal::ZERO,
            cut_count: 0,
            cut_total: Decimal::ZERO,
        }
    }

    fn in_free_period(&self) -> bool {
        let any = self.free_events_left.is_some() || self.free_amount_left.is_some();
        any && self.free_events_left != Some(0) && self.free_amount_left.is_none_or(|left| left > Decimal::ZERO)
    }

    /// Rates the next event's amount (not negative, at most 16 integer digits and 12 decimals).
    pub fn push(&mut self, amount: Decimal) -> Result<(), RateError> {
        check_quantity("amount", amount).map_err(|e| RateError::Quantity(e.message))?;
        let mut charged = amount;
        if self.in_free_period() {
            if let Some(left) = self.free_events_left.as_mut() {
                *left -= 1;
            }
            match self.free_amount_left {
                Some(left) if amount > left => {
                    charged = arith::sub(amount, left)?;
                    self.free_total = arith::add(self.free_total, left)?;
                    self.free_amount_left = Some(Decimal::ZERO);
                }
                left => {
                    if let Some(left) = left {
                        self.free_amount_left = Some(arith::sub(left, amount)?);
                    }
                    self.free_total = arith::add(self.free_total, amount)?;
                    self.free_count += 1;
                    return Ok(());
                }
            }
        }
        self.charged_count += 1;
        self.charged_total = arith::add(self.charged_total, charged)?;
        let fee = arith::add(percent_of(charged, self.terms.rate)?, self.terms.fixed_fee)?;
        if let Some(min) = self.terms.event_minimum.filter(|min| fee < *min) {
            self.raised_count += 1;
            self.raised_total = arith::add(self.raised_total, arith::sub(min, fee)?)?;
        } else if let Some(max) = self.terms.event_maximum.filter(|max| fee > *max) {
            self.cut_count += 1;
            self.cut_total = arith::add(self.cut_total, arith::sub(fee, max)?)?;
        }
        Ok(())
    }

    /// The rating of every event pushed so far.
    pub fn finish(self) -> Result<Rating, RateError> {
        let terms = self.terms;
        let mut steps = Vec::new();
        if self.free_count > 0 || !self.free_total.is_zero() {
            let mut step = Step::new(StepKind::FreeUsage, self.free_total, Decimal::ZERO);
            step.count = Some(self.free_count);
            steps.push(step);
        }
        if self.charged_count > 0 {
            let mut step = Step::new(
                StepKind::Percentage,
                self.charged_total,
                percent_of(self.charged_total, terms.rate)?,
            );
            step.rate = Some(terms.rate);
            steps.push(step);
            if !terms.fixed_fee.is_zero() {
                let count = Decimal::from(self.charged_count);
                let mut step = Step::new(StepKind::EventFees, Decimal::ZERO, arith::mul(count, terms.fixed_fee)?);
                step.count = Some(self.charged_count);
                step.unit_amount = Some(terms.fixed_fee);
                steps.push(step);
            }
        }
        if self.raised_count > 0 {
            let mut step = Step::new(StepKind::EventMinimum, Decimal::ZERO, self.raised_total);
            step.count = Some(self.raised_count);
            step.unit_amount = terms.event_minimum;
            steps.push(step);
        }
        if self.cut_count > 0 {
            let mut step = Step::new(StepKind::EventMaximum, Decimal::ZERO, -self.cut_total);
            step.count = Some(self.cut_count);
            step.unit_amount = terms.event_maximum;
            steps.push(step);
        }
        let amount = arith::sum(steps.iter().map(|s| s.amount))?;
        Ok(Rating { amount, steps })
    }
}
