//! The `checkout_sessions`, `payments`, `webhook_events`, `stripe_customers`, `payment_settings`
//! and `payment_secrets` tables.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{
    Conn,
    schema::{checkout_sessions, payment_secrets, payment_settings, payments, stripe_customers, webhook_events},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = checkout_sessions, check_for_backend(diesel::mysql::Mysql))]
pub struct CheckoutRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub purpose: String,
    pub wallet_id: Option<String>,
    pub invoice_id: Option<String>,
    pub currency: String,
    pub amount: Decimal,
    pub provider: String,
    pub provider_session_id: Option<String>,
    pub url: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub status: String,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
    pub actor: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(diesel::mysql::Mysql))]
pub struct PaymentRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub checkout_session_id: String,
    pub purpose: String,
    pub wallet_id: Option<String>,
    pub invoice_id: Option<String>,
    pub currency: String,
    pub amount: Decimal,
    pub status: String,
    pub provider: String,
    pub provider_payment_id: Option<String>,
    pub transaction_id: Option<String>,
    pub refund_transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = webhook_events, check_for_backend(diesel::mysql::Mysql))]
pub struct NewWebhookEvent {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub object_ref: Option<String>,
    pub checkout_session_id: Option<String>,
    pub project_id: Option<String>,
    pub signature_hash: Vec<u8>,
    pub payload: String,
    pub outcome: String,
    pub received_at: NaiveDateTime,
    pub processed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = webhook_events, check_for_backend(diesel::mysql::Mysql))]
pub struct WebhookEventRow {
    pub seq: u64,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub object_ref: Option<String>,
    pub checkout_session_id: Option<String>,
    pub project_id: Option<String>,
    pub signature_hash: Vec<u8>,
    pub payload: String,
    pub outcome: String,
    pub received_at: NaiveDateTime,
    pub processed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_settings, check_for_backend(diesel::mysql::Mysql))]
pub struct SettingsRow {
    pub project_id: String,
    pub top_up_minimum: Decimal,
    pub top_up_maximum: Decimal,
    pub top_up_presets: String,
    pub updated_at: NaiveDateTime,
}

// ---- checkout sessions

pub async fn insert_checkout(conn: &mut Conn, row: &CheckoutRow) -> QueryResult<()> {
    diesel::insert_into(checkout_sessions::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find_checkout(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<CheckoutRow>> {
    checkout_sessions::table
        .filter(checkout_sessions::project_id.eq(project_id))
        .filter(checkout_sessions::id.eq(id))
        .select(CheckoutRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A checkout by id alone (the sandbox's pages, which carry no credential: the id is the link).
pub async fn find_checkout_by_id(conn: &mut Conn, id: &str) -> QueryResult<Option<CheckoutRow>> {
    checkout_sessions::table
        .filter(checkout_sessions::id.eq(id))
        .select(CheckoutRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_checkout_by_key(conn: &mut Conn, project_id: &str, key: &str) -> QueryResult<Option<CheckoutRow>> {
    checkout_sessions::table
        .filter(checkout_sessions::project_id.eq(project_id))
        .filter(checkout_sessions::idempotency_key.eq(key))
        .select(CheckoutRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A customer's checkouts still open that were made since `since`.
pub async fn count_open_checkouts(conn: &mut Conn, customer_id: &str, since: NaiveDateTime) -> QueryResult<i64> {
    checkout_sessions::table
        .filter(checkout_sessions::customer_id.eq(customer_id))
        .filter(checkout_sessions::status.eq("OPEN"))
        .filter(checkout_sessions::created_at.ge(since))
        .count()
        .get_result(conn)
        .await
}

/// The checkout of a provider session, locked.
pub async fn lock_checkout_by_provider_session(
    conn: &mut Conn,
    provider: &str,
    session: &str,
) -> QueryResult<Option<CheckoutRow>> {
    checkout_sessions::table
        .filter(checkout_sessions::provider.eq(provider))
        .filter(checkout_sessions::provider_session_id.eq(session))
        .select(CheckoutRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Records the provider's session and the URL the customer goes to (once; a retry that finds
/// them set keeps them).
pub async fn set_checkout_provider_session(
    conn: &mut Conn,
    id: &str,
    session: &str,
    url: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        checkout_sessions::table
            .filter(checkout_sessions::id.eq(id))
            .filter(checkout_sessions::provider_session_id.is_null()),
    )
    .set((
        checkout_sessions::provider_session_id.eq(session),
        checkout_sessions::url.eq(url),
        checkout_sessions::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn set_checkout_status(conn: &mut Conn, id: &str, status: &str, now: NaiveDateTime) -> QueryResult<()> {
    diesel::update(checkout_sessions::table.filter(checkout_sessions::id.eq(id)))
        .set((
            checkout_sessions::status.eq(status),
            checkout_sessions::updated_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

// ---- payments

pub async fn insert_payment(conn: &mut Conn, row: &PaymentRow) -> QueryResult<()> {
    diesel::insert_into(payments::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find_payment(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::project_id.eq(project_id))
        .filter(payments::id.eq(id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn payment_of_checkout(conn: &mut Conn, checkout_id: &str) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::checkout_session_id.eq(checkout_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock_payment_of_checkout(conn: &mut Conn, checkout_id: &str) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::checkout_session_id.eq(checkout_id))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The payment the provider knows as `provider_payment_id`, locked.
pub async fn lock_payment_by_provider_id(
    conn: &mut Conn,
    provider: &str,
    provider_payment_id: &str,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::provider.eq(provider))
        .filter(payments::provider_payment_id.eq(provider_payment_id))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn update_payment(conn: &mut Conn, row: &PaymentRow) -> QueryResult<()> {
    diesel::update(payments::table.filter(payments::id.eq(&row.id)))
        .set((
            payments::status.eq(&row.status),
            payments::provider_payment_id.eq(&row.provider_payment_id),
            payments::transaction_id.eq(&row.transaction_id),
            payments::refund_transaction_id.eq(&row.refund_transaction_id),
            payments::failure_reason.eq(&row.failure_reason),
            payments::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// What `payments(…)` filters on.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub customer_id: Option<String>,
    pub invoice_id: Option<String>,
    pub status: Option<String>,
}

/// A page of the project's payments in id order (oldest first), after the cursor `after`.
pub async fn list_payments(
    conn: &mut Conn,
    project_id: &str,
    filter: &PaymentFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<PaymentRow>> {
    let mut query = payments::table
        .filter(payments::project_id.eq(project_id))
        .select(PaymentRow::as_select())
        .order(payments::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(c) = &filter.customer_id {
        query = query.filter(payments::customer_id.eq(c.clone()));
    }
    if let Some(i) = &filter.invoice_id {
        query = query.filter(payments::invoice_id.eq(i.clone()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(payments::status.eq(s.clone()));
    }
    if let Some(a) = after {
        query = query.filter(payments::id.gt(a.to_string()));
    }
    query.load(conn).await
}

// ---- webhook events

pub async fn insert_event(conn: &mut Conn, row: &NewWebhookEvent) -> QueryResult<()> {
    diesel::insert_into(webhook_events::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find_event(conn: &mut Conn, provider: &str, event_id: &str) -> QueryResult<Option<WebhookEventRow>> {
    webhook_events::table
        .filter(webhook_events::provider.eq(provider))
        .filter(webhook_events::event_id.eq(event_id))
        .select(WebhookEventRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The events about `object_ref` that waited for their payment, oldest first, locked.
pub async fn lock_deferred_events(conn: &mut Conn, object_ref: &str) -> QueryResult<Vec<WebhookEventRow>> {
    webhook_events::table
        .filter(webhook_events::object_ref.eq(object_ref))
        .filter(webhook_events::outcome.eq("DEFERRED"))
        .select(WebhookEventRow::as_select())
        .order(webhook_events::seq.asc())
        .for_update()
        .load(conn)
        .await
}

pub async fn set_event_outcome(
    conn: &mut Conn,
    seq: u64,
    outcome: &str,
    checkout_session_id: Option<&str>,
    project_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(webhook_events::table.filter(webhook_events::seq.eq(seq)))
        .set((
            webhook_events::outcome.eq(outcome),
            webhook_events::checkout_session_id.eq(checkout_session_id),
            webhook_events::project_id.eq(project_id),
            webhook_events::processed_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

// ---- Stripe customers

pub async fn stripe_customer(conn: &mut Conn, customer_id: &str) -> QueryResult<Option<String>> {
    stripe_customers::table
        .filter(stripe_customers::customer_id.eq(customer_id))
        .select(stripe_customers::stripe_customer_id)
        .first(conn)
        .await
        .optional()
}

/// Remembers the Stripe customer of a customer, unless one is remembered already (a concurrent
/// first checkout); answers the one kept.
pub async fn remember_stripe_customer(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    stripe_customer_id: &str,
    now: NaiveDateTime,
) -> QueryResult<String> {
    diesel::insert_or_ignore_into(stripe_customers::table)
        .values((
            stripe_customers::customer_id.eq(customer_id),
            stripe_customers::project_id.eq(project_id),
            stripe_customers::stripe_customer_id.eq(stripe_customer_id),
            stripe_customers::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(stripe_customer(conn, customer_id)
        .await?
        .unwrap_or_else(|| stripe_customer_id.to_string()))
}

// ---- settings and secrets

pub async fn settings(conn: &mut Conn, project_id: &str) -> QueryResult<Option<SettingsRow>> {
    payment_settings::table
        .filter(payment_settings::project_id.eq(project_id))
        .select(SettingsRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn upsert_settings(conn: &mut Conn, row: &SettingsRow) -> QueryResult<()> {
    diesel::replace_into(payment_settings::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The shared secret `name`, made from `candidate` by whichever replica asks first.
pub async fn shared_secret(conn: &mut Conn, name: &str, candidate: &str, now: NaiveDateTime) -> QueryResult<String> {
    diesel::insert_or_ignore_into(payment_secrets::table)
        .values((
            payment_secrets::name.eq(name),
            payment_secrets::secret.eq(candidate),
            payment_secrets::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    payment_secrets::table
        .filter(payment_secrets::name.eq(name))
        .select(payment_secrets::secret)
        .first(conn)
        .await
}

/// Moves an invoice from one status to another (PAID when paid, FINALIZED again when the
/// payment is refunded); answers whether it was in `from`.
pub async fn set_invoice_status(
    conn: &mut Conn,
    invoice_id: &str,
    from: &str,
    to: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    use super::schema::invoices;
    diesel::update(
        invoices::table
            .filter(invoices::id.eq(invoice_id))
            .filter(invoices::status.eq(from)),
    )
    .set((invoices::status.eq(to), invoices::updated_at.eq(now)))
    .execute(conn)
    .await
    .map(|n| n == 1)
}
