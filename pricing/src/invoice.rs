//! An invoice's amounts, computed from its inputs alone, in the one order billing follows:
//! **fees → minimum true-ups → coupons → (amounts billed earlier) → taxes → prepaid credits**.
//!
//! 1. Fees: the fixed fee (prorated by days over the period it pays for, the trial's days
//!    excluded), corrections of fees billed earlier (the unused days of a fee billed in advance,
//!    credited when the subscription ends early), and one line per usage charge, each rated
//!    exactly and rounded once.
//! 2. Minimum true-ups: each charge's minimum (a line when its fee is below it), then the plan's
//!    minimum commitment (a line when the period's fees and charge true-ups are below it).
//! 3. Coupons, in the order given, on what is left of the subtotal: a percentage or a fixed
//!    amount, never below zero; each discount is one line, rounded once.
//!    Then what threshold invoices already billed for the same period, deducted (one line): the
//!    fees, true-ups and coupons above are for the whole period, so a percentage coupon discounts
//!    all of its usage and a minimum counts all of it, wherever it was billed.
//! 4. Taxes: exclusive percentages of what is left, each one line, rounded once.
//! 5. Prepaid credits: as much of the total as the credits available cover.
//!
//! Every line is rounded to the currency's minor units, half away from zero ([`round_line`]); the
//! totals are sums of rounded lines, so they are exact and add up.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::{Charge, RateError, Rating, Usage, arith, proration::Period, rate, round_line};

/// A fixed fee owed for (part of) one period: `full` is the whole period the fee is for,
/// `billed` the days the subscription covers, `trial_until` the first day that is not trial.
/// `counts_toward_commitment` says whether it pays for the period the usage charges cover (a fee
/// in arrears does; a fee in advance for the next period does not).
#[derive(Debug, Clone, Copy)]
pub struct FixedFee {
    pub amount: Decimal,
    pub full: Period,
    pub billed: Period,
    pub trial_until: Option<chrono::NaiveDate>,
    pub counts_toward_commitment: bool,
}

/// The plan's minimum commitment for the period the usage charges cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commitment {
    pub amount: Decimal,
    /// What an earlier invoice already billed for that period (its fixed fee, billed in
    /// advance): it counts toward the commitment.
    pub billed_before: Decimal,
}

/// A usage charge and what it rates for the period.
#[derive(Debug, Clone, Copy)]
pub struct ChargeUsage<'a> {
    pub charge: &'a Charge,
    pub usage: Usage<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coupon {
    /// Percent off (0 to 100).
    Percentage(Decimal),
    /// A fixed amount off, at most what is left.
    Amount(Decimal),
}

/// Everything an invoice is computed from. Nothing else (no clock, no database) goes in, so the
/// same inputs give the same invoice.
#[derive(Debug, Clone)]
pub struct InvoiceInput<'a> {
    /// Minor-unit digits of the currency.
    pub decimals: u32,
    pub fixed_fees: Vec<FixedFee>,
    /// Corrections of fixed fees billed earlier, as amounts already in minor units: negative
    /// for the unused days of a fee billed in advance when the subscription ends early.
    pub fee_adjustments: Vec<Decimal>,
    pub charges: Vec<ChargeUsage<'a>>,
    pub minimum_commitment: Option<Commitment>,
    pub coupons: Vec<Coupon>,
    /// Exclusive tax rates, percent.
    pub taxes: Vec<Decimal>,
    /// Prepaid credits available to pay this invoice, in its currency.
    pub credits_available: Decimal,
    /// What earlier (threshold) invoices of the period already billed before tax, in minor
    /// units: deducted after coupons, before taxes. Zero for most invoices.
    pub billed_earlier: Decimal,
    /// Whether this invoice closes the period its usage is for: only then do charge minimums
    /// apply (a threshold invoice, early in the period, bills usage so far without them).
    pub closes_period: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LineKind {
    FixedFee,
    FeeAdjustment,
    Usage,
    ChargeMinimum,
    MinimumCommitment,
    Coupon,
    /// What earlier invoices of the period billed, deducted (negative).
    BilledEarlier,
    Tax,
    Credits,
}

/// One invoice line. `index` is the position of the fee, charge, coupon or tax it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub kind: LineKind,
    pub index: usize,
    /// Rounded to the currency's minor units; negative for coupons and credits.
    pub amount: Decimal,
    /// The exact amount before rounding (fees and usage).
    pub exact: Decimal,
    /// Usage lines: the rating that explains the amount.
    pub rating: Option<Rating>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub lines: Vec<Line>,
    /// Fees and true-ups.
    pub subtotal: Decimal,
    /// Coupons (zero or negative).
    pub discount: Decimal,
    /// What earlier invoices of the period billed, deducted (zero or negative).
    pub billed_earlier: Decimal,
    pub tax: Decimal,
    /// Total before credits.
    pub total: Decimal,
    /// Prepaid credits drawn (zero or negative).
    pub credits: Decimal,
    /// What is left to pay.
    pub amount_due: Decimal,
}

fn line(kind: LineKind, index: usize, exact: Decimal, decimals: u32) -> Line {
    Line {
        kind,
        index,
        amount: round_line(exact, decimals),
        exact,
        rating: None,
    }
}

/// What a fixed fee bills: its share for the days billed, trial days excluded (zero when the
/// trial covers them all).
pub fn fixed_fee_amount(fee: &FixedFee, decimals: u32) -> Result<Decimal, RateError> {
    Ok(fixed_fee_line(0, fee, decimals)?.map_or(Decimal::ZERO, |l| l.amount))
}

/// The fixed fee's share for the days billed, trial days excluded
/// ([`Period::prorate`]: differences of rounded running totals).
fn fixed_fee_line(index: usize, fee: &FixedFee, decimals: u32) -> Result<Option<Line>, RateError> {
    let start = match fee.trial_until {
        Some(until) if until > fee.billed.start() => until,
        _ => fee.billed.start(),
    };
    if start >= fee.billed.end() {
        return Ok(None);
    }
    let part = Period::new(start, fee.billed.end()).map_err(|_| RateError::TooLarge)?;
    let amount = fee
        .full
        .prorate(fee.amount, part, decimals)
        .map_err(|_| RateError::TooLarge)?;
    Ok(Some(Line {
        kind: LineKind::FixedFee,
        index,
        amount,
        exact: amount,
        rating: None,
    }))
}

/// Computes an invoice. Errors only for usage a charge cannot rate or amounts past 28 digits.
pub fn compute(input: &InvoiceInput<'_>) -> Result<Invoice, RateError> {
    let d = input.decimals;
    let mut lines = Vec::new();
    // 1. Fees.
    for (i, fee) in input.fixed_fees.iter().enumerate() {
        lines.extend(fixed_fee_line(i, fee, d)?);
    }
    for (i, adjustment) in input.fee_adjustments.iter().enumerate() {
        if !adjustment.is_zero() {
            lines.push(line(LineKind::FeeAdjustment, i, *adjustment, d));
        }
    }
    let mut charge_lines = Vec::with_capacity(input.charges.len());
    for (i, c) in input.charges.iter().enumerate() {
        let rating = rate(c.charge, c.usage)?;
        let bill = c.charge.bill(&rating, d);
        let mut usage = line(LineKind::Usage, i, rating.amount, d);
        usage.rating = Some(rating);
        charge_lines.push((usage, bill.true_up));
    }
    let mut true_ups = Vec::new();
    for (i, (usage, true_up)) in charge_lines.into_iter().enumerate() {
        lines.push(usage);
        // 2a. Charge minimums.
        if input.closes_period
            && let Some(gap) = true_up
        {
            true_ups.push(Line {
                kind: LineKind::ChargeMinimum,
                index: i,
                amount: gap,
                exact: gap,
                rating: None,
            });
        }
    }
    lines.extend(true_ups);
    // 2b. The plan's minimum commitment over what was billed for the usage period: the charges,
    // their true-ups and the fees that pay for that period (here or on an earlier invoice).
    if let Some(commitment) = input.minimum_commitment {
        let counted = lines.iter().filter(|l| {
            l.kind != LineKind::FixedFee
                || input
                    .fixed_fees
                    .get(l.index)
                    .is_some_and(|f| f.counts_toward_commitment)
        });
        let so_far = arith::add(arith::sum(counted.map(|l| l.amount))?, commitment.billed_before)?;
        let gap = arith::sub(round_line(commitment.amount, d), so_far)?;
        if gap > Decimal::ZERO {
            lines.push(line(LineKind::MinimumCommitment, 0, gap, d));
        }
    }
    let subtotal = arith::sum(lines.iter().map(|l| l.amount))?;
    // 3. Coupons on what is left.
    let mut left = subtotal;
    let mut discount = Decimal::ZERO;
    for (i, coupon) in input.coupons.iter().enumerate() {
        let off = match coupon {
            Coupon::Percentage(p) => round_line(arith::percent_of(left, *p)?, d),
            Coupon::Amount(a) => round_line(*a, d),
        }
        .min(left)
        .max(Decimal::ZERO);
        if off.is_zero() {
            continue;
        }
        left = arith::sub(left, off)?;
        discount = arith::sub(discount, off)?;
        lines.push(Line {
            kind: LineKind::Coupon,
            index: i,
            amount: -off,
            exact: -off,
            rating: None,
        });
    }
    // 3b. What earlier invoices of the period billed.
    let billed_earlier = -input.billed_earlier;
    if !billed_earlier.is_zero() {
        left = arith::add(left, billed_earlier)?;
        lines.push(Line {
            kind: LineKind::BilledEarlier,
            index: 0,
            amount: billed_earlier,
            exact: billed_earlier,
            rating: None,
        });
    }
    // 4. Taxes on what is left.
    let mut tax = Decimal::ZERO;
    for (i, rate) in input.taxes.iter().enumerate() {
        let t = line(LineKind::Tax, i, arith::percent_of(left, *rate)?, d);
        tax = arith::add(tax, t.amount)?;
        if !t.amount.is_zero() {
            lines.push(t);
        }
    }
    let total = arith::add(left, tax)?;
    // 5. Prepaid credits.
    let drawn = round_line(input.credits_available.max(Decimal::ZERO), d)
        .min(total)
        .max(Decimal::ZERO);
    if !drawn.is_zero() {
        lines.push(Line {
            kind: LineKind::Credits,
            index: 0,
            amount: -drawn,
            exact: -drawn,
            rating: None,
        });
    }
    Ok(Invoice {
        lines,
        subtotal,
        discount,
        billed_earlier,
        tax,
        total,
        credits: if drawn.is_zero() { Decimal::ZERO } else { -drawn },
        amount_due: arith::sub(total, drawn)?,
    })
}
