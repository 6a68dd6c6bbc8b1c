//! Stripe's API through `async-stripe` (0.41, pointed at `NERUBA_STRIPE_API_BASE` with
//! `Client::from_url`, so tests talk to a local stand-in): the Stripe customer made on a
//! customer's first checkout and remembered, and the Checkout Session. Both requests carry an
//! idempotency key derived from Neruba's ids, so a retry after a lost answer gets the same object
//! back instead of a second one.

use std::{collections::HashMap, time::Duration};

use ::stripe::{
    CheckoutSession, CheckoutSessionMode, Client, CreateCheckoutSession, CreateCheckoutSessionLineItems,
    CreateCheckoutSessionLineItemsPriceData, CreateCheckoutSessionLineItemsPriceDataProductData,
    CreateCheckoutSessionPaymentIntentData, CreateCustomer, Customer, CustomerId, RequestStrategy, StripeError,
};

use super::{PaymentPurpose, provider_error, to_minor_units};
use crate::{
    config::StripeConfig,
    credit_units,
    currency::Currency,
    error::{Error, Result},
    store::{Conn, customers as customer_store, payments as store, payments::CheckoutRow},
};

/// How long one request to Stripe may take before the checkout answers `PAYMENT_PROVIDER_ERROR`.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A Checkout Session Stripe made: its id and the URL the customer is sent to.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub url: String,
}

fn client(config: &StripeConfig) -> Client {
    // The base is checked at start (config.rs); `from_url` joins `v1/…` onto it.
    Client::from_url(format!("{}/", config.api_base).as_str(), config.secret_key.0.clone())
}

/// What a client may be told about a failed call: Stripe's own message, never the key.
fn failed(what: &str, e: StripeError) -> Error {
    let detail = match &e {
        StripeError::Stripe(request) => format!(
            "Stripe answered {} to {what}: {}",
            request.http_status,
            request.message.as_deref().unwrap_or("no message")
        ),
        StripeError::Timeout => format!("Stripe did not answer {what} in time"),
        _ => format!("{what} failed: {e}"),
    };
    tracing::warn!(%detail, "Stripe call failed");
    provider_error(detail)
}

async fn within<T>(what: &str, call: impl Future<Output = Result<T, StripeError>>) -> Result<T> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| failed(what, e)),
        Err(_) => Err(failed(what, StripeError::Timeout)),
    }
}

/// The customer's Stripe customer, made on its first checkout and remembered.
async fn stripe_customer(conn: &mut Conn, config: &StripeConfig, checkout: &CheckoutRow) -> Result<String> {
    if let Some(id) = store::stripe_customer(conn, &checkout.customer_id).await? {
        return Ok(id);
    }
    let customer = customer_store::find_by_id(conn, &checkout.project_id, &checkout.customer_id)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let mut params = CreateCustomer::new();
    params.name = customer.name.as_deref();
    params.email = customer.email.as_deref();
    params.metadata = Some(HashMap::from([
        ("neruba_project".to_string(), customer.project_id.clone()),
        ("neruba_customer".to_string(), customer.id.clone()),
        ("neruba_external_id".to_string(), customer.external_id.clone()),
    ]));
    // Two first checkouts at once ask with the same key and get the same Stripe customer.
    let client = client(config).with_strategy(RequestStrategy::Idempotent(format!("neruba-customer-{}", customer.id)));
    let created = within("creating the customer", Customer::create(&client, params)).await?;
    Ok(store::remember_stripe_customer(
        conn,
        &checkout.project_id,
        &checkout.customer_id,
        created.id.as_str(),
        crate::store::now(),
    )
    .await?)
}

/// Creates the Stripe Checkout Session of `checkout` (payment mode, one line of the amount in
/// its currency's minor units), for the customer's Stripe customer. The session names the
/// checkout (`client_reference_id`, metadata), so its webhooks find it.
pub async fn create_session(conn: &mut Conn, config: &StripeConfig, checkout: &CheckoutRow) -> Result<Session> {
    let unit: Currency = credit_units::stored_unit(conn, &checkout.project_id, &checkout.currency).await?;
    let minor = to_minor_units("amount", checkout.amount, &unit)?;
    let currency: ::stripe::Currency = checkout
        .currency
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| Error::invalid("currency", format!("Stripe does not take {}", checkout.currency)))?;
    let customer: CustomerId = stripe_customer(conn, config, checkout)
        .await?
        .parse()
        .map_err(|_| Error::Internal("a stored Stripe customer id does not parse".into()))?;
    let purpose: PaymentPurpose = checkout.purpose.parse()?;
    let name = match (purpose, &checkout.invoice_id) {
        (PaymentPurpose::Invoice, Some(invoice)) => format!("Invoice {invoice}"),
        _ => format!("Credits top-up ({})", checkout.currency),
    };
    let metadata = HashMap::from([
        ("neruba_checkout".to_string(), checkout.id.clone()),
        ("neruba_project".to_string(), checkout.project_id.clone()),
        ("neruba_purpose".to_string(), checkout.purpose.clone()),
    ]);
    let mut params = CreateCheckoutSession::new();
    params.mode = Some(CheckoutSessionMode::Payment);
    params.success_url = Some(&checkout.success_url);
    params.cancel_url = Some(&checkout.cancel_url);
    params.client_reference_id = Some(&checkout.id);
    params.customer = Some(customer);
    params.metadata = Some(metadata.clone());
    params.payment_intent_data = Some(CreateCheckoutSessionPaymentIntentData {
        metadata: Some(metadata),
        ..Default::default()
    });
    params.line_items = Some(vec![CreateCheckoutSessionLineItems {
        quantity: Some(1),
        price_data: Some(CreateCheckoutSessionLineItemsPriceData {
            currency,
            unit_amount: Some(minor),
            product_data: Some(CreateCheckoutSessionLineItemsPriceDataProductData {
                name,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let client = client(config).with_strategy(RequestStrategy::Idempotent(format!("neruba-checkout-{}", checkout.id)));
    let session = within(
        "creating the checkout session",
        CheckoutSession::create(&client, params),
    )
    .await?;
    let url = session
        .url
        .ok_or_else(|| provider_error("Stripe made a checkout session without a URL"))?;
    Ok(Session {
        id: session.id.to_string(),
        url,
    })
}
