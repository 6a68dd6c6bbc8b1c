//! The money state: a double-entry ledger behind wallets, credit lots and charges.
//!
//! This module owns the pure rules (no I/O): the vocabulary (causes, account kinds, wallet
//! policies), which lots a debit draws from and in what order, how a credit settles an overdraft,
//! the postings each operation makes and the check that they balance, the running balance, and
//! rounding. [`service`] runs them inside one database transaction; [`outbox`] carries committed
//! changes to every server; [`reconcile`] proves the stored state obeys the invariants.
//! docs/ledger.md describes the model.

pub mod holds;
pub mod hot;
pub mod outbox;
pub mod reconcile;
pub mod service;
pub mod stream;
pub mod sweeper;

use std::cmp::Ordering;

use chrono::NaiveDateTime;
use rust_decimal::{Decimal, RoundingStrategy};
use sha2::{Digest, Sha256};

use crate::{
    error::{Error, ErrorCode},
    money::{DecimalLimits, MONEY_SCALE, parse_decimal},
    text_enum::text_enum,
};

text_enum! {
    /// Why a ledger transaction exists. Every posting carries its transaction's cause.
    Cause {
        /// A paid top-up: money received for credits.
        TopUp = "TOP_UP",
        /// Free credits granted (promotional).
        Grant = "GRANT",
        /// A charge for usage or a purchase.
        Charge = "CHARGE",
        /// An operator's manual correction, with a reason.
        Adjustment = "ADJUSTMENT",
        /// The unused remainder of a lot whose expiry passed.
        Expiry = "EXPIRY",
        /// An operator gave up (part of) what an overdrawn wallet owes.
        WriteOff = "WRITE_OFF",
        /// Money returned to the customer (reserved: no operation posts it yet).
        Refund = "REFUND",
        /// An invoice (reserved for invoicing).
        Invoice = "INVOICE",
        /// A payment received against an invoice (reserved for payments).
        Payment = "PAYMENT",
        /// Credits reserved by a hold: they move from the wallet's lots (and overdraft) to its
        /// HOLD account; the balance is unchanged, `available` goes down.
        Hold = "HOLD",
        /// A hold settled: the settled amount leaves the HOLD account for REVENUE (a charge), the
        /// rest goes back where it was drawn from.
        HoldSettle = "HOLD_SETTLE",
        /// A hold released by the client or expired: everything it held goes back.
        HoldRelease = "HOLD_RELEASE",
    }
}

text_enum! {
    /// What a ledger account holds.
    AccountKind {
        /// One credit lot of a wallet (a top-up, grant or positive adjustment).
        Lot = "LOT",
        /// What the customer owes when a wallet went below zero (never positive).
        Overdraft = "OVERDRAFT",
        /// Earned from charges.
        Revenue = "REVENUE",
        /// The source of granted (free) credits.
        Promotional = "PROMOTIONAL",
        /// Money received for top-ups, until settled with the payment provider.
        PaymentsClearing = "PAYMENTS_CLEARING",
        /// Debts given up: the counterpart of write-offs of overdrafts.
        WriteOff = "WRITE_OFF",
        /// Credits that expired unused (breakage).
        Expired = "EXPIRED",
        /// What one customer owes on finalized invoices, per unit (zero or negative while owed).
        Receivable = "RECEIVABLE",
        /// Taxes invoiced, owed to the tax authorities.
        TaxPayable = "TAX_PAYABLE",
        /// The counterpart of operators' manual adjustments.
        Adjustments = "ADJUSTMENTS",
        /// What a wallet's active holds reserve (one per wallet, wallet-side, never negative).
        Hold = "HOLD",
    }
}

text_enum! {
    /// What a charge does when the wallet's lots do not cover it.
    WalletPolicy {
        /// Refuse the charge with `INSUFFICIENT_CREDITS`; nothing is posted.
        Reject = "REJECT",
        /// Let the balance go below zero, down to minus the wallet's credit limit.
        AllowUntilLimit = "ALLOW_UNTIL_LIMIT",
    }
}

text_enum! {
    /// Where a credit lot came from.
    LotSource {
        TopUp = "TOP_UP",
        Grant = "GRANT",
        Adjustment = "ADJUSTMENT",
        /// Credits a hold gave back after the overdraft they were drawn from had been repaid.
        Hold = "HOLD",
    }
}

text_enum! {
    /// Where a credit hold is.
    HoldStatus {
        /// Reserving credits until settled, released or expired.
        Active = "ACTIVE",
        /// Charged (up to the held amount; the rest went back).
        Settled = "SETTLED",
        /// Released by the client: everything went back.
        Released = "RELEASED",
        /// Its expiry passed before it was settled: released by the sweep.
        Expired = "EXPIRED",
    }
}

text_enum! {
    /// What an outbox row (and the live event made from it) says about a wallet.
    WalletEventKind {
        /// The balance changed; the event carries the new balance and the cause.
        BalanceChanged = "BALANCE_CHANGED",
        /// The balance fell below the wallet's low-balance threshold (once per crossing).
        LowBalance = "LOW_BALANCE",
    }
}

/// Every amount a client sends: positive, at most 12 decimal places, at most 14 integer digits.
pub fn parse_positive_amount(field: &str, text: &str) -> Result<Decimal, Error> {
    let value = parse_decimal(field, text, DecimalLimits::MONEY)?;
    if value <= Decimal::ZERO {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    Ok(value)
}

/// An adjustment's amount: signed (credit or debit), never zero.
pub fn parse_signed_amount(field: &str, text: &str) -> Result<Decimal, Error> {
    let value = parse_decimal(field, text, DecimalLimits::MONEY)?;
    if value.is_zero() {
        return Err(Error::invalid(field, "must not be zero"));
    }
    Ok(value)
}

/// A wallet's unit: a three-letter currency (`USD`) or a credit unit (`CREDITS`, `GPU_HOURS`):
/// 2 to 16 of `A-Z0-9_`, starting with a letter; upper-cased.
pub fn parse_unit(field: &str, raw: &str) -> Result<String, Error> {
    let code = raw.trim().to_ascii_uppercase();
    if !crate::currency::is_unit_code(&code) {
        return Err(Error::invalid(
            field,
            "must be a currency code such as USD or a credit unit such as CREDITS (2-16 of A-Z, 0-9, _)",
        ));
    }
    Ok(code)
}

/// An idempotency key: the rules every write shares ([`crate::ids::parse_idempotency_key`]).
pub use crate::ids::parse_idempotency_key;

/// Free text on a transaction (description, reason): trimmed, at most 1000 characters.
pub fn parse_text(field: &str, raw: Option<&str>, required: bool) -> Result<Option<String>, Error> {
    let text = raw.map(str::trim).filter(|t| !t.is_empty());
    match text {
        None if required => Err(Error::invalid(field, "is required")),
        None => Ok(None),
        Some(t) if t.chars().count() > 1000 => Err(Error::invalid(field, "must be at most 1000 characters")),
        Some(t) if t.chars().any(|c| c.is_control() && c != '\n') => {
            Err(Error::invalid(field, "must not contain control characters"))
        }
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// SHA-256 of a request's canonical fields (operation name first), separated by a byte no field
/// contains, so that two different requests never hash alike by shifting text between fields.
pub fn request_hash(fields: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update(field.as_bytes());
        hasher.update([0x1f]);
    }
    hasher.finalize().to_vec()
}

/// Rounding of derived amounts (a credit balance converted to money): banker's rounding
/// (half to even) to the 12 decimal places every amount column keeps, so repeated conversions do
/// not drift in one direction. Amounts clients send are never rounded; over-precise input is refused.
pub fn round_amount(value: Decimal) -> Decimal {
    value
        .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// The money value of a credit balance at the wallet's rate; `None` if the product does not fit a
/// `Decimal` (rates are capped so that stored balances always fit).
pub fn to_money(balance: Decimal, rate: Decimal) -> Option<Decimal> {
    balance.checked_mul(rate).map(round_amount)
}

/// A credit lot as the allocation rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct LotView {
    pub id: String,
    pub remaining: Decimal,
    pub priority: i32,
    pub expires_at: Option<NaiveDateTime>,
    /// Lot ids are time-ordered ULIDs: a smaller id is an older lot.
    pub created_at: NaiveDateTime,
}

impl LotView {
    /// Whether the lot can be drawn from at `now`: something left and not expired.
    pub fn usable(&self, now: NaiveDateTime) -> bool {
        self.remaining > Decimal::ZERO && self.expires_at.is_none_or(|t| t > now)
    }
}

/// The documented consumption order: soonest expiry first (lots that never expire last), then
/// lower `priority` number first, then the oldest, then the lot id (a total order, so equal
/// lots are always drawn the same way).
pub fn consumption_order(a: &LotView, b: &LotView) -> Ordering {
    let expiry = match (a.expires_at, b.expires_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    expiry
        .then(a.priority.cmp(&b.priority))
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// The usable lots at `now`, in consumption order.
pub fn drawable(lots: &[LotView], now: NaiveDateTime) -> Vec<LotView> {
    let mut usable: Vec<LotView> = lots.iter().filter(|l| l.usable(now)).cloned().collect();
    usable.sort_by(consumption_order);
    usable
}

/// One lot drawn by a debit.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub lot_id: String,
    pub amount: Decimal,
}

/// How a debit is covered: draws from lots in order, and what goes to the overdraft account.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub draws: Vec<Draw>,
    pub overdraft: Decimal,
}

/// The wallet's rules for a debit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub policy: WalletPolicy,
    pub credit_limit: Decimal,
}

/// Covers `amount` from `lots` (already in consumption order, all usable). What the lots do not
/// cover goes to the overdraft when the policy allows it and the overdraft (`overdraft_balance`,
/// zero or negative) stays within the credit limit; otherwise `INSUFFICIENT_CREDITS`.
pub fn allocate(
    amount: Decimal,
    lots: &[LotView],
    overdraft_balance: Decimal,
    policy: Policy,
) -> Result<Allocation, Error> {
    let mut left = amount;
    let mut draws = Vec::new();
    for lot in lots {
        if left.is_zero() {
            break;
        }
        let take = left.min(lot.remaining);
        if take > Decimal::ZERO {
            draws.push(Draw {
                lot_id: lot.id.clone(),
                amount: take,
            });
            left -= take;
        }
    }
    if left.is_zero() {
        return Ok(Allocation {
            draws,
            overdraft: Decimal::ZERO,
        });
    }
    let available: Decimal = lots.iter().map(|l| l.remaining).sum::<Decimal>() + overdraft_balance;
    let allowed = match policy.policy {
        WalletPolicy::Reject => false,
        WalletPolicy::AllowUntilLimit => overdraft_balance - left >= -policy.credit_limit,
    };
    if !allowed {
        let headroom = match policy.policy {
            WalletPolicy::Reject => available.max(Decimal::ZERO),
            WalletPolicy::AllowUntilLimit => available + policy.credit_limit,
        };
        return Err(Error::conflict(
            ErrorCode::InsufficientCredits,
            format!(
                "the wallet can cover {} of the {} requested",
                headroom.normalize(),
                amount.normalize()
            ),
        ));
    }
    Ok(Allocation { draws, overdraft: left })
}

/// How a credit (top-up, grant, positive adjustment) is split: first it repays the overdraft
/// (`overdraft_balance` is zero or negative), the rest becomes a new lot.
pub fn settle_overdraft(amount: Decimal, overdraft_balance: Decimal) -> (Decimal, Decimal) {
    let owed = (-overdraft_balance).max(Decimal::ZERO);
    let repay = amount.min(owed);
    (repay, amount - repay)
}

/// Which account a posting line goes to, before accounts are resolved to ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An existing lot of the wallet.
    Lot(String),
    /// The lot this operation creates.
    NewLot,
    /// The wallet's overdraft account.
    Overdraft,
    /// A system account of the project in the wallet's unit.
    System(AccountKind),
    /// What the wallet's customer owes on invoices, in the wallet's unit (not wallet-side).
    Receivable,
    /// The wallet's HOLD account: what its active holds reserve (wallet-side).
    Hold,
}

impl Target {
    /// Wallet-side accounts make up the wallet's balance.
    pub fn is_wallet_side(&self) -> bool {
        matches!(self, Target::Lot(_) | Target::NewLot | Target::Overdraft | Target::Hold)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub target: Target,
    pub amount: Decimal,
}

/// The postings of a debit (charge, negative adjustment): each draw and the overdraft leave the
/// wallet; their total arrives at `counter` (REVENUE for charges, ADJUSTMENTS for adjustments).
pub fn debit_lines(allocation: &Allocation, counter: AccountKind) -> Vec<Line> {
    let mut lines: Vec<Line> = allocation
        .draws
        .iter()
        .map(|d| Line {
            target: Target::Lot(d.lot_id.clone()),
            amount: -d.amount,
        })
        .collect();
    if allocation.overdraft > Decimal::ZERO {
        lines.push(Line {
            target: Target::Overdraft,
            amount: -allocation.overdraft,
        });
    }
    let total: Decimal = allocation.draws.iter().map(|d| d.amount).sum::<Decimal>() + allocation.overdraft;
    lines.push(Line {
        target: Target::System(counter),
        amount: total,
    });
    lines
}

/// The postings of a credit of `amount` from `source` (PAYMENTS_CLEARING for top-ups, PROMOTIONAL
/// for grants, ADJUSTMENTS for adjustments): the overdraft is repaid first, the rest is a new lot.
/// Returns the lines and the new lot's amount (zero when the credit only repaid the overdraft).
pub fn credit_lines(amount: Decimal, overdraft_balance: Decimal, source: AccountKind) -> (Vec<Line>, Decimal) {
    let (repay, to_lot) = settle_overdraft(amount, overdraft_balance);
    let mut lines = vec![Line {
        target: Target::System(source),
        amount: -amount,
    }];
    if repay > Decimal::ZERO {
        lines.push(Line {
            target: Target::Overdraft,
            amount: repay,
        });
    }
    if to_lot > Decimal::ZERO {
        lines.push(Line {
            target: Target::NewLot,
            amount: to_lot,
        });
    }
    (lines, to_lot)
}

/// One source a hold drew from: a lot, or the wallet's overdraft (`lot: None`).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldDraw {
    pub lot: Option<String>,
    pub amount: Decimal,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDraw {
    lot: Option<String>,
    amount: String,
}

/// The sources of a hold as stored in `credit_holds.draws` (JSON, amounts as exact text).
pub fn encode_draws(draws: &[HoldDraw]) -> String {
    let stored: Vec<StoredDraw> = draws
        .iter()
        .map(|d| StoredDraw {
            lot: d.lot.clone(),
            amount: d.amount.normalize().to_string(),
        })
        .collect();
    // Strings and nulls only: serializing cannot fail.
    serde_json::to_string(&stored).expect("hold draws serialize")
}

pub fn decode_draws(text: &str) -> Result<Vec<HoldDraw>, Error> {
    let stored: Vec<StoredDraw> =
        serde_json::from_str(text).map_err(|e| Error::Internal(format!("unreadable hold draws: {e}")))?;
    stored
        .into_iter()
        .map(|d| {
            Ok(HoldDraw {
                lot: d.lot,
                amount: d
                    .amount
                    .parse()
                    .map_err(|e| Error::Internal(format!("unreadable hold draw amount: {e}")))?,
            })
        })
        .collect()
}

/// The postings of a reserve: like a charge (each drawn lot, then the overdraft), but the total
/// goes to the wallet's HOLD account, so the balance does not change. Answers the lines and the
/// sources in draw order (what a settlement consumes first).
pub fn reserve_lines(allocation: &Allocation) -> (Vec<Line>, Vec<HoldDraw>) {
    let mut lines = debit_lines(allocation, AccountKind::Hold);
    if let Some(last) = lines.last_mut() {
        last.target = Target::Hold;
    }
    let mut draws: Vec<HoldDraw> = allocation
        .draws
        .iter()
        .map(|d| HoldDraw {
            lot: Some(d.lot_id.clone()),
            amount: d.amount,
        })
        .collect();
    if allocation.overdraft > Decimal::ZERO {
        draws.push(HoldDraw {
            lot: None,
            amount: allocation.overdraft,
        });
    }
    (lines, draws)
}

/// Where `amount` of a hold goes back to (the HOLD side, −amount, is the caller's line). The part
/// returned is the last drawn (a settlement consumes the sources in draw order), so it is taken
/// from the end of `draws`: the overdraft part first, then the lots in reverse order. Then:
///
/// - parts of lots that expired meanwhile (`open(lot)` false) go to EXPIRED: they would have
///   expired had they not been held;
/// - the rest is a credit like any other and repays the overdraft first (`overdraft_balance`,
///   zero or negative, as it is now);
/// - what is left goes back to its lots, and a part drawn from the overdraft that was repaid
///   since (by a top-up) becomes a new lot.
///
/// No lot gets back more than the hold took from it, so none exceeds its original amount.
pub fn return_lines(
    draws: &[HoldDraw],
    amount: Decimal,
    overdraft_balance: Decimal,
    open: impl Fn(&str) -> bool,
) -> Result<Vec<Line>, Error> {
    let mut left = amount;
    let mut portions = Vec::new();
    for draw in draws.iter().rev() {
        if left.is_zero() {
            break;
        }
        let take = left.min(draw.amount);
        if take > Decimal::ZERO {
            portions.push((draw.lot.clone(), take));
            left -= take;
        }
    }
    if !left.is_zero() {
        return Err(Error::Internal(format!(
            "returning {amount} from a hold whose draws are {draws:?}"
        )));
    }
    let mut expired = Decimal::ZERO;
    let mut live = Vec::new();
    for (lot, take) in portions {
        match lot {
            Some(id) if !open(&id) => expired += take,
            lot => live.push((lot, take)),
        }
    }
    let mut lines = Vec::new();
    let live_total: Decimal = live.iter().map(|(_, a)| *a).sum();
    let mut repay = (-overdraft_balance).max(Decimal::ZERO).min(live_total);
    if repay > Decimal::ZERO {
        lines.push(Line {
            target: Target::Overdraft,
            amount: repay,
        });
    }
    let mut new_lot = Decimal::ZERO;
    for (lot, take) in live {
        let used = repay.min(take);
        repay -= used;
        let rest = take - used;
        if rest > Decimal::ZERO {
            match lot {
                Some(id) => lines.push(Line {
                    target: Target::Lot(id),
                    amount: rest,
                }),
                None => new_lot += rest,
            }
        }
    }
    if new_lot > Decimal::ZERO {
        lines.push(Line {
            target: Target::NewLot,
            amount: new_lot,
        });
    }
    if expired > Decimal::ZERO {
        lines.push(Line {
            target: Target::System(AccountKind::Expired),
            amount: expired,
        });
    }
    Ok(lines)
}

/// The postings of a write-off: the overdraft account is repaid by the WRITE_OFF account. No lot
/// is made: writing off never gives the customer credits.
pub fn write_off_lines(amount: Decimal) -> Vec<Line> {
    vec![
        Line {
            target: Target::System(AccountKind::WriteOff),
            amount: -amount,
        },
        Line {
            target: Target::Overdraft,
            amount,
        },
    ]
}

/// The postings of a lot's expiry: its remainder leaves the lot for the EXPIRED account.
pub fn expiry_lines(lot_id: &str, remaining: Decimal) -> Vec<Line> {
    vec![
        Line {
            target: Target::Lot(lot_id.to_string()),
            amount: -remaining,
        },
        Line {
            target: Target::System(AccountKind::Expired),
            amount: remaining,
        },
    ]
}

/// The double-entry rule: a transaction has at least two postings, none zero, summing to zero.
pub fn check_balanced(lines: &[Line]) -> Result<(), Error> {
    if lines.len() < 2 || lines.iter().any(|l| l.amount.is_zero()) {
        return Err(Error::Internal(format!("malformed transaction: {lines:?}")));
    }
    let sum: Decimal = lines.iter().map(|l| l.amount).sum();
    if !sum.is_zero() {
        return Err(Error::Internal(format!(
            "unbalanced transaction (sum {sum}): {lines:?}"
        )));
    }
    Ok(())
}

/// The wallet's running balance after each line (`None` for system-side lines), from `start`.
pub fn running_balances(start: Decimal, lines: &[Line]) -> Vec<Option<Decimal>> {
    let mut balance = start;
    lines
        .iter()
        .map(|l| {
            if l.target.is_wallet_side() {
                balance += l.amount;
                Some(balance)
            } else {
                None
            }
        })
        .collect()
}

/// The net change of what the wallet holds for its holds made by `lines`.
pub fn held_delta(lines: &[Line]) -> Decimal {
    lines
        .iter()
        .filter(|l| l.target == Target::Hold)
        .map(|l| l.amount)
        .sum()
}

/// The wallet's overdraft balance (zero or negative), derived from what the operation already
/// read under the wallet lock rather than summed over the overdraft account's whole history:
/// `balance = Σ lot remainders + overdraft + held`, so `overdraft = balance − held − Σ remainders`
/// (`lots`: every lot of the wallet with something left). Reconcile proves the three projections
/// against the postings; a positive result means they disagree, and the operation stops.
pub fn derived_overdraft(balance: Decimal, held: Decimal, lots: &[LotView]) -> Result<Decimal, Error> {
    let overdraft = balance - held - lots.iter().map(|l| l.remaining).sum::<Decimal>();
    if overdraft > Decimal::ZERO {
        return Err(Error::Internal(format!(
            "wallet projections disagree: balance {balance}, held {held}, lots {:?}",
            lots.iter().map(|l| l.remaining).collect::<Vec<_>>()
        )));
    }
    Ok(overdraft)
}

/// The net change of the wallet's balance made by `lines`.
pub fn wallet_delta(lines: &[Line]) -> Decimal {
    lines
        .iter()
        .filter(|l| l.target.is_wallet_side())
        .map(|l| l.amount)
        .sum()
}

/// Low-balance threshold state after a change: `Some(true)` when the balance crossed below the
/// threshold (emit one event), `Some(false)` when it went back to or above it (re-armed, no
/// event), `None` when nothing changed. `below` is the stored state before the change.
pub fn threshold_transition(threshold: Option<Decimal>, below: bool, new_balance: Decimal) -> Option<bool> {
    let threshold = threshold?;
    let now_below = new_balance < threshold;
    (now_below != below).then_some(now_below)
}

#[cfg(test)]
mod tests;
