//! The order of an invoice (fees → minimum true-ups → coupons → amounts billed earlier → taxes →
//! prepaid credits), with every amount computed by hand in the comments.

use std::str::FromStr;

use chrono::NaiveDate;
use neruba_pricing::{
    Charge, ChargeSpec, PriceSpec, TierSpec, Usage,
    invoice::{ChargeUsage, Commitment, Coupon, FixedFee, InvoiceInput, LineKind, compute, fixed_fee_amount},
    proration::Period,
};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn period(from: &str, to: &str) -> Period {
    Period::new(day(from), day(to)).unwrap()
}

fn charges() -> (Charge, Charge) {
    let tiers = vec![
        TierSpec {
            up_to: Some(d("100")),
            unit_amount: d("0.10"),
            flat_amount: d("5"),
        },
        TierSpec {
            up_to: Some(d("1000")),
            unit_amount: d("0.05"),
            flat_amount: d("0"),
        },
        TierSpec {
            up_to: None,
            unit_amount: d("0.01"),
            flat_amount: d("2"),
        },
    ];
    let api = Charge::parse(ChargeSpec {
        price: PriceSpec::Graduated { tiers },
        free_units: Some(d("50")),
        minimum: None,
    })
    .unwrap();
    let storage = Charge::parse(ChargeSpec {
        price: PriceSpec::PerUnit { unit_amount: d("0.25") },
        free_units: None,
        minimum: Some(d("5")),
    })
    .unwrap();
    (api, storage)
}

fn january_fee(trial_until: Option<&str>) -> FixedFee {
    FixedFee {
        amount: d("30"),
        full: period("2027-01-01", "2027-02-01"),
        billed: period("2027-01-15", "2027-02-01"),
        trial_until: trial_until.map(day),
        counts_toward_commitment: true,
    }
}

#[test]
fn an_invoice_is_fees_then_true_ups_then_coupons_then_taxes_then_credits() {
    let (api, storage) = charges();
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![january_fee(None)],
        fee_adjustments: vec![],
        charges: vec![
            ChargeUsage {
                charge: &api,
                usage: Usage::Quantity(d("1500")),
            },
            ChargeUsage {
                charge: &storage,
                usage: Usage::Quantity(d("4.02")),
            },
        ],
        minimum_commitment: Some(Commitment {
            amount: d("100"),
            billed_before: d("0"),
        }),
        coupons: vec![Coupon::Percentage(d("10")), Coupon::Amount(d("5"))],
        taxes: vec![d("8.875"), d("1")],
        credits_available: d("50"),
        billed_earlier: d("0"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.index, l.amount)).collect();
    assert_eq!(
        lines,
        vec![
            // 17 of 31 days of 30.00: 30.00 − round(30 × 14/31 = 13.548…) = 30.00 − 13.55.
            (LineKind::FixedFee, 0, d("16.45")),
            // 50 free; 100 × 0.10 + 5; 900 × 0.05; 450 × 0.01 + 2.
            (LineKind::Usage, 0, d("66.50")),
            // 4.02 × 0.25 = 1.005 → 1.01.
            (LineKind::Usage, 1, d("1.01")),
            // Its minimum of 5: 5.00 − 1.01.
            (LineKind::ChargeMinimum, 1, d("3.99")),
            // 16.45 + 66.50 + 1.01 + 3.99 = 87.95, below the commitment of 100.
            (LineKind::MinimumCommitment, 0, d("12.05")),
            // 10 % of 100.00, then 5 off 90.00.
            (LineKind::Coupon, 0, d("-10.00")),
            (LineKind::Coupon, 1, d("-5.00")),
            // 8.875 % of 85.00 = 7.54375 → 7.54; 1 % = 0.85.
            (LineKind::Tax, 0, d("7.54")),
            (LineKind::Tax, 1, d("0.85")),
            // 50 of the 93.39 paid by credits.
            (LineKind::Credits, 0, d("-50.00")),
        ]
    );
    assert_eq!(invoice.subtotal, d("100.00"));
    assert_eq!(invoice.discount, d("-15.00"));
    assert_eq!(invoice.tax, d("8.39"));
    assert_eq!(invoice.total, d("93.39"));
    assert_eq!(invoice.credits, d("-50.00"));
    assert_eq!(invoice.amount_due, d("43.39"));
    let sum: Decimal = invoice.lines.iter().map(|l| l.amount).sum();
    assert_eq!(sum, invoice.amount_due, "the lines add up to what is due");
    assert_eq!(invoice.lines[1].rating.as_ref().unwrap().steps.len(), 4);

    // Credits never pay more than the total.
    let rich = compute(&InvoiceInput {
        credits_available: d("1000"),
        ..input.clone()
    })
    .unwrap();
    assert_eq!((rich.credits, rich.amount_due), (d("-93.39"), d("0")));
    // The same inputs give the same invoice.
    assert_eq!(compute(&input).unwrap(), invoice);
}

#[test]
fn trial_days_are_not_billed_and_coupons_stop_at_zero() {
    let input = InvoiceInput {
        decimals: 2,
        // Trial until January 20: 12 of 31 days, 30.00 − round(30 × 19/31 = 18.387…) = 11.61.
        fixed_fees: vec![january_fee(Some("2027-01-20"))],
        fee_adjustments: vec![],
        charges: vec![],
        minimum_commitment: None,
        coupons: vec![Coupon::Amount(d("500")), Coupon::Percentage(d("50"))],
        taxes: vec![d("20")],
        credits_available: d("0"),
        billed_earlier: d("0"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    assert_eq!(
        lines,
        vec![(LineKind::FixedFee, d("11.61")), (LineKind::Coupon, d("-11.61"))]
    );
    assert_eq!(
        (invoice.total, invoice.amount_due, invoice.credits),
        (d("0"), d("0"), d("0"))
    );

    // A trial covering the whole period bills no fixed fee at all.
    let all_trial = InvoiceInput {
        fixed_fees: vec![january_fee(Some("2027-03-01"))],
        fee_adjustments: vec![],
        ..input
    };
    assert!(compute(&all_trial).unwrap().lines.is_empty());
}

#[test]
fn a_period_without_usage_still_pays_its_minimums() {
    let (api, storage) = charges();
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![],
        fee_adjustments: vec![],
        charges: vec![
            ChargeUsage {
                charge: &api,
                usage: Usage::Quantity(d("0")),
            },
            ChargeUsage {
                charge: &storage,
                usage: Usage::Quantity(d("0")),
            },
        ],
        minimum_commitment: Some(Commitment {
            amount: d("20"),
            billed_before: d("0"),
        }),
        coupons: vec![],
        taxes: vec![],
        credits_available: d("0"),
        billed_earlier: d("0"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    assert_eq!(
        lines,
        vec![
            (LineKind::Usage, d("0.00")),
            (LineKind::Usage, d("0.00")),
            (LineKind::ChargeMinimum, d("5.00")),
            (LineKind::MinimumCommitment, d("15.00")),
        ]
    );
    assert_eq!(invoice.amount_due, d("20.00"));
}

#[test]
fn the_minimum_commitment_counts_only_what_pays_for_the_usage_period() {
    let (api, _) = charges();
    // February's fee in advance (30.00) is on this invoice but pays for February; January's fee
    // (16.45, billed in advance on the previous invoice) counts toward January's commitment.
    let february = FixedFee {
        amount: d("30"),
        full: period("2027-02-01", "2027-03-01"),
        billed: period("2027-02-01", "2027-03-01"),
        trial_until: None,
        counts_toward_commitment: false,
    };
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![february],
        fee_adjustments: vec![],
        charges: vec![ChargeUsage {
            charge: &api,
            usage: Usage::Quantity(d("100")),
        }],
        minimum_commitment: Some(Commitment {
            amount: d("40"),
            billed_before: d("16.45"),
        }),
        coupons: vec![],
        taxes: vec![],
        credits_available: d("0"),
        billed_earlier: d("0"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    // 50 free, 50 × 0.10 + 5 = 10.00; 40.00 − (10.00 + 16.45) = 13.55.
    assert_eq!(
        lines,
        vec![
            (LineKind::FixedFee, d("30.00")),
            (LineKind::Usage, d("10.00")),
            (LineKind::MinimumCommitment, d("13.55")),
        ]
    );
    assert_eq!(
        fixed_fee_amount(&january_fee(None), 2).unwrap(),
        d("16.45"),
        "what the previous invoice billed for January"
    );
}

#[test]
fn a_fee_adjustment_is_a_line_and_counts_toward_the_commitment() {
    let (api, _) = charges();
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![],
        // 30.00 billed in advance for January, ended on the 10th: 30 − round(30 × 10/31) back.
        fee_adjustments: vec![d("-20.32")],
        charges: vec![ChargeUsage {
            charge: &api,
            usage: Usage::Quantity(d("0")),
        }],
        minimum_commitment: Some(Commitment {
            amount: d("15"),
            billed_before: d("30"),
        }),
        coupons: vec![],
        taxes: vec![],
        credits_available: d("0"),
        billed_earlier: d("0"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    // 30.00 − 20.32 = 9.68 paid toward the commitment of 15: 5.32 more.
    assert_eq!(
        lines,
        vec![
            (LineKind::FeeAdjustment, d("-20.32")),
            (LineKind::Usage, d("0.00")),
            (LineKind::MinimumCommitment, d("5.32")),
        ]
    );
    assert_eq!(invoice.total, d("-15.00"));
    assert_eq!(invoice.amount_due, d("-15.00"), "a credit the customer is owed");
}

#[test]
fn what_earlier_invoices_billed_is_deducted_after_coupons_and_before_taxes() {
    let (api, _) = charges();
    // The whole period's usage: 1050 − 50 free = 1000: 100 × 0.10 + 5 = 15.00, 900 × 0.05 = 45.00.
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![],
        fee_adjustments: vec![],
        charges: vec![ChargeUsage {
            charge: &api,
            usage: Usage::Quantity(d("1050")),
        }],
        minimum_commitment: None,
        coupons: vec![Coupon::Percentage(d("10"))],
        taxes: vec![d("10")],
        credits_available: d("0"),
        // Threshold invoices of the period billed 40.00 before tax.
        billed_earlier: d("40"),
        closes_period: true,
    };
    let invoice = compute(&input).unwrap();
    let lines: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    // 10% of the whole 60.00 off (6.00), then 40.00 deducted: 14.00 left, taxed 10%: 1.40.
    assert_eq!(
        lines,
        vec![
            (LineKind::Usage, d("60.00")),
            (LineKind::Coupon, d("-6.00")),
            (LineKind::BilledEarlier, d("-40.00")),
            (LineKind::Tax, d("1.40")),
        ]
    );
    assert_eq!(
        (
            invoice.subtotal,
            invoice.discount,
            invoice.billed_earlier,
            invoice.tax,
            invoice.total
        ),
        (d("60.00"), d("-6.00"), d("-40.00"), d("1.40"), d("15.40"))
    );

    // Earlier invoices billed more than the discounted period comes to: a credit, tax included.
    let over = compute(&InvoiceInput {
        billed_earlier: d("70"),
        closes_period: true,
        ..input
    })
    .unwrap();
    // 54.00 − 70.00 = −16.00; tax −1.60.
    assert_eq!(
        (over.tax, over.total, over.amount_due),
        (d("-1.60"), d("-17.60"), d("-17.60"))
    );
}

#[test]
fn charge_minimums_wait_for_the_invoice_that_closes_the_period() {
    let (_, storage) = charges();
    // 4 × 0.25 = 1.00, below the charge's minimum of 5.00.
    let input = InvoiceInput {
        decimals: 2,
        fixed_fees: vec![],
        fee_adjustments: vec![],
        charges: vec![ChargeUsage {
            charge: &storage,
            usage: Usage::Quantity(d("4")),
        }],
        minimum_commitment: None,
        coupons: vec![],
        taxes: vec![],
        credits_available: d("0"),
        billed_earlier: d("0"),
        closes_period: false,
    };
    let early = compute(&input).unwrap();
    let lines: Vec<_> = early.lines.iter().map(|l| (l.kind, l.amount)).collect();
    assert_eq!(lines, vec![(LineKind::Usage, d("1.00"))]);
    let last = compute(&InvoiceInput {
        closes_period: true,
        ..input
    })
    .unwrap();
    let lines: Vec<_> = last.lines.iter().map(|l| (l.kind, l.amount)).collect();
    assert_eq!(
        lines,
        vec![(LineKind::Usage, d("1.00")), (LineKind::ChargeMinimum, d("4.00"))]
    );
}
