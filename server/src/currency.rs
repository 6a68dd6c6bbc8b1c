//! Units of value and amounts in them: [`Currency`] (an ISO 4217 currency with its minor units, or
//! a credit unit a project declared) and [`Money`] (an exact amount in one currency). Both are
//! built by constructors that check them, so a value that exists is valid. Pure: no I/O; the
//! project's declared credit units are looked up by [`crate::credit_units`].
//!
//! Rounding to a currency's minor units is [`round_to_minor_units`]: banker's rounding (half to
//! even), the same mode the ledger uses for derived amounts (docs/ledger.md, "Rounding").

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::{
    error::Error,
    money::{DecimalLimits, MONEY_SCALE, parse_decimal},
};

/// The most decimal places a credit unit may declare: what the ledger's `DECIMAL(28, 12)` columns keep.
pub const MAX_CREDIT_DECIMALS: u32 = MONEY_SCALE;

/// A unit amounts are counted in: an ISO 4217 currency (`USD`, 2 decimals; `JPY`, 0; `KWD`, 3),
/// taken from the `iso_currency` crate's table, or a credit unit a project declared (`CREDITS`
/// with 0..=12 decimals). `decimals` is the number of minor-unit digits: what amounts sent in this
/// unit may carry and what display rounds to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency {
    code: String,
    decimals: u32,
    kind: CurrencyKind,
}

/// Where a [`Currency`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CurrencyKind {
    /// An ISO 4217 currency with a minor unit.
    Iso,
    /// A credit unit declared by a project (`createCreditUnit`).
    Credit,
}

impl Currency {
    /// The ISO 4217 currency with this exact (upper-case) code, if it has a minor unit. Codes
    /// without one (gold `XAU`, `XDR`, the testing code `XTS`, "no currency" `XXX`) are not money
    /// Neruba can hold.
    pub fn from_iso_code(code: &str) -> Option<Currency> {
        let iso = iso_currency::Currency::from_code(code)?;
        let decimals = u32::from(iso.exponent()?);
        Some(Currency {
            code: iso.code().to_string(),
            decimals,
            kind: CurrencyKind::Iso,
        })
    }

    /// Parses a client's ISO 4217 code (trimmed, case-insensitive). An unknown code is
    /// `BAD_USER_INPUT` naming `field`.
    pub fn parse_iso(field: &str, raw: &str) -> Result<Currency, Error> {
        let code = raw.trim().to_ascii_uppercase();
        if let Some(currency) = Currency::from_iso_code(&code) {
            return Ok(currency);
        }
        let message = if is_iso_code(&code) {
            format!("{code} has no minor unit in ISO 4217 and cannot hold money")
        } else {
            format!("'{}' is not an ISO 4217 currency code such as USD", shorten(raw))
        };
        Err(Error::invalid(field, message))
    }

    /// A declared credit unit: the code must pass [`parse_credit_code`] and `decimals` must be
    /// 0..=[`MAX_CREDIT_DECIMALS`]. Errors name `code_field` or `decimals_field`.
    pub fn credit_unit(code_field: &str, code: &str, decimals_field: &str, decimals: i64) -> Result<Currency, Error> {
        let code = parse_credit_code(code_field, code)?;
        let decimals = parse_credit_decimals(decimals_field, decimals)?;
        Ok(Currency {
            code,
            decimals,
            kind: CurrencyKind::Credit,
        })
    }

    /// A unit stored before units were declared (a wallet's code that is neither ISO nor a
    /// declared credit unit): counted at the ledger's full precision so every stored amount stays
    /// valid. Only for reading old rows.
    pub(crate) fn undeclared(code: &str) -> Currency {
        Currency {
            code: code.to_string(),
            decimals: MAX_CREDIT_DECIMALS,
            kind: CurrencyKind::Credit,
        }
    }

    /// A declared credit unit as stored: the code was checked when it was declared (or carried
    /// over from an older wallet by the migration), so only the decimals are checked again.
    pub(crate) fn stored_credit_unit(code: &str, decimals: u32) -> Option<Currency> {
        (decimals <= MAX_CREDIT_DECIMALS).then(|| Currency {
            code: code.to_string(),
            decimals,
            kind: CurrencyKind::Credit,
        })
    }

    /// The code: `USD`, `CREDITS`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The number of minor-unit digits (ISO 4217's exponent, or the credit unit's declared decimals).
    pub fn decimals(&self) -> u32 {
        self.decimals
    }

    pub fn kind(&self) -> CurrencyKind {
        self.kind
    }

    pub fn is_iso(&self) -> bool {
        self.kind == CurrencyKind::Iso
    }

    /// Refuses an amount a client sent with more decimal places than this unit's minor units
    /// (`1.005` USD): `BAD_USER_INPUT` naming `field`. Nothing is rounded silently.
    pub fn check_precision(&self, field: &str, amount: Decimal) -> Result<(), Error> {
        if amount.normalize().scale() > self.decimals {
            return Err(Error::invalid(
                field,
                match self.decimals {
                    0 => format!("{} has no minor unit: send a whole number", self.code),
                    1 => format!("{} has 1 decimal place", self.code),
                    n => format!("{} has {n} decimal places", self.code),
                },
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

/// Whether `code` is in the ISO 4217 table at all (with a minor unit or without).
pub fn is_iso_code(code: &str) -> bool {
    iso_currency::Currency::from_code(code).is_some()
}

/// The shape of every unit code, ISO or credit: 2 to 16 of `A-Z0-9_` (upper case), starting
/// with a letter.
pub fn is_unit_code(code: &str) -> bool {
    (2..=16).contains(&code.len())
        && code.as_bytes()[0].is_ascii_uppercase()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A credit unit's code: 2 to 16 of `A-Z0-9_`, starting with a letter; upper-cased; and not an
/// ISO 4217 code (`USD` cannot be redeclared as credits with other decimals).
pub fn parse_credit_code(field: &str, raw: &str) -> Result<String, Error> {
    let code = raw.trim().to_ascii_uppercase();
    if !is_unit_code(&code) {
        return Err(Error::invalid(
            field,
            "must be 2-16 of A-Z, 0-9, _ starting with a letter, such as CREDITS",
        ));
    }
    if is_iso_code(&code) {
        return Err(Error::invalid(
            field,
            format!("{code} is an ISO 4217 currency code; a credit unit needs its own code"),
        ));
    }
    Ok(code)
}

/// A credit unit's decimals: 0..=12.
pub fn parse_credit_decimals(field: &str, decimals: i64) -> Result<u32, Error> {
    match u32::try_from(decimals) {
        Ok(d) if d <= MAX_CREDIT_DECIMALS => Ok(d),
        _ => Err(Error::invalid(
            field,
            format!("must be between 0 and {MAX_CREDIT_DECIMALS}"),
        )),
    }
}

/// Rounds `amount` to `decimals` places with banker's rounding (half to even: 0.125 → 0.12,
/// 0.135 → 0.14, 2.5 → 2 at 0 places). Half-even has no bias in either direction, so sums of many
/// rounded lines do not drift; it is the mode the ledger already uses for derived amounts. The
/// result is normalized (no trailing zeros) and never negative zero.
pub fn round_to_minor_units(amount: Decimal, decimals: u32) -> Decimal {
    let mut rounded = amount
        .round_dp_with_strategy(decimals, RoundingStrategy::MidpointNearestEven)
        .normalize();
    if rounded.is_zero() {
        rounded.set_sign_positive(true);
    }
    rounded
}

/// An exact amount in one [`Currency`]. Amounts from clients come through [`Money::parse`] (at
/// most the currency's minor units); amounts from the ledger through [`Money::from_ledger`] (up to
/// the ledger's 12 places: a credit priced per token, a converted balance). Display rounds with
/// [`Money::round_to_minor_units`]; the exact amount is never changed by display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parses a client's amount text exactly (never through a float) and refuses more decimal
    /// places than the currency's minor units; errors name `field`.
    pub fn parse(field: &str, text: &str, currency: &Currency) -> Result<Money, Error> {
        let amount = parse_decimal(field, text, DecimalLimits::MONEY)?;
        currency.check_precision(field, amount)?;
        Ok(Money {
            amount,
            currency: currency.clone(),
        })
    }

    /// An amount the ledger stored or derived, at its internal precision. Not rounded.
    pub fn from_ledger(amount: Decimal, currency: Currency) -> Money {
        Money {
            amount: amount.normalize(),
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Money {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// The exact amount (normalized: `12.5`, not `12.50`).
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    /// The amount rounded to the currency's minor units, half to even ([`round_to_minor_units`]).
    pub fn round_to_minor_units(&self) -> Money {
        Money {
            amount: round_to_minor_units(self.amount, self.currency.decimals),
            currency: self.currency.clone(),
        }
    }

    /// The display text: the amount rounded to minor units, written with exactly that many
    /// decimal places, a `-` for negatives, `.` as the decimal point and no grouping, then a space
    /// and the code: `12.50 USD`, `-1200 JPY`, `0.125 KWD`, `1200 CREDITS`. Locale-neutral on
    /// purpose: a client formats for its reader's locale from `amount` and `currency`.
    pub fn formatted(&self) -> String {
        let mut shown = round_to_minor_units(self.amount, self.currency.decimals);
        shown.rescale(self.currency.decimals);
        format!("{shown} {}", self.currency.code)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.formatted())
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn iso(code: &str) -> Currency {
        Currency::from_iso_code(code).unwrap()
    }

    fn credits(decimals: i64) -> Currency {
        Currency::credit_unit("code", "CREDITS", "decimals", decimals).unwrap()
    }

    #[test]
    fn iso_currencies_carry_their_minor_units() {
        for (code, decimals) in [
            ("USD", 2),
            ("EUR", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("CLF", 4),
        ] {
            let c = Currency::parse_iso("currency", &code.to_ascii_lowercase()).unwrap();
            assert_eq!((c.code(), c.decimals(), c.is_iso()), (code, decimals, true));
        }
    }

    #[test]
    fn unknown_and_unitless_currencies_are_refused_naming_the_field() {
        for (raw, says) in [
            ("ABC", "not an ISO 4217"),
            ("CREDITS", "not an ISO 4217"),
            ("", "not an ISO 4217"),
            ("US", "not an ISO 4217"),
            ("XAU", "no minor unit"),
            ("XXX", "no minor unit"),
        ] {
            let e = Currency::parse_iso("moneyCurrency", raw).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field, .. } if field == "moneyCurrency"),
                "{raw}: {e:?}"
            );
            assert!(e.to_string().contains(says), "{raw}: {e}");
        }
    }

    #[test]
    fn credit_units_have_their_own_codes_and_0_to_12_decimals() {
        for decimals in 0..=12 {
            assert_eq!(credits(decimals).decimals(), decimals as u32);
        }
        let c = Currency::credit_unit("code", " gpu_hours ", "decimals", 3).unwrap();
        assert_eq!((c.code(), c.kind()), ("GPU_HOURS", CurrencyKind::Credit));
        for (code, decimals, field) in [
            ("CREDITS", -1, "decimals"),
            ("CREDITS", 13, "decimals"),
            ("CREDITS", i64::MAX, "decimals"),
            ("USD", 2, "code"),
            ("xau", 2, "code"),
            ("C", 2, "code"),
            ("1CREDITS", 2, "code"),
            ("CRÉDITS", 2, "code"),
            ("A_VERY_LONG_UNIT_CODE", 2, "code"),
        ] {
            let e = Currency::credit_unit("code", code, "decimals", decimals).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: f, .. } if f == field),
                "{code} {decimals}: {e:?}"
            );
        }
    }

    #[test]
    fn rounding_is_half_to_even_at_the_minor_units() {
        // (amount, decimals, expected): hand-computed.
        for (amount, decimals, want) in [
            // JPY, 0 decimals
            ("2.5", 0, "2"),
            ("3.5", 0, "4"),
            ("-2.5", 0, "-2"),
            ("1234.4999", 0, "1234"),
            // USD, 2 decimals
            ("0.125", 2, "0.12"),
            ("0.135", 2, "0.14"),
            ("0.1251", 2, "0.13"),
            ("-0.125", 2, "-0.12"),
            ("-0.004", 2, "0"),
            ("12.5", 2, "12.5"),
            // KWD / BHD, 3 decimals
            ("1.0005", 3, "1"),
            ("1.0015", 3, "1.002"),
            ("0.00049", 3, "0"),
            // credit units, 0..=12
            ("7.5", 1, "7.5"),
            ("0.55", 1, "0.6"),
            ("0.65", 1, "0.6"),
            ("0.0000000000005", 12, "0"),
            ("0.0000000000015", 12, "0.000000000002"),
            ("0.123456789012", 12, "0.123456789012"),
            ("0.1234565", 6, "0.123456"),
        ] {
            assert_eq!(
                round_to_minor_units(d(amount), decimals),
                d(want),
                "{amount} at {decimals}"
            );
        }
        // Every credit precision rounds a half at its last place to the even neighbour.
        for decimals in 0..=12u32 {
            let half = Decimal::new(5, decimals + 1); // 0.5 × 10^-decimals
            assert_eq!(round_to_minor_units(half, decimals), Decimal::ZERO, "{decimals}");
            let three_halves = Decimal::new(15, decimals + 1);
            assert_eq!(
                round_to_minor_units(three_halves, decimals),
                Decimal::new(2, decimals),
                "{decimals}"
            );
        }
        let m = Money::from_ledger(d("10.005"), iso("USD")).round_to_minor_units();
        assert_eq!((m.amount(), m.currency().code()), (d("10"), "USD"));
    }

    #[test]
    fn amounts_with_more_places_than_the_minor_units_are_refused() {
        for (text, currency, ok) in [
            ("1.005", iso("USD"), false),
            ("1.00", iso("USD"), true),
            ("1.50", iso("USD"), true),
            ("100", iso("JPY"), true),
            ("100.5", iso("JPY"), false),
            ("1e2", iso("JPY"), true),
            ("0.125", iso("KWD"), true),
            ("0.1255", iso("BHD"), false),
            ("3", credits(0), true),
            ("3.1", credits(0), false),
            ("0.000000000001", credits(12), true),
            ("0.0000000000001", credits(12), false),
        ] {
            let got = Money::parse("amount", text, &currency);
            assert_eq!(got.is_ok(), ok, "{text} {currency}: {got:?}");
            if let Err(e) = got {
                assert!(matches!(&e, Error::Invalid { field, .. } if field == "amount"), "{e:?}");
            }
        }
        assert_eq!(Money::parse("amount", "1.50", &iso("USD")).unwrap().amount(), d("1.5"));
    }

    #[test]
    fn formatted_shows_the_minor_units_and_the_code() {
        for (amount, currency, want) in [
            ("12.5", iso("USD"), "12.50 USD"),
            ("0", iso("USD"), "0.00 USD"),
            ("-3.456", iso("USD"), "-3.46 USD"),
            ("-0.004", iso("USD"), "0.00 USD"),
            ("1200", iso("JPY"), "1200 JPY"),
            ("1200.5", iso("JPY"), "1200 JPY"),
            ("0.125", iso("KWD"), "0.125 KWD"),
            ("1234567.891", iso("BHD"), "1234567.891 BHD"),
            ("1200", credits(0), "1200 CREDITS"),
            ("0.5", credits(3), "0.500 CREDITS"),
            (
                "9999999999999999.999999999999",
                credits(12),
                "9999999999999999.999999999999 CREDITS",
            ),
        ] {
            assert_eq!(Money::from_ledger(d(amount), currency).formatted(), want, "{amount}");
        }
    }
}
