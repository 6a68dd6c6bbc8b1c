//! The billing conventions of `docs/billing.md`, one table test each, with amounts computed by
//! hand in the comments. A change to any expected amount here is a change of conventions: bump
//! `CONVENTIONS_VERSION` and say so in docs/billing.md.

use std::str::FromStr;

use chrono::NaiveDate;
use neruba_pricing::{
    Charge, ChargeSpec, PercentageSpec, PercentageTierSpec, Price, PriceSpec, RateError, StepKind, TierSpec, Usage,
    proration::Period, rate, round_line,
};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn tier(up_to: Option<&str>, unit: &str, flat: &str) -> TierSpec {
    TierSpec {
        up_to: up_to.map(d),
        unit_amount: d(unit),
        flat_amount: d(flat),
    }
}

fn charge(price: PriceSpec, free_units: Option<&str>, minimum: Option<&str>) -> Charge {
    Charge::parse(ChargeSpec {
        price,
        free_units: free_units.map(d),
        minimum: minimum.map(d),
    })
    .unwrap()
}

fn amount_of(charge: &Charge, quantity: &str) -> Decimal {
    rate(charge, Usage::Quantity(d(quantity))).unwrap().amount
}

fn events_amount(charge: &Charge, events: &[&str]) -> Decimal {
    let events: Vec<Decimal> = events.iter().map(|e| d(e)).collect();
    rate(charge, Usage::EventAmounts(&events)).unwrap().amount
}

/// 100 units at 0.10 plus a flat 5; 900 more at 0.05; the rest at 0.01 plus a flat 2.
fn three_tiers() -> Vec<TierSpec> {
    vec![
        tier(Some("100"), "0.10", "5"),
        tier(Some("1000"), "0.05", "0"),
        tier(None, "0.01", "2"),
    ]
}

#[test]
fn per_unit_multiplies_and_free_units_come_off_first() {
    let plain = charge(PriceSpec::PerUnit { unit_amount: d("0.25") }, None, None);
    assert_eq!(amount_of(&plain, "10"), d("2.50")); // 10 × 0.25
    assert_eq!(amount_of(&plain, "0"), d("0"));
    let free = charge(PriceSpec::PerUnit { unit_amount: d("0.25") }, Some("3"), None);
    assert_eq!(amount_of(&free, "10"), d("1.75")); // (10 − 3) × 0.25
    assert_eq!(amount_of(&free, "2"), d("0")); // all free
}

#[test]
fn graduated_tiers_include_their_upper_bound_and_zero_enters_no_tier() {
    let price = charge(PriceSpec::Graduated { tiers: three_tiers() }, None, None);
    let zero = rate(&price, Usage::Quantity(d("0"))).unwrap();
    assert_eq!(zero.amount, d("0")); // no tier entered, so no flat fee
    assert!(zero.steps.is_empty());
    assert_eq!(amount_of(&price, "100"), d("15")); // 100 × 0.10 + 5: 100 is still tier 1
    assert_eq!(amount_of(&price, "100.5"), d("15.025")); // 15 + 0.5 × 0.05, exact
    assert_eq!(amount_of(&price, "1500"), d("67")); // 15 + 900 × 0.05 + (500 × 0.01 + 2)
    let steps = rate(&price, Usage::Quantity(d("1500"))).unwrap().steps;
    let quantities: Vec<_> = steps
        .iter()
        .map(|s| (s.tier, s.from, s.up_to, s.quantity, s.amount))
        .collect();
    assert_eq!(
        quantities,
        vec![
            (Some(1), Some(d("0")), Some(d("100")), d("100"), d("15")),
            (Some(2), Some(d("100")), Some(d("1000")), d("900"), d("45")),
            (Some(3), Some(d("1000")), None, d("500"), d("7")),
        ]
    );
}

#[test]
fn free_units_are_subtracted_before_tiers() {
    let price = charge(PriceSpec::Graduated { tiers: three_tiers() }, Some("50"), None);
    // 150 − 50 free = 100, all in tier 1: 100 × 0.10 + 5.
    let rating = rate(&price, Usage::Quantity(d("150"))).unwrap();
    assert_eq!(rating.amount, d("15"));
    assert_eq!(rating.steps[0].kind, StepKind::FreeUnits);
    assert_eq!(rating.steps[0].quantity, d("50"));
}

#[test]
fn volume_prices_every_unit_at_the_tier_the_whole_quantity_falls_in() {
    let price = charge(PriceSpec::Volume { tiers: three_tiers() }, None, None);
    assert_eq!(amount_of(&price, "0"), d("0")); // no tier, no flat fee
    assert_eq!(amount_of(&price, "100"), d("15")); // 100 × 0.10 + 5
    assert_eq!(amount_of(&price, "101"), d("5.05")); // 101 × 0.05
    assert_eq!(amount_of(&price, "1001"), d("12.01")); // 1001 × 0.01 + 2
}

#[test]
fn packages_round_a_started_package_up() {
    let spec = || PriceSpec::Package {
        package_size: d("100"),
        package_amount: d("2"),
    };
    let price = charge(spec(), None, None);
    assert_eq!(amount_of(&price, "0"), d("0"));
    assert_eq!(amount_of(&price, "1"), d("2")); // 1 started package
    assert_eq!(amount_of(&price, "100"), d("2"));
    assert_eq!(amount_of(&price, "100.000000000001"), d("4")); // a second package started
    let free = charge(spec(), Some("50"), None);
    let rating = rate(&free, Usage::Quantity(d("250"))).unwrap();
    assert_eq!(rating.amount, d("4")); // 250 − 50 = 200: 2 packages × 2
    assert_eq!(rating.steps[1].count, Some(2));
}

fn percentage(rate: &str) -> PercentageSpec {
    PercentageSpec {
        rate: d(rate),
        fixed_fee: Decimal::ZERO,
        free_events: None,
        free_amount: None,
        event_minimum: None,
        event_maximum: None,
    }
}

#[test]
fn percentage_applies_free_events_fixed_fees_and_per_event_bounds() {
    let terms = PercentageSpec {
        fixed_fee: d("0.10"),
        free_events: Some(2),
        event_minimum: Some(d("0.50")),
        event_maximum: Some(d("10")),
        ..percentage("2.5")
    };
    let price = charge(PriceSpec::Percentage(terms), None, None);
    // 100 and 50: free. 20: 0.50 + 0.10 = 0.60. 1000: 25 + 0.10 = 25.10, cut to 10.
    // 4: 0.10 + 0.10 = 0.20, raised to 0.50. Total 0.60 + 10 + 0.50 = 11.10.
    let events: Vec<Decimal> = ["100", "50", "20", "1000", "4"].iter().map(|e| d(e)).collect();
    let rating = rate(&price, Usage::EventAmounts(&events)).unwrap();
    assert_eq!(rating.amount, d("11.10"));
    let steps: Vec<_> = rating
        .steps
        .iter()
        .map(|s| (s.kind, s.count, s.quantity, s.amount))
        .collect();
    assert_eq!(
        steps,
        vec![
            (StepKind::FreeUsage, Some(2), d("150"), d("0")),
            (StepKind::Percentage, None, d("1024"), d("25.6")), // 2.5 % of 20 + 1000 + 4
            (StepKind::EventFees, Some(3), d("0"), d("0.30")),
            (StepKind::EventMinimum, Some(1), d("0"), d("0.30")),
            (StepKind::EventMaximum, Some(1), d("0"), d("-15.10")),
        ]
    );
}

#[test]
fn percentage_free_period_ends_when_either_allowance_is_used_up() {
    let terms = PercentageSpec {
        fixed_fee: d("0.10"),
        free_events: Some(5),
        free_amount: Some(d("120")),
        ..percentage("2.5")
    };
    let price = charge(PriceSpec::Percentage(terms), None, None);
    // 100: free (20 of the free amount left). 50: crosses it, charged on 30: 0.75 + 0.10.
    // 30: the free amount is used up, though 3 free events are left: 0.75 + 0.10. Total 1.70.
    assert_eq!(events_amount(&price, &["100", "50", "30"]), d("1.70"));
    let only_events = charge(
        PriceSpec::Percentage(PercentageSpec {
            free_events: Some(1),
            ..percentage("10")
        }),
        None,
        None,
    );
    assert_eq!(events_amount(&only_events, &["1000", "10"]), d("1")); // 1000 free; 10 % of 10
    assert_eq!(events_amount(&only_events, &[]), d("0"));
}

#[test]
fn graduated_percentage_tiers_the_total_amount() {
    let tiers = vec![
        PercentageTierSpec {
            up_to: Some(d("1000")),
            rate: d("3"),
            flat_amount: d("0"),
        },
        PercentageTierSpec {
            up_to: Some(d("10000")),
            rate: d("2"),
            flat_amount: d("1"),
        },
        PercentageTierSpec {
            up_to: None,
            rate: d("1"),
            flat_amount: d("0"),
        },
    ];
    let price = charge(PriceSpec::GraduatedPercentage { tiers }, None, None);
    // Total 11000: 3 % of 1000 = 30; 2 % of 9000 = 180, + 1; 1 % of 1000 = 10. 221.
    assert_eq!(events_amount(&price, &["500", "700", "9800"]), d("221"));
    assert_eq!(amount_of(&price, "11000"), d("221"));
    assert_eq!(amount_of(&price, "0"), d("0"));
}

#[test]
fn a_minimum_adds_a_true_up_line_up_to_the_minimum_even_without_usage() {
    let price = charge(PriceSpec::PerUnit { unit_amount: d("0.25") }, None, Some("5"));
    let lines = |q: &str| price.bill(&rate(&price, Usage::Quantity(d(q))).unwrap(), 2);
    assert_eq!((lines("10").fee, lines("10").true_up), (d("2.50"), Some(d("2.50"))));
    assert_eq!((lines("0").fee, lines("0").true_up), (d("0.00"), Some(d("5.00"))));
    assert_eq!((lines("40").fee, lines("40").true_up), (d("10.00"), None));
    // The true-up is taken from the rounded fee, so the two lines add up to the minimum:
    // 4.02 × 0.25 = 1.005 → 1.01; 5.00 − 1.01 = 3.99.
    assert_eq!((lines("4.02").fee, lines("4.02").true_up), (d("1.01"), Some(d("3.99"))));
    assert_eq!(lines("4.02").total(), d("5.00"));
}

#[test]
fn each_line_is_rounded_once_half_away_from_zero() {
    assert_eq!(round_line(d("0.125"), 2), d("0.13"));
    assert_eq!(round_line(d("-0.125"), 2), d("-0.13"));
    assert_eq!(round_line(d("0.124999999999"), 2), d("0.12"));
    assert_eq!(round_line(d("2.5"), 0), d("3")); // JPY
    assert_eq!(round_line(d("0.0005"), 3), d("0.001")); // KWD
    assert_eq!(round_line(d("-0.001"), 2).to_string(), "0.00"); // never negative zero
    assert_eq!(round_line(d("7"), 2).to_string(), "7.00");
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn period(from: &str, to: &str) -> Period {
    Period::new(day(from), day(to)).unwrap()
}

#[test]
fn proration_counts_days_including_the_start_day() {
    let january = period("2027-01-01", "2027-02-01");
    assert_eq!(january.days(), 31);
    // From January 15: 17 of 31 days.
    assert_eq!(
        january.prorate(d("31"), period("2027-01-15", "2027-02-01"), 2).unwrap(),
        d("17.00")
    );
    // 10.00 over 31 days, cut on January 15: running totals round(10 × 14/31) = 4.52 and 10.00.
    assert_eq!(
        january.prorate(d("10"), period("2027-01-01", "2027-01-15"), 2).unwrap(),
        d("4.52")
    );
    assert_eq!(
        january.prorate(d("10"), period("2027-01-15", "2027-02-01"), 2).unwrap(),
        d("5.48")
    );
    let leap_february = period("2028-02-01", "2028-03-01");
    assert_eq!(
        leap_february
            .prorate(d("29"), period("2028-02-10", "2028-03-01"), 2)
            .unwrap(),
        d("20.00")
    );
    assert!(Period::new(day("2027-01-02"), day("2027-01-01")).is_err());
    assert!(january.prorate(d("1"), period("2026-12-31", "2027-01-02"), 2).is_err());
}

#[test]
fn bad_prices_name_the_field() {
    let field = |spec: PriceSpec| Price::parse(spec).unwrap_err().field;
    let t = |up_to: Option<&str>| tier(up_to, "1", "0");
    assert_eq!(
        field(PriceSpec::Graduated {
            tiers: vec![t(Some("10")), t(Some("5")), t(None)]
        }),
        "tiers.1.upTo"
    );
    assert_eq!(
        field(PriceSpec::Graduated {
            tiers: vec![t(Some("10")), t(Some("10")), t(None)]
        }),
        "tiers.1.upTo"
    );
    assert_eq!(
        field(PriceSpec::Volume {
            tiers: vec![t(Some("10")), t(Some("20"))]
        }),
        "tiers.1.upTo"
    );
    assert_eq!(
        field(PriceSpec::Volume {
            tiers: vec![t(None), t(None)]
        }),
        "tiers.0.upTo"
    );
    assert_eq!(
        field(PriceSpec::Volume {
            tiers: vec![t(Some("0")), t(None)]
        }),
        "tiers.0.upTo"
    );
    assert_eq!(field(PriceSpec::Graduated { tiers: vec![] }), "tiers");
    assert_eq!(
        field(PriceSpec::Graduated {
            tiers: vec![t(None); 65]
        }),
        "tiers"
    );
    assert_eq!(
        field(PriceSpec::Graduated {
            tiers: vec![tier(None, "-1", "0")]
        }),
        "tiers.0.unitAmount"
    );
    assert_eq!(
        field(PriceSpec::PerUnit {
            unit_amount: d("-0.01")
        }),
        "unitAmount"
    );
    assert_eq!(
        field(PriceSpec::PerUnit {
            unit_amount: d("0.0000000000001")
        }),
        "unitAmount"
    );
    assert_eq!(
        field(PriceSpec::PerUnit {
            unit_amount: d("100000000000000")
        }),
        "unitAmount"
    );
    assert_eq!(
        field(PriceSpec::Package {
            package_size: d("0"),
            package_amount: d("1")
        }),
        "packageSize"
    );
    assert_eq!(
        field(PriceSpec::Package {
            package_size: d("1.5"),
            package_amount: d("1")
        }),
        "packageSize"
    );
    assert_eq!(field(PriceSpec::Percentage(percentage("100.01"))), "rate");
    assert_eq!(field(PriceSpec::Percentage(percentage("-1"))), "rate");
    let inverted = PercentageSpec {
        event_minimum: Some(d("2")),
        event_maximum: Some(d("1")),
        ..percentage("1")
    };
    assert_eq!(field(PriceSpec::Percentage(inverted)), "eventMaximum");
    let tiers = vec![PercentageTierSpec {
        up_to: None,
        rate: d("101"),
        flat_amount: d("0"),
    }];
    assert_eq!(field(PriceSpec::GraduatedPercentage { tiers }), "tiers.0.rate");

    let charge_field = |spec: ChargeSpec| Charge::parse(spec).unwrap_err().field;
    let percent = PriceSpec::Percentage(percentage("1"));
    assert_eq!(
        charge_field(ChargeSpec {
            price: percent,
            free_units: Some(d("1")),
            minimum: None
        }),
        "freeUnits"
    );
    let per_unit = || PriceSpec::PerUnit { unit_amount: d("1") };
    assert_eq!(
        charge_field(ChargeSpec {
            price: per_unit(),
            free_units: Some(d("-1")),
            minimum: None
        }),
        "freeUnits"
    );
    assert_eq!(
        charge_field(ChargeSpec {
            price: per_unit(),
            free_units: None,
            minimum: Some(d("-1"))
        }),
        "minimum"
    );
    let bad_tier = PriceSpec::Graduated {
        tiers: vec![t(Some("1"))],
    };
    assert_eq!(
        charge_field(ChargeSpec {
            price: bad_tier,
            free_units: None,
            minimum: None
        }),
        "price.tiers.0.upTo"
    );
}

#[test]
fn bad_usage_is_refused_not_rated() {
    let per_unit = charge(PriceSpec::PerUnit { unit_amount: d("1") }, None, None);
    assert!(matches!(
        rate(&per_unit, Usage::Quantity(d("-1"))),
        Err(RateError::Quantity(_))
    ));
    assert_eq!(rate(&per_unit, Usage::EventAmounts(&[])), Err(RateError::NeedsQuantity));
    let percent = charge(PriceSpec::Percentage(percentage("1")), None, None);
    assert_eq!(rate(&percent, Usage::Quantity(d("1"))), Err(RateError::NeedsEvents));
    assert!(matches!(
        rate(&percent, Usage::EventAmounts(&[d("1"), d("-2")])),
        Err(RateError::EventAmount { index: 1, .. })
    ));
}

#[test]
fn prices_round_trip_through_their_stored_json() {
    let spec = ChargeSpec {
        price: PriceSpec::Graduated { tiers: three_tiers() },
        free_units: Some(d("10")),
        minimum: Some(d("5.00")),
    };
    let charge = Charge::parse(spec.clone()).unwrap();
    let json = serde_json::to_string(&charge).unwrap();
    assert!(json.contains(r#""model":"graduated""#), "{json}");
    assert!(json.contains(r#""upTo":"100""#), "{json}");
    let back: Charge = serde_json::from_str(&json).unwrap();
    assert_eq!(back, charge);
    // A stored price that no longer passes is refused when read.
    let bad = r#"{"price":{"model":"perUnit","unitAmount":"-1"}}"#;
    assert!(serde_json::from_str::<Charge>(bad).is_err());
}
