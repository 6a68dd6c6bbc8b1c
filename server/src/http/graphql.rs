//! The GraphQL transport: `POST /graphql` and GraphiQL at `GET /graphql` (the websocket is in
//! [`super::websocket`]).

use async_graphql::http::GraphiQLSource;
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
};

use crate::{
    app::AppState,
    auth,
    error::Error,
    graphql::{NerubaSchema, limits},
};

/// Executes one GraphQL request. Credentials are checked first (401 without a valid one); a body
/// that is not a GraphQL request or a query that does not parse is a 400 naming the problem.
pub async fn execute(
    State(state): State<AppState>,
    Extension(schema): Extension<NerubaSchema>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let body = super::body_or_error(body, state.config.max_body_bytes)?;
    let principal = auth::authenticate(&state, auth::principal::token_from_headers(&headers)).await?;
    let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "body is not a GraphQL request (JSON with a `query` string): {e}"
        ))
    })?;
    // Before any parse: the parser recurses per nesting level. Like a document that does not
    // parse, this is a 400.
    limits::check_nesting(&request.query, limits::MAX_NESTING).map_err(|e| Error::BadRequest(e.to_string()))?;
    if let Err(e) = async_graphql::parser::parse_query(&request.query) {
        let mut message = format!("query does not parse: {e}");
        limits::cut_echo(&mut message);
        return Err(Error::BadRequest(message));
    }
    let mut response = schema.execute(request.data(principal)).await;
    finish_response(&mut response);
    Ok(Json(response).into_response())
}

/// Gives every error a code and cuts messages that echo the document. Our resolvers always set a
/// code; an error without one comes from async-graphql's own checks of the document and variables
/// (unknown field, wrong type, limits exceeded).
pub(crate) fn finish_response(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        limits::cut_echo(&mut error.message);
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", crate::error::ErrorCode::GraphqlValidationFailed.as_str());
        }
    }
}

/// GraphiQL, where enabled (on in development, off in production unless `NERUBA_GRAPHIQL=true`).
pub async fn graphiql(State(state): State<AppState>) -> Result<Html<String>, Error> {
    if !state.config.graphiql {
        return Err(Error::NotFound("route"));
    }
    Ok(Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Neruba")
            .finish(),
    ))
}
