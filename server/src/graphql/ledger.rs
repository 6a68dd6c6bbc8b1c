//! Wallets, credits, charges, the ledger's entries, reconciliation, and live balances.
//!
//! Every amount answered is a [`Money`] (its exact `Decimal` with its unit); amounts sent are the
//! `Decimal` scalar (a string such as `"12.50"`): exact, never a float. Scopes: reads need `READ`;
//! charges `INGEST` or `BILLING`; wallets, top-ups and grants `BILLING`; adjustments, the expiry
//! sweep and reconciliation `ADMIN` (or the operator, who names `projectId`).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription, connection::Connection};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::{
    Decimal, Money, Sequence,
    loaders::{CustomerLoader, WalletLoader, load_link},
    opt_id,
    pagination::{self, CursorKind},
    principal, require_read_of, resolve_project, state, utc,
};
use crate::{
    auth::Scope,
    db,
    error::{Error, GraphqlResult as Result},
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
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
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
    /// its active holds reserve). With
    /// `asOf`, the balance at that point of the wallet's history (scope `READ`): after every
    /// transaction stamped no later than `at`, or after the event numbered `sequence` (a
    /// `balanceChanged` event's `walletSequence`) — read from the ledger's running balance.
    async fn balance(&self, ctx: &Context<'_>, as_of: Option<BalanceAsOf>) -> Result<Money> {
        let Some(as_of) = as_of else {
            return Ok(self.money(self.0.balance));
        };
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let point = match as_of {
            BalanceAsOf::At(at) => ledger_store::AsOf::At(time::to_column("asOf.at", at)?),
            BalanceAsOf::Sequence(seq) => {
                if seq.0 > self.0.event_seq {
                    return Err(Error::invalid(
                        "asOf.sequence",
                        format!("the wallet's latest sequence is {}", self.0.event_seq),
                    )
                    .into());
                }
                ledger_store::AsOf::Sequence(seq.0)
            }
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let balance = ledger_store::balance_as_of(&mut conn, &self.0.id, point).await?;
        Ok(self.money(balance))
    }
    /// What moved the balance in `[from, to)`, from the ledger's postings: the opening and
    /// closing balance, the change per cause, and what charges drew from each lot (scope `READ`).
    /// `openingBalance` + Σ `changes` = `closingBalance` (`tiesOut`).
    async fn statement(&self, ctx: &Context<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<CreditStatement> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let (from_at, to_at) = (time::to_column("from", from)?, time::to_column("to", to)?);
        if to_at <= from_at {
            return Err(Error::invalid("to", "must be after from").into());
        }
        let mut conn = db::get(&state(ctx).pool).await?;
        let opening = ledger_store::balance_as_of(&mut conn, &self.0.id, ledger_store::AsOf::Before(from_at)).await?;
        let closing = ledger_store::balance_as_of(&mut conn, &self.0.id, ledger_store::AsOf::Before(to_at)).await?;
        let causes = ledger_store::statement_by_cause(&mut conn, &self.0.id, from_at, to_at).await?;
        let burns =
            ledger_store::statement_by_lot(&mut conn, &self.0.id, Cause::Charge.as_str(), from_at, to_at).await?;
        let net: rust_decimal::Decimal = causes.iter().map(|c| c.amount).sum();
        Ok(CreditStatement {
            from,
            to,
            opening_balance: self.money(opening),
            closing_balance: self.money(closing),
            net_change: self.money(net),
            ties_out: opening + net == closing,
            changes: causes
                .into_iter()
                .map(|c| {
                    Ok(StatementChange {
                        cause: c.cause.parse()?,
                        amount: self.money(c.amount),
                        transactions: i32::try_from(c.transactions).unwrap_or(i32::MAX),
                    })
                })
                .collect::<std::result::Result<_, Error>>()?,
            burns: burns
                .into_iter()
                .map(|b| {
                    Ok(StatementBurn {
                        lot_id: b.lot_id.map(ID),
                        source: b.source.as_deref().map(str::parse).transpose()?,
                        amount: self.money(-b.amount),
                    })
                })
                .collect::<std::result::Result<_, Error>>()?,
        })
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
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
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
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
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

/// A wallet an object of the same project links to; needs `READ`, however it was reached (a
/// customer credential: its own wallets only). Batched: a page of rows linking to wallets is one
/// query.
pub(super) async fn wallet_of(ctx: &Context<'_>, project_id: &str, wallet_id: &str) -> Result<Wallet> {
    super::require_read_reached(ctx, project_id)?;
    let wallet = load_link::<WalletLoader>(ctx, project_id, wallet_id, "wallet").await?;
    require_read_of(ctx, &wallet.project_id, &wallet.customer_id)?;
    Ok(Wallet(wallet))
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
        super::require_read_reached(ctx, &self.0.project_id)?;
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

/// A point in a wallet's history: a time or one of its `balanceChanged` sequences.
#[derive(async_graphql::OneofObject)]
pub enum BalanceAsOf {
    /// After every transaction stamped no later than this.
    At(DateTime<Utc>),
    /// After the wallet's event with this number (and every lower one).
    Sequence(Sequence),
}

/// What moved a wallet's balance in a period (`Wallet.statement`), from its postings.
#[derive(SimpleObject)]
pub struct CreditStatement {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The balance before `from`.
    pub opening_balance: Money,
    /// The balance before `to`.
    pub closing_balance: Money,
    /// Σ `changes`.
    pub net_change: Money,
    /// `openingBalance + netChange = closingBalance`, as it must be.
    pub ties_out: bool,
    /// Per cause (top-ups, grants, charges, holds, expiries, adjustments, write-offs, invoice
    /// credits), the sum of the wallet's postings and the number of transactions.
    pub changes: Vec<StatementChange>,
    /// What charges drew, per lot (`lotId` null: the overdraft), positive.
    pub burns: Vec<StatementBurn>,
}

#[derive(SimpleObject)]
pub struct StatementChange {
    pub cause: Cause,
    /// Signed: what the cause added to the balance.
    pub amount: Money,
    pub transactions: i32,
}

#[derive(SimpleObject)]
pub struct StatementBurn {
    pub lot_id: Option<ID>,
    /// The lot's source (a paid top-up, a grant, an adjustment); null for the overdraft.
    pub source: Option<LotSource>,
    pub amount: Money,
}

/// One event of `balanceChanged`: a committed change of a wallet's balance, or its fall below
/// the low-balance threshold.
#[derive(async_graphql::Union)]
pub enum BalanceEvent {
    BalanceChange(BalanceChange),
    LowBalanceCrossing(LowBalanceCrossing),
}

impl BalanceEvent {
    /// `event` as seen by a stream that numbers by `key` (the wallet's sequence without one).
    fn new(e: WalletEvent, key: Option<&ledger_store::StreamKey>) -> BalanceEvent {
        let money = |amount| Money::stored(amount, &e.currency, &e.project_id);
        let base = StreamEventFields {
            wallet_id: ID(e.wallet_id.clone()),
            customer_external_id: e.customer_external_id.clone(),
            balance: money(e.balance),
            transaction_id: ID(e.transaction_id.clone()),
            occurred_at: utc(e.at),
            sequence: Sequence(key.and_then(|k| e.seq_for(k)).unwrap_or(e.wallet_seq)),
            wallet_sequence: Sequence(e.wallet_seq),
            customer_sequence: Sequence(e.customer_seq),
            project_id: e.project_id.clone(),
        };
        match e.kind {
            WalletEventKind::BalanceChanged => BalanceEvent::BalanceChange(BalanceChange {
                delta: money(e.delta),
                cause: e.cause,
                base,
            }),
            WalletEventKind::LowBalance => BalanceEvent::LowBalanceCrossing(LowBalanceCrossing {
                threshold: e.threshold.map(money),
                base,
            }),
        }
    }
}

/// The fields both kinds of stream events have.
#[derive(SimpleObject)]
pub struct StreamEventFields {
    pub wallet_id: ID,
    pub customer_external_id: String,
    /// The balance after the event, in the wallet's unit.
    pub balance: Money,
    /// The ledger transaction behind the event.
    pub transaction_id: ID,
    /// When the transaction committed.
    pub occurred_at: DateTime<Utc>,
    /// The event's number in this stream: the customer's sequence on a customer's stream, the
    /// wallet's otherwise. Contiguous (1, 2, 3, …): a missing number is a missed event. Pass the
    /// last one received as `afterSequence` to resume.
    pub sequence: Sequence,
    /// The event's number among the wallet's events.
    pub wallet_sequence: Sequence,
    /// The event's number among the events of all the customer's wallets.
    pub customer_sequence: Sequence,
    #[graphql(skip)]
    pub project_id: String,
}

impl StreamEventFields {
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<Wallet>> {
        super::absent_is_null(async { wallet_of(ctx, &self.project_id, &self.wallet_id).await }).await
    }
}

/// A committed change of a wallet's balance.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct BalanceChange {
    #[graphql(flatten)]
    pub base: StreamEventFields,
    /// The change of the balance.
    pub delta: Money,
    pub cause: Cause,
}

#[async_graphql::ComplexObject]
impl BalanceChange {
    /// The wallet (scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<Wallet>> {
        self.base.wallet(ctx).await
    }
}

/// A wallet's balance fell below its low-balance threshold (once per crossing).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct LowBalanceCrossing {
    #[graphql(flatten)]
    pub base: StreamEventFields,
    /// The threshold crossed.
    pub threshold: Option<Money>,
}

#[async_graphql::ComplexObject]
impl LowBalanceCrossing {
    /// The wallet (scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<Wallet>> {
        self.base.wallet(ctx).await
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
    // Charges go through the queue (`ledger::hot`), which publishes their events after commit;
    // the other operations run alone.
    let mut posted = if kind == OpKind::Charge {
        state(ctx).charges.charge(&project_id, op).await?
    } else {
        let mut conn = db::get(&state(ctx).pool).await?;
        service::execute(&mut conn, &project_id, &op).await?
    };
    crate::ledger::outbox::publish_committed(&state(ctx).events, std::mem::take(&mut posted.events));
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
    /// Every committed change of a wallet's balance (`BalanceChange`) and low-balance crossing
    /// (`LowBalanceCrossing`), pushed after commit, whichever server made it. Follow one wallet
    /// (`walletId`) or one customer's wallets (`customerExternalId`): events come in `sequence`
    /// order without gaps or repeats, and a client that reconnects passes the last `sequence` it
    /// received as `afterSequence` to get exactly what it missed (kept for a day; older:
    /// `REPLAY_UNAVAILABLE`) before the live events. Neither: every wallet of the project, from
    /// the outbox tail, without resuming. A subscriber that falls behind gets `SUBSCRIBER_LAGGED`
    /// and the stream ends: resume with `afterSequence`. Scope `READ`.
    ///
    /// A customer's portal session follows its own wallets (neither argument: all of them, with
    /// resuming); another customer's wallet or id is `NOT_FOUND`.
    async fn balance_changed(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        wallet_id: Option<ID>,
        customer_external_id: Option<String>,
        after_sequence: Option<Sequence>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<BalanceEvent>>> {
        let caller = principal(ctx)?;
        let own = caller.customer_scope();
        let project_id = match own {
            Some(own) => super::customer_project(own, &project_id)?,
            None => caller.project_for(opt_id(&project_id), "projectId", Scope::Read)?,
        };
        let state = state(ctx);
        let mut conn = db::get(&state.pool).await?;
        if let Some(own) = own
            && wallet_id.is_none()
            && customer_external_id.is_none()
        {
            // A customer follows all its wallets when it names none.
            let key = Some(ledger_store::StreamKey::Customer(own.customer_id.to_string()));
            drop(conn);
            return open_balance_stream(state, project_id, key, after_sequence).await;
        }
        let key = match (wallet_id, customer_external_id) {
            (Some(wallet_id), customer) => {
                // Say so rather than wait forever on a wallet that does not exist.
                let wallet = service::find_wallet(&mut conn, &project_id, &wallet_id).await?;
                if own.is_some_and(|own| own.customer_id != wallet.customer_id) {
                    return Err(Error::NotFound("wallet").into());
                }
                if customer.is_some_and(|c| c != wallet.customer_external_id) {
                    return Err(Error::invalid("customerExternalId", "the wallet belongs to another customer").into());
                }
                Some(ledger_store::StreamKey::Wallet(wallet.id))
            }
            (None, Some(customer)) => {
                let customer = store::customers::find_by_external_id(&mut conn, &project_id, &customer)
                    .await?
                    .filter(|c| own.is_none_or(|own| own.customer_id == c.id))
                    .ok_or(Error::NotFound("customer"))?;
                Some(ledger_store::StreamKey::Customer(customer.id))
            }
            (None, None) => None,
        };
        drop(conn);
        open_balance_stream(state, project_id, key, after_sequence).await
    }
}

/// The stream `balanceChanged` answers: one wallet's, one customer's, or (no key) the project's.
async fn open_balance_stream(
    state: &crate::app::AppState,
    project_id: String,
    key: Option<ledger_store::StreamKey>,
    after_sequence: Option<Sequence>,
) -> Result<futures_util::stream::BoxStream<'static, Result<BalanceEvent>>> {
    let events = crate::ledger::stream::open(
        state.clone(),
        crate::ledger::stream::Request {
            project_id,
            key: key.clone(),
            after: after_sequence.map(|s| s.0),
        },
    )
    .await?;
    Ok(events
        .map(move |item| {
            item.map(|event| BalanceEvent::new(event, key.as_ref()))
                .map_err(Into::into)
        })
        .boxed())
}
