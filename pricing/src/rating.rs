//! Rating: a [`Charge`] and its [`Usage`] in, the exact amount and its [`Step`]s out. The steps
//! always add up to the amount, and a step is listed only when it covers some usage (a quantity
//! of zero enters no tier, so it bills no flat fee).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    Charge, PercentageRater,
    arith::{self, mul, percent_of},
    price::{PriceSpec, TierSpec, check_quantity},
};

/// What is rated: the quantity a metric aggregated over the period, or, for a percentage price,
/// the amounts of the events one by one (in the order they occurred). A graduated percentage
/// rates the total amount, so it takes either (events are summed).
#[derive(Debug, Clone, Copy)]
pub enum Usage<'a> {
    Quantity(Decimal),
    EventAmounts(&'a [Decimal]),
    /// Usage already rated elsewhere: a billing run streams a period's events through a
    /// [`crate::PercentageRater`] page by page instead of holding them in one slice.
    Rated(&'a Rating),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("quantity: {0}")]
    Quantity(String),
    #[error("eventAmounts.{index}: {message}")]
    EventAmount { index: usize, message: String },
    #[error("a percentage price rates the amounts of single events: give eventAmounts, not a quantity")]
    NeedsEvents,
    #[error("this price rates a quantity: give a quantity, not eventAmounts")]
    NeedsQuantity,
    #[error("an amount would need more than 28 significant digits to stay exact")]
    TooLarge,
}

/// What a step of a rating did. Each kind says what its `quantity` and `count` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepKind {
    /// `quantity` units were free (subtracted before tiers or packages); amount 0.
    FreeUnits,
    /// `quantity × unitAmount` (per-unit price).
    Unit,
    /// Graduated tier `tier`: the `quantity` units in `(from, upTo]` × `unitAmount` + `flatAmount`.
    Tier,
    /// Volume tier `tier`, the one the whole quantity falls in: `quantity × unitAmount + flatAmount`.
    VolumeTier,
    /// `count` started packages of `packageSize` units for `quantity` units, × `unitAmount`.
    Package,
    /// `count` events (all of them free) and `quantity` of event amounts were free; amount 0.
    FreeUsage,
    /// `rate` % of `quantity`, the event amounts that were not free.
    Percentage,
    /// A fixed fee of `unitAmount` on each of `count` events that were not free.
    EventFees,
    /// `count` events' fees were raised to the per-event minimum; `amount` is what that added.
    EventMinimum,
    /// `count` events' fees were cut to the per-event maximum; `amount` (negative) is what that removed.
    EventMaximum,
    /// Graduated percentage tier `tier`: `rate` % of the `quantity` of amount in `(from, upTo]`, + `flatAmount`.
    PercentageTier,
}

/// One step of a rating. Fields that do not apply to a kind are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub kind: StepKind,
    /// 1-based tier number.
    pub tier: Option<u32>,
    /// Lower bound (exclusive) of the tier.
    pub from: Option<Decimal>,
    /// Upper bound (inclusive) of the tier; `None` for the unbounded last tier or no tier.
    pub up_to: Option<Decimal>,
    pub quantity: Decimal,
    pub count: Option<u64>,
    pub unit_amount: Option<Decimal>,
    pub flat_amount: Option<Decimal>,
    pub rate: Option<Decimal>,
    pub amount: Decimal,
}

impl Step {
    pub(crate) fn new(kind: StepKind, quantity: Decimal, amount: Decimal) -> Step {
        Step {
            kind,
            tier: None,
            from: None,
            up_to: None,
            quantity,
            count: None,
            unit_amount: None,
            flat_amount: None,
            rate: None,
            amount,
        }
    }
}

/// The exact amount of a charge for some usage, and the steps that explain it (they add up to it).
/// Rounding to the currency is [`Charge::bill`]'s job, once per invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rating {
    pub amount: Decimal,
    pub steps: Vec<Step>,
}

/// Rates `usage` under `charge`.
pub fn rate(charge: &Charge, usage: Usage<'_>) -> Result<Rating, RateError> {
    let spec = charge.price().spec();
    if let Usage::Rated(rating) = usage {
        return Ok(rating.clone());
    }
    if let PriceSpec::Percentage(terms) = spec {
        let Usage::EventAmounts(amounts) = usage else {
            return Err(RateError::NeedsEvents);
        };
        let mut rater = PercentageRater::new(terms);
        for (index, amount) in amounts.iter().enumerate() {
            rater.push(*amount).map_err(|e| match e {
                RateError::Quantity(message) => RateError::EventAmount { index, message },
                other => other,
            })?;
        }
        return rater.finish();
    }
    let quantity = match usage {
        Usage::Quantity(q) => {
            check_quantity("quantity", q).map_err(|e| RateError::Quantity(e.message))?;
            q
        }
        Usage::EventAmounts(amounts) if matches!(spec, PriceSpec::GraduatedPercentage { .. }) => {
            for (index, amount) in amounts.iter().enumerate() {
                check_quantity("amount", *amount).map_err(|e| RateError::EventAmount {
                    index,
                    message: e.message,
                })?;
            }
            arith::sum(amounts.iter().copied())?
        }
        Usage::EventAmounts(_) => return Err(RateError::NeedsQuantity),
        Usage::Rated(rating) => return Ok(rating.clone()),
    };

    let mut steps = Vec::new();
    let free = charge.free_units().min(quantity);
    if !free.is_zero() {
        steps.push(Step::new(StepKind::FreeUnits, free, Decimal::ZERO));
    }
    let billable = arith::sub(quantity, free)?;
    if !billable.is_zero() {
        match spec {
            PriceSpec::PerUnit { unit_amount } => {
                let mut step = Step::new(StepKind::Unit, billable, mul(billable, *unit_amount)?);
                step.unit_amount = Some(*unit_amount);
                steps.push(step);
            }
            PriceSpec::Graduated { tiers } => graduated(tiers, billable, &mut steps)?,
            PriceSpec::Volume { tiers } => {
                let mut from = Decimal::ZERO;
                for (i, tier) in tiers.iter().enumerate() {
                    if tier.up_to.is_none_or(|up_to| billable <= up_to) {
                        let amount = arith::add(mul(billable, tier.unit_amount)?, tier.flat_amount)?;
                        let mut step = tier_step(StepKind::VolumeTier, i, from, tier, billable, amount);
                        step.from = Some(from);
                        steps.push(step);
                        break;
                    }
                    from = tier.up_to.unwrap_or(from);
                }
            }
            PriceSpec::Package {
                package_size,
                package_amount,
            } => {
                let whole = (billable / package_size).trunc();
                let started = if mul(whole, *package_size)? < billable {
                    whole + Decimal::ONE
                } else {
                    whole
                };
                let mut step = Step::new(StepKind::Package, billable, mul(started, *package_amount)?);
                step.count = Some(u64::try_from(started).map_err(|_| RateError::TooLarge)?);
                step.unit_amount = Some(*package_amount);
                steps.push(step);
            }
            PriceSpec::GraduatedPercentage { tiers } => {
                walk_tiers(
                    tiers,
                    |t| t.up_to,
                    billable,
                    |i, from, part, tier| {
                        let amount = arith::add(percent_of(part, tier.rate)?, tier.flat_amount)?;
                        let mut step = Step::new(StepKind::PercentageTier, part, amount);
                        step.tier = Some(i as u32 + 1);
                        step.from = Some(from);
                        step.up_to = tier.up_to;
                        step.rate = Some(tier.rate);
                        step.flat_amount = Some(tier.flat_amount).filter(|f| !f.is_zero());
                        steps.push(step);
                        Ok(())
                    },
                )?;
            }
            PriceSpec::Percentage(_) => unreachable!("percentage prices return above"),
        }
    }
    let amount = arith::sum(steps.iter().map(|s| s.amount))?;
    Ok(Rating { amount, steps })
}

fn graduated(tiers: &[TierSpec], billable: Decimal, steps: &mut Vec<Step>) -> Result<(), RateError> {
    walk_tiers(
        tiers,
        |t| t.up_to,
        billable,
        |i, from, part, tier| {
            let amount = arith::add(mul(part, tier.unit_amount)?, tier.flat_amount)?;
            steps.push(tier_step(StepKind::Tier, i, from, tier, part, amount));
            Ok(())
        },
    )
}

/// Walks graduated tiers over `billable`: calls `visit(index, from, part, tier)` for each tier
/// the quantity enters, with `part` the quantity in `(from, upTo]` (a tier it does not enter is
/// not visited: zero enters none).
fn walk_tiers<T>(
    tiers: &[T],
    up_to: impl Fn(&T) -> Option<Decimal>,
    billable: Decimal,
    mut visit: impl FnMut(usize, Decimal, Decimal, &T) -> Result<(), RateError>,
) -> Result<(), RateError> {
    let mut from = Decimal::ZERO;
    for (i, tier) in tiers.iter().enumerate() {
        if billable <= from {
            break;
        }
        let bound = up_to(tier);
        let top = bound.map_or(billable, |b| b.min(billable));
        visit(i, from, arith::sub(top, from)?, tier)?;
        from = bound.unwrap_or(billable);
    }
    Ok(())
}

fn tier_step(kind: StepKind, index: usize, from: Decimal, tier: &TierSpec, quantity: Decimal, amount: Decimal) -> Step {
    let mut step = Step::new(kind, quantity, amount);
    step.tier = Some(index as u32 + 1);
    step.from = Some(from);
    step.up_to = tier.up_to;
    step.unit_amount = Some(tier.unit_amount);
    step.flat_amount = Some(tier.flat_amount).filter(|f| !f.is_zero());
    step
}
