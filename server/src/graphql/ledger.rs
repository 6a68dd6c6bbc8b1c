//! Wallets, credits, charges, the ledger's entries, reconciliation, and live balances.
//!
//! Every amount answered is a [`Money`] (its exact `Decimal` with its unit); amounts sent are the
//! `Decimal` scalar (a string such as `"12.50"`): exact, never a float. Scopes: reads need `READ`;
//! charges `INGEST` or `BILLING`; wallets, top-ups and grants `BILLING`; adjustments, the expiry
//! sweep and reconciliation `ADMIN` (or the operator, who names `projectId`).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription, connection::Connection};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{
    Decimal, Money,
    loaders::{CustomerLoader, WalletLoader, load_link},
    opt_id,
    pagination::{self, CursorKind},
    principal, require_read, resolve_project, state, utc,
};
use crate::{
    auth::Scope,
    db,
    error::{Error, GraphqlResult as Result},
    events::DomainEvent,
    ledger::{
        AccountKind, Cause, LotSource, WalletEventKind, WalletPolicy,
        outbox::WalletEvent,
        reconcile::{self, Report},
        service::{self, MoneyRequest, OpKind, Operation, Posted, WalletInput},
        to_money,
    },
    store::{
        self,
        ledger::{self as ledger_store, AccountRow, EntryFilter, LotRow, PostingRow, TransactionRow, WalletRow},
    },
    time,
};

fn parse_or_internal<T: std::str::FromStr<Err = Error>>(text: &str) -> Result<T> {
    Ok(text.parse()?)
}

/// A customer's wallet in one currency or credit unit.
pub struct Wallet(pub WalletRow);

impl Wallet {
    /// An amount in the wallet's unit.
    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::stored(amount, &self.0.currency, &self.0.project_id)
    }

    /// The value of one unit and the currency it is in, when the wallet has a rate (the service
    /// stores both or neither).
    fn money_rate(&self) -> Option<(rust_decimal::Decimal, &str)> {
        Some((self.0.rate_to_money?, self.0.money_currency.as_deref()?))
    }
}

#[Object]
impl Wallet {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The customer who holds it. Needs `READ` (a charge's answer reached with an `INGEST` key
    /// has `null` here, with an error).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<super::usage::Customer>> {
        require_read(ctx, &self.0.project_id)?;
        let row = load_link::<CustomerLoader>(ctx, &self.0.project_id, &self.0.customer_id, "customer").await?;
        Ok(Some(super::usage::Customer(row)))
    }
    async fn customer_external_id(&self) -> &str {
        &self.0.customer_external_id
    }
    /// A currency code (`USD`) or a credit unit (`CREDITS`).
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// The balance: the sum of the postings on the wallet's accounts (lots, overdraft and what
    /// its active holds reserve).
    async fn balance(&self) -> Money {
        self.money(self.0.balance)
    }
    /// What the wallet's active holds reserve: part of `balance`, not usable by charges or new
    /// holds until settled or released.
    async fn held(&self) -> Money {
        self.money(self.0.held)
    }
    /// What charges and new holds can use: `balance − held` (below zero when overdrawn; never
    /// below minus the credit limit).
    async fn available(&self) -> Money {
        self.money(self.0.balance - self.0.held)
    }
    /// What one unit of the wallet is worth in money (`rateToMoney` in `moneyCurrency` when it was
    /// created, or its credit unit's declared value); `null` when it has no rate.
    async fn unit_value(&self) -> Option<Money> {
        let (rate, code) = self.money_rate()?;
        Some(Money::stored(rate, code, &self.0.project_id))
    }
    /// The balance valued at `unitValue`, in its currency, exact to 12 decimal places (rounded
    /// half to even there; `formatted` rounds to the currency's minor units); `null` without a rate.
    async fn balance_in_money(&self) -> Option<Money> {
        let (rate, code) = self.money_rate()?;
        let value = to_money(self.0.balance, rate)?;
        Some(Money::stored(value, code, &self.0.project_id))
    }
    async fn policy(&self) -> Result<WalletPolicy> {
        parse_or_internal(&self.0.policy)
    }
    /// How far below zero the balance may go (policy `ALLOW_UNTIL_LIMIT`).
    async fn credit_limit(&self) -> Money {
        self.money(self.0.credit_limit)
    }
    /// Below this balance, a `LOW_BALANCE` event is sent once per crossing.
    async fn low_balance_threshold(&self) -> Option<Money> {
        self.0.low_balance_threshold.map(|t| self.money(t))
    }
    /// Whether the balance is below the threshold (a `LOW_BALANCE` event was sent for this crossing).
    async fn below_threshold(&self) -> bool {
        self.0.below_threshold
    }
    /// The lots that still hold credits, a page at a time, oldest first (by id, which is
    /// time-ordered). Debits draw them in another order: by `expiresAt`, then `priority`, then age
    /// (docs/ledger.md).
    /// Needs `READ` (a charge's answer reached with an `INGEST` key has `null` here, with an error).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn lots(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Option<Connection<String, CreditLot>>> {
        require_read(ctx, &self.0.project_id)?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Lot, after.as_deref())?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = ledger_store::list_open_lots(&mut conn, &self.0.id, after_key.as_deref(), size + 1).await?;
        Ok(Some(pagination::connection(
            CursorKind::Lot,
            rows,
            size,
            after.as_deref(),
            |l| l.id.clone(),
            |lot| CreditLot {
                lot,
                currency: self.0.currency.clone(),
            },
        )))
    }
    /// The wallet's credit holds, a page at a time, oldest first (by id), optionally in one
    /// status. Needs `READ` (a payload reached with an `INGEST` key has `null` here, with an error).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn holds(
        &self,
        ctx: &Context<'_>,
        status: Option<crate::ledger::HoldStatus>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Option<Connection<String, super::holds::CreditHold>>> {
        require_read(ctx, &self.0.project_id)?;
        Ok(Some(
            super::holds::hold_page(ctx, &self.0.id, status, first, after).await?,
        ))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        utc(self.0.updated_at)
    }
}

/// A page of the project's wallets, or one customer's, oldest first (the caller checked `READ`).
/// `wallets` and `Customer.wallets` list the same rows in the same order, so they share cursors.
pub(super) async fn wallet_page(
    ctx: &Context<'_>,
    project_id: &str,
    customer_external_id: Option<&str>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, Wallet>> {
    let size = pagination::page_size(first)?;
    let after_key = pagination::after_key(CursorKind::Wallet, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = ledger_store::list_wallets(
        &mut conn,
        project_id,
        customer_external_id,
        after_key.as_deref(),
        size + 1,
    )
    .await?;
    Ok(pagination::connection(
        CursorKind::Wallet,
        rows,
        size,
        after.as_deref(),
        |w| w.id.clone(),
        Wallet,
    ))
}

/// A page of postings in posting order (`ledgerEntries`, `LedgerTransaction.entries`).
async fn entry_page(
    ctx: &Context<'_>,
    project_id: &str,
    filter: &EntryFilter,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, LedgerEntry>> {
    let size = pagination::page_size(first)?;
    let after_id = pagination::after_key(CursorKind::LedgerEntry, after.as_deref())?
        .map(|key| {
            key.parse::<u64>()
                .map_err(|_| Error::invalid("after", "is not a cursor from this list"))
        })
        .transpose()?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = ledger_store::list_entries(&mut conn, project_id, filter, after_id, size + 1).await?;
    Ok(pagination::connection(
        CursorKind::LedgerEntry,
        rows,
        size,
        after.as_deref(),
        |(p, _, _)| p.id.to_string(),
        LedgerEntry::from,
    ))
}

/// A paid top-up, free grant or positive adjustment, consumed in the documented order.
pub struct CreditLot {
    pub lot: LotRow,
    /// The wallet's unit (a lot's row does not repeat it).
    pub currency: String,
}

impl CreditLot {
    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::stored(amount, &self.currency, &self.lot.project_id)
    }
}

/// A wallet an object of the same project links to; needs `READ`, however it was reached.
/// Batched: a page of rows linking to wallets is one query.
pub(super) async fn wallet_of(ctx: &Context<'_>, project_id: &str, wallet_id: &str) -> Result<Wallet> {
    require_read(ctx, project_id)?;
    Ok(Wallet(
        load_link::<WalletLoader>(ctx, project_id, wallet_id, "wallet").await?,
    ))
}

#[Object]
impl CreditLot {
    pub async fn id(&self) -> ID {
        ID(self.lot.id.clone())
    }
    async fn source(&self) -> Result<LotSource> {
        parse_or_internal(&self.lot.source)
    }
    /// The wallet the lot belongs to (scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        wallet_of(ctx, &self.lot.project_id, &self.lot.wallet_id).await
    }
    async fn account_id(&self) -> ID {
        ID(self.lot.account_id.clone())
    }
    /// What the lot was created with, in the wallet's unit.
    async fn original_amount(&self) -> Money {
        self.money(self.lot.original_amount)
    }
    /// What is left to draw.
    async fn remaining(&self) -> Money {
        self.money(self.lot.remaining)
    }
    /// Lower numbers are drawn first among lots expiring at the same time.
    async fn priority(&self) -> i32 {
        self.lot.priority
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.lot.expires_at.map(utc)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.lot.created_at)
    }
}

/// A ledger transaction: one money operation, its cause, and its postings (summing to zero).
pub struct LedgerTransaction(pub TransactionRow);

#[Object]
impl LedgerTransaction {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn wallet_id(&self) -> Option<ID> {
        self.0.wallet_id.clone().map(ID)
    }
    async fn cause(&self) -> Result<Cause> {
        parse_or_internal(&self.0.cause)
    }
    /// The object behind the cause: the lot a top-up or grant created, the lot that expired.
    async fn cause_id(&self) -> Option<ID> {
        self.0.cause_id.clone().map(ID)
    }
    /// The amount requested (signed for adjustments), in the transaction's unit (all its
    /// postings share it).
    async fn amount(&self) -> Money {
        Money::stored(self.0.amount, &self.0.currency, &self.0.project_id)
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    /// The description, or an adjustment's reason.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Who posted it: the operator, a key, or Neruba itself (the expiry sweep).
    async fn actor(&self) -> super::Actor {
        super::Actor::parse(&self.0.actor, &self.0.project_id)
    }
    /// The transaction an adjustment corrects.
    async fn corrects_transaction_id(&self) -> Option<ID> {
        self.0.corrects_transaction_id.clone().map(ID)
    }
    /// The wallet's balance right after this transaction.
    async fn balance_after(&self) -> Option<Money> {
        self.0
            .wallet_balance_after
            .map(|b| Money::stored(b, &self.0.currency, &self.0.project_id))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    /// The postings, a page at a time, in posting order (by entry id). Cursors are shared with
    /// `ledgerEntries`, which lists postings in the same order.
    /// Needs `READ` (a charge's answer reached with an `INGEST` key has `null` here, with an error).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn entries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Option<Connection<String, LedgerEntry>>> {
        require_read(ctx, &self.0.project_id)?;
        let filter = EntryFilter {
            transaction_id: Some(self.0.id.clone()),
            ..EntryFilter::default()
        };
        Ok(Some(entry_page(ctx, &self.0.project_id, &filter, first, after).await?))
    }
}

/// The payloads of the money operations: the transaction posted (or the original of a replay)
/// and the wallet as it is now.
macro_rules! posted_payload {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(SimpleObject)]
        pub struct $name {
            pub transaction: LedgerTransaction,
            /// The wallet as it is now.
            pub wallet: Wallet,
            /// True when this request repeated an earlier one with the same idempotency key:
            /// nothing new was posted and `transaction` is the original.
            pub replayed: bool,
        }

        impl From<Posted> for $name {
            fn from(p: Posted) -> Self {
                $name {
                    transaction: LedgerTransaction(p.transaction),
                    wallet: Wallet(p.wallet),
                    replayed: p.replayed,
                }
            }
        }
    )*};
}

posted_payload!(
    /// What `ingestCharge` answers.
    IngestChargePayload,
    /// What `topUpWallet` answers.
    TopUpWalletPayload,
    /// What `grantCredits` answers.
    GrantCreditsPayload,
    /// What `adjustWallet` answers.
    AdjustWalletPayload,
    /// What `writeOffDebt` answers.
    WriteOffDebtPayload,
);

#[derive(SimpleObject)]
pub struct CreateWalletPayload {
    pub wallet: Wallet,
}

#[derive(SimpleObject)]
pub struct UpdateWalletPayload {
    pub wallet: Wallet,
}

#[derive(InputObject)]
pub struct SweepExpiredCreditsInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct SweepExpiredCreditsPayload {
    /// The transactions posted now: one EXPIRY per lot remainder, one HOLD_RELEASE per expired hold.
    pub transactions: Vec<LedgerTransaction>,
}

/// A ledger account.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct LedgerAccount {
    #[graphql(skip)]
    pub id: ID,
    pub kind: AccountKind,
    /// Unique in the project and unit: `system:REVENUE`, `lot:<lot id>`, `wallet:<id>:overdraft`,
    /// `wallet:<id>:holds`.
    pub code: String,
    pub currency: String,
    pub wallet_id: Option<ID>,
}

#[async_graphql::ComplexObject]
impl LedgerAccount {
    pub async fn id(&self) -> ID {
        self.id.clone()
    }
}

impl TryFrom<AccountRow> for LedgerAccount {
    type Error = Error;
    fn try_from(a: AccountRow) -> std::result::Result<Self, Error> {
        Ok(LedgerAccount {
            id: ID(a.id),
            kind: a.kind.parse()?,
            code: a.code,
            currency: a.currency,
            wallet_id: a.wallet_id.map(ID),
        })
    }
}

/// Postings are numbered by the database; their public id is this prefix and the number.
pub const POSTING_ID_PREFIX: &str = "pst";

/// One posting, explaining itself: its account, its transaction's cause and what it links to,
/// and the wallet's running balance after it.
pub struct LedgerEntry {
    posting: PostingRow,
    transaction: TransactionRow,
    account: AccountRow,
}

impl LedgerEntry {
    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::stored(amount, &self.posting.currency, &self.posting.project_id)
    }
}

impl From<ledger_store::Entry> for LedgerEntry {
    fn from((posting, transaction, account): ledger_store::Entry) -> Self {
        LedgerEntry {
            posting,
            transaction,
            account,
        }
    }
}

#[Object]
impl LedgerEntry {
    /// `pst_` and the posting's number, increasing in posting order.
    pub async fn id(&self) -> ID {
        ID(format!("{POSTING_ID_PREFIX}_{}", self.posting.id))
    }
    /// The transaction the posting belongs to (read with the entry: no query of its own).
    async fn transaction(&self) -> LedgerTransaction {
        LedgerTransaction(self.transaction.clone())
    }
    async fn account(&self) -> Result<LedgerAccount> {
        Ok(self.account.clone().try_into()?)
    }
    async fn wallet_id(&self) -> Option<ID> {
        self.posting.wallet_id.clone().map(ID)
    }
    /// The wallet a wallet-side posting moves (`null` for system accounts; scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<Wallet>> {
        match &self.posting.wallet_id {
            Some(id) => Ok(Some(wallet_of(ctx, &self.posting.project_id, id).await?)),
            None => Ok(None),
        }
    }
    async fn lot_id(&self) -> Option<ID> {
        self.posting.lot_id.clone().map(ID)
    }
    /// The change of the account's balance: positive adds to it.
    async fn amount(&self) -> Money {
        self.money(self.posting.amount)
    }
    async fn cause(&self) -> Result<Cause> {
        parse_or_internal(&self.posting.cause)
    }
    /// The wallet's balance after this posting (wallet-side postings only).
    async fn balance_after(&self) -> Option<Money> {
        self.posting.wallet_balance_after.map(|b| self.money(b))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.posting.created_at)
    }
}

/// One broken invariant found by reconciliation.
#[derive(SimpleObject)]
pub struct ReconciliationBreak {
    /// Which invariant is broken.
    pub check: reconcile::ReconciliationCheck,
    pub project_id: ID,
    /// The transaction, wallet or lot concerned.
    pub subject: String,
    pub account_ids: Vec<ID>,
    pub expected: String,
    pub actual: String,
}

#[derive(SimpleObject)]
pub struct Reconciliation {
    /// True when every invariant holds.
    pub clean: bool,
    pub transactions: u64,
    pub wallets: u64,
    pub lots: u64,
    pub breaks: Vec<ReconciliationBreak>,
}

impl From<Report> for Reconciliation {
    fn from(r: Report) -> Self {
        Reconciliation {
            clean: r.is_clean(),
            transactions: r.transactions,
            wallets: r.wallets,
            lots: r.lots,
            breaks: r
                .breaks
                .into_iter()
                .map(|b| ReconciliationBreak {
                    check: b.check,
                    project_id: ID(b.project_id),
                    subject: b.subject,
                    account_ids: b.account_ids.into_iter().map(ID).collect(),
                    expected: b.expected,
                    actual: b.actual,
                })
                .collect(),
        }
    }
}

/// A committed change of a wallet, pushed to `balanceChanged` subscribers.
#[derive(SimpleObject)]
pub struct WalletChange {
    pub kind: WalletEventKind,
    pub wallet_id: ID,
    pub customer_external_id: String,
    /// The balance after the change, in the wallet's unit.
    pub balance: Money,
    /// The change of the balance.
    pub delta: Money,
    pub cause: Cause,
    pub transaction_id: ID,
    /// The wallet's low-balance threshold (for `LOW_BALANCE`).
    pub threshold: Option<Money>,
    /// When the change committed.
    pub occurred_at: DateTime<Utc>,
    /// Increases with every change of a wallet: a client can detect a gap or a duplicate.
    pub sequence: String,
}

impl From<&WalletEvent> for WalletChange {
    fn from(e: &WalletEvent) -> Self {
        WalletChange {
            kind: e.kind,
            wallet_id: ID(e.wallet_id.clone()),
            customer_external_id: e.customer_external_id.clone(),
            balance: Money::stored(e.balance, &e.currency, &e.project_id),
            delta: Money::stored(e.delta, &e.currency, &e.project_id),
            cause: e.cause,
            transaction_id: ID(e.transaction_id.clone()),
            threshold: e.threshold.map(|t| Money::stored(t, &e.currency, &e.project_id)),
            occurred_at: utc(e.at),
            sequence: e.outbox_id.to_string(),
        }
    }
}

#[derive(Default)]
pub struct LedgerQuery;

#[Object]
impl LedgerQuery {
    /// A wallet by id (scope `READ`); `null` when there is none.
    async fn wallet(&self, ctx: &Context<'_>, id: ID, project_id: Option<ID>) -> Result<Option<Wallet>> {
        super::absent_is_null(async {
            let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(Wallet(service::find_wallet(&mut conn, &project_id, &id).await?))
        })
        .await
    }

    /// The project's wallets, or one customer's, oldest first (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn wallets(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        customer_external_id: Option<String>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Wallet>> {
        let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
        wallet_page(ctx, &project_id, customer_external_id.as_deref(), first, after).await
    }

    /// Ledger entries (postings) in posting order, filtered by wallet, account, transaction, cause
    /// and time (`[from, to)`). Scope `READ`.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn ledger_entries(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        wallet_id: Option<ID>,
        account_id: Option<ID>,
        transaction_id: Option<ID>,
        cause: Option<Cause>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, LedgerEntry>> {
        let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
        let filter = EntryFilter {
            wallet_id: wallet_id.map(|w| w.0),
            account_id: account_id.map(|a| a.0),
            transaction_id: transaction_id.map(|t| t.0),
            cause: cause.map(|c| c.as_str().to_string()),
            from: time::opt_to_column("from", from)?,
            until: time::opt_to_column("to", to)?,
        };
        entry_page(ctx, &project_id, &filter, first, after).await
    }

    /// One ledger transaction with its postings (scope `READ`); `null` when there is none.
    async fn ledger_transaction(
        &self,
        ctx: &Context<'_>,
        id: ID,
        project_id: Option<ID>,
    ) -> Result<Option<LedgerTransaction>> {
        super::absent_is_null(async {
            let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
            let mut conn = db::get(&state(ctx).pool).await?;
            let row = ledger_store::find_transaction(&mut conn, &project_id, &id)
                .await?
                .ok_or(Error::NotFound("ledger transaction"))?;
            Ok(LedgerTransaction(row))
        })
        .await
    }

    /// Checks every ledger invariant of the project (scope `ADMIN`); see docs/ledger.md.
    #[graphql(complexity = "super::pagination::WHOLE_LEDGER_COST")]
    async fn reconciliation(&self, ctx: &Context<'_>, project_id: Option<ID>) -> Result<Reconciliation> {
        let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Admin)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(reconcile::reconcile(&mut conn, Some(&project_id)).await?.into())
    }
}

#[derive(InputObject)]
pub struct CreateWalletInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    /// The customer (created implicitly when unknown).
    pub customer_external_id: String,
    /// `USD`-style currency code or a credit unit such as `CREDITS`.
    pub currency: String,
    /// For a credit unit: the money value of one unit, with `moneyCurrency`.
    pub rate_to_money: Option<Decimal>,
    pub money_currency: Option<String>,
    /// Default `REJECT`.
    pub policy: Option<WalletPolicy>,
    /// For `ALLOW_UNTIL_LIMIT`: how far below zero the balance may go.
    pub credit_limit: Option<Decimal>,
    /// Below this balance, a `LOW_BALANCE` event is sent once per crossing.
    pub low_balance_threshold: Option<Decimal>,
}

/// Only the fields given change. `lowBalanceThreshold: null` removes the threshold.
#[derive(InputObject)]
pub struct UpdateWalletInput {
    pub project_id: Option<ID>,
    pub wallet_id: ID,
    pub policy: Option<WalletPolicy>,
    /// The current balance must stay within it.
    pub credit_limit: Option<Decimal>,
    pub low_balance_threshold: async_graphql::MaybeUndefined<Decimal>,
}

/// Names the wallet: `walletId`, or `customerExternalId` with `currency`.
#[derive(InputObject)]
pub struct IngestChargeInput {
    pub project_id: Option<ID>,
    /// Unique per project for every money write; a retry with the same key and request replays.
    pub idempotency_key: String,
    pub wallet_id: Option<ID>,
    pub customer_external_id: Option<String>,
    /// Required with `customerExternalId`; otherwise, when given, must be the wallet's.
    pub currency: Option<String>,
    /// Positive, at most 12 decimal places.
    pub amount: Decimal,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct CreditInput {
    pub project_id: Option<ID>,
    pub idempotency_key: String,
    pub wallet_id: Option<ID>,
    pub customer_external_id: Option<String>,
    pub currency: Option<String>,
    /// Positive, at most 12 decimal places.
    pub amount: Decimal,
    pub description: Option<String>,
    /// When the unused rest expires (must be in the future); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// Among lots expiring together, lower numbers are drawn first (default 0, -1000..=1000).
    pub priority: Option<i32>,
}

#[derive(InputObject)]
pub struct AdjustWalletInput {
    pub project_id: Option<ID>,
    pub idempotency_key: String,
    pub wallet_id: Option<ID>,
    pub customer_external_id: Option<String>,
    pub currency: Option<String>,
    /// Signed: positive credits the wallet, negative debits it.
    pub amount: Decimal,
    /// Why (required): recorded with the operator's identity.
    pub reason: String,
    /// The transaction this corrects, if any.
    pub corrects_transaction_id: Option<ID>,
}

#[derive(InputObject)]
pub struct WriteOffDebtInput {
    pub project_id: Option<ID>,
    pub idempotency_key: String,
    pub wallet_id: Option<ID>,
    pub customer_external_id: Option<String>,
    pub currency: Option<String>,
    /// Positive, at most what the wallet owes.
    pub amount: Decimal,
    /// Why (required): recorded with the operator's identity.
    pub reason: String,
}

async fn run<P: From<Posted>>(ctx: &Context<'_>, project_id: String, kind: OpKind, request: MoneyRequest) -> Result<P> {
    let principal = principal(ctx)?;
    let op = Operation::parse(kind, &request, &principal.actor())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let posted = service::execute(&mut conn, &project_id, &op).await?;
    if !posted.replayed {
        tracing::debug!(
            project_id,
            transaction_id = %posted.transaction.id,
            cause = %posted.transaction.cause,
            "ledger transaction posted"
        );
    }
    Ok(posted.into())
}

#[derive(Default)]
pub struct LedgerMutation;

#[Object]
impl LedgerMutation {
    /// Creates a customer's wallet in one unit (scope `BILLING`). Creating the same wallet again
    /// returns it; with other settings it is a `WALLET_EXISTS` conflict.
    async fn create_wallet(&self, ctx: &Context<'_>, input: CreateWalletInput) -> Result<CreateWalletPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, _) = service::create_wallet(
            &mut conn,
            &project_id,
            &WalletInput {
                customer_external_id: input.customer_external_id,
                currency: input.currency,
                rate_to_money: input.rate_to_money.map(|d| d.0),
                money_currency: input.money_currency,
                policy: input.policy,
                credit_limit: input.credit_limit.map(|d| d.0),
                low_balance_threshold: input.low_balance_threshold.map(|d| d.0),
            },
        )
        .await?;
        Ok(CreateWalletPayload { wallet: Wallet(row) })
    }

    /// Changes a wallet's policy, credit limit or low-balance threshold (scope `BILLING`). A new
    /// threshold re-evaluates `belowThreshold` without an event; later balance changes cross it.
    async fn update_wallet(&self, ctx: &Context<'_>, input: UpdateWalletInput) -> Result<UpdateWalletPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Billing)?;
        let changes = service::WalletChanges {
            policy: input.policy,
            credit_limit: input.credit_limit.map(|d| d.0),
            low_balance_threshold: match input.low_balance_threshold {
                async_graphql::MaybeUndefined::Undefined => None,
                async_graphql::MaybeUndefined::Null => Some(None),
                async_graphql::MaybeUndefined::Value(t) => Some(Some(t.0)),
            },
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = service::update_wallet(&mut conn, &project_id, &input.wallet_id, &changes).await?;
        Ok(UpdateWalletPayload { wallet: Wallet(row) })
    }

    /// Debits a wallet (scope `INGEST` or `BILLING`). When the lots do not cover it, the wallet's
    /// policy decides: `INSUFFICIENT_CREDITS` (nothing posted) or overdraft down to the limit.
    async fn ingest_charge(&self, ctx: &Context<'_>, input: IngestChargeInput) -> Result<IngestChargePayload> {
        let project_id = principal(ctx)?.project_for_any(
            opt_id(&input.project_id),
            "projectId",
            &[Scope::Ingest, Scope::Billing],
        )?;
        let request = MoneyRequest {
            wallet_id: input.wallet_id.map(|w| w.0),
            customer_external_id: input.customer_external_id,
            currency: input.currency,
            amount: input.amount.0,
            idempotency_key: input.idempotency_key,
            description: input.description,
            ..MoneyRequest::default()
        };
        run(ctx, project_id, OpKind::Charge, request).await
    }

    /// Credits a wallet with a paid top-up (scope `BILLING`); repays any overdraft first.
    async fn top_up_wallet(&self, ctx: &Context<'_>, input: CreditInput) -> Result<TopUpWalletPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Billing)?;
        run(ctx, project_id, OpKind::TopUp, credit_request(input)?).await
    }

    /// Grants free credits (scope `BILLING`), optionally expiring; repays any overdraft first.
    async fn grant_credits(&self, ctx: &Context<'_>, input: CreditInput) -> Result<GrantCreditsPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Billing)?;
        run(ctx, project_id, OpKind::Grant, credit_request(input)?).await
    }

    /// A manual correction with a required reason (scope `ADMIN` or the operator).
    async fn adjust_wallet(&self, ctx: &Context<'_>, input: AdjustWalletInput) -> Result<AdjustWalletPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Admin)?;
        let request = MoneyRequest {
            wallet_id: input.wallet_id.map(|w| w.0),
            customer_external_id: input.customer_external_id,
            currency: input.currency,
            amount: input.amount.0,
            idempotency_key: input.idempotency_key,
            description: Some(input.reason),
            corrects_transaction_id: input.corrects_transaction_id.map(|t| t.0),
            ..MoneyRequest::default()
        };
        run(ctx, project_id, OpKind::Adjustment, request).await
    }

    /// Gives up (part of) what an overdrawn wallet owes (scope `ADMIN` or the operator): the
    /// overdraft is repaid from the WRITE_OFF account. `amount` is at most what the wallet owes;
    /// `reason` is required.
    async fn write_off_debt(&self, ctx: &Context<'_>, input: WriteOffDebtInput) -> Result<WriteOffDebtPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Admin)?;
        let request = MoneyRequest {
            wallet_id: input.wallet_id.map(|w| w.0),
            customer_external_id: input.customer_external_id,
            currency: input.currency,
            amount: input.amount.0,
            idempotency_key: input.idempotency_key,
            description: Some(input.reason),
            ..MoneyRequest::default()
        };
        run(ctx, project_id, OpKind::WriteOff, request).await
    }

    /// Expires the unused rest of every lot whose expiry passed, and releases every active hold
    /// whose expiry passed (scope `ADMIN`). The server also does this on its own every minute;
    /// returns the transactions posted now.
    async fn sweep_expired_credits(
        &self,
        ctx: &Context<'_>,
        input: SweepExpiredCreditsInput,
    ) -> Result<SweepExpiredCreditsPayload> {
        let project_id = principal(ctx)?.project_for(opt_id(&input.project_id), "projectId", Scope::Admin)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let posted = service::sweep_expired(&mut conn, Some(&project_id), store::now()).await?;
        Ok(SweepExpiredCreditsPayload {
            transactions: posted.into_iter().map(LedgerTransaction).collect(),
        })
    }
}

fn credit_request(input: CreditInput) -> std::result::Result<MoneyRequest, Error> {
    Ok(MoneyRequest {
        wallet_id: input.wallet_id.map(|w| w.0),
        customer_external_id: input.customer_external_id,
        currency: input.currency,
        amount: input.amount.0,
        idempotency_key: input.idempotency_key,
        description: input.description,
        expires_at: time::opt_to_column("expiresAt", input.expires_at)?,
        priority: input.priority,
        corrects_transaction_id: None,
    })
}

#[derive(Default)]
pub struct LedgerSubscription;

#[Subscription]
impl LedgerSubscription {
    /// Every committed change of a wallet's balance, and `LOW_BALANCE` crossings, pushed after
    /// commit, whichever server made the change. Name a wallet, a customer, or neither for all of
    /// the project's wallets. A client that reconnects passes the last `sequence` it saw as
    /// `afterSequence` and first gets what it missed (kept for a day). Scope `READ`.
    async fn balance_changed(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        wallet_id: Option<ID>,
        customer_external_id: Option<String>,
        after_sequence: Option<String>,
    ) -> Result<impl Stream<Item = WalletChange> + use<>> {
        let project_id = principal(ctx)?.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
        let state = state(ctx);
        let after = after_sequence
            .as_deref()
            .map(|a| {
                a.parse::<u64>()
                    .map_err(|_| Error::invalid("afterSequence", "not a sequence from this subscription"))
            })
            .transpose()?;
        // Subscribe before reading what was missed, so that nothing falls between the two.
        let live = BroadcastStream::new(state.events.subscribe());
        let mut conn = db::get(&state.pool).await?;
        if let Some(wallet_id) = &wallet_id {
            // Say so rather than wait forever on a wallet that does not exist.
            service::find_wallet(&mut conn, &project_id, wallet_id).await?;
        }
        let wallet_id = wallet_id.map(|w| w.0);
        let mut missed = Vec::new();
        let wanted = {
            let (project_id, wallet_id) = (project_id.clone(), wallet_id.clone());
            move |e: &WalletEvent| {
                e.project_id == project_id
                    && wallet_id.as_ref().is_none_or(|w| *w == e.wallet_id)
                    && customer_external_id
                        .as_ref()
                        .is_none_or(|c| *c == e.customer_external_id)
            }
        };
        if let Some(after) = after {
            let rows =
                ledger_store::project_outbox_after(&mut conn, &project_id, wallet_id.as_deref(), after, MAX_CATCH_UP)
                    .await?;
            for row in rows {
                let event = WalletEvent::from_outbox(&row)?;
                if wanted(&event) {
                    missed.push(event);
                }
            }
        }
        drop(conn);
        // The tailer may publish some of the missed rows again: each is delivered once.
        let replayed: std::collections::HashSet<u64> = missed.iter().map(|e| e.outbox_id).collect();
        let catch_up = futures_util::stream::iter(missed.iter().map(WalletChange::from).collect::<Vec<_>>());
        let live = live.filter_map(move |event| {
            let change = match event.as_deref() {
                Ok(DomainEvent::BalanceChanged(e) | DomainEvent::ThresholdCrossed(e))
                    if wanted(e) && !replayed.contains(&e.outbox_id) =>
                {
                    Some(WalletChange::from(e))
                }
                // A lagging subscriber skips what it missed (the sequence shows the gap).
                _ => None,
            };
            async move { change }
        });
        Ok(catch_up.chain(live))
    }
}

/// At most this many missed changes are replayed on reconnect (then the client re-reads wallets).
const MAX_CATCH_UP: i64 = 1000;
