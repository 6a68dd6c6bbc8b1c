//! Plain HTTP handlers: the GraphQL transport, usage and charge ingest, health probes, the portal's
//! static files.
//! Every error leaves as `{"error": {"code", "message", "field"?}}` (see [`crate::error::Error`]).

pub mod charge;
pub mod graphql;
pub mod health;
pub mod ingest;
pub mod portal;

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{StatusCode, Uri},
};

use crate::error::Error;

pub async fn not_found(uri: Uri) -> Error {
    tracing::debug!(%uri, "no route");
    Error::NotFound("route")
}

/// The body, or a JSON 413/400 instead of axum's plain-text rejection.
pub fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Error> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit },
        _ => Error::BadRequest(rejection.body_text()),
    })
}

/// A decimal's text from a JSON body: a number's literal exactly as written, or a string's
/// content; anything else is refused naming `field`. Parsing the text (not a float) is what keeps
/// money exact; `money::parse_decimal` checks it afterwards.
pub(crate) fn decimal_text(field: &str, value: &serde_json::value::RawValue) -> Result<String, Error> {
    let text = value.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map_err(|_| Error::invalid(field, "must be a decimal number or a string holding one")),
        Some(b'-' | b'0'..=b'9') => Ok(text.to_string()),
        _ => Err(Error::invalid(
            field,
            "must be a decimal number or a string holding one",
        )),
    }
}
