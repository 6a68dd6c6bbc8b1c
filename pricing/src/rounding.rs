//! The one rounding rule of an invoice: each line is rounded once, to the currency's minor unit,
//! half away from zero (`0.125 USD` → `0.13`, `-0.125` → `-0.13`, `2.5 JPY` → `3`). Everything
//! before that is exact.

use rust_decimal::{Decimal, RoundingStrategy};

/// Rounds an invoice line's exact amount to `decimals` places, half away from zero. Never
/// answers negative zero; keeps exactly `decimals` places so equal amounts print alike.
pub fn round_line(amount: Decimal, decimals: u32) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_zero() {
        rounded.set_sign_positive(true);
    }
    rounded.rescale(decimals);
    rounded
}
