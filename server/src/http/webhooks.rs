//! `POST /webhooks/stripe`: Stripe's events (and the sandbox's, which sends itself the same).
//! No API key: the `Stripe-Signature` header is the credential. Every refusal is a JSON 400
//! (`WEBHOOK_SIGNATURE_INVALID`, `BAD_REQUEST`, `CHECKOUT_SESSION_UNKNOWN`) and stores nothing;
//! a 2xx means the event is stored and was processed (or had been: `duplicate`).

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::HeaderMap,
};
use serde_json::{Value, json};

use super::body_or_error;
use crate::{app::AppState, db, error::Error, payments::service};

pub async fn stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let body = body_or_error(body, crate::payments::MAX_WEBHOOK_BYTES)?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    receive(&state, signature, &body).await
}

/// The one path every event takes, from Stripe or from the sandbox.
pub async fn receive(state: &AppState, signature: Option<&str>, body: &[u8]) -> Result<Json<Value>, Error> {
    let mut conn = db::get(&state.pool).await?;
    let received =
        service::receive_webhook(&mut conn, &state.config.payments, signature, body, crate::store::now()).await?;
    Ok(Json(json!({
        "received": true,
        "eventId": received.event_id,
        "duplicate": received.duplicate,
        "outcome": received.outcome,
    })))
}
