//! The sandbox payment provider's pages (the embedded default without Stripe keys): a checkout's
//! page, where a person completes or fails the payment (and refunds it, later), each button
//! sending Neruba a signed webhook through the same path as Stripe's (`webhooks::receive`).
//! No API key: the checkout's id (80 random bits) is the link, as a provider's session URL is.
//! Served only while the sandbox is the provider (404 otherwise).

use axum::{
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Redirect, Response},
};

use crate::{
    app::AppState,
    db,
    error::Error,
    ids,
    payments::{CHECKOUT_ID_PREFIX, PaymentProvider, PaymentStatus, service},
    store::payments::{self as store, CheckoutRow},
};

async fn checkout(state: &AppState, id: &str) -> Result<CheckoutRow, Error> {
    if service::active_provider(&state.config.payments) != Some(PaymentProvider::Sandbox)
        || !ids::looks_like(CHECKOUT_ID_PREFIX, id)
    {
        return Err(Error::NotFound("checkout"));
    }
    let mut conn = db::get(&state.pool).await?;
    store::find_checkout_by_id(&mut conn, id)
        .await?
        .filter(|c| c.provider == PaymentProvider::Sandbox.as_str())
        .ok_or(Error::NotFound("checkout"))
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `GET /sandbox/checkout/{id}`: what is paid, and the buttons.
pub async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let checkout = checkout(&state, &id).await?;
    let mut conn = db::get(&state.pool).await?;
    let payment = store::payment_of_checkout(&mut conn, &checkout.id)
        .await?
        .ok_or_else(|| Error::Internal("a checkout without its payment".into()))?;
    let what = match (&checkout.wallet_id, &checkout.invoice_id) {
        (Some(wallet), _) => format!("Top-up of wallet {}", escape(wallet)),
        (_, Some(invoice)) => format!("Invoice {}", escape(invoice)),
        _ => String::new(),
    };
    let status: PaymentStatus = payment.status.parse()?;
    let id = escape(&checkout.id);
    let actions = match status {
        PaymentStatus::Pending => format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/complete"><button type="submit">Pay</button></form>
<form method="post" action="/sandbox/checkout/{id}/fail"><button type="submit">Fail the payment</button></form>"#
        ),
        PaymentStatus::Succeeded => format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/refund"><button type="submit">Refund</button></form>"#
        ),
        _ => String::new(),
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Neruba sandbox checkout</title></head>
<body>
<h1>Sandbox checkout</h1>
<p>No money moves here: this page stands in for a payment provider.</p>
<dl>
<dt>Checkout</dt><dd id="checkout">{id}</dd>
<dt>For</dt><dd>{what}</dd>
<dt>Amount</dt><dd id="amount">{amount} {currency}</dd>
<dt>Payment</dt><dd id="status">{status}</dd>
</dl>
{actions}
</body></html>"#,
        amount = escape(&checkout.amount.normalize().to_string()),
        currency = escape(&checkout.currency),
    );
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self' http: https:"),
    );
    Ok(response)
}

/// `POST /sandbox/checkout/{id}/{complete|fail|refund}`: the sandbox signs the event with its
/// secret and hands it to the webhook path; then the person goes back to the shop (the success
/// or cancel URL), or to this page after a refund.
pub async fn act(State(state): State<AppState>, Path((id, action)): Path<(String, String)>) -> Result<Response, Error> {
    if !matches!(action.as_str(), "complete" | "fail" | "refund") {
        return Err(Error::NotFound("route"));
    }
    let checkout = checkout(&state, &id).await?;
    let now = crate::store::now();
    let delivery = {
        let mut conn = db::get(&state.pool).await?;
        let minor = service::checkout_minor_units(&mut conn, &checkout).await?;
        let body = service::sandbox_event(&checkout, &action, minor, now)?;
        // A button pressed again sends nothing new: its event (one id per checkout and action)
        // was received; sent again within the same second it would even be the same signature.
        if service::sandbox_event_received(&mut conn, &checkout, &action).await? {
            None
        } else {
            let secret = service::sandbox_secret(&mut conn).await?;
            let signature = crate::payments::sign(&body, &secret, now.and_utc().timestamp());
            Some((body, signature))
        }
    };
    if let Some((body, signature)) = delivery {
        let _received = super::webhooks::receive(&state, Some(&signature), &body).await?;
    }
    let to = match action.as_str() {
        "complete" => checkout.success_url,
        "fail" => checkout.cancel_url,
        _ => format!("/sandbox/checkout/{}", checkout.id),
    };
    Ok(Redirect::to(&to).into_response())
}
