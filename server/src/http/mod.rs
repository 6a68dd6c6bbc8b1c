//! Plain HTTP handlers: the GraphQL transport, usage and charge ingest, payment webhooks and the
//! sandbox provider's pages, health probes, the portal's static files.
//! Every error leaves as `{"error": {"code", "message", "field"?}}` (see [`crate::error::Error`]).

pub mod charge;
pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod ingest;
pub mod portal;
pub mod sandbox;
pub mod webhooks;
pub mod websocket;

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

/// A JSON object's members in order, duplicates included (serde_json's maps keep the last of a
/// key given twice, silently).
struct Members<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The members of the JSON object `raw` (named `field` in errors). A key given twice is refused
/// by name: which of the two values would count is not something a client should have to guess.
pub(crate) fn object_members<'a>(
    field: &str,
    raw: &'a serde_json::value::RawValue,
) -> Result<Vec<(String, &'a serde_json::value::RawValue)>, Error> {
    let Members(members) = serde_json::from_str(raw.get()).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Error::invalid(field, "nests more than 128 levels")
        } else {
            Error::invalid(field, "must be a JSON object")
        }
    })?;
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    for (name, _) in &members {
        if !seen.insert(name.as_str()) {
            let path = if field == "event" {
                name.clone()
            } else {
                format!("{field}.{name}")
            };
            return Err(Error::invalid(path, "is given twice in the same object"));
        }
    }
    Ok(members)
}
