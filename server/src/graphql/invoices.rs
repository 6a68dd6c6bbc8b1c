//! Invoices: `invoices` and `invoice` (scope `READ`), and `runBilling` (scope `BILLING`), which
//! bills every subscription boundary its clock passed. The runs themselves are
//! `billing::runs`; the scheduler runs them too, without a caller.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, connection::Connection};
use chrono::{DateTime, Utc};
use neruba_pricing::Rating;

use super::{
    Decimal, Money, absent_is_null,
    billing::{PlanSubscription, PlanVersion, PriceStep, price_steps},
    ledger::LedgerTransaction,
    loaders::{CustomerLoader, load_link},
    pagination::{self, CursorKind, ListOrder},
    principal, require_read_of, resolve_project, state,
    types::utc,
    usage::{Customer, UsageEvent, event_cursor, parse_event_cursor},
};
use crate::{
    auth::Scope,
    billing::{
        backtest, export, plans,
        runs::{self, AdjustmentKind, Clock, InvoiceLineKind, InvoiceReason, InvoiceStatus},
    },
    credit_units,
    currency::Currency,
    db,
    error::{Error, GraphqlResult as Result},
    store::{
        invoices::{self as store, AdjustmentFilter, AdjustmentRow, InvoiceFilter, InvoiceRow, LineRow},
        ledger as ledger_store, subscriptions as subscription_store,
    },
};

/// The most invoices one `runBilling` makes; the rest waits for the next run.
pub const MAX_RUN_INVOICES: i32 = 1000;

/// An invoice: one subscription billed at one period boundary.
pub struct Invoice(pub(crate) InvoiceRow);

impl Invoice {
    async fn unit(&self, ctx: &Context<'_>) -> Result<Currency> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(credit_units::stored_unit(&mut conn, &self.0.project_id, &self.0.currency).await?)
    }

    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::stored(amount, &self.0.currency, &self.0.project_id)
    }
}

/// A span of time, `[from, to)`.
#[derive(SimpleObject)]
pub struct TimeSpan {
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
}

fn span(from: Option<chrono::NaiveDateTime>, to: Option<chrono::NaiveDateTime>) -> Option<TimeSpan> {
    Some(TimeSpan {
        from: utc(from?),
        to: utc(to?),
    })
}

#[Object]
impl Invoice {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Its number, gapless per project, given at finalization (`null` for a draft).
    async fn number(&self) -> Option<String> {
        self.0.number.map(|n| format!("{n:06}"))
    }
    async fn status(&self) -> Result<InvoiceStatus> {
        Ok(self.0.status.parse()?)
    }
    /// `PERIOD` for a boundary of the subscription's schedule, `THRESHOLD` for an early invoice
    /// of the period's usage so far.
    async fn reason(&self) -> Result<InvoiceReason> {
        Ok(self.0.reason.parse()?)
    }
    /// The customer billed (scope `READ`).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        absent_is_null(async {
            Ok(Customer(
                load_link::<CustomerLoader>(ctx, &self.0.project_id, &self.0.customer_id, "customer").await?,
            ))
        })
        .await
    }
    /// The subscription billed.
    async fn subscription(&self, ctx: &Context<'_>) -> Result<Option<PlanSubscription>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(
            subscription_store::find(&mut conn, &self.0.project_id, &self.0.subscription_id)
                .await?
                .map(PlanSubscription),
        )
    }
    /// The plan version it was computed under.
    async fn plan_version(&self, ctx: &Context<'_>) -> Result<PlanVersion> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(PlanVersion(
            plans::load_version(&mut conn, &self.0.project_id, &self.0.plan_version_id).await?,
        ))
    }
    /// The period boundary it bills: the fixed fee in advance of the period starting here, the
    /// usage (and fixed fee in arrears) of the period ending here. A threshold invoice's is the
    /// cutoff of the run that made it, inside the period whose usage so far it bills.
    async fn boundary(&self) -> DateTime<Utc> {
        utc(self.0.boundary)
    }
    /// The usage it bills: events that occurred in this span (`null` on a first invoice).
    async fn usage_period(&self) -> Option<TimeSpan> {
        span(self.0.usage_from, self.0.usage_to)
    }
    /// Fees and minimum true-ups.
    async fn subtotal(&self) -> Money {
        self.money(self.0.subtotal)
    }
    /// Coupons (zero or negative).
    async fn discount(&self) -> Money {
        self.money(self.0.discount)
    }
    /// What the period's threshold invoices billed before this one, before tax, deducted (zero
    /// or negative).
    async fn billed_earlier(&self) -> Money {
        self.money(self.0.billed_earlier())
    }
    async fn tax(&self) -> Money {
        self.money(self.0.tax)
    }
    /// `subtotal + discount + billedEarlier + tax`.
    async fn total(&self) -> Money {
        self.money(self.0.total)
    }
    /// Prepaid credits drawn to pay it (zero or negative).
    async fn credits(&self) -> Money {
        self.money(self.0.credits)
    }
    /// What is left to pay: `total + credits`.
    async fn amount_due(&self) -> Money {
        self.money(self.0.amount_due)
    }
    /// Its credit notes and adjustment invoices, oldest first.
    async fn adjustments(&self, ctx: &Context<'_>) -> Result<Vec<InvoiceAdjustment>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(store::adjustments(&mut conn, &self.0.project_id, &self.0.id)
            .await?
            .into_iter()
            .map(InvoiceAdjustment)
            .collect())
    }
    /// Its lines, in order: fees, usage, true-ups, coupons, taxes, credits.
    async fn lines(&self, ctx: &Context<'_>) -> Result<Vec<InvoiceLine>> {
        let unit = self.unit(ctx).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let invoice = Arc::new(self.0.clone());
        Ok(runs::lines(&mut conn, &self.0.id)
            .await?
            .into_iter()
            .map(|row| InvoiceLine {
                row,
                unit: unit.clone(),
                invoice: invoice.clone(),
            })
            .collect())
    }
    /// The ledger transactions that booked it, once final: the invoice (the customer's
    /// receivable against revenue and tax) and the prepaid credits drawn to pay it, whose entries
    /// name each lot (grant or top-up) they burned; after a void, their reversals (scope `READ`).
    async fn ledger_transactions(&self, ctx: &Context<'_>) -> Result<Vec<LedgerTransaction>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let mut found = Vec::new();
        for id in [
            &self.0.invoice_transaction_id,
            &self.0.credits_transaction_id,
            &self.0.void_invoice_transaction_id,
            &self.0.void_credits_transaction_id,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(t) = ledger_store::find_transaction(&mut conn, &self.0.project_id, id).await? {
                found.push(LedgerTransaction(t));
            }
        }
        Ok(found)
    }
    /// Its payments through checkouts, oldest first (scope `READ`). Cursors are shared with
    /// `payments`.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, super::payments::Payment>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let filter = crate::store::payments::PaymentFilter {
            invoice_id: Some(self.0.id.clone()),
            ..Default::default()
        };
        super::payments::payment_page(ctx, &self.0.project_id, filter, first, after).await
    }
    /// The run's clock: when it was computed (what prepaid credits could pay then).
    async fn computed_at(&self) -> DateTime<Utc> {
        utc(self.0.computed_at)
    }
    /// Events received after this are not in it (they show in a recomputation).
    async fn cutoff(&self) -> DateTime<Utc> {
        utc(self.0.cutoff)
    }
    /// The version of the billing conventions (docs/billing.md) it was computed under.
    async fn conventions_version(&self) -> i32 {
        i32::try_from(self.0.conventions_version).unwrap_or(i32::MAX)
    }
    /// Everything it was computed from and everything it says, as canonical JSON.
    async fn manifest(&self) -> &str {
        &self.0.manifest
    }
    /// SHA-256 (hex) of `manifest`: the same inputs give the same hash.
    async fn manifest_hash(&self) -> &str {
        &self.0.manifest_hash
    }
    /// The ledger transaction that booked it (receivable against revenue and tax), once final.
    async fn invoice_transaction_id(&self) -> Option<ID> {
        self.0.invoice_transaction_id.clone().map(ID)
    }
    /// The ledger transaction that drew prepaid credits for it, if any.
    async fn credits_transaction_id(&self) -> Option<ID> {
        self.0.credits_transaction_id.clone().map(ID)
    }
    async fn finalized_at(&self) -> Option<DateTime<Utc>> {
        self.0.finalized_at.map(utc)
    }
    async fn voided_at(&self) -> Option<DateTime<Utc>> {
        self.0.voided_at.map(utc)
    }
    async fn void_reason(&self) -> Option<&str> {
        self.0.void_reason.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

/// A correction of a finalized invoice: a credit note (it billed too much) or an adjustment
/// invoice (too little), numbered from the project's invoice sequence and posted to the ledger.
pub struct InvoiceAdjustment(pub(crate) AdjustmentRow);

#[Object]
impl InvoiceAdjustment {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// From the same gapless sequence as invoices.
    async fn number(&self) -> String {
        format!("{:06}", self.0.number)
    }
    async fn kind(&self) -> Result<AdjustmentKind> {
        Ok(self.0.kind.parse()?)
    }
    /// The invoice it corrects (scope `READ`).
    async fn invoice(&self, ctx: &Context<'_>) -> Result<Invoice> {
        super::require_read_reached(ctx, &self.0.project_id)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let invoice = runs::find(&mut conn, &self.0.project_id, &self.0.invoice_id).await?;
        require_read_of(ctx, &invoice.project_id, &invoice.customer_id)?;
        Ok(Invoice(invoice))
    }
    /// The differences from the document it corrects (negative for a credit note):
    /// `subtotal + discount + billedEarlier + tax = total`.
    async fn subtotal(&self) -> Money {
        Money::stored(self.0.subtotal, &self.0.currency, &self.0.project_id)
    }
    async fn discount(&self) -> Money {
        Money::stored(self.0.discount, &self.0.currency, &self.0.project_id)
    }
    /// The change in what the period's threshold invoices were deducted for (one voided since,
    /// for instance).
    async fn billed_earlier(&self) -> Money {
        Money::stored(self.0.billed_earlier(), &self.0.currency, &self.0.project_id)
    }
    async fn tax(&self) -> Money {
        Money::stored(self.0.tax, &self.0.currency, &self.0.project_id)
    }
    async fn total(&self) -> Money {
        Money::stored(self.0.total, &self.0.currency, &self.0.project_id)
    }
    /// The cutoff of the recomputation.
    async fn cutoff(&self) -> DateTime<Utc> {
        utc(self.0.cutoff)
    }
    /// The recomputed invoice's manifest and its hash: the next recomputation compares with it.
    async fn manifest(&self) -> &str {
        &self.0.manifest
    }
    async fn manifest_hash(&self) -> &str {
        &self.0.manifest_hash
    }
    async fn transaction_id(&self) -> Option<ID> {
        self.0.transaction_id.clone().map(ID)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

/// One line of an invoice.
pub struct InvoiceLine {
    row: LineRow,
    unit: Currency,
    invoice: Arc<InvoiceRow>,
}

#[Object]
impl InvoiceLine {
    /// 0-based place on the invoice.
    async fn position(&self) -> i32 {
        i32::from(self.row.position)
    }
    async fn kind(&self) -> Result<InvoiceLineKind> {
        Ok(self.row.kind.parse()?)
    }
    async fn description(&self) -> &str {
        &self.row.description
    }
    /// The plan charge of a usage or charge-minimum line.
    async fn charge_id(&self) -> Option<ID> {
        self.row.charge_id.clone().map(ID)
    }
    /// A usage line's quantity: the metric's aggregate over the period.
    async fn quantity(&self) -> Option<Decimal> {
        self.row.quantity.map(Decimal::from)
    }
    /// Rounded once to the unit's minor units (negative for coupons and credits).
    async fn amount(&self) -> Money {
        Money::in_unit(self.row.amount, &self.unit)
    }
    /// The exact amount before that rounding.
    async fn exact_amount(&self) -> Result<Decimal> {
        let exact: rust_decimal::Decimal = self.row.exact.parse().map_err(|_| {
            Error::Internal(format!(
                "invoice line {}: stored exact amount unreadable",
                self.row.position
            ))
        })?;
        Ok(exact.into())
    }
    /// The span it bills.
    async fn period(&self) -> Option<TimeSpan> {
        span(self.row.period_from, self.row.period_to)
    }
    /// A usage line: how many events are behind its quantity.
    async fn event_count(&self) -> Option<Decimal> {
        self.row.event_count.map(|n| rust_decimal::Decimal::from(n).into())
    }
    /// A usage line: a fingerprint of the events behind it (it changes when a late one arrives).
    async fn events_hash(&self) -> Option<&str> {
        self.row.events_hash.as_deref()
    }
    /// A usage line: the rated steps (tiers, packages, free units) that add up to its exact amount.
    async fn steps(&self) -> Result<Vec<PriceStep>> {
        let Some(json) = &self.row.rating else {
            return Ok(Vec::new());
        };
        let rating: Rating = serde_json::from_str(json).map_err(|e| {
            Error::Internal(format!(
                "invoice line {}: stored rating unreadable: {e}",
                self.row.position
            ))
        })?;
        price_steps(&rating, &self.unit)
    }
    /// A usage line: the events behind its quantity, in the order they occurred (the line's
    /// metric and filters, customer and period, received by the invoice's cutoff; scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, UsageEvent>> {
        require_read_of(ctx, &self.invoice.project_id, &self.invoice.customer_id)?;
        let size = pagination::page_size(first)?;
        let cursor = pagination::after_key(CursorKind::Event, after.as_deref())?
            .as_deref()
            .map(parse_event_cursor)
            .transpose()?
            .map(|c| (c.occurred_at, c.seq));
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = runs::line_events(&mut conn, &self.invoice, &self.row, cursor, size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Event,
            rows,
            size,
            after.as_deref(),
            |r| event_cursor(r.occurred_at, r.seq),
            |r| UsageEvent(r.into()),
        ))
    }
}

#[derive(Default)]
pub struct InvoiceQuery;

#[Object]
impl InvoiceQuery {
    /// The project's invoices by boundary, oldest first unless `order` says otherwise, optionally
    /// for one customer or subscription, in one
    /// status, for one reason, or with their boundary in `[boundaryFrom, boundaryTo)` (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        customer_id: Option<ID>,
        subscription_id: Option<ID>,
        status: Option<InvoiceStatus>,
        reason: Option<InvoiceReason>,
        boundary_from: Option<DateTime<Utc>>,
        boundary_to: Option<DateTime<Utc>>,
        #[graphql(
            default,
            desc = "Oldest first (the default) or newest first, by boundary; each order has its own cursors."
        )]
        order: ListOrder,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Invoice>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let filter = InvoiceFilter {
            customer_id: customer_id.map(|c| c.0),
            subscription_id: subscription_id.map(|s| s.0),
            status: status.map(|s| s.as_str().to_string()),
            reason: reason.map(|r| r.as_str().to_string()),
            boundary_from: crate::time::opt_to_column("boundaryFrom", boundary_from)?,
            boundary_to: crate::time::opt_to_column("boundaryTo", boundary_to)?,
        };
        invoice_page(ctx, &project_id, &filter, order, first, after).await
    }

    /// The project's credit notes and adjustment invoices (corrections of finalized invoices),
    /// oldest first, optionally for one customer or invoice, or of one kind (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn credit_notes(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        customer_id: Option<ID>,
        invoice_id: Option<ID>,
        kind: Option<AdjustmentKind>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, InvoiceAdjustment>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Adjustment, after.as_deref())?;
        let filter = AdjustmentFilter {
            customer_id: customer_id.map(|c| c.0),
            invoice_id: invoice_id.map(|i| i.0),
            kind: kind.map(|k| k.as_str().to_string()),
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = store::list_adjustments(&mut conn, &project_id, &filter, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Adjustment,
            rows,
            size,
            after.as_deref(),
            |a| a.id.clone(),
            InvoiceAdjustment,
        ))
    }

    /// An invoice by id; null when there is none (scope `READ`).
    async fn invoice(&self, ctx: &Context<'_>, project_id: Option<ID>, id: ID) -> Result<Option<Invoice>> {
        let found = absent_is_null(async {
            let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(runs::find(&mut conn, &project_id, &id).await?)
        })
        .await?;
        Ok(found.map(Invoice))
    }
}

#[derive(InputObject)]
pub struct RunBillingInput {
    pub project_id: Option<ID>,
    /// Only this subscription.
    pub subscription_id: Option<ID>,
    /// The run's clock (default: the server's). Not later than the server's clock: a run never
    /// bills a period before it ended.
    pub now: Option<DateTime<Utc>>,
    /// Events received after this are left out (default: `now`; not after `now`). A boundary is
    /// billed once the cutoff passed it.
    pub cutoff: Option<DateTime<Utc>>,
    /// Finalize each invoice (number it, post it to the ledger, draw prepaid credits); `false`
    /// leaves drafts.
    #[graphql(default = true)]
    pub finalize: bool,
    /// At most this many invoices, 1 to 1000 (default 100); the rest waits for the next run.
    pub max_invoices: Option<i32>,
}

/// A subscription a run could not bill, and why; the next run tries it again.
#[derive(SimpleObject)]
pub struct BillingFailure {
    pub subscription_id: ID,
    /// The error's `extensions.code`.
    pub code: String,
    pub message: String,
}

#[derive(SimpleObject)]
pub struct RunBillingPayload {
    /// The invoices this run made, in order.
    pub invoices: Vec<Invoice>,
    pub failures: Vec<BillingFailure>,
    /// The run reached `maxInvoices`: run it again for the boundaries that may be left.
    pub has_more: bool,
}

#[derive(Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// Bills every subscription boundary the clock passed (scope `BILLING`): one invoice per
    /// subscription and boundary, whoever runs it and however often. The scheduler does the
    /// same on its own; this is for operators, tests and catching up.
    async fn run_billing(&self, ctx: &Context<'_>, input: RunBillingInput) -> Result<RunBillingPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let server_now = crate::store::now();
        let now = crate::time::opt_to_column("now", input.now)?.unwrap_or(server_now);
        if now > server_now {
            return Err(Error::invalid("now", "must not be later than the server's clock").into());
        }
        let cutoff = crate::time::opt_to_column("cutoff", input.cutoff)?;
        let clock = Clock::new(now, cutoff)?;
        let max = input.max_invoices.unwrap_or(100);
        if !(1..=MAX_RUN_INVOICES).contains(&max) {
            return Err(Error::invalid("maxInvoices", format!("must be between 1 and {MAX_RUN_INVOICES}")).into());
        }
        let scope = runs::Scope {
            project_id: Some(project_id),
            subscription_id: input.subscription_id.map(|s| s.0),
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let report = runs::run(&mut conn, &scope, clock, input.finalize, max as usize).await?;
        Ok(RunBillingPayload {
            has_more: report.invoices.len() >= max as usize,
            invoices: report.invoices.into_iter().map(Invoice).collect(),
            failures: report
                .failures
                .into_iter()
                .map(|(subscription_id, e)| BillingFailure {
                    subscription_id: ID(subscription_id),
                    code: e.code().to_string(),
                    message: e.public_message(),
                })
                .collect(),
        })
    }

    /// Computes an invoice again and compares it line by line with the stored one (scope
    /// `BILLING`). With `dryRun` (the default) nothing is written; otherwise a draft is replaced.
    async fn recompute_invoice(
        &self,
        ctx: &Context<'_>,
        input: RecomputeInvoiceInput,
    ) -> Result<RecomputeInvoicePayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let server_now = crate::store::now();
        let cutoff = crate::time::opt_to_column("cutoff", input.cutoff)?;
        if cutoff.is_some_and(|c| c > server_now) {
            return Err(Error::invalid("cutoff", "must not be later than the server's clock").into());
        }
        let mut conn = db::get(&state(ctx).pool).await?;
        let done = if input.dry_run {
            runs::recompute_dry_run(&mut conn, &project_id, &input.invoice_id, cutoff).await?
        } else {
            runs::recompute_for_real(&mut conn, &project_id, &input.invoice_id, cutoff, server_now).await?
        };
        Ok(RecomputeInvoicePayload(done))
    }

    /// Finalizes a draft (scope `BILLING`): computes it again with the credits the wallet holds
    /// now, draws them, numbers it and posts it to the ledger. A finalized invoice is answered as
    /// it is.
    async fn finalize_invoice(&self, ctx: &Context<'_>, input: FinalizeInvoiceInput) -> Result<FinalizeInvoicePayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let invoice = runs::finalize_invoice(&mut conn, &project_id, &input.invoice_id, crate::store::now()).await?;
        Ok(FinalizeInvoicePayload {
            invoice: Invoice(invoice),
        })
    }

    /// Voids an invoice (scope `BILLING`): a draft is only marked void; a finalized invoice has its
    /// ledger postings reversed (the customer no longer owes it, the prepaid credits it drew come
    /// back to the wallet) in the same transaction. Its boundary is not billed again. A paid
    /// invoice is refunded, not voided (`INVOICE_STATUS_CONFLICT`); voiding again changes nothing.
    async fn void_invoice(&self, ctx: &Context<'_>, input: VoidInvoiceInput) -> Result<VoidInvoicePayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let invoice = runs::void_invoice(
            &mut conn,
            &project_id,
            &input.invoice_id,
            &input.reason,
            crate::store::now(),
        )
        .await?;
        Ok(VoidInvoicePayload {
            invoice: Invoice(invoice),
        })
    }
}

#[derive(InputObject)]
pub struct RecomputeInvoiceInput {
    pub project_id: Option<ID>,
    pub invoice_id: ID,
    /// Count events received by this time (default: the invoice's own cutoff, which recomputes
    /// it from the same inputs). Not after the server's clock.
    pub cutoff: Option<DateTime<Utc>>,
    /// Only compare (the default): nothing is written. `false` replaces a draft; a finalized (or
    /// paid) invoice is never edited: the difference becomes a credit note or an adjustment
    /// invoice (`adjustment`). A void invoice is not corrected (`INVOICE_STATUS_CONFLICT`).
    #[graphql(default = true)]
    pub dry_run: bool,
}

/// A line that differs between the stored invoice and its recomputation.
pub struct InvoiceLineDiff {
    diff: runs::LineDiff,
    currency: String,
    project_id: String,
}

#[Object]
impl InvoiceLineDiff {
    async fn kind(&self) -> Result<InvoiceLineKind> {
        Ok(self.diff.kind().parse()?)
    }
    async fn charge_id(&self) -> Option<ID> {
        self.diff.charge_id().map(|c| ID(c.to_string()))
    }
    async fn description(&self) -> &str {
        self.diff.description()
    }
    /// The stored line's amount (`null`: the recomputation adds the line).
    async fn stored(&self) -> Option<Money> {
        let line = self.diff.stored.as_ref()?;
        Some(Money::stored(line.amount, &self.currency, &self.project_id))
    }
    /// The recomputed amount (`null`: the recomputation drops the line).
    async fn recomputed(&self) -> Option<Money> {
        let line = self.diff.recomputed.as_ref()?;
        Some(Money::stored(line.amount, &self.currency, &self.project_id))
    }
    /// `recomputed − stored`.
    async fn difference(&self) -> Money {
        Money::stored(self.diff.difference(), &self.currency, &self.project_id)
    }
    async fn stored_quantity(&self) -> Option<Decimal> {
        self.diff.stored.as_ref()?.quantity.map(Decimal::from)
    }
    async fn recomputed_quantity(&self) -> Option<Decimal> {
        self.diff.recomputed.as_ref()?.quantity.map(Decimal::from)
    }
    async fn stored_event_count(&self) -> Option<Decimal> {
        let n = self.diff.stored.as_ref()?.event_count?;
        Some(rust_decimal::Decimal::from(n).into())
    }
    async fn recomputed_event_count(&self) -> Option<Decimal> {
        let n = self.diff.recomputed.as_ref()?.event_count?;
        Some(rust_decimal::Decimal::from(n).into())
    }
}

pub struct RecomputeInvoicePayload(runs::Recomputation);

#[Object]
impl RecomputeInvoicePayload {
    /// The invoice as stored now (after a draft was replaced, the new draft).
    async fn invoice(&self) -> Invoice {
        Invoice(self.0.invoice.clone())
    }
    /// Whether the recomputation is byte for byte the stored invoice (same manifest hash).
    async fn identical(&self) -> bool {
        self.0.recomputed_hash == self.0.stored_hash
    }
    /// SHA-256 of the recomputed manifest.
    async fn manifest_hash(&self) -> &str {
        &self.0.recomputed_hash
    }
    /// The lines that differ, stored against recomputed.
    async fn lines(&self) -> Vec<InvoiceLineDiff> {
        self.0
            .lines
            .iter()
            .map(|diff| InvoiceLineDiff {
                diff: diff.clone(),
                currency: self.0.invoice.currency.clone(),
                project_id: self.0.invoice.project_id.clone(),
            })
            .collect()
    }
    /// The credit note or adjustment invoice this recomputation made (for real, of a finalized
    /// invoice whose total changed).
    async fn adjustment(&self) -> Option<InvoiceAdjustment> {
        self.0.adjustment.clone().map(InvoiceAdjustment)
    }
    /// `recomputed total − stored total`.
    async fn total_difference(&self) -> Money {
        Money::stored(
            self.0.recomputed.total - self.0.stored.total,
            &self.0.invoice.currency,
            &self.0.invoice.project_id,
        )
    }
}

#[derive(InputObject)]
pub struct FinalizeInvoiceInput {
    pub project_id: Option<ID>,
    pub invoice_id: ID,
}

#[derive(SimpleObject)]
pub struct FinalizeInvoicePayload {
    pub invoice: Invoice,
}

#[derive(InputObject)]
pub struct VoidInvoiceInput {
    pub project_id: Option<ID>,
    pub invoice_id: ID,
    /// Why (kept with the invoice and its reversing transactions), 1 to 1000 characters.
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct VoidInvoicePayload {
    pub invoice: Invoice,
}

/// What a subscription's next invoice would be with the usage so far (nothing is stored).
pub struct UpcomingInvoice {
    row: Arc<InvoiceRow>,
    lines: Vec<LineRow>,
    unit: Currency,
}

impl UpcomingInvoice {
    fn money(&self, amount: rust_decimal::Decimal) -> Money {
        Money::in_unit(amount, &self.unit)
    }
}

#[Object]
impl UpcomingInvoice {
    /// The boundary it would be billed at (the end of the current period).
    async fn boundary(&self) -> DateTime<Utc> {
        utc(self.row.boundary)
    }
    /// The usage so far: from the last boundary billed to now.
    async fn usage_period(&self) -> Option<TimeSpan> {
        span(self.row.usage_from, self.row.usage_to)
    }
    /// The plan version it was computed under (another one for a what-if).
    async fn plan_version(&self, ctx: &Context<'_>) -> Result<PlanVersion> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(PlanVersion(
            plans::load_version(&mut conn, &self.row.project_id, &self.row.plan_version_id).await?,
        ))
    }
    async fn lines(&self) -> Vec<InvoiceLine> {
        self.lines
            .iter()
            .map(|row| InvoiceLine {
                row: row.clone(),
                unit: self.unit.clone(),
                invoice: self.row.clone(),
            })
            .collect()
    }
    async fn subtotal(&self) -> Money {
        self.money(self.row.subtotal)
    }
    async fn discount(&self) -> Money {
        self.money(self.row.discount)
    }
    /// What the period's threshold invoices billed so far, deducted (zero or negative).
    async fn billed_earlier(&self) -> Money {
        self.money(self.row.billed_earlier())
    }
    async fn tax(&self) -> Money {
        self.money(self.row.tax)
    }
    async fn total(&self) -> Money {
        self.money(self.row.total)
    }
    /// The prepaid credits that would pay it, from what the wallet holds now.
    async fn credits(&self) -> Money {
        self.money(self.row.credits)
    }
    async fn amount_due(&self) -> Money {
        self.money(self.row.amount_due)
    }
    /// When it was computed.
    async fn computed_at(&self) -> DateTime<Utc> {
        utc(self.row.computed_at)
    }
}

#[derive(Default)]
pub struct PreviewQuery;

#[Object]
impl PreviewQuery {
    /// The invoice a subscription would get at the end of its current period, with the usage so
    /// far; under `planVersionId` (any version of the project's plans), what it would be on that
    /// plan instead. Computed like a billing run, nothing written (scope `READ`). Null when the
    /// subscription does not exist.
    async fn upcoming_invoice(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        subscription_id: ID,
        plan_version_id: Option<ID>,
        #[graphql(
            desc = "The preview's clock (default: the server's; not later): the usage that occurred and arrived by then counts. Prepaid credits are what the wallet holds now."
        )]
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<UpcomingInvoice>> {
        absent_is_null(async {
            let project_id = match principal(ctx)?.customer_scope() {
                // A customer previews its own subscriptions, on their own plan.
                Some(own) => {
                    let project_id = super::customer_project(own, &project_id)?;
                    if plan_version_id.is_some() {
                        return Err(Error::Forbidden(
                            "a customer's portal session previews its own plan only: leave out planVersionId".into(),
                        )
                        .into());
                    }
                    let mut conn = db::get(&state(ctx).pool).await?;
                    let subscription = crate::store::subscriptions::find(&mut conn, &project_id, &subscription_id)
                        .await?
                        .ok_or(Error::NotFound("subscription"))?;
                    if subscription.customer_id != own.customer_id {
                        return Err(Error::NotFound("subscription").into());
                    }
                    project_id
                }
                None => resolve_project(ctx, &project_id, Scope::Read).await?,
            };
            let server_now = crate::store::now();
            let at = crate::time::opt_to_column("at", at)?.unwrap_or(server_now);
            if at > server_now {
                return Err(Error::invalid("at", "must not be later than the server's clock").into());
            }
            let mut conn = db::get(&state(ctx).pool).await?;
            let (row, lines) = runs::preview(
                &mut conn,
                &project_id,
                &subscription_id,
                plan_version_id.as_ref().map(|v| v.as_str()),
                at,
            )
            .await
            .map_err(|e| match e {
                // A what-if version that is not the project's names its field.
                Error::NotFound("plan version") => Error::invalid("planVersionId", "no such plan version"),
                other => other,
            })?;
            let unit = credit_units::stored_unit(&mut conn, &project_id, &row.currency).await?;
            Ok(UpcomingInvoice {
                row: Arc::new(row),
                lines,
                unit,
            })
        })
        .await
    }
}

/// One customer in a backtest: what its own plan version bills for the period, and the proposed.
pub struct BacktestCustomer {
    result: backtest::CustomerResult,
    unit: Currency,
}

#[Object]
impl BacktestCustomer {
    async fn customer_external_id(&self) -> &str {
        &self.result.customer_external_id
    }
    async fn subscription(&self) -> PlanSubscription {
        PlanSubscription(self.result.subscription.clone())
    }
    /// Under the subscription's own plan version.
    async fn current(&self) -> Money {
        Money::in_unit(self.result.current, &self.unit)
    }
    /// Under the proposed version.
    async fn proposed(&self) -> Money {
        Money::in_unit(self.result.proposed, &self.unit)
    }
    /// `proposed − current`.
    async fn difference(&self) -> Money {
        Money::in_unit(self.result.difference(), &self.unit)
    }
}

/// A proposed plan version rated against a past period's real usage.
pub struct PlanBacktest {
    result: backtest::Backtest,
    page: Connection<String, BacktestCustomer>,
}

#[Object]
impl PlanBacktest {
    async fn plan_version(&self) -> PlanVersion {
        PlanVersion(self.result.proposed.clone())
    }
    async fn from(&self) -> DateTime<Utc> {
        utc(self.result.from)
    }
    async fn to(&self) -> DateTime<Utc> {
        utc(self.result.to)
    }
    /// How many subscriptions were rated.
    async fn subscription_count(&self) -> i32 {
        i32::try_from(self.result.customers.len()).unwrap_or(i32::MAX)
    }
    /// What the subscriptions' own versions bill for the period, all customers.
    async fn current_total(&self) -> Money {
        Money::in_unit(self.result.current_total, &self.result.proposed.currency)
    }
    async fn proposed_total(&self) -> Money {
        Money::in_unit(self.result.proposed_total, &self.result.proposed.currency)
    }
    /// `proposedTotal − currentTotal`.
    async fn difference(&self) -> Money {
        Money::in_unit(
            self.result.proposed_total - self.result.current_total,
            &self.result.proposed.currency,
        )
    }
    /// Per customer, in subscription order: the page asked for by `first` and `after`.
    async fn customers(&self) -> &Connection<String, BacktestCustomer> {
        &self.page
    }
}

#[derive(Default)]
pub struct BacktestQuery;

#[Object]
impl BacktestQuery {
    /// Rates a proposed plan version against `[from, to)`'s real usage (events received by now)
    /// for every customer subscribed to its plan during the period, beside what each one's own
    /// version bills: the period as one billing period (fixed fee, usage charges, minimums), no
    /// coupons, taxes or credits. Aggregated in SQL; nothing is written (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn backtest_plan(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        plan_version_id: ID,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(desc = "Page size of `customers`, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page of `customers`.")] after: Option<String>,
    ) -> Result<PlanBacktest> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Backtest, after.as_deref())?;
        let from = crate::time::to_column("from", from)?;
        let to = crate::time::to_column("to", to)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let result =
            backtest::backtest(&mut conn, &project_id, &plan_version_id, from, to, crate::store::now()).await?;
        let unit = result.proposed.currency.clone();
        let rows: Vec<backtest::CustomerResult> = result
            .customers
            .iter()
            .filter(|c| after_key.as_deref().is_none_or(|a| c.subscription.id.as_str() > a))
            .take(size as usize + 1)
            .cloned()
            .collect();
        let page = pagination::connection(
            CursorKind::Backtest,
            rows,
            size,
            after.as_deref(),
            |c| c.subscription.id.clone(),
            |result| BacktestCustomer {
                result,
                unit: unit.clone(),
            },
        );
        Ok(PlanBacktest { result, page })
    }
}

/// One customer and currency of a billing export.
pub struct BillingExportRow(export::ExportRow);

#[Object]
impl BillingExportRow {
    async fn customer_external_id(&self) -> &str {
        &self.0.customer_external_id
    }
    /// Finalized and paid invoices with a boundary in the period.
    async fn invoices(&self) -> i32 {
        i32::try_from(self.0.invoices).unwrap_or(i32::MAX)
    }
    async fn invoiced(&self) -> Money {
        Money::stored(self.0.invoiced, &self.0.currency, &self.0.project_id)
    }
    /// Credit notes and adjustment invoices made in the period.
    async fn adjustments(&self) -> i32 {
        i32::try_from(self.0.adjustments).unwrap_or(i32::MAX)
    }
    /// What they corrected: the sum of their totals (negative for credit notes).
    async fn adjusted(&self) -> Money {
        Money::stored(self.0.adjusted, &self.0.currency, &self.0.project_id)
    }
    async fn credits_applied(&self) -> Money {
        Money::stored(self.0.credits_applied, &self.0.currency, &self.0.project_id)
    }
    async fn paid(&self) -> Money {
        Money::stored(self.0.paid, &self.0.currency, &self.0.project_id)
    }
    async fn outstanding(&self) -> Money {
        Money::stored(self.0.outstanding, &self.0.currency, &self.0.project_id)
    }
    /// What the invoices' and adjustments' postings left on the customer's receivable account.
    async fn ledger_receivable(&self) -> Money {
        Money::stored(self.0.ledger_receivable, &self.0.currency, &self.0.project_id)
    }
    /// Whether the invoices and the ledger agree (`ledgerReceivable = −(outstanding + paid)`).
    async fn ties_out(&self) -> bool {
        self.0.ties_out()
    }
}

/// The billing and reconciliation export of a period.
pub struct BillingExport {
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
    rows: Vec<export::ExportRow>,
}

#[Object]
impl BillingExport {
    async fn from(&self) -> DateTime<Utc> {
        utc(self.from)
    }
    async fn to(&self) -> DateTime<Utc> {
        utc(self.to)
    }
    /// Per customer and currency, by external id.
    async fn rows(&self) -> Vec<BillingExportRow> {
        self.rows.iter().cloned().map(BillingExportRow).collect()
    }
    /// Whether every row ties out with the ledger.
    async fn ties_out(&self) -> bool {
        self.rows.iter().all(export::ExportRow::ties_out)
    }
    /// The same rows as CSV (RFC 4180, a header line, exact amounts).
    async fn csv(&self) -> String {
        export::to_csv(&self.rows)
    }
}

/// The most rows `billingExport` answers; `neruba export` has no limit.
pub const MAX_EXPORT_ROWS: usize = 10_000;

#[derive(Default)]
pub struct ExportQuery;

#[Object]
impl ExportQuery {
    /// The period's billing and reconciliation export (scope `READ`): per customer and currency,
    /// invoiced, credits applied, paid and outstanding for the invoices with a boundary in
    /// `[from, to)` and the credit notes and adjustment invoices made in it, tied out with the
    /// ledger. `neruba export --period` prints the same.
    async fn billing_export(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BillingExport> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let from = crate::time::to_column("from", from)?;
        let to = crate::time::to_column("to", to)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = export::export(&mut conn, Some(&project_id), from, to).await?;
        if rows.len() > MAX_EXPORT_ROWS {
            return Err(Error::invalid(
                "to",
                format!("more than {MAX_EXPORT_ROWS} rows: export a shorter period, or use `neruba export`"),
            )
            .into());
        }
        Ok(BillingExport { from, to, rows })
    }
}

/// A page of the project's invoices under `filter`.
async fn invoice_page(
    ctx: &Context<'_>,
    project_id: &str,
    filter: &InvoiceFilter,
    order: ListOrder,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, Invoice>> {
    let size = pagination::page_size(first)?;
    let (kind, newest_first) = match order {
        ListOrder::OldestFirst => (CursorKind::Invoice, false),
        ListOrder::NewestFirst => (CursorKind::InvoiceNewest, true),
    };
    let after_key = pagination::after_key(kind, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = store::list(
        &mut conn,
        project_id,
        filter,
        after_key.as_deref(),
        newest_first,
        size + 1,
    )
    .await?;
    Ok(pagination::connection(
        kind,
        rows,
        size,
        after.as_deref(),
        |i| i.id.clone(),
        Invoice,
    ))
}

/// A page of one customer's invoices (for `Customer.invoices`; the caller checked access).
pub(crate) async fn customer_invoice_page(
    ctx: &Context<'_>,
    project_id: &str,
    customer_id: &str,
    status: Option<InvoiceStatus>,
    order: ListOrder,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, Invoice>> {
    let filter = InvoiceFilter {
        customer_id: Some(customer_id.to_string()),
        status: status.map(|s| s.as_str().to_string()),
        ..Default::default()
    };
    invoice_page(ctx, project_id, &filter, order, first, after).await
}
