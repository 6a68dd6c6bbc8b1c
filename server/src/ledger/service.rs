//! Money operations, each one database transaction: create a wallet, top up, grant, charge,
//! adjust, and the expiry sweep.
//!
//! Every operation locks its one wallet row first (`SELECT … FOR UPDATE`), so the operations on a
//! wallet run one after another and none loses another's update; a sweep takes one wallet per
//! transaction. Deadlocks (1213) and lock-wait timeouts (1205) are retried a bounded number of
//! times. Postings, the lots' and wallet's projections and the outbox rows are written in the same
//! transaction; nothing is published here (the outbox tailer publishes after commit).

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::result::Error as DieselError;
use rust_decimal::Decimal;

use super::{
    AccountKind, Cause, Line, LotSource, LotView, Policy, Target, WalletEventKind, WalletPolicy, allocate,
    check_balanced, credit_lines, debit_lines, derived_overdraft, drawable, expiry_lines, held_delta,
    outbox::WalletEvent, parse_idempotency_key, parse_positive_amount, parse_signed_amount, parse_text, parse_unit,
    request_hash, running_balances, threshold_transition, wallet_delta, write_off_lines,
};
use crate::{
    credit_units::{self, parse_money_rate},
    currency::Currency,
    customers::{self, parse_external_id},
    db::{self, TxFailure},
    error::{Error, ErrorCode, Result},
    ids,
    money::{DecimalLimits, canonical, parse_decimal},
    store::{
        Conn,
        ledger::{self as store, AccountRow, LotRow, NewOutbox, NewPosting, TransactionRow, WalletRow},
        now as db_now,
    },
};

pub const WALLET_ID_PREFIX: &str = "wal";
pub const ACCOUNT_ID_PREFIX: &str = "acc";
pub const TRANSACTION_ID_PREFIX: &str = "txn";
pub const LOT_ID_PREFIX: &str = "lot";
/// The actor of transactions the server makes by itself (the expiry sweep).
pub const SYSTEM_ACTOR: &str = "system";

/// A duplicate idempotency key inserted concurrently is settled by running again, which then
/// finds the first one; deadlocks and lock-wait timeouts are retried by
/// [`db::transaction_with_retry!`] itself.
pub fn retryable(e: &DieselError) -> bool {
    db::is_unique_violation(e, "uq_ledger_transactions_idempotency")
}

// ---- wallets

/// What `createWallet` takes, before validation.
#[derive(Debug, Clone, Default)]
pub struct WalletInput {
    pub customer_external_id: String,
    pub currency: String,
    pub rate_to_money: Option<String>,
    pub money_currency: Option<String>,
    pub policy: Option<WalletPolicy>,
    pub credit_limit: Option<String>,
    pub low_balance_threshold: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct WalletSettings {
    customer_external_id: String,
    currency: String,
    rate_to_money: Option<Decimal>,
    money_currency: Option<String>,
    policy: WalletPolicy,
    credit_limit: Decimal,
    low_balance_threshold: Option<Decimal>,
}

impl WalletInput {
    fn validate(&self) -> Result<WalletSettings> {
        let currency = parse_unit("currency", &self.currency)?;
        let money_rate = parse_money_rate(self.rate_to_money.as_deref(), self.money_currency.as_deref())?;
        let (rate_to_money, money_currency) = match money_rate {
            Some(r) => (Some(r.rate), Some(r.currency.code().to_string())),
            None => (None, None),
        };
        let policy = self.policy.unwrap_or(WalletPolicy::Reject);
        let credit_limit = match self.credit_limit.as_deref() {
            None => Decimal::ZERO,
            Some(text) => {
                let limit = parse_decimal("creditLimit", text, DecimalLimits::MONEY)?;
                if limit < Decimal::ZERO {
                    return Err(Error::invalid("creditLimit", "must not be negative"));
                }
                limit
            }
        };
        if policy == WalletPolicy::Reject && !credit_limit.is_zero() {
            return Err(Error::invalid(
                "creditLimit",
                "only a wallet with policy ALLOW_UNTIL_LIMIT has a credit limit",
            ));
        }
        let low_balance_threshold = self
            .low_balance_threshold
            .as_deref()
            .map(|t| parse_decimal("lowBalanceThreshold", t, DecimalLimits::MONEY))
            .transpose()?;
        Ok(WalletSettings {
            customer_external_id: parse_external_id("customerExternalId", &self.customer_external_id)?,
            currency,
            rate_to_money,
            money_currency,
            policy,
            credit_limit,
            low_balance_threshold,
        })
    }
}

impl WalletRow {
    pub fn policy(&self) -> Result<WalletPolicy> {
        self.policy.parse()
    }

    fn settings(&self) -> Result<WalletSettings> {
        Ok(WalletSettings {
            customer_external_id: self.customer_external_id.clone(),
            currency: self.currency.clone(),
            rate_to_money: self.rate_to_money.map(|d| d.normalize()),
            money_currency: self.money_currency.clone(),
            policy: self.policy()?,
            credit_limit: self.credit_limit.normalize(),
            low_balance_threshold: self.low_balance_threshold.map(|d| d.normalize()),
        })
    }
}

/// The largest conversion rate: a balance below 10^16 times it still fits a `Decimal`.
pub const MAX_RATE_TO_MONEY: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The largest wallet balance (either sign) the `DECIMAL(28, 12)` columns keep: 16 integer digits.
pub(crate) const MAX_BALANCE: Decimal = Decimal::from_parts(1_874_919_424, 2_328_306, 0, false, 0);

/// Creates a customer's wallet in one unit (creating the customer implicitly when needed). One
/// wallet per customer and unit: creating it again with the same settings returns it (a replay,
/// `false`), with other settings is a `WALLET_EXISTS` conflict.
///
/// The unit must be an ISO 4217 currency or a credit unit the project declared (`currency` input
/// error otherwise); the credit limit and threshold may not have more decimal places than the
/// unit's minor units. A credit unit's declared money rate is the wallet's unless the input names
/// its own `rateToMoney` and `moneyCurrency`.
pub async fn create_wallet(conn: &mut Conn, project_id: &str, input: &WalletInput) -> Result<(WalletRow, bool)> {
    let mut settings = input.validate()?;
    // Units are insert-only, so reading one outside the transaction below cannot go stale.
    let (unit, declared_rate) = credit_units::resolve_unit(conn, project_id, "currency", &settings.currency).await?;
    settings.currency = unit.code().to_string();
    if settings.rate_to_money.is_none()
        && let Some(rate) = declared_rate
    {
        settings.rate_to_money = Some(rate.rate);
        settings.money_currency = Some(rate.currency.code().to_string());
    }
    unit.check_precision("creditLimit", settings.credit_limit)?;
    if let Some(t) = settings.low_balance_threshold {
        unit.check_precision("lowBalanceThreshold", t)?;
    }
    db::transaction_with_retry!(conn, retryable, |c| create_wallet_once(c, project_id, &settings).await)
}

async fn create_wallet_once(
    conn: &mut Conn,
    project_id: &str,
    settings: &WalletSettings,
) -> Result<(WalletRow, bool), TxFailure> {
    let project_id = project_id.to_string();
    customers::ensure_exist(conn, &project_id, &[settings.customer_external_id.as_str()]).await?;
    // A locking read: when a concurrent request created the customer after this
    // transaction's snapshot, the insert above skipped it and a plain read would not see it.
    let customer = crate::store::customers::lock_by_external_id(conn, &project_id, &settings.customer_external_id)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let at = db_now();
    let id = ids::new_id(WALLET_ID_PREFIX);
    let overdraft = AccountRow {
        id: ids::new_id(ACCOUNT_ID_PREFIX),
        project_id: project_id.clone(),
        currency: settings.currency.clone(),
        kind: AccountKind::Overdraft.as_str().into(),
        code: format!("wallet:{id}:overdraft"),
        wallet_id: Some(id.clone()),
        created_at: at,
    };
    let below = settings.low_balance_threshold.is_some_and(|t| Decimal::ZERO < t);
    let row = WalletRow {
        id: id.clone(),
        project_id: project_id.clone(),
        customer_id: customer.id,
        customer_external_id: settings.customer_external_id.clone(),
        currency: settings.currency.clone(),
        rate_to_money: settings.rate_to_money,
        money_currency: settings.money_currency.clone(),
        policy: settings.policy.as_str().into(),
        credit_limit: settings.credit_limit,
        low_balance_threshold: settings.low_balance_threshold,
        below_threshold: below,
        balance: Decimal::ZERO,
        held: Decimal::ZERO,
        event_seq: 0,
        overdraft_account_id: overdraft.id.clone(),
        created_at: at,
        updated_at: at,
    };
    if store::insert_wallet(conn, &row).await? == 1 {
        store::insert_account_missing(conn, &overdraft).await?;
        return Ok((row, true));
    }
    // A locking read: a wallet another request just created is newer than this snapshot.
    let existing =
        store::lock_wallet_by_customer(conn, &project_id, &settings.customer_external_id, &settings.currency)
            .await?
            .ok_or_else(|| Error::Internal("wallet vanished after insert".into()))?;
    if existing.settings()? == *settings {
        Ok((existing, false))
    } else {
        Err(TxFailure::App(Error::conflict(
            ErrorCode::WalletExists,
            format!(
                "customer '{}' already has a {} wallet with different settings",
                settings.customer_external_id, settings.currency
            ),
        )))
    }
}

/// What `updateWallet` may change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct WalletChanges {
    pub policy: Option<WalletPolicy>,
    pub credit_limit: Option<String>,
    /// `Some(None)` removes the threshold.
    pub low_balance_threshold: Option<Option<String>>,
}

/// Changes a wallet's policy, credit limit or low-balance threshold, under the wallet lock. A new
/// policy must hold for the current balance (a wallet 30 below zero cannot get a limit of 20). A
/// new threshold re-evaluates whether the wallet is below it without sending an event: only a
/// balance change crosses a threshold.
pub async fn update_wallet(
    conn: &mut Conn,
    project_id: &str,
    wallet_id: &str,
    changes: &WalletChanges,
) -> Result<WalletRow> {
    if !ids::looks_like(WALLET_ID_PREFIX, wallet_id) {
        return Err(Error::NotFound("wallet"));
    }
    let policy_text = changes.policy;
    let credit_limit = changes
        .credit_limit
        .as_deref()
        .map(|text| {
            let limit = parse_decimal("creditLimit", text, DecimalLimits::MONEY)?;
            if limit < Decimal::ZERO {
                return Err(Error::invalid("creditLimit", "must not be negative"));
            }
            Ok(limit)
        })
        .transpose()?;
    let threshold = match &changes.low_balance_threshold {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => Some(Some(parse_decimal("lowBalanceThreshold", text, DecimalLimits::MONEY)?)),
    };
    let project_id = project_id.to_string();
    let wallet_id = wallet_id.to_string();
    let row = db::transaction_with_retry!(conn, retryable, |c| {
        let mut wallet = store::lock_wallet(c, &project_id, &wallet_id)
            .await?
            .ok_or(Error::NotFound("wallet"))?;
        let unit = credit_units::stored_unit(c, &project_id, &wallet.currency).await?;
        if let Some(l) = credit_limit {
            unit.check_precision("creditLimit", l)?;
        }
        if let Some(Some(t)) = threshold {
            unit.check_precision("lowBalanceThreshold", t)?;
        }
        let policy = policy_text.unwrap_or(wallet.policy()?);
        let limit = match (policy, credit_limit) {
            (WalletPolicy::Reject, Some(l)) if !l.is_zero() => {
                return Err(Error::invalid(
                    "creditLimit",
                    "only a wallet with policy ALLOW_UNTIL_LIMIT has a credit limit",
                )
                .into());
            }
            (WalletPolicy::Reject, _) => Decimal::ZERO,
            (WalletPolicy::AllowUntilLimit, Some(l)) => l,
            (WalletPolicy::AllowUntilLimit, None) => wallet.credit_limit,
        };
        // What is available (the balance less what holds reserve) is what the overdraft reaches:
        // a hold drawn into the overdraft keeps it drawn.
        let available = wallet.balance - wallet.held;
        if available < -limit {
            return Err(Error::invalid(
                if credit_limit.is_some() {
                    "creditLimit"
                } else {
                    "policy"
                },
                format!("the wallet is already {} below zero", (-available).normalize()),
            )
            .into());
        }
        let before = wallet.clone();
        if let Some(t) = threshold {
            wallet.low_balance_threshold = t;
        }
        wallet.below_threshold = wallet.low_balance_threshold.is_some_and(|t| wallet.balance < t);
        wallet.policy = policy.as_str().into();
        wallet.credit_limit = limit;
        if wallet == before {
            // Nothing changes, so nothing is written: `updatedAt` keeps meaning "last changed".
            return Ok(wallet);
        }
        // Never backwards: transactions are stamped no earlier than the wallet's last change.
        wallet.updated_at = db_now().max(wallet.updated_at);
        store::update_wallet_settings(c, &wallet).await?;
        Ok(wallet)
    })?;
    Ok(row)
}

pub async fn find_wallet(conn: &mut Conn, project_id: &str, id: &str) -> Result<WalletRow> {
    if !ids::looks_like(WALLET_ID_PREFIX, id) {
        return Err(Error::NotFound("wallet"));
    }
    store::find_wallet(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("wallet"))
}

// ---- money operations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Charge,
    TopUp,
    Grant,
    Adjustment,
    /// Gives up (part of) what an overdrawn wallet owes.
    WriteOff,
}

impl OpKind {
    fn cause(self) -> Cause {
        match self {
            OpKind::Charge => Cause::Charge,
            OpKind::TopUp => Cause::TopUp,
            OpKind::Grant => Cause::Grant,
            OpKind::Adjustment => Cause::Adjustment,
            OpKind::WriteOff => Cause::WriteOff,
        }
    }
}

/// A money operation as a client sends it (GraphQL or HTTP), before validation. The wallet is
/// named by `wallet_id`, or by `customer_external_id` and `currency`.
#[derive(Debug, Clone, Default)]
pub struct MoneyRequest {
    pub wallet_id: Option<String>,
    pub customer_external_id: Option<String>,
    pub currency: Option<String>,
    pub amount: String,
    pub idempotency_key: String,
    /// The description; for adjustments, the required reason.
    pub description: Option<String>,
    pub expires_at: Option<NaiveDateTime>,
    pub priority: Option<i32>,
    pub corrects_transaction_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) enum WalletRef {
    Id(String),
    Customer { external_id: String, currency: String },
}

/// A validated money operation: every field a caller sent has been checked.
#[derive(Debug, Clone)]
pub struct Operation {
    pub(super) kind: OpKind,
    pub(super) wallet: WalletRef,
    pub(super) currency: Option<String>,
    pub(super) amount: Decimal,
    pub(super) idempotency_key: String,
    pub(super) description: Option<String>,
    expires_at: Option<NaiveDateTime>,
    priority: i32,
    corrects_transaction_id: Option<String>,
    pub(super) actor: String,
}

impl Operation {
    /// Checks a request's fields. Whether an expiry is in the past is decided when it runs, after
    /// the replay check: a retry of a grant whose expiry has passed since must still replay.
    pub fn parse(kind: OpKind, request: &MoneyRequest, actor: &str) -> Result<Operation> {
        let currency = request
            .currency
            .as_deref()
            .map(|c| parse_unit("currency", c))
            .transpose()?;
        let wallet = match (&request.wallet_id, &request.customer_external_id) {
            (Some(id), None) => WalletRef::Id(id.clone()),
            (None, Some(external_id)) => WalletRef::Customer {
                external_id: parse_external_id("customerExternalId", external_id)?,
                currency: currency.clone().ok_or_else(|| {
                    Error::invalid("currency", "required when the wallet is named by customerExternalId")
                })?,
            },
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "walletId",
                    "name the wallet by walletId or by customerExternalId, not both",
                ));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "walletId",
                    "is required (or customerExternalId and currency)",
                ));
            }
        };
        let amount = match kind {
            OpKind::Adjustment => parse_signed_amount("amount", &request.amount)?,
            _ => parse_positive_amount("amount", &request.amount)?,
        };
        let description = match kind {
            OpKind::Adjustment | OpKind::WriteOff => parse_text("reason", request.description.as_deref(), true)?,
            _ => parse_text("description", request.description.as_deref(), false)?,
        };
        let credit_lot = matches!(kind, OpKind::TopUp | OpKind::Grant);
        if !credit_lot && request.expires_at.is_some() {
            return Err(Error::invalid("expiresAt", "only top-ups and grants expire"));
        }
        let priority = request.priority.unwrap_or(0);
        if !(-1000..=1000).contains(&priority) {
            return Err(Error::invalid("priority", "must be between -1000 and 1000"));
        }
        if kind != OpKind::Adjustment && request.corrects_transaction_id.is_some() {
            return Err(Error::invalid(
                "correctsTransactionId",
                "only adjustments correct a transaction",
            ));
        }
        Ok(Operation {
            kind,
            wallet,
            currency,
            amount,
            idempotency_key: if actor == SYSTEM_ACTOR {
                crate::ids::parse_system_key("idempotencyKey", &request.idempotency_key)?
            } else {
                parse_idempotency_key("idempotencyKey", &request.idempotency_key)?
            },
            description,
            expires_at: request.expires_at,
            priority,
            corrects_transaction_id: request.corrects_transaction_id.clone(),
            actor: actor.to_string(),
        })
    }

    /// SHA-256 of what the operation does, on the wallet it resolved to: what a replay must match.
    pub(super) fn hash(&self, wallet_id: &str) -> Vec<u8> {
        let expires = self.expires_at.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        request_hash(&[
            self.kind.cause().as_str(),
            wallet_id,
            &canonical(self.amount),
            self.description.as_deref().unwrap_or(""),
            expires.as_deref().unwrap_or(""),
            &self.priority.to_string(),
            self.corrects_transaction_id.as_deref().unwrap_or(""),
        ])
    }
}

/// What a money operation answers: its transaction, the wallet as it is now, and whether this
/// was a replay of an earlier request with the same idempotency key (nothing new was posted).
#[derive(Debug, Clone)]
pub struct Posted {
    pub transaction: TransactionRow,
    pub wallet: WalletRow,
    pub replayed: bool,
    /// The wallet events the transaction wrote: publish them with
    /// [`outbox::publish_committed`](super::outbox::publish_committed) once it committed.
    pub events: Vec<super::outbox::WalletEvent>,
}

/// Runs a validated operation: one transaction, retried on deadlock.
pub async fn execute(conn: &mut Conn, project_id: &str, op: &Operation) -> Result<Posted> {
    let project_id = project_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| apply(c, &project_id, op, db_now()).await)
}

/// Runs a validated operation inside the caller's transaction: [`execute`] without the
/// transaction, for callers that commit a money operation together with their own rows. The
/// caller runs the whole transaction again on a transient error or a failure [`retryable`]
/// accepts ([`db::transaction_with_retry!`] with [`retryable`]). It may run after the caller's
/// own reads: the wallet's state (its row, lots, overdraft) is read with locking reads, which see
/// the latest commit rather than the snapshot the caller's first plain read fixed.
pub async fn apply(conn: &mut Conn, project_id: &str, op: &Operation, now: NaiveDateTime) -> Result<Posted, TxFailure> {
    // The wallet lock comes first, before any plain read: InnoDB fixes a transaction's snapshot at
    // its first plain read, so every plain read below sees all that committed before the lock.
    let mut wallet = match &op.wallet {
        WalletRef::Id(id) => {
            // Absent and another project's answer alike: NOT_FOUND.
            if !ids::looks_like(WALLET_ID_PREFIX, id) {
                return Err(Error::NotFound("wallet").into());
            }
            store::lock_wallet(conn, project_id, id)
                .await?
                .ok_or(Error::NotFound("wallet"))?
        }
        WalletRef::Customer { external_id, currency } => {
            store::lock_wallet_by_customer(conn, project_id, external_id, currency)
                .await?
                .ok_or(Error::NotFound("wallet"))?
        }
    };
    // The currency is checked before the replay: the request hash does not cover it, and a
    // request in the wrong currency must not be answered with an earlier one's result.
    if let Some(currency) = &op.currency
        && *currency != wallet.currency
    {
        return Err(Error::invalid(
            "currency",
            format!("the wallet holds {}, not {currency}", wallet.currency),
        )
        .into());
    }
    let hash = op.hash(&wallet.id);
    if let Some(existing) = store::find_transaction_by_key(conn, project_id, &op.idempotency_key).await? {
        if existing.request_hash.as_deref() == Some(hash.as_slice()) {
            return Ok(Posted {
                transaction: existing,
                wallet,
                replayed: true,
                events: Vec::new(),
            });
        }
        return Err(Error::conflict(
            ErrorCode::IdempotencyConflict,
            format!(
                "idempotency key '{}' was already used for a different request",
                op.idempotency_key
            ),
        )
        .into());
    }
    // After the replay check, like the expiry: a request that was stored stays answerable.
    let unit: Currency = credit_units::stored_unit(conn, project_id, &wallet.currency).await?;
    unit.check_precision("amount", op.amount)?;
    if let Some(at) = op.expires_at
        && at <= now
    {
        return Err(Error::invalid("expiresAt", "must be in the future").into());
    }
    if let Some(corrected) = &op.corrects_transaction_id {
        let found = store::find_transaction(conn, project_id, corrected).await?;
        if found.is_none_or(|t| t.wallet_id.as_deref() != Some(wallet.id.as_str())) {
            return Err(Error::invalid("correctsTransactionId", "no such transaction on this wallet").into());
        }
    }

    // Lots whose expiry passed are expired first (their own transactions), so a charge never
    // draws from them and the balance it sees is the one after expiry.
    let mut outbox = Vec::new();
    expire_wallet_lots(conn, &mut wallet, now, &mut outbox).await?;

    let lots = store::lock_open_lots(conn, &wallet.id).await?;
    let overdraft_balance = derived_overdraft(
        wallet.balance,
        wallet.held,
        &lots.iter().map(lot_view).collect::<Vec<_>>(),
    )?;
    let policy = Policy {
        policy: wallet.policy()?,
        credit_limit: wallet.credit_limit,
    };
    let debit = |amount: Decimal, counter: AccountKind| -> Result<Vec<Line>> {
        let views: Vec<LotView> = lots.iter().map(lot_view).collect();
        Ok(debit_lines(
            &allocate(amount, &drawable(&views, now), overdraft_balance, policy)?,
            counter,
        ))
    };
    let (lines, source) = match op.kind {
        OpKind::Charge => (debit(op.amount, AccountKind::Revenue)?, None),
        OpKind::TopUp => {
            let (lines, _) = credit_lines(op.amount, overdraft_balance, AccountKind::PaymentsClearing);
            (lines, Some(LotSource::TopUp))
        }
        OpKind::Grant => {
            let (lines, _) = credit_lines(op.amount, overdraft_balance, AccountKind::Promotional);
            (lines, Some(LotSource::Grant))
        }
        OpKind::Adjustment if op.amount > Decimal::ZERO => {
            let (lines, _) = credit_lines(op.amount, overdraft_balance, AccountKind::Adjustments);
            (lines, Some(LotSource::Adjustment))
        }
        OpKind::Adjustment => (debit(-op.amount, AccountKind::Adjustments)?, None),
        OpKind::WriteOff => {
            let owed = -overdraft_balance;
            if op.amount > owed {
                return Err(Error::invalid("amount", format!("the wallet owes {}", owed.normalize())).into());
            }
            (write_off_lines(op.amount), None)
        }
    };
    let transaction = post(
        conn,
        &mut wallet,
        Posting {
            cause: op.kind.cause(),
            cause_id: None,
            lines,
            lots: &lots,
            new_lot: source.map(|source| NewLot {
                source,
                priority: op.priority,
                expires_at: op.expires_at,
            }),
            idempotency_key: Some(op.idempotency_key.clone()),
            request_hash: Some(hash),
            description: op.description.clone(),
            actor: op.actor.clone(),
            corrects_transaction_id: op.corrects_transaction_id.clone(),
            amount: op.amount,
        },
        now,
        &mut outbox,
    )
    .await?;
    let events = super::outbox::write(conn, outbox).await?;
    Ok(Posted {
        transaction,
        wallet,
        replayed: false,
        events,
    })
}

pub(super) fn lot_view(lot: &LotRow) -> LotView {
    LotView {
        id: lot.id.clone(),
        remaining: lot.remaining,
        priority: lot.priority,
        expires_at: lot.expires_at,
        created_at: lot.created_at,
    }
}

pub(super) struct NewLot {
    pub(super) source: LotSource,
    pub(super) priority: i32,
    pub(super) expires_at: Option<NaiveDateTime>,
}

/// One ledger transaction to write.
pub(super) struct Posting<'a> {
    pub(super) cause: Cause,
    pub(super) cause_id: Option<String>,
    pub(super) lines: Vec<Line>,
    /// The wallet's lots the lines may name.
    pub(super) lots: &'a [LotRow],
    pub(super) new_lot: Option<NewLot>,
    pub(super) idempotency_key: Option<String>,
    pub(super) request_hash: Option<Vec<u8>>,
    pub(super) description: Option<String>,
    pub(super) actor: String,
    pub(super) corrects_transaction_id: Option<String>,
    /// The operation's amount as requested (signed for adjustments).
    pub(super) amount: Decimal,
}

/// Writes one balanced transaction on `wallet`: the transaction row, its postings with the
/// running balance, the lots' remainders, the wallet's balance and threshold state, and the
/// outbox rows announcing them (appended to `outbox`, written by the caller).
///
/// Three steps, so that a group of charges (`ledger::hot`) shares them: the accounts the lines
/// name are looked up ([`line_accounts`]), the rows are computed without I/O ([`prepare`]), and
/// written ([`Writes`]).
pub(super) async fn post(
    conn: &mut Conn,
    wallet: &mut WalletRow,
    p: Posting<'_>,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<TransactionRow, TxFailure> {
    let accounts = line_accounts(conn, wallet, &p.lines, now).await?;
    let prepared = prepare(wallet, p, &accounts, now)?;
    let transaction = prepared.transaction.clone();
    let mut writes = Writes::default();
    outbox.extend(writes.add(prepared, wallet));
    writes.write(conn).await?;
    Ok(transaction)
}

/// The accounts outside the wallet's lots and overdraft that `lines` name, by target: system
/// accounts, the customer's receivable, the wallet's HOLD account (each made on first use).
pub(super) async fn line_accounts(
    conn: &mut Conn,
    wallet: &WalletRow,
    lines: &[Line],
    now: NaiveDateTime,
) -> Result<Vec<(Target, String)>, TxFailure> {
    let mut accounts: Vec<(Target, String)> = Vec::new();
    for line in lines {
        if accounts.iter().any(|(t, _)| *t == line.target) {
            continue;
        }
        let id = match &line.target {
            Target::Lot(_) | Target::NewLot | Target::Overdraft => continue,
            Target::System(kind) => system_account(conn, &wallet.project_id, &wallet.currency, *kind, now).await?,
            Target::Receivable => {
                receivable_account(conn, &wallet.project_id, &wallet.currency, &wallet.customer_id, now).await?
            }
            Target::Hold => hold_account(conn, wallet, now).await?,
        };
        accounts.push((line.target.clone(), id));
    }
    Ok(accounts)
}

/// A lot's remainder after a transaction, or its expiry.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LotChange {
    Remaining(Decimal),
    Expired(NaiveDateTime),
}

/// One ledger transaction's rows, computed by [`prepare`] and not yet written.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(super) transaction: TransactionRow,
    postings: Vec<NewPosting>,
    new_lot: Option<(AccountRow, LotRow)>,
    /// Each lot the transaction draws from or expires, once.
    pub(super) lot_changes: Vec<(String, LotChange)>,
    outbox: Vec<NewOutbox>,
}

/// Computes one balanced transaction on `wallet` without I/O: its transaction row, postings with
/// the running balance, the lots' new remainders, the wallet's new balance, threshold state and
/// event sequence (applied to `wallet`), and the outbox rows announcing it. `accounts` holds the
/// ids of the targets that are not the wallet's lots or overdraft ([`line_accounts`]). On an
/// error `wallet` is unchanged.
pub(super) fn prepare(
    wallet: &mut WalletRow,
    p: Posting<'_>,
    accounts: &[(Target, String)],
    now: NaiveDateTime,
) -> Result<Prepared, Error> {
    check_balanced(&p.lines)?;
    // A wallet's transactions are stamped in the order they commit (the lock orders them; a
    // clock read before the lock may be older than the last commit's), so "the balance at T" is
    // the balance after the last transaction stamped no later than T.
    let now = now.max(wallet.updated_at);
    let transaction_id = ids::new_id(TRANSACTION_ID_PREFIX);
    let new_lot_id = ids::new_id(LOT_ID_PREFIX);
    let balances = running_balances(wallet.balance, &p.lines);
    let new_balance = wallet.balance + wallet_delta(&p.lines);
    let new_held = wallet.held + held_delta(&p.lines);
    if new_held < Decimal::ZERO {
        return Err(Error::Internal(format!("wallet {} would hold {new_held}", wallet.id)));
    }
    if new_balance.abs() >= MAX_BALANCE {
        return Err(Error::invalid(
            "amount",
            "would take the wallet's balance to 10^16 or beyond, more than an amount column keeps",
        ));
    }
    let account_of = |target: &Target| {
        accounts
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| Error::Internal(format!("no account looked up for {target:?}")))
    };

    let mut postings = Vec::with_capacity(p.lines.len());
    let mut new_lot = None;
    let mut lot_changes: Vec<(String, LotChange)> = Vec::new();
    for (line, balance_after) in p.lines.iter().zip(&balances) {
        let (account_id, lot_id) = match &line.target {
            Target::Lot(lot_id) => {
                let lot = p
                    .lots
                    .iter()
                    .find(|l| &l.id == lot_id)
                    .ok_or_else(|| Error::Internal(format!("lot {lot_id} is not the wallet's")))?;
                if !lot_changes.iter().any(|(id, _)| id == lot_id) {
                    let change = if p.cause == Cause::Expiry {
                        LotChange::Expired(now)
                    } else {
                        let drawn: Decimal = p
                            .lines
                            .iter()
                            .filter(|l| matches!(&l.target, Target::Lot(id) if id == lot_id))
                            .map(|l| l.amount)
                            .sum();
                        let remaining = lot.remaining + drawn;
                        if remaining < Decimal::ZERO {
                            return Err(Error::Internal(format!(
                                "lot {lot_id} would go below zero ({remaining})"
                            )));
                        }
                        LotChange::Remaining(remaining)
                    };
                    lot_changes.push((lot_id.clone(), change));
                }
                (lot.account_id.clone(), Some(lot_id.clone()))
            }
            Target::NewLot => {
                let lot = p
                    .new_lot
                    .as_ref()
                    .ok_or_else(|| Error::Internal("a new lot without its terms".into()))?;
                let account = AccountRow {
                    id: ids::new_id(ACCOUNT_ID_PREFIX),
                    project_id: wallet.project_id.clone(),
                    currency: wallet.currency.clone(),
                    kind: AccountKind::Lot.as_str().into(),
                    code: format!("lot:{new_lot_id}"),
                    wallet_id: Some(wallet.id.clone()),
                    created_at: now,
                };
                let row = LotRow {
                    id: new_lot_id.clone(),
                    project_id: wallet.project_id.clone(),
                    wallet_id: wallet.id.clone(),
                    account_id: account.id.clone(),
                    source: lot.source.as_str().into(),
                    original_amount: line.amount,
                    remaining: line.amount,
                    priority: lot.priority,
                    expires_at: lot.expires_at,
                    expired_at: None,
                    transaction_id: transaction_id.clone(),
                    created_at: now,
                };
                let account_id = account.id.clone();
                new_lot = Some((account, row));
                (account_id, Some(new_lot_id.clone()))
            }
            Target::Overdraft => (wallet.overdraft_account_id.clone(), None),
            target => (account_of(target)?, None),
        };
        postings.push(NewPosting {
            transaction_id: transaction_id.clone(),
            project_id: wallet.project_id.clone(),
            account_id,
            wallet_id: line.target.is_wallet_side().then(|| wallet.id.clone()),
            lot_id,
            currency: wallet.currency.clone(),
            amount: line.amount,
            wallet_balance_after: *balance_after,
            cause: p.cause.as_str().into(),
            created_at: now,
        });
    }

    // Every event of the wallet takes the next number of its sequence (under the wallet lock).
    let crossed = threshold_transition(wallet.low_balance_threshold, wallet.below_threshold, new_balance);
    let first_seq = wallet.event_seq + 1;
    let last_seq = wallet.event_seq + if crossed == Some(true) { 2 } else { 1 };
    let transaction = TransactionRow {
        id: transaction_id.clone(),
        project_id: wallet.project_id.clone(),
        wallet_id: Some(wallet.id.clone()),
        cause: p.cause.as_str().into(),
        cause_id: p.cause_id.or_else(|| new_lot.as_ref().map(|(_, l)| l.id.clone())),
        currency: wallet.currency.clone(),
        amount: p.amount,
        idempotency_key: p.idempotency_key,
        request_hash: p.request_hash,
        description: p.description,
        actor: p.actor,
        corrects_transaction_id: p.corrects_transaction_id,
        wallet_balance_after: Some(new_balance),
        wallet_seq: Some(first_seq),
        created_at: now,
    };

    let delta = new_balance - wallet.balance;
    let below = crossed.unwrap_or(wallet.below_threshold);
    let event = |kind: WalletEventKind, wallet_seq: u64| WalletEvent {
        outbox_id: 0,
        kind,
        project_id: wallet.project_id.clone(),
        wallet_id: wallet.id.clone(),
        customer_id: wallet.customer_id.clone(),
        wallet_seq,
        customer_seq: 0,
        local: false,
        customer_external_id: wallet.customer_external_id.clone(),
        currency: wallet.currency.clone(),
        balance: new_balance.normalize(),
        delta: delta.normalize(),
        cause: p.cause,
        transaction_id: transaction_id.clone(),
        threshold: wallet.low_balance_threshold.map(|t| t.normalize()),
        at: now,
    };
    let mut outbox = vec![event(WalletEventKind::BalanceChanged, first_seq).to_outbox()?];
    if crossed == Some(true) {
        outbox.push(event(WalletEventKind::LowBalance, last_seq).to_outbox()?);
    }

    wallet.balance = new_balance;
    wallet.held = new_held;
    wallet.below_threshold = below;
    wallet.event_seq = last_seq;
    wallet.updated_at = now;
    Ok(Prepared {
        transaction,
        postings,
        new_lot,
        lot_changes,
        outbox,
    })
}

/// The rows of one or more prepared transactions, written together: multi-row inserts of the
/// transactions and postings, one update per touched lot (its last state) and per touched wallet
/// (its last state).
#[derive(Debug, Default)]
pub(super) struct Writes {
    transactions: Vec<TransactionRow>,
    postings: Vec<NewPosting>,
    accounts: Vec<AccountRow>,
    lots: Vec<LotRow>,
    lot_changes: Vec<(String, LotChange)>,
    wallets: Vec<WalletRow>,
}

impl Writes {
    /// Adds a prepared transaction on `wallet` (as it is after it); answers its outbox rows,
    /// which the caller writes with [`outbox::write`](super::outbox::write) as its last step.
    pub(super) fn add(&mut self, prepared: Prepared, wallet: &WalletRow) -> Vec<NewOutbox> {
        self.transactions.push(prepared.transaction);
        self.postings.extend(prepared.postings);
        if let Some((account, lot)) = prepared.new_lot {
            self.accounts.push(account);
            self.lots.push(lot);
        }
        for (id, change) in prepared.lot_changes {
            match self.lot_changes.iter_mut().find(|(l, _)| *l == id) {
                Some((_, last)) => *last = change,
                None => self.lot_changes.push((id, change)),
            }
        }
        match self.wallets.iter_mut().find(|w| w.id == wallet.id) {
            Some(last) => *last = wallet.clone(),
            None => self.wallets.push(wallet.clone()),
        }
        prepared.outbox
    }

    pub(super) async fn write(self, conn: &mut Conn) -> Result<(), TxFailure> {
        for account in &self.accounts {
            store::insert_account_missing(conn, account).await?;
        }
        store::insert_transactions(conn, &self.transactions).await?;
        store::insert_postings(conn, &self.postings).await?;
        for lot in &self.lots {
            store::insert_lot(conn, lot).await?;
        }
        let mut remaining = Vec::new();
        for (id, change) in &self.lot_changes {
            match change {
                LotChange::Remaining(r) => remaining.push((id.as_str(), *r)),
                LotChange::Expired(at) => {
                    store::mark_lot_expired(conn, id, *at).await?;
                }
            }
        }
        store::set_lots_remaining(conn, &remaining).await?;
        store::update_wallet_balances(conn, &self.wallets).await?;
        Ok(())
    }
}

/// The id of the wallet's HOLD account (`wallet:<id>:holds`), made on first use. Wallet-side: its
/// postings carry the wallet, and its balance is what the wallet's active holds reserve.
pub(super) async fn hold_account(conn: &mut Conn, wallet: &WalletRow, now: NaiveDateTime) -> Result<String, TxFailure> {
    let code = format!("wallet:{}:holds", wallet.id);
    if let Some(account) = store::find_account(conn, &wallet.project_id, &wallet.currency, &code).await? {
        return Ok(account.id);
    }
    let digest = request_hash(&[&wallet.project_id, &wallet.currency, &code]);
    let id = format!("{ACCOUNT_ID_PREFIX}_hld_{}", &hex::encode(digest)[..32]);
    store::insert_account_missing(
        conn,
        &AccountRow {
            id: id.clone(),
            project_id: wallet.project_id.clone(),
            currency: wallet.currency.clone(),
            kind: AccountKind::Hold.as_str().into(),
            code,
            wallet_id: Some(wallet.id.clone()),
            created_at: now,
        },
    )
    .await?;
    Ok(id)
}

/// The id of a system account of a project in one unit.
async fn system_account(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    kind: AccountKind,
    now: NaiveDateTime,
) -> Result<String, TxFailure> {
    derived_account(conn, project_id, currency, kind, system_code(kind), now).await
}

fn system_code(kind: AccountKind) -> String {
    format!("system:{}", kind.as_str())
}

fn receivable_code(customer_id: &str) -> String {
    format!("customer:{customer_id}:receivable")
}

/// The id of a customer's receivable account in one unit.
async fn receivable_account(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    customer_id: &str,
    now: NaiveDateTime,
) -> Result<String, TxFailure> {
    derived_account(
        conn,
        project_id,
        currency,
        AccountKind::Receivable,
        receivable_code(customer_id),
        now,
    )
    .await
}

/// The id of an account that is not a wallet's, made on first use. Its id is derived from what it
/// is, so concurrent first uses agree on it without reading each other's uncommitted rows.
async fn derived_account(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    kind: AccountKind,
    code: String,
    now: NaiveDateTime,
) -> Result<String, TxFailure> {
    if let Some(account) = store::find_account(conn, project_id, currency, &code).await? {
        return Ok(account.id);
    }
    insert_derived_account(conn, project_id, currency, kind, code, now).await
}

/// [`derived_account`] for several accounts of one unit, read with one query: an invoice's
/// postings need up to three (its customer's receivable, revenue, tax payable), and a billing
/// run posts thousands of invoices. Answers their ids in the order asked.
async fn derived_accounts(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    wanted: Vec<(AccountKind, String)>,
    now: NaiveDateTime,
) -> Result<Vec<String>, TxFailure> {
    let codes: Vec<&str> = wanted.iter().map(|(_, code)| code.as_str()).collect();
    let mut found: HashMap<String, String> = store::find_accounts(conn, project_id, currency, &codes)
        .await?
        .into_iter()
        .map(|a| (a.code, a.id))
        .collect();
    let mut ids = Vec::with_capacity(wanted.len());
    for (kind, code) in wanted {
        ids.push(match found.remove(&code) {
            Some(id) => id,
            None => insert_derived_account(conn, project_id, currency, kind, code, now).await?,
        });
    }
    Ok(ids)
}

/// Makes a derived account (unless a concurrent first use made it) and answers its id.
async fn insert_derived_account(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    kind: AccountKind,
    code: String,
    now: NaiveDateTime,
) -> Result<String, TxFailure> {
    let digest = request_hash(&[project_id, currency, &code]);
    let id = format!("{ACCOUNT_ID_PREFIX}_sys_{}", &hex::encode(digest)[..32]);
    store::insert_account_missing(
        conn,
        &AccountRow {
            id: id.clone(),
            project_id: project_id.to_string(),
            currency: currency.to_string(),
            kind: kind.as_str().into(),
            code,
            wallet_id: None,
            created_at: now,
        },
    )
    .await?;
    Ok(id)
}

/// Posts one EXPIRY transaction per lot of the (locked) wallet whose expiry passed at `now`;
/// lots with nothing left are only marked expired.
pub(super) async fn expire_wallet_lots(
    conn: &mut Conn,
    wallet: &mut WalletRow,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<Vec<TransactionRow>, TxFailure> {
    let lots = store::expired_lots(conn, &wallet.id, now).await?;
    expire_lots(conn, wallet, lots, now, outbox).await
}

/// [`expire_wallet_lots`] for lots already read (locked) by the caller: `lots` are the wallet's
/// unexpired lots whose expiry passed at `now`.
pub(super) async fn expire_lots(
    conn: &mut Conn,
    wallet: &mut WalletRow,
    lots: Vec<LotRow>,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<Vec<TransactionRow>, TxFailure> {
    let mut posted = Vec::new();
    for lot in lots {
        if lot.remaining.is_zero() {
            store::mark_lot_expired(conn, &lot.id, now).await?;
            continue;
        }
        let transaction = post(
            conn,
            wallet,
            Posting {
                cause: Cause::Expiry,
                cause_id: Some(lot.id.clone()),
                lines: expiry_lines(&lot.id, lot.remaining),
                lots: std::slice::from_ref(&lot),
                new_lot: None,
                idempotency_key: None,
                request_hash: None,
                description: Some(format!("expiry of lot {}", lot.id)),
                actor: SYSTEM_ACTOR.into(),
                corrects_transaction_id: None,
                amount: lot.remaining,
            },
            now,
            outbox,
        )
        .await?;
        posted.push(transaction);
    }
    Ok(posted)
}

/// The expiry sweep: for every wallet (of one project, or all) with lots whose expiry passed at
/// `now`, one database transaction that locks the wallet and posts an EXPIRY transaction per
/// lot remainder; then, for every active hold whose expiry passed, one transaction that releases
/// it (HOLD_RELEASE, the hold marked EXPIRED). Wallets are taken in id order. Returns the
/// transactions posted.
pub async fn sweep_expired(
    conn: &mut Conn,
    project_id: Option<&str>,
    now: NaiveDateTime,
) -> Result<Vec<TransactionRow>> {
    let scope = project_id;
    let mut posted = Vec::new();
    for (project_id, wallet_id) in store::wallets_with_expired_lots(conn, scope, now).await? {
        // Each wallet is its own attempt: one that fails (and is retried at the next sweep) does
        // not keep the others' lots from expiring.
        let done: Result<Vec<TransactionRow>> = db::transaction_with_retry!(conn, retryable, |c| {
            let Some(mut wallet) = store::lock_wallet(c, &project_id, &wallet_id).await? else {
                return Ok(Vec::new());
            };
            let mut outbox = Vec::new();
            let done = expire_wallet_lots(c, &mut wallet, now, &mut outbox).await?;
            super::outbox::write(c, outbox).await?;
            Ok(done)
        });
        match done {
            Ok(mut done) => posted.append(&mut done),
            Err(e @ Error::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(%wallet_id, error = %e, "expiring this wallet's lots failed; the next sweep retries")
            }
        }
    }
    // Then the holds whose expiry passed, one transaction each (after the lots, so that what a
    // hold drew from a lot that expired meanwhile goes to EXPIRED).
    for (project_id, wallet_id, hold_id) in store::expired_holds(conn, scope, now).await? {
        match super::holds::expire(conn, &project_id, &wallet_id, &hold_id, now).await {
            Ok(Some(transaction)) => posted.push(transaction),
            Ok(None) => {}
            Err(e @ Error::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(%hold_id, error = %e, "releasing this expired hold failed; the next sweep retries")
            }
        }
    }
    Ok(posted)
}

// ---- invoices

/// A customer's wallet in an invoice's unit, locked by the caller's transaction, and what its
/// usable lots hold at the invoice's `now`.
#[derive(Debug)]
pub struct InvoiceWallet {
    wallet: WalletRow,
    lots: Vec<LotRow>,
    now: NaiveDateTime,
    /// What prepaid credits can pay: the usable lots' remainders.
    pub available: Decimal,
}

/// Locks the customer's wallet in `currency`, if there is one, expires its lots whose expiry
/// passed at `now` (their own transactions, announced through `outbox`), and answers what its
/// usable lots hold. Called first in the invoice's transaction (see [`apply`] on lock order).
pub async fn lock_invoice_wallet(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    currency: &str,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<Option<InvoiceWallet>, TxFailure> {
    let Some(mut wallet) = store::lock_wallet_by_customer(conn, project_id, customer_external_id, currency).await?
    else {
        return Ok(None);
    };
    expire_wallet_lots(conn, &mut wallet, now, outbox).await?;
    let lots = store::lock_open_lots(conn, &wallet.id).await?;
    let views: Vec<LotView> = lots.iter().map(lot_view).collect();
    let available = drawable(&views, now).iter().map(|l| l.remaining).sum();
    Ok(Some(InvoiceWallet {
        wallet,
        lots,
        now,
        available,
    }))
}

/// Grants credits a plan includes, inside the caller's transaction: into the customer's wallet
/// in `currency` (made with the default settings when the customer has none), as a lot expiring
/// at `expires_at`, replay-safe by `idempotency_key` (a retried run finds its grant). Answers the
/// grant's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn grant_included_credits(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    currency: &str,
    amount: Decimal,
    expires_at: NaiveDateTime,
    idempotency_key: &str,
    description: &str,
    now: NaiveDateTime,
) -> Result<TransactionRow, TxFailure> {
    if store::lock_wallet_by_customer(conn, project_id, customer_external_id, currency)
        .await?
        .is_none()
    {
        let mut settings = WalletInput {
            customer_external_id: customer_external_id.to_string(),
            currency: currency.to_string(),
            ..WalletInput::default()
        }
        .validate()?;
        let (_, declared_rate) = credit_units::resolve_unit(conn, project_id, "currency", currency).await?;
        if let Some(rate) = declared_rate {
            settings.rate_to_money = Some(rate.rate);
            settings.money_currency = Some(rate.currency.code().to_string());
        }
        create_wallet_once(conn, project_id, &settings).await?;
    }
    let op = Operation::parse(
        OpKind::Grant,
        &MoneyRequest {
            customer_external_id: Some(customer_external_id.to_string()),
            currency: Some(currency.to_string()),
            amount: amount.normalize().to_string(),
            idempotency_key: idempotency_key.to_string(),
            description: Some(description.to_string()),
            expires_at: Some(expires_at),
            ..MoneyRequest::default()
        },
        SYSTEM_ACTOR,
    )?;
    Ok(apply(conn, project_id, &op, now).await?.transaction)
}

/// What the customer's usable lots in `currency` hold at `now`, read without locking (for
/// previews; an invoice locks the wallet with [`lock_invoice_wallet`]).
pub async fn available_credits(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    currency: &str,
    now: NaiveDateTime,
) -> Result<Decimal> {
    let Some(wallet) = store::find_wallet_by_customer(conn, project_id, customer_external_id, currency).await? else {
        return Ok(Decimal::ZERO);
    };
    let lots = store::open_lots(conn, &wallet.id).await?;
    let views: Vec<LotView> = lots.iter().map(lot_view).collect();
    Ok(drawable(&views, now).iter().map(|l| l.remaining).sum())
}

/// What a finalized invoice posts.
#[derive(Debug, Clone)]
pub struct InvoicePosting<'a> {
    pub invoice_id: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    /// Fees and true-ups net of coupons: what the invoice earns (negative for a net credit).
    pub revenue: Decimal,
    pub tax: Decimal,
    /// Prepaid credits drawn to pay it: zero, or at most the wallet's `available`.
    pub credits: Decimal,
    pub description: String,
}

/// The ledger transactions of one invoice: the invoice itself (RECEIVABLE against REVENUE and
/// TAX_PAYABLE, no wallet) and the prepaid credits drawn to pay it (the wallet's lots against
/// RECEIVABLE). Either is absent when its amount is zero.
#[derive(Debug, Clone, Default)]
pub struct InvoicePosted {
    pub invoice: Option<TransactionRow>,
    pub credits: Option<TransactionRow>,
}

/// Posts a finalized invoice inside the caller's transaction: the customer owes the total (is
/// owed it, when negative), and
/// the credits drawn (from `wallet`, locked by [`lock_invoice_wallet`] in the same transaction)
/// pay part of it. Both transactions have cause INVOICE and the invoice as their cause id.
pub async fn post_invoice(
    conn: &mut Conn,
    project_id: &str,
    wallet: Option<&mut InvoiceWallet>,
    p: &InvoicePosting<'_>,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<InvoicePosted, TxFailure> {
    // A negative total (a credit for unused days larger than what else is billed) is owed to
    // the customer: RECEIVABLE goes up. Credits only ever pay a positive total.
    let total = p.revenue + p.tax;
    if p.credits < Decimal::ZERO || p.credits > total.max(Decimal::ZERO) {
        return Err(Error::Internal(format!("credits {} above the invoice total {total}", p.credits)).into());
    }
    let mut posted = InvoicePosted::default();
    if !total.is_zero() {
        posted.invoice = Some(post_receivable(conn, project_id, p, Decimal::ONE, None, now).await?);
    }
    if p.credits.is_zero() {
        return Ok(posted);
    }
    let Some(w) = wallet else {
        return Err(Error::Internal("credits drawn without a wallet".into()).into());
    };
    if w.wallet.currency != p.currency || w.wallet.customer_id != p.customer_id {
        return Err(Error::Internal("credits drawn from another customer's or unit's wallet".into()).into());
    }
    let views: Vec<LotView> = w.lots.iter().map(lot_view).collect();
    let policy = Policy {
        policy: WalletPolicy::Reject,
        credit_limit: Decimal::ZERO,
    };
    // Reject: the draw never reaches into an overdraft; `credits` is at most what the lots hold.
    let allocation = allocate(p.credits, &drawable(&views, w.now), Decimal::ZERO, policy)?;
    let mut lines = debit_lines(&allocation, AccountKind::Revenue);
    if let Some(last) = lines.last_mut() {
        last.target = Target::Receivable;
    }
    let transaction = post(
        conn,
        &mut w.wallet,
        Posting {
            cause: Cause::Invoice,
            cause_id: Some(p.invoice_id.to_string()),
            lines,
            lots: &w.lots,
            new_lot: None,
            idempotency_key: None,
            request_hash: None,
            description: Some(format!("prepaid credits applied to {}", p.description)),
            actor: SYSTEM_ACTOR.into(),
            corrects_transaction_id: None,
            amount: p.credits,
        },
        now,
        outbox,
    )
    .await?;
    posted.credits = Some(transaction);
    Ok(posted)
}

/// The invoice's transaction without a wallet, times `sign` (−1 reverses it): the customer's
/// RECEIVABLE −total against REVENUE and TAX_PAYABLE, cause INVOICE, the invoice its cause id.
async fn post_receivable(
    conn: &mut Conn,
    project_id: &str,
    p: &InvoicePosting<'_>,
    sign: Decimal,
    corrects: Option<&str>,
    now: NaiveDateTime,
) -> Result<TransactionRow, TxFailure> {
    let total = p.revenue + p.tax;
    let mut wanted = vec![(AccountKind::Receivable, receivable_code(p.customer_id))];
    let mut amounts = vec![-total * sign];
    for (kind, amount) in [(AccountKind::Revenue, p.revenue), (AccountKind::TaxPayable, p.tax)] {
        if !amount.is_zero() {
            wanted.push((kind, system_code(kind)));
            amounts.push(amount * sign);
        }
    }
    let accounts = derived_accounts(conn, project_id, p.currency, wanted, now).await?;
    let lines: Vec<(String, Decimal)> = accounts.into_iter().zip(amounts).collect();
    let sum: Decimal = lines.iter().map(|(_, a)| *a).sum();
    if !sum.is_zero() || lines.len() < 2 {
        return Err(Error::Internal(format!("unbalanced invoice transaction: {lines:?}")).into());
    }
    let transaction = TransactionRow {
        id: ids::new_id(TRANSACTION_ID_PREFIX),
        project_id: project_id.to_string(),
        wallet_id: None,
        cause: Cause::Invoice.as_str().into(),
        cause_id: Some(p.invoice_id.to_string()),
        currency: p.currency.to_string(),
        amount: total * sign,
        idempotency_key: None,
        request_hash: None,
        description: Some(p.description.clone()),
        actor: SYSTEM_ACTOR.into(),
        corrects_transaction_id: corrects.map(str::to_string),
        wallet_balance_after: None,
        wallet_seq: None,
        created_at: now,
    };
    write_system_transaction(conn, transaction, lines).await
}

/// Writes a transaction that moves no wallet (invoices, payments and their reversals) and its
/// postings, one per `(account, amount)`, which take the transaction's project, unit, cause and
/// time.
async fn write_system_transaction(
    conn: &mut Conn,
    transaction: TransactionRow,
    lines: Vec<(String, Decimal)>,
) -> Result<TransactionRow, TxFailure> {
    let postings: Vec<NewPosting> = lines
        .into_iter()
        .map(|(account_id, amount)| NewPosting {
            transaction_id: transaction.id.clone(),
            project_id: transaction.project_id.clone(),
            account_id,
            wallet_id: None,
            lot_id: None,
            currency: transaction.currency.clone(),
            amount,
            wallet_balance_after: None,
            cause: transaction.cause.clone(),
            created_at: transaction.created_at,
        })
        .collect();
    store::insert_transaction(conn, &transaction).await?;
    store::insert_postings(conn, &postings).await?;
    Ok(transaction)
}

/// Reverses a finalized invoice's postings inside the caller's transaction (voiding it): the
/// customer no longer owes the total (RECEIVABLE +total against REVENUE and TAX_PAYABLE), and
/// the prepaid credits it drew come back to `wallet` as a new lot (source ADJUSTMENT, no expiry;
/// repaying an overdraft first, like every credit), against RECEIVABLE. Each reversal names the
/// transaction it corrects.
pub async fn reverse_invoice(
    conn: &mut Conn,
    project_id: &str,
    wallet: Option<&mut InvoiceWallet>,
    p: &InvoicePosting<'_>,
    original: &InvoicePosted,
    now: NaiveDateTime,
    outbox: &mut Vec<NewOutbox>,
) -> Result<InvoicePosted, TxFailure> {
    let mut reversed = InvoicePosted::default();
    if let Some(booked) = &original.invoice {
        reversed.invoice =
            Some(post_receivable(conn, project_id, p, Decimal::NEGATIVE_ONE, Some(&booked.id), now).await?);
    }
    if let Some(drawn) = &original.credits {
        let Some(w) = wallet else {
            return Err(Error::Internal("credits returned without a wallet".into()).into());
        };
        // Read again: the lots `w` was locked with may have been drawn since (by `post_invoice`
        // in the same transaction), and the overdraft is derived from what they hold now.
        w.lots = store::lock_open_lots(conn, &w.wallet.id).await?;
        let overdraft_balance = derived_overdraft(
            w.wallet.balance,
            w.wallet.held,
            &w.lots.iter().map(lot_view).collect::<Vec<_>>(),
        )?;
        let (mut lines, _) = credit_lines(p.credits, overdraft_balance, AccountKind::Adjustments);
        if let Some(first) = lines.first_mut() {
            first.target = Target::Receivable;
        }
        let transaction = post(
            conn,
            &mut w.wallet,
            Posting {
                cause: Cause::Invoice,
                cause_id: Some(p.invoice_id.to_string()),
                lines,
                lots: &w.lots,
                new_lot: Some(NewLot {
                    source: LotSource::Adjustment,
                    priority: 0,
                    expires_at: None,
                }),
                idempotency_key: None,
                request_hash: None,
                description: Some(format!("prepaid credits returned: {}", p.description)),
                actor: SYSTEM_ACTOR.into(),
                corrects_transaction_id: Some(drawn.id.clone()),
                amount: p.credits,
            },
            now,
            outbox,
        )
        .await?;
        reversed.credits = Some(transaction);
    }
    Ok(reversed)
}

// ---- payments (docs/payments.md)

/// What a payment posts against an invoice: the customer's RECEIVABLE +amount (it owes that much
/// less) against PAYMENTS_CLEARING −amount (money received, until settled with the provider),
/// cause PAYMENT, the invoice its cause id. Inside the caller's transaction; `idempotency_key` (a
/// system key, `neruba:…`) makes a second posting for the same payment fail on the unique index.
#[allow(clippy::too_many_arguments)]
pub async fn post_invoice_payment(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    customer_id: &str,
    currency: &str,
    amount: Decimal,
    idempotency_key: &str,
    now: NaiveDateTime,
) -> Result<TransactionRow, TxFailure> {
    post_receivable_payment(
        conn,
        ReceivablePayment {
            project_id,
            invoice_id,
            customer_id,
            currency,
            amount,
            cause: Cause::Payment,
            idempotency_key,
            corrects: None,
            description: format!("payment of invoice {invoice_id}"),
        },
        now,
    )
    .await
}

/// The reversal of [`post_invoice_payment`] when the payment is refunded: RECEIVABLE −amount (the
/// customer owes it again), PAYMENTS_CLEARING +amount (the money went back), cause REFUND, the
/// invoice its cause id, correcting the payment's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn refund_invoice_payment(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    customer_id: &str,
    currency: &str,
    amount: Decimal,
    idempotency_key: &str,
    corrects: &str,
    now: NaiveDateTime,
) -> Result<TransactionRow, TxFailure> {
    post_receivable_payment(
        conn,
        ReceivablePayment {
            project_id,
            invoice_id,
            customer_id,
            currency,
            amount: -amount,
            cause: Cause::Refund,
            idempotency_key,
            corrects: Some(corrects),
            description: format!("refund of the payment of invoice {invoice_id}"),
        },
        now,
    )
    .await
}

struct ReceivablePayment<'a> {
    project_id: &'a str,
    invoice_id: &'a str,
    customer_id: &'a str,
    currency: &'a str,
    /// What goes onto RECEIVABLE (positive for a payment, negative for its refund).
    amount: Decimal,
    cause: Cause,
    idempotency_key: &'a str,
    corrects: Option<&'a str>,
    description: String,
}

async fn post_receivable_payment(
    conn: &mut Conn,
    p: ReceivablePayment<'_>,
    now: NaiveDateTime,
) -> Result<TransactionRow, TxFailure> {
    if p.amount.is_zero() {
        return Err(Error::Internal("a payment of nothing".into()).into());
    }
    let accounts = derived_accounts(
        conn,
        p.project_id,
        p.currency,
        vec![
            (AccountKind::Receivable, receivable_code(p.customer_id)),
            (
                AccountKind::PaymentsClearing,
                system_code(AccountKind::PaymentsClearing),
            ),
        ],
        now,
    )
    .await?;
    let transaction = TransactionRow {
        id: ids::new_id(TRANSACTION_ID_PREFIX),
        project_id: p.project_id.to_string(),
        wallet_id: None,
        cause: p.cause.as_str().into(),
        cause_id: Some(p.invoice_id.to_string()),
        currency: p.currency.to_string(),
        amount: p.amount.abs(),
        idempotency_key: Some(crate::ids::parse_system_key("idempotencyKey", p.idempotency_key)?),
        request_hash: Some(request_hash(&[p.cause.as_str(), p.invoice_id, &canonical(p.amount)])),
        description: Some(p.description),
        actor: SYSTEM_ACTOR.into(),
        corrects_transaction_id: p.corrects.map(str::to_string),
        wallet_balance_after: None,
        wallet_seq: None,
        created_at: now,
    };
    let lines = accounts.into_iter().zip([p.amount, -p.amount]).collect();
    write_system_transaction(conn, transaction, lines).await
}

/// Takes back a refunded top-up of `amount` from the wallet, inside the caller's transaction:
/// what its usable lots still hold (in the ledger's draw order, up to `amount`) leaves the
/// wallet, and the money goes back out of PAYMENTS_CLEARING (+amount). Credits already spent
/// cannot be taken back: that part is written off (WRITE_OFF −shortfall), never pushed into the
/// overdraft past the wallet's policy. Cause REFUND, correcting the top-up's transaction; the
/// system `idempotency_key` makes it happen once.
pub async fn refund_top_up(
    conn: &mut Conn,
    project_id: &str,
    wallet_id: &str,
    amount: Decimal,
    idempotency_key: &str,
    corrects: &str,
    now: NaiveDateTime,
) -> Result<Posted, TxFailure> {
    let mut wallet = store::lock_wallet(conn, project_id, wallet_id)
        .await?
        .ok_or(Error::NotFound("wallet"))?;
    let key = crate::ids::parse_system_key("idempotencyKey", idempotency_key)?;
    if let Some(existing) = store::find_transaction_by_key(conn, project_id, &key).await? {
        return Ok(Posted {
            transaction: existing,
            wallet,
            replayed: true,
            events: Vec::new(),
        });
    }
    let mut outbox = Vec::new();
    expire_wallet_lots(conn, &mut wallet, now, &mut outbox).await?;
    let lots = store::lock_open_lots(conn, &wallet.id).await?;
    let views: Vec<LotView> = lots.iter().map(lot_view).collect();
    let usable = drawable(&views, now);
    let held: Decimal = usable.iter().map(|l| l.remaining).sum();
    let taken = amount.min(held);
    let policy = Policy {
        policy: WalletPolicy::Reject,
        credit_limit: Decimal::ZERO,
    };
    let mut lines = if taken.is_zero() {
        Vec::new()
    } else {
        let mut lines = debit_lines(
            &allocate(taken, &usable, Decimal::ZERO, policy)?,
            AccountKind::PaymentsClearing,
        );
        lines.retain(|l| l.target != Target::System(AccountKind::PaymentsClearing));
        lines
    };
    lines.push(super::Line {
        target: Target::System(AccountKind::PaymentsClearing),
        amount,
    });
    let shortfall = amount - taken;
    if !shortfall.is_zero() {
        lines.push(super::Line {
            target: Target::System(AccountKind::WriteOff),
            amount: -shortfall,
        });
    }
    let transaction = post(
        conn,
        &mut wallet,
        Posting {
            cause: Cause::Refund,
            cause_id: None,
            lines,
            lots: &lots,
            new_lot: None,
            idempotency_key: Some(key),
            request_hash: Some(request_hash(&[Cause::Refund.as_str(), wallet_id, &canonical(amount)])),
            description: Some("refund of a top-up".into()),
            actor: SYSTEM_ACTOR.into(),
            corrects_transaction_id: Some(corrects.to_string()),
            amount,
        },
        now,
        &mut outbox,
    )
    .await?;
    let events = super::outbox::write(conn, outbox).await?;
    Ok(Posted {
        transaction,
        wallet,
        replayed: false,
        events,
    })
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::retryable;
    use crate::db;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_string()))
    }

    fn retried(e: &DieselError) -> bool {
        db::is_transient(e) || retryable(e)
    }

    #[test]
    fn deadlocks_lock_waits_and_duplicate_keys_are_retried() {
        assert!(retried(&db_error(
            DatabaseErrorKind::Unknown,
            "Deadlock found when trying to get lock; try restarting transaction"
        )));
        assert!(retried(&db_error(
            DatabaseErrorKind::Unknown,
            "Lock wait timeout exceeded; try restarting transaction"
        )));
        assert!(retried(&db_error(
            DatabaseErrorKind::UniqueViolation,
            "Duplicate entry 'prj_1-k' for key 'uq_ledger_transactions_idempotency'"
        )));
        assert!(!retried(&db_error(
            DatabaseErrorKind::UniqueViolation,
            "Duplicate entry 'x' for key 'PRIMARY'"
        )));
        assert!(!retried(&db_error(
            DatabaseErrorKind::Unknown,
            "Table 'x' doesn't exist"
        )));
        assert!(!retried(&DieselError::NotFound));
    }
}
