//! The `Money` output object: an amount together with its unit, never a bare `Decimal` beside a
//! sibling currency field. Built from the domain [`crate::currency::Money`] with `From`.

use async_graphql::SimpleObject;

use super::Decimal;
use crate::currency;

/// An amount of money or credits in one unit.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct Money {
    /// The exact amount, at the ledger's precision (up to 12 decimal places, never rounded).
    pub amount: Decimal,
    /// The unit's code: an ISO 4217 currency (`USD`) or a credit unit the project declared.
    pub currency: String,
    /// The unit's minor-unit digits: 2 for USD, 0 for JPY, 3 for KWD, a credit unit's declared decimals.
    pub decimals: i32,
    /// For display only: the amount rounded half to even to `decimals` places, written with
    /// exactly that many places, `.` as the decimal point, no grouping, then a space and the code
    /// (`12.50 USD`, `-1200 JPY`, `1200 CREDITS`). Format for a locale from `amount` and `currency`.
    pub formatted: String,
}

impl From<&currency::Money> for Money {
    fn from(m: &currency::Money) -> Self {
        Money {
            amount: m.amount().into(),
            currency: m.currency().code().to_string(),
            decimals: m.currency().decimals() as i32,
            formatted: m.formatted(),
        }
    }
}

impl From<currency::Money> for Money {
    fn from(m: currency::Money) -> Self {
        Money::from(&m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::currency::Currency;

    #[test]
    fn money_keeps_the_exact_amount_and_formats_rounded() {
        let usd = Currency::from_iso_code("USD").unwrap();
        let m = Money::from(currency::Money::from_ledger("12.505000".parse().unwrap(), usd));
        assert_eq!(
            m,
            Money {
                amount: Decimal("12.505".into()),
                currency: "USD".into(),
                decimals: 2,
                formatted: "12.50 USD".into(),
            }
        );
        let credits = Currency::credit_unit("code", "CREDITS", "decimals", 0).unwrap();
        let m = Money::from(&currency::Money::from_ledger("1200".parse().unwrap(), credits));
        assert_eq!(
            (m.amount.0.as_str(), m.decimals, m.formatted.as_str()),
            ("1200", 0, "1200 CREDITS")
        );
        let jpy = Currency::from_iso_code("JPY").unwrap();
        let m = Money::from(currency::Money::zero(jpy));
        assert_eq!((m.amount.0.as_str(), m.formatted.as_str()), ("0", "0 JPY"));
    }
}
