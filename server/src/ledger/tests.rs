//! The pure ledger rules: hand-computed tables, and properties over random inputs.

use chrono::{NaiveDate, NaiveDateTime};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn t(day: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 1, day)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn lot(id: &str, remaining: &str, priority: i32, expires: Option<u32>, created: u32) -> LotView {
    LotView {
        id: id.into(),
        remaining: d(remaining),
        priority,
        expires_at: expires.map(t),
        created_at: t(created),
    }
}

const REJECT: Policy = Policy {
    policy: WalletPolicy::Reject,
    credit_limit: Decimal::ZERO,
};

#[test]
fn lots_are_drawn_soonest_expiry_then_priority_then_oldest() {
    let lots = vec![
        lot("never-old", "10", 0, None, 1),
        lot("late", "10", 0, Some(20), 1),
        lot("soon-low-priority", "10", 5, Some(10), 1),
        lot("soon-high-priority", "10", 1, Some(10), 3),
        lot("soon-high-priority-older", "10", 1, Some(10), 2),
        lot("never-new", "10", 0, None, 4),
        lot("expired", "10", 0, Some(5), 1),
        lot("empty", "0", 0, None, 1),
    ];
    let order: Vec<String> = drawable(&lots, t(6)).into_iter().map(|l| l.id).collect();
    assert_eq!(
        order,
        [
            "soon-high-priority-older",
            "soon-high-priority",
            "soon-low-priority",
            "late",
            "never-old",
            "never-new"
        ]
    );
}

#[test]
fn a_charge_draws_lots_in_order_and_stops_when_covered() {
    let lots = vec![lot("a", "3", 0, Some(9), 1), lot("b", "5", 0, None, 1)];
    let allocation = allocate(d("4.5"), &lots, Decimal::ZERO, REJECT).unwrap();
    assert_eq!(
        allocation.draws,
        vec![
            Draw {
                lot_id: "a".into(),
                amount: d("3")
            },
            Draw {
                lot_id: "b".into(),
                amount: d("1.5")
            }
        ]
    );
    assert_eq!(allocation.overdraft, Decimal::ZERO);
    let lines = debit_lines(&allocation, AccountKind::Revenue);
    check_balanced(&lines).unwrap();
    assert_eq!(wallet_delta(&lines), d("-4.5"));
    assert_eq!(
        running_balances(d("8"), &lines),
        vec![Some(d("5")), Some(d("3.5")), None]
    );
}

#[test]
fn a_short_wallet_rejects_or_overdraws_within_its_limit() {
    let lots = vec![lot("a", "3", 0, None, 1)];
    let err = allocate(d("5"), &lots, Decimal::ZERO, REJECT).unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");
    assert!(err.to_string().contains("cover 3 of the 5"), "{err}");

    let limit = Policy {
        policy: WalletPolicy::AllowUntilLimit,
        credit_limit: d("10"),
    };
    let allocation = allocate(d("5"), &lots, Decimal::ZERO, limit).unwrap();
    assert_eq!(allocation.overdraft, d("2"));
    // Already 9 overdrawn: 1 more fits exactly, 1.01 does not.
    assert!(allocate(d("1"), &[], d("-9"), limit).is_ok());
    let err = allocate(d("1.01"), &[], d("-9"), limit).unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");
}

#[test]
fn a_credit_repays_the_overdraft_before_making_a_lot() {
    assert_eq!(settle_overdraft(d("10"), d("-4")), (d("4"), d("6")));
    assert_eq!(settle_overdraft(d("3"), d("-4")), (d("3"), d("0")));
    assert_eq!(settle_overdraft(d("3"), Decimal::ZERO), (d("0"), d("3")));
    let (lines, lot) = credit_lines(d("10"), d("-4"), AccountKind::PaymentsClearing);
    check_balanced(&lines).unwrap();
    assert_eq!(lot, d("6"));
    assert_eq!(wallet_delta(&lines), d("10"));
}

#[test]
fn a_write_off_repays_the_overdraft_from_the_write_off_account() {
    let lines = write_off_lines(d("4"));
    check_balanced(&lines).unwrap();
    assert_eq!(wallet_delta(&lines), d("4"));
    assert_eq!(lines[0].target, Target::System(AccountKind::WriteOff));
    assert_eq!(lines[1].target, Target::Overdraft);
}

#[test]
fn thresholds_fire_once_per_crossing_and_rearm_above() {
    let th = Some(d("10"));
    assert_eq!(threshold_transition(th, false, d("9.99")), Some(true));
    assert_eq!(threshold_transition(th, true, d("5")), None);
    assert_eq!(threshold_transition(th, true, d("10")), Some(false));
    assert_eq!(threshold_transition(th, false, d("10")), None);
    assert_eq!(threshold_transition(None, false, d("-1")), None);
}

#[test]
fn amounts_and_units_are_checked() {
    assert_eq!(parse_positive_amount("amount", "1.50").unwrap(), d("1.5"));
    for bad in ["0", "-1", "0.0000000000001", "NaN", "100000000000000"] {
        let err = parse_positive_amount("amount", bad).unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{bad}");
    }
    assert!(parse_signed_amount("amount", "-2").is_ok());
    assert!(parse_signed_amount("amount", "0").is_err());
    assert_eq!(parse_unit("currency", "usd").unwrap(), "USD");
    assert_eq!(parse_unit("currency", "gpu_hours").unwrap(), "GPU_HOURS");
    for bad in ["", "U", "1USD", "US D", "A_VERY_LONG_UNIT_NAME"] {
        assert!(parse_unit("currency", bad).is_err(), "{bad}");
    }
    assert!(parse_text("reason", Some("  "), true).is_err());
    assert_eq!(parse_text("reason", None, false).unwrap(), None);
}

#[test]
fn conversion_rounds_half_to_even_at_twelve_places() {
    assert_eq!(to_money(d("3"), d("0.333333333333")), Some(d("0.999999999999")));
    // Rounded half to even at 12 places: 0.5e-12 goes down to even, 1.5e-12 up to even.
    assert_eq!(to_money(d("0.0000000000005"), d("1")), Some(d("0")));
    assert_eq!(to_money(d("0.0000000000015"), d("1")), Some(d("0.000000000002")));
    assert_eq!(to_money(d("1.000000000001"), d("0.5")), Some(d("0.5")));
    // The largest balance at the largest rate still converts; past Decimal's range is None, not a panic.
    assert_eq!(
        to_money(d("9999999999999999.999999999999"), d("1000000")),
        Some(d("9999999999999999999999.999999"))
    );
    assert_eq!(to_money(d("79228162514264337593543950335"), d("2")), None);
    assert_eq!(round_amount(d("0.0000000000005")), d("0"));
    assert_eq!(round_amount(d("0.0000000000015")), d("0.000000000002"));
}

#[test]
fn request_hashes_separate_fields() {
    assert_ne!(request_hash(&["ab", "c"]), request_hash(&["a", "bc"]));
    assert_eq!(request_hash(&["x"]), request_hash(&["x"]));
}

fn amount() -> impl Strategy<Value = Decimal> {
    (1u64..1_000_000, 0u32..4).prop_map(|(n, scale)| Decimal::new(n as i64, scale))
}

fn lots() -> impl Strategy<Value = Vec<LotView>> {
    prop::collection::vec((amount(), -3i32..3, prop::option::of(1u32..28), 1u32..28), 0..8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (remaining, priority, expires, created))| LotView {
                id: format!("lot{i:02}"),
                remaining,
                priority,
                expires_at: expires.map(t),
                created_at: t(created),
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn every_debit_balances_and_never_overdraws_past_the_policy(
        lots in lots(),
        charge in amount(),
        overdraft in (0u64..1000).prop_map(|n| -Decimal::new(n as i64, 1)),
        allow in any::<bool>(),
        limit in (0u64..100_000).prop_map(|n| Decimal::new(n as i64, 1)),
    ) {
        let now = t(14);
        let ordered = drawable(&lots, now);
        let policy = Policy {
            policy: if allow { WalletPolicy::AllowUntilLimit } else { WalletPolicy::Reject },
            credit_limit: if allow { limit } else { Decimal::ZERO },
        };
        let available: Decimal = ordered.iter().map(|l| l.remaining).sum();
        match allocate(charge, &ordered, overdraft, policy) {
            Ok(allocation) => {
                let lines = debit_lines(&allocation, AccountKind::Revenue);
                prop_assert!(check_balanced(&lines).is_ok());
                prop_assert_eq!(wallet_delta(&lines), -charge);
                for draw in &allocation.draws {
                    let lot = ordered.iter().find(|l| l.id == draw.lot_id).unwrap();
                    prop_assert!(draw.amount > Decimal::ZERO && draw.amount <= lot.remaining);
                }
                // Lots are drawn in order: every lot before the last drawn one is emptied.
                for draw in allocation.draws.iter().rev().skip(1) {
                    let lot = ordered.iter().find(|l| l.id == draw.lot_id).unwrap();
                    prop_assert_eq!(draw.amount, lot.remaining);
                }
                prop_assert!(overdraft - allocation.overdraft >= -policy.credit_limit || allocation.overdraft.is_zero());
                if allocation.overdraft > Decimal::ZERO {
                    prop_assert_eq!(allocation.draws.iter().map(|d| d.amount).sum::<Decimal>(), available);
                }
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "INSUFFICIENT_CREDITS");
                prop_assert!(charge > available);
            }
        }
    }

    #[test]
    fn every_credit_balances_and_repays_first(credit in amount(), overdraft in (0u64..1000).prop_map(|n| -Decimal::new(n as i64, 2))) {
        let (lines, lot) = credit_lines(credit, overdraft, AccountKind::Promotional);
        prop_assert!(check_balanced(&lines).is_ok());
        prop_assert_eq!(wallet_delta(&lines), credit);
        prop_assert_eq!(lot, (credit + overdraft).max(Decimal::ZERO));
    }
}

fn draw(lot: Option<&str>, amount: &str) -> HoldDraw {
    HoldDraw {
        lot: lot.map(str::to_string),
        amount: d(amount),
    }
}

fn line(target: Target, amount: &str) -> Line {
    Line {
        target,
        amount: d(amount),
    }
}

#[test]
fn a_hold_gives_back_the_last_drawn_first_repaying_the_overdraft_before_lots() {
    let draws = [draw(Some("a"), "3"), draw(Some("b"), "2"), draw(None, "4")];
    let open = |_: &str| true;
    // Nothing owed now: the overdraft part was repaid by a top-up since, so it becomes a new lot.
    assert_eq!(
        return_lines(&draws, d("5"), d("0"), open).unwrap(),
        vec![line(Target::Lot("b".into()), "1"), line(Target::NewLot, "4")]
    );
    // 4 owed: the first 4 returned repay it, the rest goes back to the last drawn lots.
    assert_eq!(
        return_lines(&draws, d("9"), d("-4"), open).unwrap(),
        vec![
            line(Target::Overdraft, "4"),
            line(Target::Lot("b".into()), "2"),
            line(Target::Lot("a".into()), "3"),
        ]
    );
    // 6 owed (a charge overdrew after the reserve): lot parts repay it too.
    assert_eq!(
        return_lines(&draws, d("9"), d("-6"), open).unwrap(),
        vec![line(Target::Overdraft, "6"), line(Target::Lot("a".into()), "3")]
    );
    // Returning more than was drawn is a bug, not a posting.
    assert!(return_lines(&draws, d("9.5"), d("0"), open).is_err());
}

#[test]
fn what_a_hold_drew_from_an_expired_lot_goes_to_expired_and_repays_nothing() {
    let draws = [draw(Some("old"), "3"), draw(Some("new"), "2")];
    let open = |id: &str| id != "old";
    assert_eq!(
        return_lines(&draws, d("5"), d("-10"), open).unwrap(),
        vec![
            line(Target::Overdraft, "2"),
            line(Target::System(AccountKind::Expired), "3"),
        ]
    );
}

#[test]
fn a_reserve_draws_like_a_charge_into_the_hold_account() {
    let allocation = Allocation {
        draws: vec![Draw {
            lot_id: "a".into(),
            amount: d("3"),
        }],
        overdraft: d("2"),
    };
    let (lines, draws) = reserve_lines(&allocation);
    assert_eq!(
        lines,
        vec![
            line(Target::Lot("a".into()), "-3"),
            line(Target::Overdraft, "-2"),
            line(Target::Hold, "5"),
        ]
    );
    assert_eq!(wallet_delta(&lines), Decimal::ZERO);
    assert_eq!(held_delta(&lines), d("5"));
    assert_eq!(draws, vec![draw(Some("a"), "3"), draw(None, "2")]);
    assert_eq!(decode_draws(&encode_draws(&draws)).unwrap(), draws);
}

#[test]
fn the_overdraft_is_derived_from_the_balance_held_and_lots() {
    let lots = [lot("a", "3", 0, None, 1), lot("b", "1.5", 0, None, 2)];
    assert_eq!(derived_overdraft(d("4.5"), d("0"), &lots).unwrap(), d("0"));
    assert_eq!(derived_overdraft(d("1.5"), d("2"), &[]).unwrap(), d("-0.5"));
    assert!(derived_overdraft(d("5"), d("0"), &lots).is_err());
}
