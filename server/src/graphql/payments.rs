//! Payments: `createCheckout` and `setTopUpLimits` (scope `BILLING`), `payments` (scope `READ`),
//! the `CheckoutSession` and `Payment` nodes, and `Customer.payments` / `Invoice.payments`. The
//! flows are `payments::service`; the guide is docs/payments.md.

use async_graphql::{Context, ID, InputObject, Object, OneofObject, SimpleObject, connection::Connection};
use chrono::{DateTime, Utc};

use super::{
    Decimal, Money, absent_is_null,
    invoices::Invoice,
    ledger::{LedgerTransaction, Wallet},
    loaders::{CustomerLoader, load_link},
    pagination::{self, CursorKind},
    principal, require_read_of, resolve_project, state,
    types::utc,
    usage::Customer,
};
use crate::{
    auth::Scope,
    db,
    error::GraphqlResult as Result,
    payments::{
        CheckoutStatus, PaymentProvider, PaymentPurpose, PaymentStatus, TopUpLimits as Limits,
        service::{self, CheckoutRequest, PurposeRequest},
    },
    store::{
        invoices as invoice_store, ledger as ledger_store,
        payments::{self as store, CheckoutRow, PaymentFilter, PaymentRow},
    },
};

/// A checkout: where a customer is sent to pay for a top-up or an invoice.
pub struct CheckoutSession(pub(crate) CheckoutRow);

#[Object]
impl CheckoutSession {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Who started it: a key, the operator, or a customer through its portal session.
    async fn actor(&self) -> super::types::Actor {
        super::types::Actor::parse(&self.0.actor, &self.0.project_id)
    }
    async fn status(&self) -> Result<CheckoutStatus> {
        Ok(self.0.status.parse()?)
    }
    async fn purpose(&self) -> Result<PaymentPurpose> {
        Ok(self.0.purpose.parse()?)
    }
    /// What is paid: the top-up's amount, or the invoice's amount due, in its currency.
    async fn amount(&self) -> Money {
        Money::stored(self.0.amount, &self.0.currency, &self.0.project_id)
    }
    /// Where to send the customer: the provider's page (`null` only while the provider has not
    /// answered; retry `createCheckout` with the same key).
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    async fn success_url(&self) -> &str {
        &self.0.success_url
    }
    async fn cancel_url(&self) -> &str {
        &self.0.cancel_url
    }
    async fn provider(&self) -> Result<PaymentProvider> {
        Ok(self.0.provider.parse()?)
    }
    /// The provider's session id (Stripe's `cs_…`).
    async fn provider_session_id(&self) -> Option<&str> {
        self.0.provider_session_id.as_deref()
    }
    async fn idempotency_key(&self) -> &str {
        &self.0.idempotency_key
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.clone())
    }
    /// The wallet a top-up credits.
    async fn wallet_id(&self) -> Option<ID> {
        self.0.wallet_id.clone().map(ID)
    }
    /// The invoice it pays.
    async fn invoice_id(&self) -> Option<ID> {
        self.0.invoice_id.clone().map(ID)
    }
    /// Its payment (scope `READ`).
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(store::payment_of_checkout(&mut conn, &self.0.id).await?.map(Payment))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        utc(self.0.updated_at)
    }
}

/// A payment through a checkout: PENDING until the provider confirms it.
pub struct Payment(pub(crate) PaymentRow);

#[Object]
impl Payment {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn status(&self) -> Result<PaymentStatus> {
        Ok(self.0.status.parse()?)
    }
    async fn purpose(&self) -> Result<PaymentPurpose> {
        Ok(self.0.purpose.parse()?)
    }
    async fn amount(&self) -> Money {
        Money::stored(self.0.amount, &self.0.currency, &self.0.project_id)
    }
    async fn provider(&self) -> Result<PaymentProvider> {
        Ok(self.0.provider.parse()?)
    }
    /// The provider's payment (Stripe's PaymentIntent `pi_…`), once it succeeded.
    async fn provider_payment_id(&self) -> Option<&str> {
        self.0.provider_payment_id.as_deref()
    }
    /// Why it failed, when it did.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.clone())
    }
    /// The customer who paid (scope `READ`).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        absent_is_null(async {
            Ok(Customer(
                load_link::<CustomerLoader>(ctx, &self.0.project_id, &self.0.customer_id, "customer").await?,
            ))
        })
        .await
    }
    async fn checkout_session_id(&self) -> ID {
        ID(self.0.checkout_session_id.clone())
    }
    async fn checkout_session(&self, ctx: &Context<'_>) -> Result<Option<CheckoutSession>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(
            store::find_checkout(&mut conn, &self.0.project_id, &self.0.checkout_session_id)
                .await?
                .map(CheckoutSession),
        )
    }
    async fn wallet_id(&self) -> Option<ID> {
        self.0.wallet_id.clone().map(ID)
    }
    /// The wallet a top-up credited (scope `READ`).
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<Wallet>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let Some(id) = &self.0.wallet_id else {
            return Ok(None);
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(ledger_store::find_wallet(&mut conn, &self.0.project_id, id)
            .await?
            .map(Wallet))
    }
    async fn invoice_id(&self) -> Option<ID> {
        self.0.invoice_id.clone().map(ID)
    }
    /// The invoice it paid (scope `READ`).
    async fn invoice(&self, ctx: &Context<'_>) -> Result<Option<Invoice>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let Some(id) = &self.0.invoice_id else {
            return Ok(None);
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(invoice_store::find(&mut conn, &self.0.project_id, id)
            .await?
            .map(Invoice))
    }
    /// The ledger transactions it posted: the top-up or the invoice payment, then its refund
    /// (scope `READ`).
    async fn ledger_transactions(&self, ctx: &Context<'_>) -> Result<Vec<LedgerTransaction>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let mut found = Vec::new();
        for id in [&self.0.transaction_id, &self.0.refund_transaction_id]
            .into_iter()
            .flatten()
        {
            if let Some(t) = ledger_store::find_transaction(&mut conn, &self.0.project_id, id).await? {
                found.push(LedgerTransaction(t));
            }
        }
        Ok(found)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        utc(self.0.updated_at)
    }
}

/// A page of the project's payments, oldest first, filtered.
pub(crate) async fn payment_page(
    ctx: &Context<'_>,
    project_id: &str,
    filter: PaymentFilter,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, Payment>> {
    let size = pagination::page_size(first)?;
    let after_key = pagination::after_key(CursorKind::Payment, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = store::list_payments(&mut conn, project_id, &filter, after_key.as_deref(), size + 1).await?;
    Ok(pagination::connection(
        CursorKind::Payment,
        rows,
        size,
        after.as_deref(),
        |p| p.id.clone(),
        Payment,
    ))
}

#[derive(Default)]
pub struct PaymentQuery;

#[Object]
impl PaymentQuery {
    /// The project's payments, oldest first (by id, which is time-ordered), optionally of one
    /// customer or invoice, or in one status (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        customer_id: Option<ID>,
        invoice_id: Option<ID>,
        status: Option<PaymentStatus>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Payment>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let filter = PaymentFilter {
            customer_id: customer_id.map(|c| c.0),
            invoice_id: invoice_id.map(|i| i.0),
            status: status.map(|s| s.as_str().to_string()),
        };
        payment_page(ctx, &project_id, filter, first, after).await
    }
}

/// What a checkout pays for: exactly one of `topUp` and `invoice`.
#[derive(OneofObject)]
pub enum CheckoutPurposeInput {
    /// Credits into a wallet (in an ISO 4217 currency), within the project's top-up limits.
    TopUp(TopUpPurposeInput),
    /// A finalized invoice's amount due.
    Invoice(InvoicePurposeInput),
}

#[derive(InputObject)]
pub struct TopUpPurposeInput {
    pub wallet_id: ID,
    /// In the wallet's currency: at most its minor units' places, within the project's
    /// `topUpLimits`.
    pub amount: Decimal,
}

#[derive(InputObject)]
pub struct InvoicePurposeInput {
    pub invoice_id: ID,
}

#[derive(InputObject)]
pub struct CreateCheckoutInput {
    /// The operator names the project; a key acts on its own.
    pub project_id: Option<ID>,
    pub purpose: CheckoutPurposeInput,
    /// Where the provider sends the customer after paying: an `http(s)` URL, at most 2048
    /// characters.
    pub success_url: String,
    /// Where the provider sends the customer who gives up (or whose payment failed).
    pub cancel_url: String,
    /// The same key and request answer the same checkout; another request is
    /// `IDEMPOTENCY_CONFLICT`.
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct CreateCheckoutPayload {
    pub checkout_session: CheckoutSession,
    /// Where to send the customer (the checkout's `url`).
    pub url: Option<String>,
    /// An earlier request with this idempotency key made it.
    pub replayed: bool,
}

#[derive(InputObject)]
pub struct SetTopUpLimitsInput {
    pub project_id: Option<ID>,
    /// The least one top-up checkout takes, above zero (default 1).
    pub minimum: Decimal,
    /// The most (default 10000); not below the minimum.
    pub maximum: Decimal,
    /// Amounts a checkout page may offer, within the limits, at most 10 (default none).
    #[graphql(default)]
    pub presets: Vec<Decimal>,
}

/// A project's limits on top-ups through checkout, in the topped-up wallet's unit.
pub struct TopUpLimits(pub Limits);

#[Object]
impl TopUpLimits {
    async fn minimum(&self) -> Decimal {
        Decimal(self.0.minimum.normalize().to_string())
    }
    async fn maximum(&self) -> Decimal {
        Decimal(self.0.maximum.normalize().to_string())
    }
    async fn presets(&self) -> Vec<Decimal> {
        self.0
            .presets
            .iter()
            .map(|p| Decimal(p.normalize().to_string()))
            .collect()
    }
}

#[derive(SimpleObject)]
pub struct SetTopUpLimitsPayload {
    pub top_up_limits: TopUpLimits,
}

/// A project's top-up limits (for `Project.topUpLimits`; scope `READ`).
pub(crate) async fn project_top_up_limits(ctx: &Context<'_>, project_id: &str) -> Result<TopUpLimits> {
    super::require_read_reached(ctx, project_id)?;
    let mut conn = db::get(&state(ctx).pool).await?;
    Ok(TopUpLimits(service::top_up_limits(&mut conn, project_id).await?))
}

#[derive(Default)]
pub struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// Starts a payment (scope `BILLING`): a top-up of a wallet, or an invoice's amount due.
    /// Answers the URL to send the customer to: Stripe Checkout when Stripe is configured, the
    /// sandbox's page otherwise. Nothing is credited or marked paid until the provider's webhook
    /// confirms the payment.
    ///
    /// A customer's portal session may pay for its own wallets and invoices (another customer's
    /// are `NOT_FOUND`); its idempotency keys are its own.
    async fn create_checkout(&self, ctx: &Context<'_>, input: CreateCheckoutInput) -> Result<CreateCheckoutPayload> {
        let caller = principal(ctx)?;
        let (project_id, customer_id) = match caller.customer_scope() {
            Some(own) => (
                super::customer_project(own, &input.project_id)?,
                Some(own.customer_id.to_string()),
            ),
            None => (resolve_project(ctx, &input.project_id, Scope::Billing).await?, None),
        };
        // A customer returns to the portal or to the project's own site.
        let return_origins: Vec<String> = match caller {
            crate::auth::Principal::Customer(session) => [
                Some(state(ctx).config.public_url.as_str()),
                session.return_url.as_deref(),
            ]
            .into_iter()
            .flatten()
            .filter_map(crate::payments::origin)
            .collect(),
            _ => Vec::new(),
        };
        let actor = caller.actor();
        let purpose = match input.purpose {
            CheckoutPurposeInput::TopUp(t) => PurposeRequest::TopUp {
                wallet_id: t.wallet_id.0,
                amount: t.amount.0,
            },
            CheckoutPurposeInput::Invoice(i) => PurposeRequest::Invoice {
                invoice_id: i.invoice_id.0,
            },
        };
        let request = CheckoutRequest {
            purpose,
            success_url: input.success_url,
            cancel_url: input.cancel_url,
            idempotency_key: input.idempotency_key,
            customer_id,
            return_origins,
        };
        let app = state(ctx);
        let mut conn = db::get(&app.pool).await?;
        let done = service::create_checkout(
            &mut conn,
            &app.config.payments,
            &app.config.public_url,
            &project_id,
            &actor,
            &request,
        )
        .await?;
        Ok(CreateCheckoutPayload {
            url: done.checkout.url.clone(),
            checkout_session: CheckoutSession(done.checkout),
            replayed: done.replayed,
        })
    }

    /// Sets the project's top-up limits (scope `BILLING` or `ADMIN`).
    async fn set_top_up_limits(&self, ctx: &Context<'_>, input: SetTopUpLimitsInput) -> Result<SetTopUpLimitsPayload> {
        let principal = principal(ctx)?;
        let project_id = principal.project_for_any(
            super::opt_id(&input.project_id),
            "projectId",
            &[Scope::Billing, Scope::Admin],
        )?;
        if principal.is_operator() {
            let mut conn = db::get(&state(ctx).pool).await?;
            crate::projects::find_project(&mut conn, &project_id).await?;
        }
        let presets: Vec<String> = input.presets.into_iter().map(|p| p.0).collect();
        let limits = Limits::parse(&input.minimum.0, &input.maximum.0, &presets)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let stored = service::set_top_up_limits(&mut conn, &project_id, &limits).await?;
        Ok(SetTopUpLimitsPayload {
            top_up_limits: TopUpLimits(stored),
        })
    }
}
