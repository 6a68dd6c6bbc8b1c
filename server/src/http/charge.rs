//! `POST /ingest/charge`: debit a wallet over plain HTTP, for metering code that does not speak
//! GraphQL. Same rules as the `ingestCharge` mutation (scope `INGEST` or `BILLING`, idempotency
//! key, wallet policy) and answers like usage ingest: 201 with `{"status": "accepted", "charge"}`
//! when posted, 200 with `"replayed"` and the original charge. The amount is read from the JSON number's literal text (or a string), so
//! no float ever touches it; unknown fields are refused, naming the field.

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use crate::{
    app::AppState,
    auth::{Principal, Scope},
    error::Error,
    ledger::service::{MoneyRequest, OpKind, Operation},
    money,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChargeBody {
    project_id: Option<String>,
    idempotency_key: String,
    wallet_id: Option<String>,
    customer_external_id: Option<String>,
    currency: Option<String>,
    amount: Box<RawValue>,
    description: Option<String>,
}

/// A body error naming the field: serde's message names unknown and missing fields between
/// backticks; `serde_path_to_error` gives the path of a value of the wrong type.
fn body_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.to_string();
    let named = message.split('`').nth(1).map(str::to_string);
    match named {
        Some(field) if message.starts_with("unknown field") => Error::invalid(field, "unknown field"),
        Some(field) if message.starts_with("missing field") => Error::invalid(field, "is required"),
        _ if inner.is_data() && path != "." && !path.starts_with('[') => {
            Error::invalid(path, format!("wrong type: {message}"))
        }
        _ => Error::BadRequest(format!("body is not a charge: {message}")),
    }
}

pub async fn ingest_charge(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let body = super::body_or_error(body, state.config.max_body_bytes)?;
    let charge: ChargeBody =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)).map_err(body_error)?;
    let project_id = principal.project_for_any(
        charge.project_id.as_deref(),
        "projectId",
        &[Scope::Ingest, Scope::Billing],
    )?;
    let request = MoneyRequest {
        wallet_id: charge.wallet_id,
        customer_external_id: charge.customer_external_id,
        currency: charge.currency,
        amount: super::decimal_text("amount", &charge.amount)?,
        idempotency_key: charge.idempotency_key,
        description: charge.description,
        ..MoneyRequest::default()
    };
    let op = Operation::parse(OpKind::Charge, &request, &principal.actor())?;
    // Published to this server's subscribers by the queue, right after commit.
    let posted = state.charges.charge(&project_id, op).await?;
    let t = &posted.transaction;
    let number = |d: rust_decimal::Decimal| money::canonical(d);
    let charge = json!({
        "transactionId": t.id,
        "idempotencyKey": t.idempotency_key,
        "walletId": posted.wallet.id,
        "customerExternalId": posted.wallet.customer_external_id,
        "currency": t.currency,
        "amount": number(t.amount),
        "balanceAfter": t.wallet_balance_after.map(number),
        "walletBalance": number(posted.wallet.balance),
        "createdAt": t.created_at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    // As usage ingest answers: 201 when stored, 200 with the original when replayed.
    Ok(if posted.replayed {
        (StatusCode::OK, Json(json!({ "status": "replayed", "charge": charge })))
    } else {
        (
            StatusCode::CREATED,
            Json(json!({ "status": "accepted", "charge": charge })),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_come_from_the_literal_text() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let text = |s: &str| super::super::decimal_text("amount", &raw(s));
        assert_eq!(text("0.1").unwrap(), "0.1");
        assert_eq!(text("1e-3").unwrap(), "1e-3");
        assert_eq!(text("\"12.50\"").unwrap(), "12.50");
        assert_eq!(text("-1").unwrap(), "-1");
        assert!(text("true").is_err());
        assert!(text("null").is_err());
    }

    fn parse(text: &str) -> Result<ChargeBody, Error> {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(body_error)
    }

    #[test]
    fn unknown_missing_and_mistyped_fields_are_named() {
        for (text, named) in [
            (r#"{"idempotencyKey":"k","amount":1,"amout":2}"#, "amout"),
            (r#"{"idempotencyKey":"k"}"#, "amount"),
            (r#"{"idempotencyKey":7,"amount":1}"#, "idempotencyKey"),
        ] {
            match parse(text) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, named),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(parse("[1]"), Err(Error::BadRequest(_))));
    }
}
