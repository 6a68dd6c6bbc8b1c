//! The payment flows, each inside transactions: creating a checkout (and its provider session),
//! receiving a provider's webhook exactly once, and what a succeeded, failed or refunded payment
//! changes (the ledger, the invoice, the payment and checkout rows).
//!
//! Lock order in a webhook's transaction: the event row (its unique index), the checkout, its
//! payment, then the wallet (through the ledger) or the invoice. Nothing here locks in another
//! order, so two deliveries of one event, or two events of one session, wait for each other.

use chrono::NaiveDateTime;
use diesel::result::Error as DieselError;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::{
    Action, CHECKOUT_ID_PREFIX, CheckoutStatus, MAX_MINOR_UNITS, PAYMENT_ID_PREFIX, PaymentProvider, PaymentPurpose,
    PaymentStatus, ProviderEvent, TopUpLimits, parse_event, parse_return_url, stripe, to_minor_units, verify_signature,
};
use crate::{
    billing::runs::InvoiceStatus,
    config::PaymentsConfig,
    credit_units,
    currency::Currency,
    db::{self, TxFailure},
    error::{Error, ErrorCode, Result},
    ids,
    ledger::{
        parse_positive_amount, request_hash,
        service::{self as ledger_service, MoneyRequest, OpKind, Operation, SYSTEM_ACTOR},
    },
    money::canonical,
    store::{
        Conn, invoices as invoice_store,
        payments::{self as store, CheckoutRow, NewWebhookEvent, PaymentRow, SettingsRow},
    },
};

/// The provider checkouts go to now: Stripe when a key is configured, else the sandbox when it is
/// on, else none.
pub fn active_provider(config: &PaymentsConfig) -> Option<PaymentProvider> {
    if config.stripe.is_some() {
        Some(PaymentProvider::Stripe)
    } else if config.sandbox {
        Some(PaymentProvider::Sandbox)
    } else {
        None
    }
}

/// What a checkout pays for, as a client sends it.
#[derive(Debug, Clone)]
pub enum PurposeRequest {
    TopUp { wallet_id: String, amount: String },
    Invoice { invoice_id: String },
}

#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub purpose: PurposeRequest,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: String,
    /// Set for a customer's portal session: only this customer's wallet or invoice may be paid
    /// for (another's is `NOT_FOUND`), and its idempotency keys are its own.
    pub customer_id: Option<String>,
    /// For a customer's portal session: the origins (`payments::origin`) its return URLs must be
    /// on (the portal's and the project's site), so a provider's page cannot redirect anywhere
    /// under the project's name.
    pub return_origins: Vec<String>,
}

/// A checkout, and whether it was made by an earlier request with the same key.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub checkout: CheckoutRow,
    pub replayed: bool,
}

// ---- top-up limits

/// The project's top-up limits (the defaults until it sets its own).
pub async fn top_up_limits(conn: &mut Conn, project_id: &str) -> Result<TopUpLimits> {
    Ok(match store::settings(conn, project_id).await? {
        Some(row) => TopUpLimits {
            minimum: row.top_up_minimum.normalize(),
            maximum: row.top_up_maximum.normalize(),
            presets: TopUpLimits::presets_from_json(&row.top_up_presets)?,
        },
        None => TopUpLimits::default(),
    })
}

/// Replaces the project's top-up limits (the same again changes nothing but the time).
pub async fn set_top_up_limits(conn: &mut Conn, project_id: &str, limits: &TopUpLimits) -> Result<TopUpLimits> {
    store::upsert_settings(
        conn,
        &SettingsRow {
            project_id: project_id.to_string(),
            top_up_minimum: limits.minimum,
            top_up_maximum: limits.maximum,
            top_up_presets: limits.presets_json(),
            updated_at: crate::store::now(),
        },
    )
    .await?;
    top_up_limits(conn, project_id).await
}

// ---- checkout

/// How many open checkouts a customer's portal session may have made in the last hour.
pub const MAX_OPEN_CHECKOUTS_PER_HOUR: i64 = 20;

/// What a checkout resolved to before it is stored.
struct Target {
    purpose: PaymentPurpose,
    customer_id: String,
    wallet_id: Option<String>,
    invoice_id: Option<String>,
    currency: String,
    amount: Decimal,
}

/// Creates a checkout (scope `BILLING`): validates the request, stores the checkout and its
/// PENDING payment, then asks the provider for its session. The same idempotency key with the
/// same request answers the first checkout (`replayed`), finishing its provider session if an
/// earlier attempt stopped before; with another request it is `IDEMPOTENCY_CONFLICT`.
pub async fn create_checkout(
    conn: &mut Conn,
    config: &PaymentsConfig,
    public_url: &str,
    project_id: &str,
    actor: &str,
    request: &CheckoutRequest,
) -> Result<Checkout> {
    let key = ids::parse_idempotency_key("idempotencyKey", &request.idempotency_key)?;
    // A customer's keys live in a namespace of their own, so that a customer neither replays nor
    // collides with the project's checkouts or another customer's.
    let key = match &request.customer_id {
        Some(customer_id) => {
            let scoped = format!("{}portal:{customer_id}:{key}", ids::RESERVED_KEY_PREFIX);
            if scoped.chars().count() > ids::MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(Error::invalid(
                    "idempotencyKey",
                    format!(
                        "must be at most {} characters from a portal session",
                        ids::MAX_IDEMPOTENCY_KEY_CHARS + key.chars().count() - scoped.chars().count()
                    ),
                ));
            }
            scoped
        }
        None => key,
    };
    let success_url = parse_return_url("successUrl", &request.success_url)?;
    let cancel_url = parse_return_url("cancelUrl", &request.cancel_url)?;
    if request.customer_id.is_some() {
        for (field, url) in [("successUrl", &success_url), ("cancelUrl", &cancel_url)] {
            if !super::origin(url).is_some_and(|o| request.return_origins.contains(&o)) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "must be on the portal's or the project's site from a portal session ({})",
                        request.return_origins.join(", ")
                    ),
                ));
            }
        }
    }
    let (kind, object_id, amount) = match &request.purpose {
        PurposeRequest::TopUp { wallet_id, amount } => (
            PaymentPurpose::TopUp,
            wallet_id.as_str(),
            Some(parse_positive_amount("amount", amount)?),
        ),
        PurposeRequest::Invoice { invoice_id } => (PaymentPurpose::Invoice, invoice_id.as_str(), None),
    };
    let hash = request_hash(&[
        kind.as_str(),
        object_id,
        &amount.map(canonical).unwrap_or_default(),
        &success_url,
        &cancel_url,
    ]);
    let provider = active_provider(config).ok_or_else(|| {
        Error::conflict(
            ErrorCode::PaymentsNotConfigured,
            "no payment provider is configured: set NERUBA_STRIPE_SECRET_KEY, or NERUBA_PAYMENTS_SANDBOX=true",
        )
    })?;

    let stored = match replay(conn, project_id, &key, &hash).await? {
        Some(existing) => Checkout {
            checkout: existing,
            replayed: true,
        },
        None => {
            let target = resolve_target(
                conn,
                project_id,
                request.customer_id.as_deref(),
                &request.purpose,
                amount,
            )
            .await?;
            if let Some(customer_id) = &request.customer_id {
                // A portal session cannot pile up checkouts (each a pending payment the project
                // sees, and a provider call).
                let since = crate::store::now() - chrono::Duration::hours(1);
                if store::count_open_checkouts(conn, customer_id, since).await? >= MAX_OPEN_CHECKOUTS_PER_HOUR {
                    return Err(Error::conflict(
                        ErrorCode::TooManyCheckouts,
                        format!(
                            "at most {MAX_OPEN_CHECKOUTS_PER_HOUR} checkouts may be open from the last hour: finish or abandon one, then retry later"
                        ),
                    ));
                }
            }
            let now = crate::store::now();
            let checkout = CheckoutRow {
                id: ids::new_id(CHECKOUT_ID_PREFIX),
                project_id: project_id.to_string(),
                customer_id: target.customer_id.clone(),
                purpose: target.purpose.as_str().into(),
                wallet_id: target.wallet_id.clone(),
                invoice_id: target.invoice_id.clone(),
                currency: target.currency.clone(),
                amount: target.amount,
                provider: provider.as_str().into(),
                provider_session_id: None,
                url: None,
                success_url,
                cancel_url,
                status: CheckoutStatus::Open.as_str().into(),
                idempotency_key: key.clone(),
                request_hash: hash.clone(),
                actor: actor.to_string(),
                created_at: now,
                updated_at: now,
            };
            let payment = PaymentRow {
                id: ids::new_id(PAYMENT_ID_PREFIX),
                project_id: project_id.to_string(),
                customer_id: target.customer_id,
                checkout_session_id: checkout.id.clone(),
                purpose: target.purpose.as_str().into(),
                wallet_id: target.wallet_id,
                invoice_id: target.invoice_id,
                currency: target.currency,
                amount: target.amount,
                status: PaymentStatus::Pending.as_str().into(),
                provider: provider.as_str().into(),
                provider_payment_id: None,
                transaction_id: None,
                refund_transaction_id: None,
                failure_reason: None,
                created_at: now,
                updated_at: now,
            };
            let inserted: Result<()> = db::transaction_with_retry!(conn, |_: &DieselError| false, |c| {
                store::insert_checkout(c, &checkout).await?;
                store::insert_payment(c, &payment).await?;
                Ok::<_, TxFailure>(())
            });
            match inserted {
                Ok(()) => Checkout {
                    checkout,
                    replayed: false,
                },
                // A concurrent request with the same key stored first: answer as its replay.
                Err(e) => match replay(conn, project_id, &key, &hash).await? {
                    Some(existing) => Checkout {
                        checkout: existing,
                        replayed: true,
                    },
                    None => return Err(e),
                },
            }
        }
    };
    if stored.checkout.provider_session_id.is_some() {
        return Ok(stored);
    }
    // The provider's session, outside any transaction (a network call); a failure leaves the
    // checkout without one, and a retry with the same key continues here.
    let (session, url) = match stored.checkout.provider.parse::<PaymentProvider>()? {
        PaymentProvider::Sandbox => (
            format!("cs_sbx_{}", &stored.checkout.id[CHECKOUT_ID_PREFIX.len() + 1..]),
            format!("{public_url}/sandbox/checkout/{}", stored.checkout.id),
        ),
        PaymentProvider::Stripe => {
            let stripe_config = config.stripe.as_ref().ok_or_else(|| {
                Error::conflict(
                    ErrorCode::PaymentsNotConfigured,
                    "this checkout was made for Stripe, which is no longer configured",
                )
            })?;
            let session = stripe::create_session(conn, stripe_config, &stored.checkout).await?;
            (session.id, session.url)
        }
    };
    let now = crate::store::now();
    store::set_checkout_provider_session(conn, &stored.checkout.id, &session, &url, now).await?;
    let checkout = store::find_checkout(conn, project_id, &stored.checkout.id)
        .await?
        .ok_or_else(|| Error::Internal("the checkout just stored is gone".into()))?;
    Ok(Checkout {
        checkout,
        replayed: stored.replayed,
    })
}

/// The checkout stored under `key`, when its request was the same; a different one is a conflict.
async fn replay(conn: &mut Conn, project_id: &str, key: &str, hash: &[u8]) -> Result<Option<CheckoutRow>> {
    match store::find_checkout_by_key(conn, project_id, key).await? {
        Some(existing) if existing.request_hash == hash => Ok(Some(existing)),
        Some(_) => Err(Error::conflict(
            ErrorCode::IdempotencyConflict,
            format!("idempotency key '{key}' was already used for a different checkout"),
        )),
        None => Ok(None),
    }
}

/// Checks what the checkout pays for: the wallet or invoice is the project's (`NOT_FOUND`
/// otherwise, like an absent one), in a currency, and payable now.
async fn resolve_target(
    conn: &mut Conn,
    project_id: &str,
    customer_id: Option<&str>,
    purpose: &PurposeRequest,
    amount: Option<Decimal>,
) -> Result<Target> {
    match purpose {
        PurposeRequest::TopUp { wallet_id, .. } => {
            let wallet = ledger_service::find_wallet(conn, project_id, wallet_id).await?;
            if customer_id.is_some_and(|own| own != wallet.customer_id) {
                return Err(Error::NotFound("wallet"));
            }
            let amount = amount.ok_or_else(|| Error::invalid("amount", "is required"))?;
            let unit: Currency = credit_units::stored_unit(conn, project_id, &wallet.currency).await?;
            unit.check_precision("amount", amount)?;
            top_up_limits(conn, project_id).await?.check("amount", amount)?;
            payable("amount", amount, &unit)?;
            Ok(Target {
                purpose: PaymentPurpose::TopUp,
                customer_id: wallet.customer_id,
                wallet_id: Some(wallet.id),
                invoice_id: None,
                currency: wallet.currency,
                amount,
            })
        }
        PurposeRequest::Invoice { invoice_id } => {
            if !ids::looks_like(crate::billing::runs::INVOICE_ID_PREFIX, invoice_id) {
                return Err(Error::NotFound("invoice"));
            }
            let invoice = invoice_store::find(conn, project_id, invoice_id)
                .await?
                .ok_or(Error::NotFound("invoice"))?;
            if customer_id.is_some_and(|own| own != invoice.customer_id) {
                return Err(Error::NotFound("invoice"));
            }
            let status: InvoiceStatus = invoice.status.parse()?;
            if status != InvoiceStatus::Finalized {
                return Err(Error::conflict(
                    ErrorCode::InvoiceStatusConflict,
                    format!("invoice {} is {status}: only a finalized invoice is paid", invoice.id),
                ));
            }
            if invoice.amount_due <= Decimal::ZERO {
                return Err(Error::conflict(
                    ErrorCode::InvoiceStatusConflict,
                    format!("invoice {} has nothing due", invoice.id),
                ));
            }
            let unit: Currency = credit_units::stored_unit(conn, project_id, &invoice.currency).await?;
            payable("invoiceId", invoice.amount_due, &unit)?;
            Ok(Target {
                purpose: PaymentPurpose::Invoice,
                customer_id: invoice.customer_id,
                wallet_id: None,
                invoice_id: Some(invoice.id),
                currency: invoice.currency,
                amount: invoice.amount_due.normalize(),
            })
        }
    }
}

/// Whether a provider can take `amount`: in a currency's minor units, at most Stripe's limit.
fn payable(field: &str, amount: Decimal, unit: &Currency) -> Result<i64> {
    let minor = to_minor_units(field, amount, unit)?;
    if minor > MAX_MINOR_UNITS {
        return Err(Error::invalid(field, "is more than one checkout takes"));
    }
    Ok(minor)
}

// ---- webhooks

/// The sandbox's signing secret, shared by every replica through the database.
pub async fn sandbox_secret(conn: &mut Conn) -> Result<String> {
    let candidate = crate::auth::keys::random_token("whsec_sbx_");
    Ok(store::shared_secret(conn, "sandbox_webhook", &candidate, crate::store::now()).await?)
}

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub event_id: String,
    /// This event id was processed before (a provider's retry): nothing was done again.
    pub duplicate: bool,
    /// `APPLIED`, `IGNORED` or `DEFERRED` (see the `webhook_events` table).
    pub outcome: String,
}

/// A duplicate event id or idempotency key inserted concurrently: running again finds the first.
fn retryable(e: &DieselError) -> bool {
    db::is_unique_violation(e, "uq_webhook_events_event") || ledger_service::retryable(e)
}

/// Receives one webhook delivery: verifies `Stripe-Signature` against the configured secrets
/// (and the sandbox's, when it is the provider), then stores and processes the event in one
/// transaction, once per event id. A refused signature, a body that is not an event, and an event
/// about a checkout Neruba did not make change nothing.
pub async fn receive_webhook(
    conn: &mut Conn,
    config: &PaymentsConfig,
    signature: Option<&str>,
    payload: &[u8],
    now: NaiveDateTime,
) -> Result<Received> {
    let invalid = |m: String| Error::conflict(ErrorCode::WebhookSignatureInvalid, m);
    let provider = active_provider(config).ok_or_else(|| {
        Error::conflict(
            ErrorCode::PaymentsNotConfigured,
            "no payment provider is configured; no webhook is expected",
        )
    })?;
    let header = signature.ok_or_else(|| invalid("the Stripe-Signature header is missing".into()))?;
    let mut secrets: Vec<String> = config.webhook_secrets.iter().map(|s| s.0.clone()).collect();
    if provider == PaymentProvider::Sandbox {
        secrets.push(sandbox_secret(conn).await?);
    }
    if secrets.is_empty() {
        return Err(invalid("no webhook secret is configured".into()));
    }
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    verify_signature(
        header,
        payload,
        &secret_refs,
        now.and_utc().timestamp(),
        i64::from(config.webhook_tolerance_secs),
    )
    .map_err(|e| invalid(e.message()))?;
    let event = parse_event(payload)?;
    let signature_hash = Sha256::digest(header.as_bytes()).to_vec();
    let payload = std::str::from_utf8(payload)
        .map_err(|_| Error::BadRequest("the body is not UTF-8".into()))?
        .to_string();
    db::transaction_with_retry!(conn, retryable, |c| {
        receive_once(c, provider, &event, &signature_hash, &payload, now).await
    })
}

async fn receive_once(
    conn: &mut Conn,
    provider: PaymentProvider,
    event: &ProviderEvent,
    signature_hash: &[u8],
    payload: &str,
    now: NaiveDateTime,
) -> Result<Received, TxFailure> {
    if let Some(seen) = store::find_event(conn, provider.as_str(), &event.id).await? {
        if seen.signature_hash == signature_hash {
            // The very delivery seen before, sent again: a provider re-signs every retry.
            return Err(Error::conflict(
                ErrorCode::WebhookSignatureInvalid,
                "Stripe-Signature: this signed delivery was received before (a replay)",
            )
            .into());
        }
        return Ok(Received {
            event_id: event.id.clone(),
            duplicate: true,
            outcome: seen.outcome,
        });
    }
    // The event row first: a concurrent delivery of the same event waits on its unique index
    // and, once this commits, runs again and finds it.
    store::insert_event(
        conn,
        &NewWebhookEvent {
            provider: provider.as_str().into(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            object_ref: event.object_ref().map(str::to_string),
            checkout_session_id: None,
            project_id: None,
            signature_hash: signature_hash.to_vec(),
            payload: payload.to_string(),
            outcome: "RECEIVED".into(),
            received_at: now,
            processed_at: None,
        },
    )
    .await?;
    let seq = store::find_event(conn, provider.as_str(), &event.id)
        .await?
        .ok_or_else(|| Error::Internal("the event just stored is gone".into()))?
        .seq;
    let done = apply_action(conn, provider, &event.action, now).await?;
    store::set_event_outcome(
        conn,
        seq,
        done.outcome,
        done.checkout_id.as_deref(),
        done.project_id.as_deref(),
        now,
    )
    .await?;
    Ok(Received {
        event_id: event.id.clone(),
        duplicate: false,
        outcome: done.outcome.into(),
    })
}

struct Done {
    outcome: &'static str,
    checkout_id: Option<String>,
    project_id: Option<String>,
}

impl Done {
    fn of(outcome: &'static str, payment: &PaymentRow) -> Done {
        Done {
            outcome,
            checkout_id: Some(payment.checkout_session_id.clone()),
            project_id: Some(payment.project_id.clone()),
        }
    }
}

async fn apply_action(
    conn: &mut Conn,
    provider: PaymentProvider,
    action: &Action,
    now: NaiveDateTime,
) -> Result<Done, TxFailure> {
    match action {
        Action::Ignored => Ok(Done {
            outcome: "IGNORED",
            checkout_id: None,
            project_id: None,
        }),
        Action::Succeeded {
            session,
            payment_intent,
            amount_total,
            currency,
        } => {
            let (checkout, mut payment) = lock_session(conn, provider, session).await?;
            if payment.status != PaymentStatus::Pending.as_str() {
                // Paid already (`completed`, then `async_payment_succeeded`), or failed before.
                return Ok(Done::of("IGNORED", &payment));
            }
            let unit: Currency = credit_units::stored_unit(conn, &checkout.project_id, &checkout.currency).await?;
            let expected = to_minor_units("amount", checkout.amount, &unit)?;
            let currency_matches = currency
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(&checkout.currency));
            if amount_total.is_some_and(|a| a != expected) || !currency_matches {
                tracing::error!(checkout = %checkout.id, ?amount_total, ?currency, expected, "a provider reported another amount than the checkout's; nothing posted");
                return Ok(Done::of("MISMATCH", &payment));
            }
            payment.provider_payment_id = payment_intent.clone();
            succeed(conn, &checkout, &mut payment, now).await?;
            let mut done = Done::of("APPLIED", &payment);
            // Refunds that arrived before this payment are applied now, in order.
            if let Some(pi) = payment_intent {
                for deferred in store::lock_deferred_events(conn, pi).await? {
                    let outcome = match parse_event(deferred.payload.as_bytes())?.action {
                        Action::Refunded {
                            amount,
                            amount_refunded,
                            ..
                        } => refund(conn, &mut payment, amount, amount_refunded, now).await?,
                        _ => "IGNORED",
                    };
                    store::set_event_outcome(
                        conn,
                        deferred.seq,
                        outcome,
                        Some(&payment.checkout_session_id),
                        Some(&payment.project_id),
                        now,
                    )
                    .await?;
                }
                done = Done::of("APPLIED", &payment);
            }
            Ok(done)
        }
        Action::Failed { session, reason } => {
            let (checkout, mut payment) = lock_session(conn, provider, session).await?;
            if payment.status != PaymentStatus::Pending.as_str() {
                return Ok(Done::of("IGNORED", &payment));
            }
            payment.status = PaymentStatus::Failed.as_str().into();
            payment.failure_reason = Some(reason.clone());
            payment.updated_at = now;
            store::update_payment(conn, &payment).await?;
            store::set_checkout_status(conn, &checkout.id, CheckoutStatus::Failed.as_str(), now).await?;
            Ok(Done::of("APPLIED", &payment))
        }
        Action::Refunded {
            payment_intent,
            amount,
            amount_refunded,
        } => {
            let Some(mut payment) = store::lock_payment_by_provider_id(conn, provider.as_str(), payment_intent).await?
            else {
                // The payment is not confirmed yet (events arrive in any order): kept, and applied
                // when its payment is.
                return Ok(Done {
                    outcome: "DEFERRED",
                    checkout_id: None,
                    project_id: None,
                });
            };
            let outcome = refund(conn, &mut payment, *amount, *amount_refunded, now).await?;
            Ok(Done::of(outcome, &payment))
        }
    }
}

/// The checkout of a provider session and its payment, locked in that order.
async fn lock_session(
    conn: &mut Conn,
    provider: PaymentProvider,
    session: &str,
) -> Result<(CheckoutRow, PaymentRow), TxFailure> {
    let checkout = store::lock_checkout_by_provider_session(conn, provider.as_str(), session)
        .await?
        .ok_or_else(|| {
            Error::conflict(
                ErrorCode::CheckoutSessionUnknown,
                format!("no checkout has the session '{session}'"),
            )
        })?;
    let payment = store::lock_payment_of_checkout(conn, &checkout.id)
        .await?
        .ok_or_else(|| Error::Internal(format!("checkout {} has no payment", checkout.id)))?;
    Ok((checkout, payment))
}

/// A paid checkout: credits for a top-up (through the ledger, replay-safe by a key derived from
/// the checkout), or the invoice marked paid with its payment postings.
async fn succeed(
    conn: &mut Conn,
    checkout: &CheckoutRow,
    payment: &mut PaymentRow,
    now: NaiveDateTime,
) -> Result<(), TxFailure> {
    let purpose: PaymentPurpose = checkout.purpose.parse()?;
    match purpose {
        PaymentPurpose::TopUp => {
            let wallet_id = checkout
                .wallet_id
                .clone()
                .ok_or_else(|| Error::Internal("a top-up checkout without a wallet".into()))?;
            let op = Operation::parse(
                OpKind::TopUp,
                &MoneyRequest {
                    wallet_id: Some(wallet_id),
                    amount: canonical(checkout.amount),
                    idempotency_key: format!("{}checkout:{}", ids::RESERVED_KEY_PREFIX, checkout.id),
                    description: Some(format!("top-up paid through checkout {}", checkout.id)),
                    ..MoneyRequest::default()
                },
                SYSTEM_ACTOR,
            )?;
            let posted = ledger_service::apply(conn, &checkout.project_id, &op, now).await?;
            payment.transaction_id = Some(posted.transaction.id);
        }
        PaymentPurpose::Invoice => {
            let invoice_id = checkout
                .invoice_id
                .clone()
                .ok_or_else(|| Error::Internal("an invoice checkout without an invoice".into()))?;
            let invoice = invoice_store::lock(conn, &checkout.project_id, &invoice_id)
                .await?
                .ok_or_else(|| Error::Internal(format!("invoice {invoice_id} is gone")))?;
            if invoice.status != InvoiceStatus::Finalized.as_str() {
                // Paid through another checkout, or voided, since this one was made: the money
                // is not applied; the project refunds it at the provider (docs/payments.md).
                payment.status = PaymentStatus::Failed.as_str().into();
                payment.failure_reason = Some(format!(
                    "invoice {invoice_id} was {} when this payment arrived: refund it at the provider",
                    invoice.status
                ));
                payment.updated_at = now;
                store::update_payment(conn, payment).await?;
                store::set_checkout_status(conn, &checkout.id, CheckoutStatus::Failed.as_str(), now).await?;
                return Ok(());
            }
            let transaction = ledger_service::post_invoice_payment(
                conn,
                &checkout.project_id,
                &invoice_id,
                &invoice.customer_id,
                &invoice.currency,
                checkout.amount,
                &format!("{}payment:{}", ids::RESERVED_KEY_PREFIX, payment.id),
                now,
            )
            .await?;
            store::set_invoice_status(
                conn,
                &invoice_id,
                InvoiceStatus::Finalized.as_str(),
                InvoiceStatus::Paid.as_str(),
                now,
            )
            .await?;
            payment.transaction_id = Some(transaction.id);
        }
    }
    payment.status = PaymentStatus::Succeeded.as_str().into();
    payment.updated_at = now;
    store::update_payment(conn, payment).await?;
    store::set_checkout_status(conn, &checkout.id, CheckoutStatus::Completed.as_str(), now).await?;
    Ok(())
}

/// A refund the provider reported: in full, the payment is REFUNDED and what it posted is
/// reversed (credits taken back, or the invoice owed again). Partial refunds are stored and not
/// applied (docs/payments.md).
async fn refund(
    conn: &mut Conn,
    payment: &mut PaymentRow,
    amount: i64,
    amount_refunded: i64,
    now: NaiveDateTime,
) -> Result<&'static str, TxFailure> {
    if payment.status != PaymentStatus::Succeeded.as_str() {
        return Ok("IGNORED");
    }
    if amount_refunded < amount {
        tracing::warn!(payment = %payment.id, amount, amount_refunded, "a partial refund is not applied");
        return Ok("IGNORED");
    }
    let paid = payment
        .transaction_id
        .clone()
        .ok_or_else(|| Error::Internal(format!("payment {} succeeded without a transaction", payment.id)))?;
    let key = format!("{}refund:{}", ids::RESERVED_KEY_PREFIX, payment.id);
    let purpose: PaymentPurpose = payment.purpose.parse()?;
    let transaction = match purpose {
        PaymentPurpose::TopUp => {
            let wallet_id = payment
                .wallet_id
                .clone()
                .ok_or_else(|| Error::Internal("a top-up payment without a wallet".into()))?;
            ledger_service::refund_top_up(conn, &payment.project_id, &wallet_id, payment.amount, &key, &paid, now)
                .await?
                .transaction
        }
        PaymentPurpose::Invoice => {
            let invoice_id = payment
                .invoice_id
                .clone()
                .ok_or_else(|| Error::Internal("an invoice payment without an invoice".into()))?;
            let invoice = invoice_store::lock(conn, &payment.project_id, &invoice_id)
                .await?
                .ok_or_else(|| Error::Internal(format!("invoice {invoice_id} is gone")))?;
            let transaction = ledger_service::refund_invoice_payment(
                conn,
                &payment.project_id,
                &invoice_id,
                &payment.customer_id,
                &invoice.currency,
                payment.amount,
                &key,
                &paid,
                now,
            )
            .await?;
            // Refunded, it is owed again (a credit note or void settles it for good).
            store::set_invoice_status(
                conn,
                &invoice_id,
                InvoiceStatus::Paid.as_str(),
                InvoiceStatus::Finalized.as_str(),
                now,
            )
            .await?;
            transaction
        }
    };
    payment.status = PaymentStatus::Refunded.as_str().into();
    payment.refund_transaction_id = Some(transaction.id);
    payment.updated_at = now;
    store::update_payment(conn, payment).await?;
    Ok("APPLIED")
}

fn sandbox_event_id(checkout: &CheckoutRow, action: &str) -> String {
    format!("evt_sbx_{}_{action}", &checkout.id[CHECKOUT_ID_PREFIX.len() + 1..])
}

/// Whether the sandbox's event for `action` on `checkout` was received already.
pub async fn sandbox_event_received(conn: &mut Conn, checkout: &CheckoutRow, action: &str) -> Result<bool> {
    Ok(store::find_event(
        conn,
        PaymentProvider::Sandbox.as_str(),
        &sandbox_event_id(checkout, action),
    )
    .await?
    .is_some())
}

/// A Stripe-shaped event the sandbox sends itself about `checkout`: `completed`, `failed` or
/// `refunded`. Its id is derived from the checkout and the action, so pressing a button twice is
/// one event (the second a duplicate).
pub fn sandbox_event(checkout: &CheckoutRow, action: &str, minor: i64, now: NaiveDateTime) -> Result<Vec<u8>> {
    let suffix = &checkout.id[CHECKOUT_ID_PREFIX.len() + 1..];
    let session = checkout
        .provider_session_id
        .clone()
        .ok_or_else(|| Error::Internal("a sandbox checkout without its session".into()))?;
    let payment_intent = format!("pi_sbx_{suffix}");
    let (event_type, object) = match action {
        "complete" => (
            "checkout.session.completed",
            serde_json::json!({
                "id": session, "object": "checkout.session", "client_reference_id": checkout.id,
                "payment_intent": payment_intent, "payment_status": "paid", "status": "complete",
                "amount_total": minor, "currency": checkout.currency.to_ascii_lowercase(),
                "metadata": { "neruba_checkout": checkout.id },
            }),
        ),
        "fail" => (
            "checkout.session.async_payment_failed",
            serde_json::json!({
                "id": session, "object": "checkout.session", "client_reference_id": checkout.id,
                "payment_status": "unpaid", "metadata": { "neruba_checkout": checkout.id },
            }),
        ),
        "refund" => (
            "charge.refunded",
            serde_json::json!({
                "id": format!("ch_sbx_{suffix}"), "object": "charge", "payment_intent": payment_intent,
                "amount": minor, "amount_refunded": minor, "refunded": true,
                "currency": checkout.currency.to_ascii_lowercase(),
            }),
        ),
        other => return Err(Error::Internal(format!("no sandbox action {other}"))),
    };
    let event = serde_json::json!({
        "id": sandbox_event_id(checkout, action),
        "object": "event",
        "type": event_type,
        "created": now.and_utc().timestamp(),
        "livemode": false,
        "data": { "object": object },
    });
    serde_json::to_vec(&event).map_err(|e| Error::Internal(e.to_string()))
}

/// The amount of a checkout in its currency's minor units.
pub async fn checkout_minor_units(conn: &mut Conn, checkout: &CheckoutRow) -> Result<i64> {
    let unit: Currency = credit_units::stored_unit(conn, &checkout.project_id, &checkout.currency).await?;
    to_minor_units("amount", checkout.amount, &unit)
}
