//! Exact numbers: parsing decimals from client text without ever passing through a float, and the
//! limits every stored quantity and amount obeys.
//!
//! Quantities and amounts are `rust_decimal::Decimal`, stored as SQL `DECIMAL`. A value is parsed
//! from its text (a JSON number's literal or a string), so `0.1` is exactly one tenth. Input with
//! more fractional digits than the column keeps is refused, never rounded silently.

use rust_decimal::Decimal;

use crate::error::Error;

/// Fractional digits kept for usage quantities (`DECIMAL(28, 12)`).
pub const QUANTITY_SCALE: u32 = 12;
/// Integer digits allowed for usage quantities (28 - 12): 28 digits in all is what `Decimal` holds exactly.
pub const QUANTITY_INTEGER_DIGITS: u32 = 16;

/// Fractional digits kept for money and credit amounts (`DECIMAL(28, 12)`): credits priced per
/// token or per call need more than a currency's cents, and conversion rates need the room.
pub const MONEY_SCALE: u32 = 12;
/// Integer digits allowed for one amount a client sends (up to 10^14 - 1). The columns keep 16, so
/// balances and sums of many amounts have two digits of headroom beyond any single amount.
pub const MONEY_INTEGER_DIGITS: u32 = 14;

/// The shape of a decimal column: how many digits before and after the point it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalLimits {
    pub scale: u32,
    pub integer_digits: u32,
}

impl DecimalLimits {
    pub const QUANTITY: DecimalLimits = DecimalLimits {
        scale: QUANTITY_SCALE,
        integer_digits: QUANTITY_INTEGER_DIGITS,
    };
    /// One amount of money or credits in a request (columns are `DECIMAL(28, 12)`).
    pub const MONEY: DecimalLimits = DecimalLimits {
        scale: MONEY_SCALE,
        integer_digits: MONEY_INTEGER_DIGITS,
    };
}

/// Parses a decimal from client text: an optional `-`, digits with an optional fraction, and an
/// optional exponent (JSON allows `1e3`). NaN, infinities, hex, blanks and thousands separators are
/// refused. The result is normalized (`1.50` → `1.5`) and checked against `limits`; `field` names
/// the input in errors.
pub fn parse_decimal(field: &str, text: &str, limits: DecimalLimits) -> Result<Decimal, Error> {
    let text = text.trim();
    if !is_decimal_literal(text) {
        return Err(Error::invalid(
            field,
            format!("'{}' is not a decimal number", shorten(text)),
        ));
    }
    let value = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    }
    .map_err(|_| Error::invalid(field, format!("'{}' is out of range", shorten(text))))?
    .normalize();
    if value.scale() > limits.scale {
        return Err(Error::invalid(
            field,
            format!("has more than {} decimal places", limits.scale),
        ));
    }
    if value.abs() >= Decimal::from_i128_with_scale(10i128.pow(limits.integer_digits), 0) {
        return Err(Error::invalid(
            field,
            format!(
                "has more than {} digits before the decimal point",
                limits.integer_digits
            ),
        ));
    }
    Ok(value)
}

/// JSON's number grammar, with leading zeros and a leading `+` tolerated as humans type them.
fn is_decimal_literal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start || i - exp_start > 3 {
            return false;
        }
    }
    i == bytes.len()
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A decimal's canonical text (normalized, no exponent): what hashes and answers use, so `1.50`
/// and `1.5` are the same value.
pub fn canonical(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Result<String, String> {
        parse_decimal("quantity", text, DecimalLimits::QUANTITY)
            .map(canonical)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn decimals_parse_exactly_from_text() {
        for (text, want) in [
            ("1", "1"),
            ("0.1", "0.1"),
            ("1.50", "1.5"),
            ("-2.25", "-2.25"),
            ("+3", "3"),
            ("007", "7"),
            ("1e3", "1000"),
            ("1.5E-2", "0.015"),
            ("0.000000000001", "0.000000000001"),
            ("9999999999999999.999999999999", "9999999999999999.999999999999"),
            (" 4 ", "4"),
            ("0.100000000000000000000", "0.1"),
        ] {
            assert_eq!(q(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn junk_overprecise_and_oversized_decimals_are_refused() {
        for (text, says) in [
            ("", "not a decimal"),
            ("NaN", "not a decimal"),
            ("inf", "not a decimal"),
            ("Infinity", "not a decimal"),
            ("0x10", "not a decimal"),
            ("1,000", "not a decimal"),
            ("1.2.3", "not a decimal"),
            (".", "not a decimal"),
            ("1e", "not a decimal"),
            ("1e99999", "not a decimal"),
            ("0.0000000000001", "more than 12 decimal places"),
            ("10000000000000000", "more than 16 digits"),
            ("1e40", "out of range"),
        ] {
            let err = q(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.starts_with("quantity:"), "{err}");
        }
    }
}
