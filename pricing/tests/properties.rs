//! Invariants of the rating engine over generated prices and usage.

use chrono::{Days, NaiveDate};
use neruba_pricing::{
    Charge, ChargeSpec, PercentageSpec, PriceSpec, TierSpec, Usage, proration::Period, rate, round_line,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// A decimal `units × 10^-scale`.
fn dec(units: i64, scale: u32) -> Decimal {
    Decimal::new(units, scale)
}

/// Increasing tier bounds and unit prices (4 decimal places); the last tier is unbounded.
fn tiers(with_flat: bool) -> impl Strategy<Value = Vec<TierSpec>> {
    prop::collection::vec((1i64..5_000, 0i64..100_000, 0i64..10_000), 1..8).prop_map(move |raw| {
        let mut bound = 0;
        let count = raw.len();
        raw.into_iter()
            .enumerate()
            .map(|(i, (step, unit, flat))| {
                bound += step;
                TierSpec {
                    up_to: (i + 1 < count).then(|| dec(bound, 0)),
                    unit_amount: dec(unit, 4),
                    flat_amount: if with_flat { dec(flat, 2) } else { Decimal::ZERO },
                }
            })
            .collect()
    })
}

fn quantity() -> impl Strategy<Value = Decimal> {
    (0i64..50_000_000, 0u32..4).prop_map(|(units, scale)| dec(units, scale))
}

fn charge(price: PriceSpec) -> Charge {
    Charge::parse(ChargeSpec {
        price,
        free_units: None,
        minimum: None,
    })
    .unwrap()
}

fn amount(charge: &Charge, q: Decimal) -> Decimal {
    rate(charge, Usage::Quantity(q)).unwrap().amount
}

proptest! {
    /// Without flat fees a graduated price has no jumps: moving the quantity by δ moves the
    /// amount by at least δ × the cheapest and at most δ × the dearest unit price.
    #[test]
    fn graduated_is_continuous(tiers in tiers(false), a in quantity(), b in quantity()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let min_unit = tiers.iter().map(|t| t.unit_amount).min().unwrap();
        let max_unit = tiers.iter().map(|t| t.unit_amount).max().unwrap();
        let price = charge(PriceSpec::Graduated { tiers });
        let rise = amount(&price, high) - amount(&price, low);
        prop_assert!(rise >= (high - low) * min_unit, "rise {rise} below {}", (high - low) * min_unit);
        prop_assert!(rise <= (high - low) * max_unit, "rise {rise} above {}", (high - low) * max_unit);
    }

    /// With flat fees, a graduated price at a quantity is the sum, over the tiers entered, of
    /// the units in the tier × its price + its flat fee, computed here tier by tier.
    #[test]
    fn graduated_matches_a_tier_by_tier_sum(tiers in tiers(true), q in quantity()) {
        let mut expected = Decimal::ZERO;
        let mut from = Decimal::ZERO;
        for tier in &tiers {
            if q > from {
                let top = tier.up_to.map_or(q, |up| up.min(q));
                expected += (top - from) * tier.unit_amount + tier.flat_amount;
            }
            from = tier.up_to.unwrap_or(from);
        }
        let price = charge(PriceSpec::Graduated { tiers });
        prop_assert_eq!(amount(&price, q), expected);
    }

    /// A volume price never falls as the quantity grows within a tier. (Across a tier bound it
    /// may fall: that is the model, see docs/billing.md.)
    #[test]
    fn volume_is_monotone_within_a_tier(tiers in tiers(true), a in quantity(), b in quantity()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let tier_of = |q: Decimal| tiers.iter().position(|t| t.up_to.is_none_or(|up| q <= up));
        prop_assume!(low > Decimal::ZERO && tier_of(low) == tier_of(high));
        let price = charge(PriceSpec::Volume { tiers: tiers.clone() });
        prop_assert!(amount(&price, low) <= amount(&price, high));
    }

    /// A package price never falls as the quantity grows, and is the number of started packages
    /// times the package price.
    #[test]
    fn package_is_monotone(size in 1i64..10_000, price in 0i64..1_000_000, a in quantity(), b in quantity()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let size = dec(size, 0);
        let spec = PriceSpec::Package { package_size: size, package_amount: dec(price, 2) };
        let package = charge(spec);
        prop_assert!(amount(&package, low) <= amount(&package, high));
        prop_assert_eq!(amount(&package, high), (high / size).ceil() * dec(price, 2));
    }

    /// Cutting a period anywhere, any number of times, the prorated parts add up to the fee.
    #[test]
    fn prorated_parts_sum_to_the_whole(
        days in 1u64..400,
        cuts in prop::collection::vec(0u64..400, 0..6),
        fee in 0i64..100_000_000,
        decimals in 0u32..4,
    ) {
        let start = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let end = start + Days::new(days);
        let period = Period::new(start, end).unwrap();
        let fee = round_line(dec(fee, 3), decimals);
        let mut points: Vec<u64> = cuts.into_iter().filter(|c| *c > 0 && *c < days).collect();
        points.push(0);
        points.push(days);
        points.sort();
        points.dedup();
        let mut total = Decimal::ZERO;
        for pair in points.windows(2) {
            let part = Period::new(start + Days::new(pair[0]), start + Days::new(pair[1])).unwrap();
            total += period.prorate(fee, part, decimals).unwrap();
        }
        prop_assert_eq!(total, fee);
    }

    /// The percentage rater's total equals the per-event fees computed one by one here.
    #[test]
    fn percentage_matches_event_by_event_fees(
        rate_bp in 0i64..10_000,
        fixed in 0i64..100,
        free_events in prop::option::of(0u64..5),
        free_amount in prop::option::of(0i64..100_000),
        bounds in prop::option::of((0i64..200, 0i64..50_000)),
        events in prop::collection::vec(0i64..1_000_000, 0..40),
    ) {
        let terms = PercentageSpec {
            rate: dec(rate_bp, 2),
            fixed_fee: dec(fixed, 2),
            free_events,
            free_amount: free_amount.map(|a| dec(a, 2)),
            event_minimum: bounds.map(|(min, _)| dec(min, 2)),
            event_maximum: bounds.map(|(min, extra)| dec(min + extra, 2)),
        };
        let amounts: Vec<Decimal> = events.iter().map(|e| dec(*e, 2)).collect();
        let mut expected = Decimal::ZERO;
        let (mut events_left, mut amount_left) = (terms.free_events, terms.free_amount);
        for a in &amounts {
            let free_period = (events_left.is_some() || amount_left.is_some())
                && events_left != Some(0)
                && amount_left.is_none_or(|left| left > Decimal::ZERO);
            let mut charged = *a;
            if free_period {
                events_left = events_left.map(|n| n - 1);
                match amount_left {
                    Some(left) if *a > left => { charged = *a - left; amount_left = Some(Decimal::ZERO); }
                    _ => { amount_left = amount_left.map(|left| left - *a); continue; }
                }
            }
            let mut fee = charged * terms.rate / Decimal::ONE_HUNDRED + terms.fixed_fee;
            if let Some(min) = terms.event_minimum { fee = fee.max(min); }
            if let Some(max) = terms.event_maximum { fee = fee.min(max); }
            expected += fee;
        }
        let price = charge(PriceSpec::Percentage(terms));
        let rating = rate(&price, Usage::EventAmounts(&amounts)).unwrap();
        prop_assert_eq!(rating.amount, expected);
    }
}
