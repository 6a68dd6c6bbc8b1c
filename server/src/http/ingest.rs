//! `POST /ingest/usage` (one event) and `POST /ingest/usage/batch` (`{"events": [...]}`).
//!
//! Both parse each event field by field from the JSON text (a quantity is read from its literal,
//! never through a float; an unknown field is refused by name) and then share the GraphQL
//! mutations' validation and write path. A single event answers 201 when stored, 200 when it is a
//! replay (the original), 409 on an idempotency conflict and 422 naming the bad field. A batch
//! answers 200 with one result per item (`index`, `status`, and the event `id` or the `error`):
//! one bad item does not keep the others out.

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use crate::{
    app::AppState,
    auth::{Principal, Scope},
    error::Error,
    money,
    store::now,
    usage::{
        event::RawEvent,
        ingest::{self, IngestedEvent, Outcome, check_batch_size},
    },
};

pub async fn usage(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let project_id = principal.require_scope(Scope::Ingest)?.to_string();
    let body = super::body_or_error(body, state.config.max_body_bytes)?;
    let raw: &RawValue = parse_json(&body)?;
    let received_at = now();
    let item = parse_event(raw).and_then(|e| e.validate(&state.config.ingest, received_at));
    let outcome = state.group_commit.ingest_one(&project_id, item, received_at).await?;
    Ok(match outcome {
        Outcome::Accepted(e) => (
            StatusCode::CREATED,
            Json(json!({ "status": "accepted", "event": event_json(&e) })),
        )
            .into_response(),
        Outcome::Replayed(e) => (
            StatusCode::OK,
            Json(json!({ "status": "replayed", "event": event_json(&e) })),
        )
            .into_response(),
        Outcome::Rejected(e) => e.into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

pub async fn usage_batch(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let project_id = principal.require_scope(Scope::Ingest)?.to_string();
    let body = super::body_or_error(body, state.config.max_body_bytes)?;
    let raw: &RawValue = parse_json(&body)?;
    let batch: BatchBody<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        let message = e.to_string();
        match message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) => Error::invalid(field, "unknown field; the body is {\"events\": [...]}"),
            None => Error::invalid("events", "must be a list of event objects"),
        }
    })?;
    let events = batch.events.ok_or_else(|| Error::invalid("events", "is required"))?;
    check_batch_size(events.len(), state.config.ingest.max_batch)?;
    let received_at = now();
    let items = events
        .into_iter()
        .map(|raw| parse_event(raw).and_then(|e| e.validate(&state.config.ingest, received_at)))
        .collect();
    let outcomes = ingest::ingest(&state.pool, &state.known_customers, &project_id, items, received_at).await?;
    let (mut accepted, mut replayed, mut rejected) = (0, 0, 0);
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Outcome::Accepted(e) => {
                accepted += 1;
                json!({ "index": index, "status": "accepted", "id": e.id })
            }
            Outcome::Replayed(e) => {
                replayed += 1;
                json!({ "index": index, "status": "replayed", "id": e.id })
            }
            Outcome::Rejected(err) => {
                rejected += 1;
                json!({ "index": index, "status": "rejected", "error": err.body() })
            }
        })
        .collect();
    Ok(Json(json!({
        "accepted": accepted,
        "replayed": replayed,
        "rejected": rejected,
        "results": results,
    }))
    .into_response())
}

fn parse_json(body: &[u8]) -> Result<&RawValue, Error> {
    if body.is_empty() {
        return Err(Error::BadRequest("the body is empty; send JSON".into()));
    }
    let text = std::str::from_utf8(body).map_err(|e| Error::BadRequest(format!("the body is not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// One event object, field by field, into a [`RawEvent`]. Unknown fields and wrong JSON types are
/// errors naming the field.
pub(crate) fn parse_event(raw: &RawValue) -> Result<RawEvent, Error> {
    let fields = super::object_members("event", raw)?;
    let mut event = RawEvent::default();
    for (name, value) in fields {
        let (name, text) = (name.as_str(), value.get());
        if text == "null" {
            continue;
        }
        match name {
            "idempotencyKey" => event.idempotency_key = Some(string(name, value)?),
            "customerExternalId" => event.customer_external_id = Some(string(name, value)?),
            "metric" => event.metric = Some(string(name, value)?),
            "timestamp" => event.timestamp = Some(string(name, value)?),
            "quantity" => event.quantity = Some(super::decimal_text(name, value)?),
            "properties" => {
                super::object_members("properties", value)?;
                event.properties =
                    Some(serde_json::from_str(text).map_err(|_| Error::invalid(name, "must be a JSON object"))?)
            }
            other => return Err(Error::invalid(other, "unknown field")),
        }
    }
    Ok(event)
}

fn string(field: &str, value: &RawValue) -> Result<String, Error> {
    serde_json::from_str(value.get()).map_err(|_| Error::invalid(field, "must be a string"))
}

fn event_json(e: &IngestedEvent) -> Value {
    let time = |t: chrono::NaiveDateTime| t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "id": e.id,
        "idempotencyKey": e.idempotency_key,
        "customerExternalId": e.customer_external_id,
        "metric": e.metric,
        "quantity": money::canonical(e.quantity),
        "timestamp": time(e.occurred_at),
        "receivedAt": time(e.received_at),
        "properties": e.properties.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
    })
}
