//! The GraphQL transport: `POST /graphql`, GraphiQL at `GET /graphql`, and the
//! graphql-transport-ws websocket at `/graphql/ws`.

use async_graphql::{Data, http::GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{State, WebSocketUpgrade, rejection::BytesRejection},
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
};

use crate::{
    app::AppState,
    auth::{self, Principal},
    error::Error,
    graphql::NerubaSchema,
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
    if let Err(e) = async_graphql::parser::parse_query(&request.query) {
        return Err(Error::BadRequest(format!("query does not parse: {e}")));
    }
    let mut response = schema.execute(request.data(principal)).await;
    for error in &mut response.errors {
        // Our resolvers always set a code; an error without one comes from async-graphql's own
        // checks of the document and variables (unknown field, wrong type, limits exceeded).
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "GRAPHQL_VALIDATION_FAILED");
        }
    }
    Ok(Json(response).into_response())
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

/// Subscriptions over graphql-transport-ws. Credentials come in the `connection_init` payload
/// (`{"authorization": "Bearer …"}`) or, for non-browser clients, the upgrade request's header.
pub async fn websocket(
    State(state): State<AppState>,
    Extension(schema): Extension<NerubaSchema>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_token = auth::principal::token_from_headers(&headers).map(str::to_string);
    let shutdown = state.shutdown.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let connection = GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let token = init_token(&payload).or(header_token);
                    let principal: Principal = auth::authenticate(&state, token.as_deref()).await?;
                    let mut data = Data::default();
                    data.insert(principal);
                    Ok(data)
                })
                .serve();
            // A subscription lives until the client leaves; on shutdown, drop it so the server
            // can stop (clients reconnect to another replica).
            tokio::select! {
                () = connection => {},
                () = shutdown.cancelled() => {},
            }
        })
        .into_response()
}

fn init_token(payload: &serde_json::Value) -> Option<String> {
    ["authorization", "Authorization", "apiKey"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
        .and_then(auth::principal::bearer)
        .map(str::to_string)
}
