//! Credit holds: credits reserved on a wallet until they are settled (charged up to the held
//! amount, the rest given back), released, or expire (the sweep releases them).
//!
//! Each step is one ledger transaction between the wallet's lots and overdraft and its HOLD
//! account, whose cause id is the hold, run like every money operation in [`super::service`]:
//! the wallet row is locked first, the idempotency key is checked, the wallet's lots whose expiry
//! passed are expired, and the postings, projections (`balance`, `held`, lot remainders, the hold
//! row) and the `BALANCE_CHANGED` outbox row are written together. A reserve draws exactly like a
//! charge, so `available = balance − held` obeys the wallet's policy whatever runs concurrently.
//! docs/ledger.md, "Holds", has the postings of each step.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;

use super::{
    AccountKind, Cause, HoldStatus, Line, LotSource, LotView, Policy, Target, WalletPolicy, allocate, debit_lines,
    decode_draws, derived_overdraft, drawable, encode_draws, parse_idempotency_key, parse_positive_amount,
    request_hash, reserve_lines, return_lines,
    service::{
        NewLot, Posting, SYSTEM_ACTOR, WALLET_ID_PREFIX, expire_wallet_lots, hold_account, lot_view, post, retryable,
    },
};
use crate::{
    credit_units,
    customers::parse_metadata,
    db::{self, TxFailure},
    error::{Error, ErrorCode, Result},
    ids,
    money::canonical,
    store::{
        Conn,
        ledger::{self as store, HoldRow, LotRow, TransactionRow, WalletRow},
        now as db_now,
    },
};

pub const HOLD_ID_PREFIX: &str = "hld";
/// The shortest and longest a hold may last (`expiresIn`, seconds): a second to 30 days.
pub const MIN_EXPIRES_IN: i64 = 1;
pub const MAX_EXPIRES_IN: i64 = 30 * 24 * 60 * 60;

/// What `reserveCredits` takes, before validation.
#[derive(Debug, Clone, Default)]
pub struct ReserveRequest {
    pub wallet_id: String,
    pub amount: String,
    /// Seconds from now until the hold expires.
    pub expires_in: i64,
    pub idempotency_key: String,
    pub metadata: Option<serde_json::Value>,
}

/// A validated reserve.
#[derive(Debug, Clone)]
pub struct Reserve {
    wallet_id: String,
    amount: Decimal,
    expires_in: i64,
    idempotency_key: String,
    /// Canonical JSON text (at most 4 KiB, like a customer's metadata).
    metadata: Option<String>,
    actor: String,
}

impl Reserve {
    pub fn parse(request: &ReserveRequest, actor: &str) -> Result<Reserve> {
        let amount = parse_positive_amount("amount", &request.amount)?;
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&request.expires_in) {
            return Err(Error::invalid(
                "expiresIn",
                format!("must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds"),
            ));
        }
        Ok(Reserve {
            wallet_id: request.wallet_id.clone(),
            amount,
            expires_in: request.expires_in,
            idempotency_key: parse_idempotency_key("idempotencyKey", &request.idempotency_key)?,
            metadata: request
                .metadata
                .as_ref()
                .map(|m| parse_metadata("metadata", m))
                .transpose()?,
            actor: actor.to_string(),
        })
    }

    fn hash(&self, wallet_id: &str) -> Vec<u8> {
        request_hash(&[
            Cause::Hold.as_str(),
            wallet_id,
            &canonical(self.amount),
            &self.expires_in.to_string(),
            self.metadata.as_deref().unwrap_or(""),
        ])
    }
}

/// What `settleHold` (with an amount) and `releaseHold` (without) take, before validation.
#[derive(Debug, Clone, Default)]
pub struct CloseRequest {
    pub hold_id: String,
    pub amount: Option<String>,
    pub idempotency_key: String,
}

/// A validated settlement (`amount` present) or release.
#[derive(Debug, Clone)]
pub struct Close {
    hold_id: String,
    amount: Option<Decimal>,
    idempotency_key: String,
    actor: String,
}

impl Close {
    pub fn parse(request: &CloseRequest, actor: &str) -> Result<Close> {
        Ok(Close {
            hold_id: request.hold_id.clone(),
            amount: request
                .amount
                .as_deref()
                .map(|a| parse_positive_amount("amount", a))
                .transpose()?,
            idempotency_key: parse_idempotency_key("idempotencyKey", &request.idempotency_key)?,
            actor: actor.to_string(),
        })
    }

    fn cause(&self) -> Cause {
        if self.amount.is_some() {
            Cause::HoldSettle
        } else {
            Cause::HoldRelease
        }
    }

    fn hash(&self) -> Vec<u8> {
        request_hash(&[
            self.cause().as_str(),
            &self.hold_id,
            &self.amount.map(canonical).unwrap_or_default(),
        ])
    }
}

/// What a hold step answers: the hold and the wallet as they are now, the step's transaction (the
/// original one on a replay), and whether this was a replay (nothing new was posted).
#[derive(Debug, Clone)]
pub struct HoldPosted {
    pub hold: HoldRow,
    pub wallet: WalletRow,
    pub transaction: TransactionRow,
    pub replayed: bool,
}

/// Reserves credits: one transaction, retried on deadlock.
pub async fn reserve(conn: &mut Conn, project_id: &str, op: &Reserve) -> Result<HoldPosted> {
    let project_id = project_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| reserve_in(c, &project_id, op, db_now()).await)
}

/// Settles or releases a hold: one transaction, retried on deadlock.
pub async fn close(conn: &mut Conn, project_id: &str, op: &Close) -> Result<HoldPosted> {
    if !ids::looks_like(HOLD_ID_PREFIX, &op.hold_id) {
        return Err(Error::NotFound("hold"));
    }
    // A hold never changes wallets, so its wallet can be read before the transaction: the
    // transaction then locks the wallet before any other read (see `service::apply`).
    let Some(hold) = store::find_hold(conn, project_id, &op.hold_id).await? else {
        return Err(Error::NotFound("hold"));
    };
    let project_id = project_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| {
        close_in(c, &project_id, &hold.wallet_id, op, db_now()).await
    })
}

/// The hold a replayed transaction made or ended, as it is now.
async fn replayed(conn: &mut Conn, wallet: WalletRow, transaction: TransactionRow) -> Result<HoldPosted, TxFailure> {
    let hold_id = transaction
        .cause_id
        .clone()
        .ok_or_else(|| Error::Internal(format!("hold transaction {} without its hold", transaction.id)))?;
    let hold = store::find_hold(conn, &wallet.project_id, &hold_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("hold {hold_id} of transaction {} is gone", transaction.id)))?;
    Ok(HoldPosted {
        hold,
        wallet,
        transaction,
        replayed: true,
    })
}

fn conflict(key: &str) -> TxFailure {
    Error::conflict(
        ErrorCode::IdempotencyConflict,
        format!("idempotency key '{key}' was already used for a different request"),
    )
    .into()
}

async fn reserve_in(
    conn: &mut Conn,
    project_id: &str,
    op: &Reserve,
    now: NaiveDateTime,
) -> Result<HoldPosted, TxFailure> {
    if !ids::looks_like(WALLET_ID_PREFIX, &op.wallet_id) {
        return Err(Error::NotFound("wallet").into());
    }
    let mut wallet = store::lock_wallet(conn, project_id, &op.wallet_id)
        .await?
        .ok_or(Error::NotFound("wallet"))?;
    let hash = op.hash(&wallet.id);
    if let Some(existing) = store::find_transaction_by_key(conn, project_id, &op.idempotency_key).await? {
        if existing.request_hash.as_deref() == Some(hash.as_slice()) {
            return replayed(conn, wallet, existing).await;
        }
        return Err(conflict(&op.idempotency_key));
    }
    let unit = credit_units::stored_unit(conn, project_id, &wallet.currency).await?;
    unit.check_precision("amount", op.amount)?;

    let mut outbox = Vec::new();
    expire_wallet_lots(conn, &mut wallet, now, &mut outbox).await?;
    let lots = store::lock_open_lots(conn, &wallet.id).await?;
    let views: Vec<LotView> = lots.iter().map(lot_view).collect();
    let overdraft = derived_overdraft(wallet.balance, wallet.held, &views)?;
    let policy = Policy {
        policy: wallet.policy()?,
        credit_limit: wallet.credit_limit,
    };
    let allocation = allocate(op.amount, &drawable(&views, now), overdraft, policy)?;
    let (lines, draws) = reserve_lines(&allocation);
    let hold_id = ids::new_id(HOLD_ID_PREFIX);
    let account_id = hold_account(conn, &wallet, now).await?;
    let transaction = post(
        conn,
        &mut wallet,
        Posting {
            cause: Cause::Hold,
            cause_id: Some(hold_id.clone()),
            lines,
            lots: &lots,
            new_lot: None,
            idempotency_key: Some(op.idempotency_key.clone()),
            request_hash: Some(hash),
            description: None,
            actor: op.actor.clone(),
            corrects_transaction_id: None,
            amount: op.amount,
        },
        now,
        &mut outbox,
    )
    .await?;
    let hold = HoldRow {
        id: hold_id,
        project_id: project_id.to_string(),
        wallet_id: wallet.id.clone(),
        account_id,
        currency: wallet.currency.clone(),
        amount: op.amount,
        remaining: op.amount,
        settled_amount: None,
        status: HoldStatus::Active.as_str().into(),
        draws: encode_draws(&draws),
        metadata: op.metadata.clone(),
        expires_at: now + chrono::Duration::seconds(op.expires_in),
        transaction_id: transaction.id.clone(),
        closing_transaction_id: None,
        created_at: now,
        closed_at: None,
    };
    store::insert_hold(conn, &hold).await?;
    super::outbox::write(conn, outbox).await?;
    Ok(HoldPosted {
        hold,
        wallet,
        transaction,
        replayed: false,
    })
}

async fn close_in(
    conn: &mut Conn,
    project_id: &str,
    wallet_id: &str,
    op: &Close,
    now: NaiveDateTime,
) -> Result<HoldPosted, TxFailure> {
    let mut wallet = store::lock_wallet(conn, project_id, wallet_id)
        .await?
        .ok_or(Error::NotFound("hold"))?;
    let hash = op.hash();
    if let Some(existing) = store::find_transaction_by_key(conn, project_id, &op.idempotency_key).await? {
        if existing.request_hash.as_deref() == Some(hash.as_slice()) {
            return replayed(conn, wallet, existing).await;
        }
        return Err(conflict(&op.idempotency_key));
    }
    let hold = store::lock_hold(conn, project_id, &op.hold_id)
        .await?
        .ok_or(Error::NotFound("hold"))?;
    let status: HoldStatus = hold.status.parse()?;
    if status != HoldStatus::Active {
        return Err(Error::conflict(
            ErrorCode::HoldNotActive,
            format!("the hold is {status}; nothing was posted"),
        )
        .into());
    }
    if hold.expires_at <= now {
        return Err(Error::conflict(
            ErrorCode::HoldNotActive,
            "the hold expired; the sweep releases it (nothing was posted)",
        )
        .into());
    }
    if let Some(amount) = op.amount {
        let unit = credit_units::stored_unit(conn, project_id, &wallet.currency).await?;
        unit.check_precision("amount", amount)?;
    }
    let mut outbox = Vec::new();
    let (transaction, hold) = end_hold(
        conn,
        &mut wallet,
        hold,
        op.amount,
        Some((op.idempotency_key.clone(), hash)),
        &op.actor,
        now,
        &mut outbox,
    )
    .await?;
    super::outbox::write(conn, outbox).await?;
    Ok(HoldPosted {
        hold,
        wallet,
        transaction,
        replayed: false,
    })
}

/// Ends an active hold of the locked `wallet`: settles `settle` of it (a release when `None`),
/// gives the rest back, and records how it ended. `key` is the client's idempotency key and
/// request hash (none for the sweep's expiry, which marks the hold EXPIRED).
#[allow(clippy::too_many_arguments)]
async fn end_hold(
    conn: &mut Conn,
    wallet: &mut WalletRow,
    mut hold: HoldRow,
    settle: Option<Decimal>,
    key: Option<(String, Vec<u8>)>,
    actor: &str,
    now: NaiveDateTime,
    outbox: &mut Vec<crate::store::ledger::NewOutbox>,
) -> Result<(TransactionRow, HoldRow), TxFailure> {
    expire_wallet_lots(conn, wallet, now, outbox).await?;
    let draws = decode_draws(&hold.draws)?;
    let open_lots = store::lock_open_lots(conn, &wallet.id).await?;
    let views: Vec<LotView> = open_lots.iter().map(lot_view).collect();
    let overdraft = derived_overdraft(wallet.balance, wallet.held, &views)?;
    // The lots the hold drew from may hold nothing now (not among the open lots) or have expired.
    let source_ids: Vec<&str> = draws.iter().filter_map(|d| d.lot.as_deref()).collect();
    let sources = store::lock_lots(conn, &wallet.id, &source_ids).await?;
    let mut lots: Vec<LotRow> = open_lots.clone();
    lots.extend(
        sources
            .iter()
            .filter(|s| !open_lots.iter().any(|o| o.id == s.id))
            .cloned(),
    );
    let open = |id: &str| sources.iter().any(|s| s.id == id && s.expired_at.is_none());

    let held = hold.remaining;
    let settled = settle.unwrap_or(Decimal::ZERO);
    let mut lines = vec![Line {
        target: Target::Hold,
        amount: -held,
    }];
    if settled > held {
        // Overage: the wallet's policy must allow it, and then it is drawn like a charge.
        if wallet.policy()? != WalletPolicy::AllowUntilLimit {
            return Err(Error::invalid(
                "amount",
                format!(
                    "is more than the {} held; the wallet's policy (REJECT) does not allow settling more",
                    held.normalize()
                ),
            )
            .into());
        }
        let policy = Policy {
            policy: WalletPolicy::AllowUntilLimit,
            credit_limit: wallet.credit_limit,
        };
        let extra = allocate(settled - held, &drawable(&views, now), overdraft, policy)?;
        let mut extra_lines = debit_lines(&extra, AccountKind::Revenue);
        extra_lines.pop(); // REVENUE gets the whole settled amount below.
        lines.extend(extra_lines);
    } else {
        lines.extend(return_lines(&draws, held - settled, overdraft, open)?);
    }
    if settled > Decimal::ZERO {
        lines.push(Line {
            target: Target::System(AccountKind::Revenue),
            amount: settled,
        });
    }
    let (status, cause) = match (settle, key.is_some()) {
        (Some(_), _) => (HoldStatus::Settled, Cause::HoldSettle),
        (None, true) => (HoldStatus::Released, Cause::HoldRelease),
        (None, false) => (HoldStatus::Expired, Cause::HoldRelease),
    };
    let (idempotency_key, request_hash) = key.unzip();
    let transaction = post(
        conn,
        wallet,
        Posting {
            cause,
            cause_id: Some(hold.id.clone()),
            lines,
            lots: &lots,
            new_lot: Some(NewLot {
                source: LotSource::Hold,
                priority: 0,
                expires_at: None,
            }),
            idempotency_key,
            request_hash,
            description: (status == HoldStatus::Expired).then(|| format!("expiry of hold {}", hold.id)),
            actor: actor.to_string(),
            corrects_transaction_id: None,
            amount: if settle.is_some() { settled } else { held },
        },
        now,
        outbox,
    )
    .await?;
    hold.status = status.as_str().into();
    hold.remaining = Decimal::ZERO;
    hold.settled_amount = settle;
    hold.closing_transaction_id = Some(transaction.id.clone());
    hold.closed_at = Some(now);
    store::close_hold(conn, &hold).await?;
    Ok((transaction, hold))
}

/// Releases one hold whose expiry passed at `now`, as its own transaction (the sweep). Answers
/// the release's transaction, or `None` when the hold was settled or released meanwhile.
pub async fn expire(
    conn: &mut Conn,
    project_id: &str,
    wallet_id: &str,
    hold_id: &str,
    now: NaiveDateTime,
) -> Result<Option<TransactionRow>> {
    db::transaction_with_retry!(conn, retryable, |c| {
        let Some(mut wallet) = store::lock_wallet(c, project_id, wallet_id).await? else {
            return Ok(None);
        };
        let Some(hold) = store::lock_hold(c, project_id, hold_id).await? else {
            return Ok(None);
        };
        if hold.status != HoldStatus::Active.as_str() || hold.expires_at > now {
            return Ok(None);
        }
        let mut outbox = Vec::new();
        let (transaction, _) = end_hold(c, &mut wallet, hold, None, None, SYSTEM_ACTOR, now, &mut outbox).await?;
        super::outbox::write(c, outbox).await?;
        Ok(Some(transaction))
    })
}

/// Hold `id` of the project, `NOT_FOUND` when absent or another project's.
pub async fn find_hold(conn: &mut Conn, project_id: &str, id: &str) -> Result<HoldRow> {
    if !ids::looks_like(HOLD_ID_PREFIX, id) {
        return Err(Error::NotFound("hold"));
    }
    store::find_hold(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("hold"))
}
