//! Amounts as the portal shows and checks them: the server's exact decimal text, its display
//! form, and the rule for a custom top-up amount (the project's limits, the unit's places).

use std::str::FromStr;

use rust_decimal::Decimal;

/// An amount as the server sent it (`Money`): the exact text, the unit, its minor-unit digits
/// and the server's display form (`12.50 USD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount: String,
    pub currency: String,
    pub decimals: i64,
    pub formatted: String,
}

impl Money {
    pub fn is_negative(&self) -> bool {
        Decimal::from_str(&self.amount).is_ok_and(|d| d.is_sign_negative() && !d.is_zero())
    }

    pub fn is_zero(&self) -> bool {
        Decimal::from_str(&self.amount).is_ok_and(|d| d.is_zero())
    }
}

/// Converts each generated `MoneyFields` fragment type (one per operation module) into
/// [`Money`], so pages share one type.
macro_rules! money_from {
    ($($module:ident),* $(,)?) => {$(
        impl From<crate::api::ops::$module::MoneyFields> for Money {
            fn from(m: crate::api::ops::$module::MoneyFields) -> Self {
                Money { amount: m.amount, currency: m.currency, decimals: m.decimals, formatted: m.formatted }
            }
        }
    )*};
}
money_from!(
    wallets,
    invoices,
    invoice_detail,
    subscriptions,
    upcoming_invoice,
    balance_changed
);

/// A decimal from the server, shown as written but without trailing zeros (`10.00` → `10`).
pub fn plain(decimal: &str) -> String {
    Decimal::from_str(decimal).map_or_else(|_| decimal.to_owned(), |d| d.normalize().to_string())
}

/// The project's top-up limits, in the unit of the wallet topped up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUpLimits {
    pub minimum: Decimal,
    pub maximum: Decimal,
    pub presets: Vec<Decimal>,
}

impl TopUpLimits {
    /// Parses the server's decimal texts; an unreadable one is left out of the presets, and
    /// unreadable bounds fall back to the documented defaults (1 and 10000).
    pub fn parse(minimum: &str, maximum: &str, presets: &[String]) -> Self {
        TopUpLimits {
            minimum: Decimal::from_str(minimum).unwrap_or(Decimal::ONE),
            maximum: Decimal::from_str(maximum).unwrap_or(Decimal::from(10_000)),
            presets: presets.iter().filter_map(|p| Decimal::from_str(p).ok()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("Enter an amount.")]
    Empty,
    #[error("Enter the amount as a number, such as 25 or 25.50.")]
    NotANumber,
    #[error("The amount must be at least {0}.")]
    BelowMinimum(String),
    #[error("The amount can be at most {0}.")]
    AboveMaximum(String),
    #[error("Use at most {0} decimal places.")]
    TooManyPlaces(u32),
}

/// Reads what the person typed as a top-up amount: a plain decimal (a `,` decimal separator
/// is accepted), with at most `decimals` places, within `limits`. The server checks the same
/// rules; this only spares a round trip and says what is wrong next to the field.
pub fn parse_top_up(input: &str, decimals: u32, limits: &TopUpLimits) -> Result<Decimal, AmountError> {
    let text = input.trim().replace(',', ".");
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if !text.chars().all(|c| c.is_ascii_digit() || c == '.') || text.matches('.').count() > 1 {
        return Err(AmountError::NotANumber);
    }
    let amount = Decimal::from_str(&text).map_err(|_| AmountError::NotANumber)?;
    if amount.normalize().scale() > decimals {
        return Err(AmountError::TooManyPlaces(decimals));
    }
    if amount < limits.minimum || amount.is_zero() {
        return Err(AmountError::BelowMinimum(limits.minimum.normalize().to_string()));
    }
    if amount > limits.maximum {
        return Err(AmountError::AboveMaximum(limits.maximum.normalize().to_string()));
    }
    Ok(amount.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TopUpLimits {
        TopUpLimits::parse("5", "500", &["10".into(), "50.00".into(), "bad".into()])
    }

    #[test]
    fn limits_parse_and_skip_unreadable_presets() {
        let l = limits();
        assert_eq!(l.minimum, Decimal::from(5));
        assert_eq!(l.presets, vec![Decimal::from(10), Decimal::from(50)]);
        let defaults = TopUpLimits::parse("?", "?", &[]);
        assert_eq!(
            (defaults.minimum, defaults.maximum),
            (Decimal::ONE, Decimal::from(10_000))
        );
    }

    #[test]
    fn amounts_within_limits_are_accepted_exactly() {
        assert_eq!(parse_top_up(" 25 ", 2, &limits()), Ok(Decimal::from_str("25").unwrap()));
        assert_eq!(
            parse_top_up("25,50", 2, &limits()),
            Ok(Decimal::from_str("25.5").unwrap())
        );
        assert_eq!(
            parse_top_up("5", 2, &limits()),
            Ok(Decimal::from(5)),
            "the minimum itself"
        );
        assert_eq!(
            parse_top_up("500.00", 2, &limits()),
            Ok(Decimal::from(500)),
            "the maximum itself"
        );
        assert_eq!(
            parse_top_up("12.30", 2, &limits()),
            Ok(Decimal::from_str("12.3").unwrap())
        );
    }

    #[test]
    fn amounts_outside_limits_say_which_limit() {
        assert_eq!(
            parse_top_up("4.99", 2, &limits()),
            Err(AmountError::BelowMinimum("5".into()))
        );
        assert_eq!(
            parse_top_up("500.01", 2, &limits()),
            Err(AmountError::AboveMaximum("500".into()))
        );
        assert_eq!(
            parse_top_up("0", 2, &TopUpLimits::parse("0", "10", &[])),
            Err(AmountError::BelowMinimum("0".into()))
        );
    }

    #[test]
    fn malformed_amounts_are_refused() {
        assert_eq!(parse_top_up("", 2, &limits()), Err(AmountError::Empty));
        assert_eq!(parse_top_up("-10", 2, &limits()), Err(AmountError::NotANumber));
        assert_eq!(parse_top_up("1e3", 2, &limits()), Err(AmountError::NotANumber));
        assert_eq!(parse_top_up("1.2.3", 2, &limits()), Err(AmountError::NotANumber));
        assert_eq!(parse_top_up("10.001", 2, &limits()), Err(AmountError::TooManyPlaces(2)));
        assert_eq!(parse_top_up("10.5", 0, &limits()), Err(AmountError::TooManyPlaces(0)));
    }

    #[test]
    fn plain_drops_trailing_zeros() {
        assert_eq!(plain("10.00"), "10");
        assert_eq!(plain("0.50"), "0.5");
        assert_eq!(plain("oops"), "oops");
    }
}
