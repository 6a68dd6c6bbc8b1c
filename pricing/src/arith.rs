//! Exact arithmetic on `Decimal`s. `rust_decimal` quietly rounds a product or a sum that needs more
//! than 28 significant digits; money must not, so every operation here is computed on the i128
//! mantissas and refused ([`RateError::TooLarge`]) when its exact result cannot be represented.

use rust_decimal::Decimal;

use crate::RateError;

const MAX_SCALE: u32 = 28;

/// Builds the decimal `mantissa × 10^-scale`, dropping only trailing zeros to make it fit.
fn exact(mut mantissa: i128, mut scale: u32) -> Result<Decimal, RateError> {
    while scale > 0 && (scale > MAX_SCALE || Decimal::try_from_i128_with_scale(mantissa, scale).is_err()) {
        if mantissa % 10 != 0 {
            return Err(RateError::TooLarge);
        }
        mantissa /= 10;
        scale -= 1;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| RateError::TooLarge)
}

pub(crate) fn mul(a: Decimal, b: Decimal) -> Result<Decimal, RateError> {
    let product = a.mantissa().checked_mul(b.mantissa()).ok_or(RateError::TooLarge)?;
    exact(product, a.scale() + b.scale())
}

pub(crate) fn add(a: Decimal, b: Decimal) -> Result<Decimal, RateError> {
    let scale = a.scale().max(b.scale());
    let widen = |d: Decimal| -> Result<i128, RateError> {
        10i128
            .checked_pow(scale - d.scale())
            .and_then(|f| d.mantissa().checked_mul(f))
            .ok_or(RateError::TooLarge)
    };
    let sum = widen(a)?.checked_add(widen(b)?).ok_or(RateError::TooLarge)?;
    exact(sum, scale)
}

pub(crate) fn sub(a: Decimal, b: Decimal) -> Result<Decimal, RateError> {
    add(a, -b)
}

/// `percent`% of `amount`, exactly (a rate of `2.5` is 2.5 %).
pub(crate) fn percent_of(amount: Decimal, percent: Decimal) -> Result<Decimal, RateError> {
    let rate = exact(percent.mantissa(), percent.scale() + 2)?;
    mul(amount, rate)
}

pub(crate) fn sum<I: IntoIterator<Item = Decimal>>(values: I) -> Result<Decimal, RateError> {
    values.into_iter().try_fold(Decimal::ZERO, add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn products_are_exact_or_refused() {
        assert_eq!(mul(d("0.5"), d("0.20")).unwrap(), d("0.1"));
        assert_eq!(mul(d("123456789.123"), d("0.00025")).unwrap(), d("30864.19728075"));
        // rust_decimal alone would answer this rounded to an integer.
        assert_eq!(
            mul(d("1234567890123456.123456789012"), d("12345678901234.123456789012")),
            Err(RateError::TooLarge)
        );
        // 1e-30 is not representable; rust_decimal alone would answer 0.
        assert_eq!(
            mul(d("0.000000000000001"), d("0.000000000000001")),
            Err(RateError::TooLarge)
        );
        // Trailing zeros may be dropped to make room.
        assert_eq!(
            mul(d("0.10000000000000000000"), d("0.10000000000000000000")).unwrap(),
            d("0.01")
        );
    }

    #[test]
    fn sums_are_exact_or_refused() {
        assert_eq!(add(d("1.5"), d("0.000000000001")).unwrap(), d("1.500000000001"));
        assert_eq!(
            add(d("10000000000000000000000000000"), d("0.1")),
            Err(RateError::TooLarge)
        );
        assert_eq!(sub(d("1"), d("1.25")).unwrap(), d("-0.25"));
    }

    #[test]
    fn percentages_are_exact() {
        assert_eq!(percent_of(d("200"), d("2.5")).unwrap(), d("5"));
        assert_eq!(percent_of(d("0.01"), d("0.3")).unwrap(), d("0.00003"));
    }
}
