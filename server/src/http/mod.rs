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
