//! Credit holds: `reserveCredits`, `settleHold`, `releaseHold`, the `CreditHold` type and its
//! lookups (`creditHold`, `Wallet.holds`, `node`). Scopes: the three mutations like charges
//! (`INGEST` or `BILLING`), reads `READ`. docs/ledger.md, "Holds", has the postings of each step.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, connection::Connection, types::Json};
use chrono::{DateTime, Utc};

use super::{
    Decimal, Money,
    ledger::{LedgerTransaction, Wallet, wallet_of},
    opt_id,
    pagination::{self, CursorKind},
    principal, state, utc,
};
use crate::{
    auth::Scope,
    db,
    error::GraphqlResult as Result,
    ledger::{
        HoldStatus,
        holds::{self, Close, CloseRequest, HoldPosted, Reserve, ReserveRequest},
    },
    store::ledger::{self as ledger_store, HoldRow},
};

/// Credits reserved on a wallet until settled, released, or expired.
pub struct CreditHold(pub HoldRow);

impl CreditHold {
    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::stored(amount, &self.0.currency, &self.0.project_id)
    }
}

#[Object]
impl CreditHold {
    /// `hld_…`.
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn status(&self) -> Result<HoldStatus> {
        Ok(self.0.status.parse()?)
    }
    /// The wallet it holds credits of (scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        wallet_of(ctx, &self.0.project_id, &self.0.wallet_id).await
    }
    async fn wallet_id(&self) -> ID {
        ID(self.0.wallet_id.clone())
    }
    /// What was reserved.
    async fn amount(&self) -> Money {
        self.money(self.0.amount)
    }
    /// What it still holds: all of `amount` while `ACTIVE`, zero once it ended.
    async fn held(&self) -> Money {
        self.money(self.0.remaining)
    }
    /// What the settlement charged (more than `amount` when the wallet's policy allowed overage);
    /// `null` unless `SETTLED`.
    async fn settled_amount(&self) -> Option<Money> {
        self.0.settled_amount.map(|a| self.money(a))
    }
    /// The client's metadata, as sent.
    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .map(Json)
    }
    /// When the sweep releases it if it is still `ACTIVE`.
    async fn expires_at(&self) -> DateTime<Utc> {
        utc(self.0.expires_at)
    }
    /// The reserve's transaction.
    async fn transaction_id(&self) -> ID {
        ID(self.0.transaction_id.clone())
    }
    /// The settlement's, release's or expiry's transaction.
    async fn closing_transaction_id(&self) -> Option<ID> {
        self.0.closing_transaction_id.clone().map(ID)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    /// When it was settled, released or expired.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at.map(utc)
    }
}

/// A page of a wallet's holds, oldest first (by id, which is time-ordered); the caller checked
/// `READ`.
pub(super) async fn hold_page(
    ctx: &Context<'_>,
    wallet_id: &str,
    status: Option<HoldStatus>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, CreditHold>> {
    let size = pagination::page_size(first)?;
    let after_key = pagination::after_key(CursorKind::Hold, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = ledger_store::list_holds(
        &mut conn,
        wallet_id,
        status.map(HoldStatus::as_str),
        after_key.as_deref(),
        size + 1,
    )
    .await?;
    Ok(pagination::connection(
        CursorKind::Hold,
        rows,
        size,
        after.as_deref(),
        |h| h.id.clone(),
        CreditHold,
    ))
}

/// The payloads of the hold steps: the hold and wallet as they are now, and the step's
/// transaction (the original one on a replay).
macro_rules! hold_payload {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(SimpleObject)]
        pub struct $name {
            pub hold: CreditHold,
            /// The wallet as it is now (`held`, `available`).
            pub wallet: Wallet,
            pub transaction: LedgerTransaction,
            /// True when this request repeated an earlier one with the same idempotency key:
            /// nothing new was posted and `transaction` is the original.
            pub replayed: bool,
        }

        impl From<HoldPosted> for $name {
            fn from(p: HoldPosted) -> Self {
                $name {
                    hold: CreditHold(p.hold),
                    wallet: Wallet(p.wallet),
                    transaction: LedgerTransaction(p.transaction),
                    replayed: p.replayed,
                }
            }
        }
    )*};
}

hold_payload!(
    /// What `reserveCredits` answers.
    ReserveCreditsPayload,
    /// What `settleHold` answers.
    SettleHoldPayload,
    /// What `releaseHold` answers.
    ReleaseHoldPayload,
);

#[derive(InputObject)]
pub struct ReserveCreditsInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    /// Unique per project for every money write; a retry with the same key and request replays.
    pub idempotency_key: String,
    pub wallet_id: ID,
    /// Positive, no more decimal places than the wallet's unit has.
    pub amount: Decimal,
    /// Seconds until the hold expires and the sweep releases it: 1 to 2592000 (30 days).
    pub expires_in: i64,
    /// A JSON object of at most 4 KiB, kept with the hold.
    pub metadata: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct SettleHoldInput {
    pub project_id: Option<ID>,
    pub idempotency_key: String,
    pub hold_id: ID,
    /// What to charge: positive; more than held only when the wallet's policy is
    /// `ALLOW_UNTIL_LIMIT` (the rest is drawn like a charge).
    pub amount: Decimal,
}

#[derive(InputObject)]
pub struct ReleaseHoldInput {
    pub project_id: Option<ID>,
    pub idempotency_key: String,
    pub hold_id: ID,
}

fn money_writer(ctx: &Context<'_>, project_id: &Option<ID>) -> Result<String> {
    Ok(principal(ctx)?.project_for_any(opt_id(project_id), "projectId", &[Scope::Ingest, Scope::Billing])?)
}

#[derive(Default)]
pub struct HoldQuery;

#[Object]
impl HoldQuery {
    /// A credit hold by id (scope `READ`); `null` when there is none.
    async fn credit_hold(&self, ctx: &Context<'_>, id: ID, project_id: Option<ID>) -> Result<Option<CreditHold>> {
        super::absent_is_null(async {
            let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(CreditHold(holds::find_hold(&mut conn, &project_id, &id).await?))
        })
        .await
    }
}

#[derive(Default)]
pub struct HoldMutation;

#[Object]
impl HoldMutation {
    /// Reserves credits on a wallet until settled, released or expired (scope `INGEST` or
    /// `BILLING`). The balance stays; `held` grows and `available` shrinks by `amount`, drawn like
    /// a charge, so the wallet's policy decides: `INSUFFICIENT_CREDITS` (nothing posted) or
    /// overdraft down to the limit.
    async fn reserve_credits(&self, ctx: &Context<'_>, input: ReserveCreditsInput) -> Result<ReserveCreditsPayload> {
        let project_id = money_writer(ctx, &input.project_id)?;
        let op = Reserve::parse(
            &ReserveRequest {
                wallet_id: input.wallet_id.0,
                amount: input.amount.0,
                expires_in: input.expires_in,
                idempotency_key: input.idempotency_key,
                metadata: input.metadata.map(|m| m.0),
            },
            &principal(ctx)?.actor(),
        )?;
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(holds::reserve(&mut conn, &project_id, &op).await?.into())
    }

    /// Charges `amount` of an active hold and gives the rest back (scope `INGEST` or `BILLING`).
    /// More than held is `BAD_USER_INPUT` unless the wallet's policy is `ALLOW_UNTIL_LIMIT`; a hold
    /// that ended is `HOLD_NOT_ACTIVE`.
    async fn settle_hold(&self, ctx: &Context<'_>, input: SettleHoldInput) -> Result<SettleHoldPayload> {
        let project_id = money_writer(ctx, &input.project_id)?;
        close(
            ctx,
            &project_id,
            CloseRequest {
                hold_id: input.hold_id.0,
                amount: Some(input.amount.0),
                idempotency_key: input.idempotency_key,
            },
        )
        .await
    }

    /// Gives everything an active hold reserves back (scope `INGEST` or `BILLING`); a hold that
    /// ended is `HOLD_NOT_ACTIVE`.
    async fn release_hold(&self, ctx: &Context<'_>, input: ReleaseHoldInput) -> Result<ReleaseHoldPayload> {
        let project_id = money_writer(ctx, &input.project_id)?;
        close(
            ctx,
            &project_id,
            CloseRequest {
                hold_id: input.hold_id.0,
                amount: None,
                idempotency_key: input.idempotency_key,
            },
        )
        .await
    }
}

async fn close<P: From<HoldPosted>>(ctx: &Context<'_>, project_id: &str, request: CloseRequest) -> Result<P> {
    let op = Close::parse(&request, &principal(ctx)?.actor())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    Ok(holds::close(&mut conn, project_id, &op).await?.into())
}
