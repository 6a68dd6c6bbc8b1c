//! Price models: [`PriceSpec`] is what a client sends and what a plan stores (serde, camelCase,
//! tagged by `model`); [`Price`] is a spec that passed [`Price::parse`], so a `Price` that exists
//! can be rated. Each refusal names the field (relative to the price, GraphQL-style:
//! `tiers.1.upTo`) and says what it must be.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Tiers a graduated or volume price may have. Real price sheets have a handful.
pub const MAX_TIERS: usize = 64;
/// Event amounts a percentage price may be quoted on in one request. Billing runs stream events
/// through [`crate::PercentageRater`] and have no such limit.
pub const MAX_EVENT_AMOUNTS: usize = 10_000;
/// Decimal places of an amount (the ledger's precision) and of a quantity.
pub(crate) const SCALE: u32 = 12;
/// Integer digits of an amount in a price (the ledger keeps two more for sums).
pub(crate) const AMOUNT_DIGITS: u32 = 14;
/// Integer digits of a quantity (as for usage quantities).
pub(crate) const QUANTITY_DIGITS: u32 = 16;
/// Decimal places of a percentage rate (`2.75` is 2.75 %; `0.000001` is the finest).
pub(crate) const RATE_SCALE: u32 = 6;

/// A price as sent and stored. Amounts are in the charge's currency; quantities in the metric's
/// unit. Nothing here is checked: [`Price::parse`] does that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "camelCase")]
pub enum PriceSpec {
    /// `quantity × unitAmount`.
    #[serde(rename_all = "camelCase")]
    PerUnit { unit_amount: Decimal },
    /// Each tier prices the units that fall in it; a tier with units also bills its flat fee.
    Graduated { tiers: Vec<TierSpec> },
    /// The tier the whole quantity falls in prices every unit; plus that tier's flat fee.
    Volume { tiers: Vec<TierSpec> },
    /// `packageAmount` per started package of `packageSize` units.
    #[serde(rename_all = "camelCase")]
    Package {
        package_size: Decimal,
        package_amount: Decimal,
    },
    /// A percentage of each event's amount, with per-event terms.
    Percentage(PercentageSpec),
    /// Tiers of percentages over the period's total amount.
    GraduatedPercentage { tiers: Vec<PercentageTierSpec> },
}

/// One tier: the units above the previous tier's `upTo`, up to and including this `upTo`
/// (`None`: no upper bound; only the last tier, which must have none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    pub up_to: Option<Decimal>,
    pub unit_amount: Decimal,
    #[serde(default)]
    pub flat_amount: Decimal,
}

/// A percentage price's terms; see `docs/billing.md` for how they combine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PercentageSpec {
    /// Percent of each event's amount: `2.5` is 2.5 %, at most 100.
    pub rate: Decimal,
    /// Added to the fee of each event that is not free.
    #[serde(default)]
    pub fixed_fee: Decimal,
    /// The first this many events are free.
    #[serde(default)]
    pub free_events: Option<u64>,
    /// The first this much of the events' amounts is free.
    #[serde(default)]
    pub free_amount: Option<Decimal>,
    /// An event's fee (percentage plus fixed fee) is at least this.
    #[serde(default)]
    pub event_minimum: Option<Decimal>,
    /// An event's fee (percentage plus fixed fee) is at most this.
    #[serde(default)]
    pub event_maximum: Option<Decimal>,
}

/// One tier of a graduated percentage: a rate for the part of the total amount in the tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PercentageTierSpec {
    pub up_to: Option<Decimal>,
    pub rate: Decimal,
    #[serde(default)]
    pub flat_amount: Decimal,
}

/// Why a price cannot be used: `field` is the path inside the price (`tiers.2.upTo`), `message`
/// what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PriceError {
    pub field: String,
    pub message: String,
}

impl PriceError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PriceError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A price that passed [`Price::parse`]. Serializes as its spec; deserializing parses again, so a
/// stored price that no longer passes is refused when read, not rated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PriceSpec", try_from = "PriceSpec")]
pub struct Price(PriceSpec);

impl From<Price> for PriceSpec {
    fn from(price: Price) -> PriceSpec {
        price.0
    }
}

impl TryFrom<PriceSpec> for Price {
    type Error = PriceError;
    fn try_from(spec: PriceSpec) -> Result<Price, PriceError> {
        Price::parse(spec)
    }
}

impl Price {
    pub fn parse(spec: PriceSpec) -> Result<Price, PriceError> {
        match &spec {
            PriceSpec::PerUnit { unit_amount } => check_amount("unitAmount", *unit_amount)?,
            PriceSpec::Graduated { tiers } | PriceSpec::Volume { tiers } => {
                check_bounds(tiers.iter().map(|t| t.up_to), QUANTITY_DIGITS)?;
                for (i, tier) in tiers.iter().enumerate() {
                    check_amount(&format!("tiers.{i}.unitAmount"), tier.unit_amount)?;
                    check_amount(&format!("tiers.{i}.flatAmount"), tier.flat_amount)?;
                }
            }
            PriceSpec::Package {
                package_size,
                package_amount,
            } => {
                if !package_size.fract().is_zero()
                    || *package_size < Decimal::ONE
                    || digits(*package_size) > QUANTITY_DIGITS
                {
                    return Err(PriceError::new(
                        "packageSize",
                        format!("must be a whole number of units from 1 to 10^{QUANTITY_DIGITS} - 1"),
                    ));
                }
                check_amount("packageAmount", *package_amount)?;
            }
            PriceSpec::Percentage(terms) => {
                check_rate("rate", terms.rate)?;
                check_amount("fixedFee", terms.fixed_fee)?;
                if let Some(free) = terms.free_amount {
                    check_amount("freeAmount", free)?;
                }
                if let Some(min) = terms.event_minimum {
                    check_amount("eventMinimum", min)?;
                }
                if let Some(max) = terms.event_maximum {
                    check_amount("eventMaximum", max)?;
                    if terms.event_minimum.is_some_and(|min| min > max) {
                        return Err(PriceError::new("eventMaximum", "must not be below eventMinimum"));
                    }
                }
            }
            PriceSpec::GraduatedPercentage { tiers } => {
                check_bounds(tiers.iter().map(|t| t.up_to), AMOUNT_DIGITS)?;
                for (i, tier) in tiers.iter().enumerate() {
                    check_rate(&format!("tiers.{i}.rate"), tier.rate)?;
                    check_amount(&format!("tiers.{i}.flatAmount"), tier.flat_amount)?;
                }
            }
        }
        Ok(Price(spec))
    }

    pub fn spec(&self) -> &PriceSpec {
        &self.0
    }

    /// Whether this price rates the amounts of single events (`percentage`) rather than a
    /// quantity; a graduated percentage rates the period's total amount, a quantity.
    pub fn needs_events(&self) -> bool {
        matches!(self.0, PriceSpec::Percentage(_))
    }
}

fn digits(value: Decimal) -> u32 {
    let integer = value.trunc().abs();
    if integer.is_zero() {
        0
    } else {
        integer.to_string().len() as u32
    }
}

fn check_value(field: &str, value: Decimal, integer_digits: u32, what: &str) -> Result<(), PriceError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(PriceError::new(field, format!("must not be negative (a {what})")));
    }
    if value.normalize().scale() > SCALE || digits(value) > integer_digits {
        return Err(PriceError::new(
            field,
            format!("must have at most {integer_digits} digits before the decimal point and {SCALE} after"),
        ));
    }
    Ok(())
}

pub(crate) fn check_amount(field: &str, value: Decimal) -> Result<(), PriceError> {
    check_value(field, value, AMOUNT_DIGITS, "price")
}

pub(crate) fn check_quantity(field: &str, value: Decimal) -> Result<(), PriceError> {
    check_value(field, value, QUANTITY_DIGITS, "quantity")
}

fn check_rate(field: &str, rate: Decimal) -> Result<(), PriceError> {
    if rate.is_sign_negative() && !rate.is_zero() || rate > Decimal::ONE_HUNDRED {
        return Err(PriceError::new(field, "must be a percentage from 0 to 100"));
    }
    if rate.normalize().scale() > RATE_SCALE {
        return Err(PriceError::new(
            field,
            format!("must have at most {RATE_SCALE} decimal places"),
        ));
    }
    Ok(())
}

/// Tier bounds: at least one tier and at most [`MAX_TIERS`]; each `upTo` above the previous one
/// and above zero; only the last unbounded, and the last must be (a price rates any quantity).
/// Tiers are given by their upper bounds alone, so they cannot overlap or leave gaps.
fn check_bounds(bounds: impl ExactSizeIterator<Item = Option<Decimal>>, integer_digits: u32) -> Result<(), PriceError> {
    let count = bounds.len();
    if count == 0 || count > MAX_TIERS {
        return Err(PriceError::new(
            "tiers",
            format!("must have from 1 to {MAX_TIERS} tiers"),
        ));
    }
    let mut previous = Decimal::ZERO;
    for (i, bound) in bounds.enumerate() {
        let last = i + 1 == count;
        match (bound, last) {
            (None, true) => {}
            (None, false) => {
                return Err(PriceError::new(
                    format!("tiers.{i}.upTo"),
                    "only the last tier may be unbounded (null)",
                ));
            }
            (Some(_), true) => {
                return Err(PriceError::new(
                    format!("tiers.{i}.upTo"),
                    "the last tier must be unbounded (null), so that every quantity has a tier",
                ));
            }
            (Some(up_to), false) => {
                check_value(&format!("tiers.{i}.upTo"), up_to, integer_digits, "bound")?;
                if up_to <= previous {
                    return Err(PriceError::new(
                        format!("tiers.{i}.upTo"),
                        if i == 0 {
                            "must be above 0".to_string()
                        } else {
                            format!("must be above the previous tier's upTo ({previous}): tiers go in increasing order")
                        },
                    ));
                }
                previous = up_to;
            }
        }
    }
    Ok(())
}
