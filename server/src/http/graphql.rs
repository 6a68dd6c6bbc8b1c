//! The GraphQL transport: `POST /graphql` and GraphiQL at `GET /graphql` (the websocket is in
//! [`super::websocket`]).
//!
//! Every answer from `/graphql` is a GraphQL response, `{"data"?, "errors"?}`, errors carrying
//! `extensions.code`, so GraphQL clients show the real error instead of "HTTP 401". Statuses follow
//! GraphQL over HTTP (<https://graphql.github.io/graphql-over-http/draft/>):
//!
//! | what | `application/json` | `application/graphql-response+json` |
//! | --- | --- | --- |
//! | executed (data, maybe with field errors) | 200 | 200 |
//! | document does not parse or validate, variables do not fit (request error, no `data`) | 200 | 400 |
//! | body is not a GraphQL request (not JSON, no `query`) | 400 | 400 |
//! | missing or invalid credentials | 401 | 401 |
//! | body over the limit | 413 | 413 |
//! | database out of reach before execution (`Retry-After`) | 503 | 503 |
//! | `Accept` names neither media type | 406 (as `application/json`) | — |
//!
//! The response is `application/graphql-response+json` when the client prefers it in `Accept`,
//! `application/json` otherwise (also without `Accept`, or with `*/*`: legacy clients and curl).

use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{State, rejection::BytesRejection},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER, VARY},
    },
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    app::AppState,
    auth,
    error::{Error, ErrorCode, RETRY_AFTER_SECS},
    graphql::{NerubaSchema, limits},
};

/// The media types a GraphQL response can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`: 200 for every well-formed request (legacy clients rely on it).
    Json,
    /// `application/graphql-response+json`: a request error is a 4xx.
    GraphqlResponseJson,
}

impl MediaType {
    pub const GRAPHQL_RESPONSE_JSON: &'static str = "application/graphql-response+json";

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::Json => "application/json",
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
        })
    }

    /// The media type to answer in, from the request's `Accept` headers; `None` when they accept
    /// neither. The highest quality wins; between equals, an exact name beats a wildcard, then the
    /// one listed first; `*/*` alone means `application/json`.
    pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
        let accept: Vec<&str> = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
        if accept.iter().all(|v| v.trim().is_empty()) {
            return Some(MediaType::Json);
        }
        // (quality, specificity, -position) of the most specific range matching each type.
        let mut json: Option<(u16, u8, i64)> = None;
        let mut graphql: Option<(u16, u8, i64)> = None;
        for (position, range) in accept.iter().flat_map(|v| v.split(',')).enumerate() {
            let mut parts = range.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<rust_decimal::Decimal>().ok())
                .map_or(1000, |q| {
                    // A quality value has at most three decimals (RFC 9110, 12.4.2): in thousandths.
                    let thousandths = q.clamp(rust_decimal::Decimal::ZERO, rust_decimal::Decimal::ONE)
                        * rust_decimal::Decimal::ONE_THOUSAND;
                    rust_decimal::prelude::ToPrimitive::to_u16(&thousandths.trunc()).unwrap_or(0)
                });
            let rank = |specificity: u8| Some((quality, specificity, -(position as i64)));
            let (for_json, for_graphql) = match name.as_str() {
                "application/json" => (rank(2), None),
                "application/graphql-response+json" => (None, rank(2)),
                "application/*" => (rank(1), rank(1)),
                "*/*" => (rank(0), rank(0)),
                _ => (None, None),
            };
            // The most specific matching range decides a type's quality (RFC 9110, 12.5.1).
            let keep = |best: &mut Option<(u16, u8, i64)>, new: Option<(u16, u8, i64)>| {
                if let Some(new) = new
                    && best.is_none_or(|b| new.1 > b.1)
                {
                    *best = Some(new);
                }
            };
            keep(&mut json, for_json);
            keep(&mut graphql, for_graphql);
        }
        let json = json.filter(|r| r.0 > 0);
        let graphql = graphql.filter(|r| r.0 > 0);
        match (json, graphql) {
            (None, None) => None,
            (Some(_), None) => Some(MediaType::Json),
            (None, Some(_)) => Some(MediaType::GraphqlResponseJson),
            (Some(j), Some(g)) if g > j => Some(MediaType::GraphqlResponseJson),
            (Some(_), Some(_)) => Some(MediaType::Json),
        }
    }
}

/// Why a request was not executed.
enum Refusal {
    /// Not a GraphQL request at all, or refused by HTTP: the error's own status.
    Transport(Error),
    /// A GraphQL request error found before execution (the document does not parse).
    Document { code: &'static str, message: String },
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Transport(e)
    }
}

/// Executes one GraphQL request. Credentials are checked first (401 without a valid one); a body
/// that is not a GraphQL request is a 400; a document that does not parse is a request error.
pub async fn execute(
    State(state): State<AppState>,
    Extension(schema): Extension<NerubaSchema>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(media) = MediaType::negotiate(&headers) else {
        return refusal_response(
            Refusal::Transport(Error::NotAcceptable(
                "answers are application/graphql-response+json or application/json; send an Accept header naming one"
                    .into(),
            )),
            MediaType::Json,
        );
    };
    match run(&state, &schema, &headers, body).await {
        Ok(response) => executed_response(response, media),
        Err(refusal) => refusal_response(refusal, media),
    }
}

async fn run(
    state: &AppState,
    schema: &NerubaSchema,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<async_graphql::Response, Refusal> {
    let body = super::body_or_error(body, state.config.max_body_bytes)?;
    let principal = auth::authenticate(state, auth::principal::token_from_headers(headers)).await?;
    check_request_shape(&body)?;
    let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "body is not a GraphQL request (JSON with a `query` string): {e}"
        ))
    })?;
    // Before any parse: the parser recurses per nesting level.
    limits::check_nesting(&request.query, limits::MAX_NESTING).map_err(|e| Refusal::Document {
        code: ErrorCode::GraphqlParseFailed.as_str(),
        message: e.to_string(),
    })?;
    if let Err(e) = async_graphql::parser::parse_query(&request.query) {
        let mut message = format!("query does not parse: {e}");
        limits::cut_echo(&mut message);
        return Err(Refusal::Document {
            code: ErrorCode::GraphqlParseFailed.as_str(),
            message,
        });
    }
    let mut response = schema.execute(request.data(principal)).await;
    finish_response(&mut response);
    Ok(response)
}

/// A well-formed GraphQL-over-HTTP request is a JSON object with a `query` string, and
/// `operationName` and `variables`, when given, a string and an object. async-graphql's own
/// reader takes a missing `query` (or a JSON array) for an empty document; that is a 400 here.
fn check_request_shape(body: &[u8]) -> Result<(), Error> {
    use serde_json::value::RawValue;
    use std::{borrow::Cow, collections::HashMap};
    let refuse = |why: &str| {
        Error::BadRequest(format!(
            "body is not a GraphQL request (JSON with a `query` string): {why}"
        ))
    };
    let members: HashMap<Cow<str>, &RawValue> = serde_json::from_slice(body).map_err(|e| refuse(&e.to_string()))?;
    let starts = |name: &str, first: &[u8]| {
        members
            .get(name)
            .map(|v| v.get().as_bytes().first().is_some_and(|b| first.contains(b)))
    };
    if starts("query", b"\"") != Some(true) {
        return Err(refuse("`query` must be a string"));
    }
    if starts("operationName", b"\"n") == Some(false) {
        return Err(refuse("`operationName` must be a string"));
    }
    if starts("variables", b"{n") == Some(false) {
        return Err(refuse("`variables` must be an object"));
    }
    Ok(())
}

/// A GraphQL response that was executed, or refused by async-graphql's validation. A request
/// error (no data, and no error belongs to a field) has no `data` entry, as the GraphQL spec says,
/// and is a 400 in `application/graphql-response+json`.
fn executed_response(response: async_graphql::Response, media: MediaType) -> Response {
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut body = match serde_json::to_value(&response) {
        Ok(body) => body,
        Err(e) => return refusal_response(Refusal::Transport(Error::Internal(e.to_string())), media),
    };
    if request_error && let Some(object) = body.as_object_mut() {
        object.remove("data");
    }
    let status = if request_error && media == MediaType::GraphqlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    graphql_response(status, &body, media)
}

fn refusal_response(refusal: Refusal, media: MediaType) -> Response {
    match refusal {
        Refusal::Transport(e) => {
            let mut response = graphql_response(e.status(), &e.graphql_body(), media);
            if let Error::Unavailable(_) = e {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            response
        }
        Refusal::Document { code, message } => {
            let status = match media {
                MediaType::Json => StatusCode::OK,
                MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            };
            let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
            graphql_response(status, &body, media)
        }
    }
}

fn graphql_response(status: StatusCode, body: &Value, media: MediaType) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, media.content_type());
    // The status and type depend on `Accept`: caches must keep the answers apart.
    headers.insert(VARY, HeaderValue::from_static("accept"));
    response
}

/// Gives every error a code and cuts messages that echo the document. Our resolvers always set a
/// code; an error without one comes from async-graphql's own checks of the document and variables
/// (unknown field, wrong type, limits exceeded).
pub(crate) fn finish_response(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        limits::cut_echo(&mut error.message);
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", ErrorCode::GraphqlValidationFailed.as_str());
        }
    }
}

/// A 404 for `/graphql/…` in the GraphQL shape (GraphiQL where it is off).
pub(crate) fn not_found() -> Response {
    refusal_response(Refusal::Transport(Error::NotFound("route")), MediaType::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(accept: &[&str]) -> Option<MediaType> {
        let mut headers = HeaderMap::new();
        for a in accept {
            headers.append(ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        MediaType::negotiate(&headers)
    }

    #[test]
    fn accept_picks_the_media_type_the_client_prefers() {
        use MediaType::*;
        for (accept, expected) in [
            (&[][..], Some(Json)),
            (&[""], Some(Json)),
            (&["*/*"], Some(Json)),
            (&["application/json"], Some(Json)),
            (&["application/*"], Some(Json)),
            (&["application/graphql-response+json"], Some(GraphqlResponseJson)),
            // Apollo Client and urql.
            (
                &["application/graphql-response+json,application/json;q=0.9"],
                Some(GraphqlResponseJson),
            ),
            (
                &[
                    "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed",
                ],
                Some(GraphqlResponseJson),
            ),
            (&["application/json, application/graphql-response+json"], Some(Json)),
            (
                &["application/json;q=0.5, application/graphql-response+json"],
                Some(GraphqlResponseJson),
            ),
            (
                &["application/json", "application/graphql-response+json;q=0.8"],
                Some(Json),
            ),
            (
                &["*/*;q=0.1, application/graphql-response+json"],
                Some(GraphqlResponseJson),
            ),
            (&["application/json;q=0, */*"], Some(GraphqlResponseJson)),
            (&["text/html"], None),
            (&["application/json;q=0"], None),
            (&["application/xml, text/plain;q=0.5"], None),
        ] {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }
}
