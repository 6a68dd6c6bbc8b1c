//! A usage charge: a [`Price`] with the terms any usage charge may carry, free units (subtracted
//! before tiers or packages) and a minimum amount (a true-up line when the fee is below it).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    PriceError, Rating, arith,
    price::{Price, PriceSpec, check_amount, check_quantity},
    round_line,
};

/// A charge as sent and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeSpec {
    pub price: PriceSpec,
    #[serde(default)]
    pub free_units: Option<Decimal>,
    #[serde(default)]
    pub minimum: Option<Decimal>,
}

/// A charge that passed [`Charge::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ChargeSpec", try_from = "ChargeSpec")]
pub struct Charge {
    price: Price,
    free_units: Decimal,
    minimum: Option<Decimal>,
}

impl From<Charge> for ChargeSpec {
    fn from(charge: Charge) -> ChargeSpec {
        ChargeSpec {
            price: charge.price.into(),
            free_units: (!charge.free_units.is_zero()).then_some(charge.free_units),
            minimum: charge.minimum,
        }
    }
}

impl TryFrom<ChargeSpec> for Charge {
    type Error = PriceError;
    fn try_from(spec: ChargeSpec) -> Result<Charge, PriceError> {
        Charge::parse(spec)
    }
}

/// A charge's invoice lines: the fee, rounded once, and the minimum's true-up when the rounded
/// fee is below the minimum (so that the two lines add up to the minimum exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeLines {
    pub fee: Decimal,
    pub true_up: Option<Decimal>,
}

impl ChargeLines {
    pub fn total(&self) -> Decimal {
        self.fee + self.true_up.unwrap_or_default()
    }
}

impl Charge {
    /// Checks the price and the terms. Errors name the field relative to the charge
    /// (`price.tiers.1.upTo`, `freeUnits`).
    pub fn parse(spec: ChargeSpec) -> Result<Charge, PriceError> {
        let price = Price::parse(spec.price).map_err(|e| PriceError::new(format!("price.{}", e.field), e.message))?;
        let free_units = spec.free_units.unwrap_or_default();
        if !free_units.is_zero() && price.needs_events() {
            return Err(PriceError::new(
                "freeUnits",
                "a percentage price has no units: use its freeEvents or freeAmount",
            ));
        }
        check_quantity("freeUnits", free_units)?;
        if let Some(minimum) = spec.minimum {
            check_amount("minimum", minimum)?;
        }
        Ok(Charge {
            price,
            free_units,
            minimum: spec.minimum,
        })
    }

    /// A charge with no free units and no minimum.
    pub fn of(price: Price) -> Charge {
        Charge {
            price,
            free_units: Decimal::ZERO,
            minimum: None,
        }
    }

    pub fn price(&self) -> &Price {
        &self.price
    }

    pub fn free_units(&self) -> Decimal {
        self.free_units
    }

    pub fn minimum(&self) -> Option<Decimal> {
        self.minimum
    }

    /// The invoice lines for a rating of this charge in a currency with `decimals` minor-unit
    /// digits: the fee rounded half away from zero, then the true-up `minimum - fee` when that is
    /// positive. The minimum applies to a period with no usage too.
    pub fn bill(&self, rating: &Rating, decimals: u32) -> ChargeLines {
        let fee = round_line(rating.amount, decimals);
        let true_up = self
            .minimum
            .map(|minimum| round_line(minimum, decimals))
            .and_then(|minimum| {
                arith::sub(minimum, fee)
                    .ok()
                    .filter(|gap| *gap > Decimal::ZERO)
                    .map(|gap| round_line(gap, decimals))
            });
        ChargeLines { fee, true_up }
    }
}
